"""The one module that talks to Optuna's trial API: candidates suggested and queued, trials run and told.

The study is single-objective on the final value of the study's objective (the validation loss
unless ``objective=`` says otherwise, minimized or maximized as it says), because Optuna's ``Trial.report`` and
``should_prune`` do not work in multi-objective studies; time and memory are recorded beside each
trial and weighed afterwards by the recommender. Every measurement is stored in the trial's user
attributes, so that a resumed study, or one shared by several workers, rebuilds the whole table
from its storage alone.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from ..objective import VAL_LOSS, Objective
from ..optimizers.spec import Categorical, LogUniform, OptimizerSpec
from ..records import Candidate, EpochRecord, Measurement
from ..training.loop import TrainingInterrupted
from .budget import TRIAL_BUDGET_ATTR, save_clock, stop_at_study_total
from .storage import enqueue_once, trial_heartbeat

#: run_trial(number, candidate, seed, purpose, should_stop) -> Measurement, supplied by the caller
RunTrial = Callable[[int, Candidate, int, str, Callable[[EpochRecord], bool]], Measurement]

#: Why a trial ran: a race's entry, a portfolio entry, a line-search step, a sampled (TPE) trial, a re-run
#: on a new seed.
PURPOSES = ("race", "portfolio", "refine", "search", "reevaluation")


def _param_name(spec: OptimizerSpec, dim: str) -> str:
    # one name per optimizer and dimension: Optuna needs a fixed distribution per name
    return f"{spec.name}.{dim}"


def suggest_candidate(trial: optuna.Trial, specs: Sequence[OptimizerSpec], space: str = "full") -> Candidate:
    """Sample an optimizer, then its own hyperparameters (a conditional space).

    >>> from autoopt.optimizers.registry import resolve_specs
    >>> suggest_candidate(optuna.trial.FixedTrial({"optimizer": "sgd", "sgd.lr": 0.1}), resolve_specs(["sgd"]))
    Candidate(optimizer='sgd', params={'lr': 0.1})
    """
    by_name = {s.name: s for s in specs}
    spec = by_name[trial.suggest_categorical("optimizer", list(by_name))]
    params: dict[str, Any] = dict(spec.defaults)
    for dim in spec.space:
        if space == "lr" and dim.name != "lr":
            continue
        if isinstance(dim, Categorical):
            params[dim.name] = trial.suggest_categorical(_param_name(spec, dim.name), list(dim.choices))
            continue
        params[dim.name] = trial.suggest_float(
            _param_name(spec, dim.name), dim.low, dim.high, log=isinstance(dim, LogUniform)
        )
    return Candidate(spec.name, params)


def trial_params(candidate: Candidate, spec: OptimizerSpec, space: str = "full") -> dict[str, Any]:
    """The Optuna params that make ``suggest_candidate`` return ``candidate`` (for enqueueing)."""
    params: dict[str, Any] = {"optimizer": candidate.optimizer}
    for dim in spec.space:
        if space != "lr" or dim.name == "lr":  # "full", or the user's overrides (already in spec.space)
            value = candidate.params[dim.name]
            if isinstance(dim, Categorical):
                value = value if value in dim.choices else dim.choices[0]
            else:
                value = min(max(float(value), dim.low), dim.high)
            params[_param_name(spec, dim.name)] = value
    return params


def within_space(candidate: Candidate, spec: OptimizerSpec, space: str = "full") -> Candidate:
    """``candidate`` as a trial of it will train: its values brought into the search space (a
    ``space=`` that caps the learning rate makes several portfolio entries one configuration)."""
    return suggest_candidate(optuna.trial.FixedTrial(trial_params(candidate, spec, space)), [spec], space)


def enqueue(study: optuna.Study, candidate: Candidate, spec: OptimizerSpec, space: str,
            purpose: str, seed: int, *, extra: dict[str, Any] | None = None, once: str | None = None) -> bool:
    """Queue ``candidate`` as the next trial, with ``extra`` user attributes (kept with the trial).

    ``once``: a key that queues it at most once per study, whichever process asks (``enqueue_once``).
    Returns whether it was queued.
    """
    attrs: dict[str, Any] = {"purpose": purpose, "seed": seed, "key": candidate.key(), **(extra or {})}
    if once is not None:
        return enqueue_once(study, once, trial_params(candidate, spec, space), attrs)
    study.enqueue_trial(trial_params(candidate, spec, space), user_attrs=attrs)
    return True


def make_objective(
    specs: Sequence[OptimizerSpec],
    run_trial: RunTrial,
    seed: int,
    space: str,
    *,
    objective: Objective = VAL_LOSS,
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: sample (or take the queued candidate), train through ``run_trial``, store.

    Each epoch reports ``objective``'s value (for pruning); a trial returns its final value.

    Whatever a trial was queued for (another stage's entry, a re-run of a killed trial), the process
    that takes it trains it: a trial is never opened only to be closed untrained.
    """
    measured = objective  # the name ``objective`` is Optuna's function below

    def objective(trial: optuna.Trial) -> float:
        with trial_heartbeat(trial):
            return run_objective(trial)

    def run_objective(trial: optuna.Trial) -> float:
        number, candidate, trial_seed, purpose, should_stop = _begin_trial(trial, specs, seed, space, measured)
        try:
            measurement = run_trial(number, candidate, trial_seed, purpose, should_stop)
        except TrainingInterrupted as exc:
            store_measurement(trial, exc.measurement)
            raise
        except Exception as exc:
            failed = Measurement.failure(exc)
            store_measurement(trial, failed)
            raise
        state, value = _end_trial(trial, measurement, measured)
        if state == TrialState.PRUNED:
            raise optuna.TrialPruned()
        if state == TrialState.FAIL:
            raise RuntimeError(measurement.error or "the trial failed")
        return value

    return objective


#: One trial of a group trained together: (number, candidate, seed, purpose, should_stop), what
#: ``RunTrial`` takes for one trial.
GroupMember = tuple[int, Candidate, int, str, Callable[[EpochRecord], bool]]
#: train_group(members) -> their measurements, in order; members share one seed. On Ctrl-C it raises a
#: KeyboardInterrupt whose ``measurements`` attribute holds every member's measurement so far.
TrainGroup = Callable[[list[GroupMember]], list[Measurement]]


def _begin_trial(trial: optuna.Trial, specs: Sequence[OptimizerSpec], seed: int, space: str,
                 measured: Objective) -> GroupMember:
    """Take the trial's candidate and record what it is."""
    purpose = str(trial.user_attrs.get("purpose", "search"))
    trial_seed = int(trial.user_attrs.get("seed", seed))
    group = bool(trial.user_attrs.get("group", False))
    candidate = suggest_candidate(trial, specs, space)
    trial.set_user_attr("purpose", purpose)
    trial.set_user_attr("seed", trial_seed)
    trial.set_user_attr("key", candidate.key())
    trial.set_user_attr("candidate", {"optimizer": candidate.optimizer, "params": candidate.params})

    def should_stop(record: EpochRecord) -> bool:
        if purpose == "reevaluation":  # re-runs measure the full budget on a new seed
            return False
        if not math.isfinite(record.val_loss):
            return True  # diverged: the training loop records it as such
        trial.report(measured.value(record), record.epoch)
        return False if group else trial.should_prune()  # a group's rungs decide for its runs

    return trial.number, candidate, trial_seed, purpose, should_stop


def store_measurement(trial: optuna.Trial, measurement: Measurement) -> None:
    """The full record (``measurement``, what autoopt reads back) and one short line of it (``summary``,
    what optuna-dashboard's trial page shows without a scroll bar 8,000 px wide)."""
    trial.set_user_attr("summary", measurement.summary())
    trial.set_user_attr("measurement", measurement.to_dict())


def _end_trial(trial: optuna.Trial, measurement: Measurement, measured: Objective) -> tuple[TrialState, float | None]:
    """Store the measurement; the state and value the trial ends with."""
    store_measurement(trial, measurement)
    if measurement.outcome == "pruned":
        return TrialState.PRUNED, None
    if measurement.outcome in ("failed", "interrupted"):
        return TrialState.FAIL, None
    if measurement.outcome in ("diverged", "oom"):
        # A FAIL state is invisible to TPE; a bad finite value steers it away from this region.
        return TrialState.COMPLETE, penalty(measurement, measured)
    return TrialState.COMPLETE, measured.final(measurement)


#: The user attribute of a trial trained in a group by ``run_together``: how many trained together.
GROUP_SIZE_ATTR = "trained_together"


def run_together(study: optuna.Study, specs: Sequence[OptimizerSpec], train_group: TrainGroup, seed: int,
                 space: str, *, n: int, max_size: int,
                 objective: Objective = VAL_LOSS, deadline: float | None = None, fused: bool = True) -> None:
    """Run the next ``n`` queued trials like ``run``, but up to ``max_size`` of one seed at a time in one
    ``train_group`` call (ask and tell: each is still one trial, told its own value or state).

    A group is the queued trials that come next and share a seed, so the trials run in the order they
    were queued, as ``run`` runs them. Ctrl-C ends every member of the group "interrupted", as ``run``
    ends the one trial it is training. No group starts after ``deadline`` (``time.monotonic()``).
    ``fused``: the group trains in one fused pass, which each member's ``GROUP_SIZE_ATTR`` records.
    """
    left = n
    while left > 0 and (deadline is None or time.monotonic() < deadline):
        members: list[tuple[optuna.Trial, GroupMember]] = []
        with contextlib.ExitStack() as beats:
            while left > 0 and len(members) < max_size:
                upcoming = _next_waiting(study)
                if upcoming is None or (members and int(upcoming.user_attrs.get("seed", seed)) != members[0][1][2]):
                    break
                with warnings.catch_warnings():  # "Heartbeat ... used with Study.optimize": beaten below
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                left -= 1
                beats.enter_context(trial_heartbeat(trial, asked=True))
                members.append((trial, _begin_trial(trial, specs, seed, space, objective)))
            if not members:
                if _next_waiting(study) is None:
                    return
                continue
            # one group per seed: another process may have taken the trial seen above, and the next one
            # asked for may have another seed
            groups: list[list[tuple[optuna.Trial, GroupMember]]] = []
            for pair in members:
                if groups and groups[-1][0][1][2] == pair[1][2]:
                    groups[-1].append(pair)
                else:
                    groups.append([pair])
            for i, group in enumerate(groups):
                try:
                    measurements = train_group([m for _, m in group])
                except KeyboardInterrupt as stop:
                    so_far = list(getattr(stop, "measurements", None) or [])
                    for j, (trial, _) in enumerate([p for g in groups[i:] for p in g]):
                        _tell(study, trial, so_far[j] if j < len(so_far) else Measurement("interrupted"), objective)
                    raise
                for (trial, _), measurement in zip(group, measurements):
                    if fused and len(group) > 1:
                        trial.set_user_attr(GROUP_SIZE_ATTR, len(group))
                    _tell(study, trial, measurement, objective)
        save_clock(study)


def _tell(study: optuna.Study, trial: optuna.Trial, measurement: Measurement, objective: Objective) -> None:
    state, value = _end_trial(trial, measurement, objective)
    if state == TrialState.COMPLETE:
        study.tell(trial, value, state=state)
    else:
        study.tell(trial, state=state)  # a pruned trial keeps its last reported value, as in optimize


def _next_waiting(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The queued trial ``study.ask()`` takes next (Optuna takes the waiting trials in order), or None."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return min(waiting, key=lambda t: t.number) if waiting else None


def penalty(measurement: Measurement, objective: Objective = VAL_LOSS) -> float:
    """The value a diverged or out-of-memory trial reports: worse than any trial that trained.

    For the validation loss, 10x the initial loss; for another objective, whose initial value is not
    measured, a value far on its wrong side (TPE ranks values, so only the order matters).
    """
    if objective.name != VAL_LOSS.name:
        return objective.score(1e12)
    reference = measurement.initial_val_loss
    if not math.isfinite(reference):
        return 1e12
    return 10.0 * max(abs(reference), 1e-6)


def run(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    n_trials: int | None,
    timeout: float | None,
    n_jobs: int,
    queued: bool = False,
) -> None:
    """Run up to ``n_trials`` trials within ``timeout``; a trial's exception is a FAIL, not a crash.

    ``queued``: the trials to run are queued ones; once none is left waiting (another process took
    the rest), this process stops instead of sampling new trials in their place.
    """
    if n_trials is not None and n_trials <= 0:
        return
    callbacks = []
    total = study.user_attrs.get(TRIAL_BUDGET_ATTR)
    if total is not None:
        callbacks.append(stop_at_study_total(int(total)))
    if queued:
        callbacks.append(_stop_when_queue_empty)
    callbacks.append(save_clock)  # the study's search time, for a timeout that is the study's total
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout,
        n_jobs=n_jobs,
        catch=(Exception,),
        callbacks=callbacks,
    )


def _stop_when_queue_empty(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
    if _next_waiting(study) is None:
        study.stop()
