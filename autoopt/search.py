"""The search: the one module that talks to Optuna's study and trial API.

The study is single-objective on the final validation loss, because Optuna's ``Trial.report`` and
``should_prune`` do not work in multi-objective studies; time and memory are recorded beside each
trial and weighed afterwards by the recommender. Every measurement is stored in the trial's user
attributes, so that a resumed study, or one shared by several workers, rebuilds the whole table
from its storage alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .records import Candidate, EpochRecord, Measurement, TrialRecord
from .registry import Categorical, LogUniform, OptimizerSpec
from .training import TrainingInterrupted

#: run_trial(number, candidate, seed, purpose, should_stop) -> Measurement, supplied by the caller
RunTrial = Callable[[int, Candidate, int, str, Callable[[EpochRecord], bool]], Measurement]

SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "successive_halving", "percentile", "hyperband", "median")
SPACES = ("full", "lr")
#: Why a trial ran: a portfolio entry, a line-search step, a sampled (TPE) trial, a re-run on a new seed.
PURPOSES = ("portfolio", "refine", "search", "reevaluation")
SEARCH_PURPOSES = ("portfolio", "refine", "search")
#: A trial whose epochs take more than this many bare epochs is charged for its time, not its epochs.
COSTLY = 2.0
def make_sampler(kind: str | optuna.samplers.BaseSampler, seed: int) -> optuna.samplers.BaseSampler:
    if isinstance(kind, optuna.samplers.BaseSampler):
        return kind
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group=True: each optimizer's dimensions form their own subspace of the conditional space
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5)


def make_pruner(kind: str | optuna.pruners.BasePruner, epochs: int) -> optuna.pruners.BasePruner:
    if isinstance(kind, optuna.pruners.BasePruner):
        return kind
    if kind == "successive_halving":
        # Asynchronous SH: a trial goes past epoch 1, 3, 9 ... only while it is among the best third
        # at that epoch (the best so far while few trials have reached it).
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if kind == "percentile":
        # Against finished runs only: a trial goes on while its curve stays in the best quarter of the
        # completed curves at the same epoch (from the first completed run on).
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=1, n_warmup_steps=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def open_storage(storage: str | Path | optuna.storages.BaseStorage | None) -> Any:
    """An Optuna storage from a URL, a journal file path (process workers) or a storage object."""
    if isinstance(storage, Path):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(storage)))
    return storage


def create_study(
    *,
    study_name: str | None,
    storage: str | Path | optuna.storages.BaseStorage | None,
    sampler: str | optuna.samplers.BaseSampler,
    pruner: str | optuna.pruners.BasePruner,
    seed: int,
    epochs: int,
) -> optuna.Study:
    """A new study, or the stored one of the same name (resume)."""
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner, epochs),
        direction="minimize",
        load_if_exists=True,
    )


def _param_name(spec: OptimizerSpec, dim: str) -> str:
    # one name per optimizer and dimension: Optuna needs a fixed distribution per name
    return f"{spec.name}.{dim}"


def suggest_candidate(trial: optuna.Trial, specs: Sequence[OptimizerSpec], space: str = "full") -> Candidate:
    """Sample an optimizer, then its own hyperparameters (a conditional space).

    >>> from autoopt.registry import resolve_specs
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


def enqueue(study: optuna.Study, candidate: Candidate, spec: OptimizerSpec, space: str,
            purpose: str, seed: int, *, extra: dict[str, Any] | None = None) -> None:
    """Queue ``candidate`` as the next trial, with ``extra`` user attributes (kept with the trial)."""
    attrs: dict[str, Any] = {"purpose": purpose, "seed": seed, "key": candidate.key(), **(extra or {})}
    study.enqueue_trial(trial_params(candidate, spec, space), user_attrs=attrs)


def make_objective(
    specs: Sequence[OptimizerSpec],
    run_trial: RunTrial,
    seed: int,
    space: str,
    *,
    purposes: frozenset[str] = frozenset(PURPOSES),
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: sample (or take the queued candidate), train through ``run_trial``, store.

    A trial queued for another phase than ``purposes`` ends at once, untrained, as "cancelled".
    """

    def objective(trial: optuna.Trial) -> float:
        purpose = str(trial.user_attrs.get("purpose", "search"))
        trial_seed = int(trial.user_attrs.get("seed", seed))
        group = bool(trial.user_attrs.get("group", False))
        candidate = suggest_candidate(trial, specs, space)
        trial.set_user_attr("purpose", purpose)
        trial.set_user_attr("seed", trial_seed)
        trial.set_user_attr("key", candidate.key())
        trial.set_user_attr("candidate", {"optimizer": candidate.optimizer, "params": candidate.params})
        if purpose not in purposes:  # queued for another phase: never trained here
            trial.set_user_attr("measurement", Measurement("cancelled").to_dict())
            raise optuna.TrialPruned()

        def should_stop(record: EpochRecord) -> bool:
            if purpose == "reevaluation":  # re-runs measure the full budget on a new seed
                return False
            if not math.isfinite(record.val_loss):
                return True  # diverged: the training loop records it as such
            trial.report(record.val_loss, record.epoch)
            return False if group else trial.should_prune()  # a group's rungs decide for its runs

        try:
            measurement = run_trial(trial.number, candidate, trial_seed, purpose, should_stop)
        except TrainingInterrupted as exc:
            trial.set_user_attr("measurement", exc.measurement.to_dict())
            raise
        except Exception as exc:
            failed = Measurement.failure(exc)
            trial.set_user_attr("measurement", failed.to_dict())
            raise
        trial.set_user_attr("measurement", measurement.to_dict())
        if measurement.outcome == "pruned":
            raise optuna.TrialPruned()
        if measurement.outcome in ("diverged", "oom"):
            # A FAIL state is invisible to TPE; a bad finite value steers it away from this region.
            return penalty(measurement)
        return measurement.final_val_loss

    return objective


def penalty(measurement: Measurement) -> float:
    """The value a diverged or out-of-memory trial reports: worse than any trial that trained."""
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
) -> None:
    """Run up to ``n_trials`` trials within ``timeout``; a trial's exception is a FAIL, not a crash."""
    if n_trials is not None and n_trials <= 0:
        return
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout,
        n_jobs=n_jobs,
        catch=(Exception,),
    )


def spent(study: optuna.Study, epochs: int, costly_seconds: float | None = None) -> float:
    """Epochs charged so far: each ended trial's epochs, or its time in epochs where that is more.

    ``costly_seconds``: the training time of a run of ``epochs`` epochs at COSTLY x a bare epoch; a trial
    that took longer per epoch is charged ``seconds / costly_seconds * epochs`` instead of its epochs.
    """
    total = 0.0
    for t in study.get_trials(deepcopy=False):
        m = t.user_attrs.get("measurement")
        if m is None:
            continue
        n = len(m.get("epochs", []))
        seconds = float(m.get("seconds", 0.0) or 0.0)
        # runs trained at once (successive halving) share the cores, so their seconds say nothing of cost
        timed = costly_seconds and not t.user_attrs.get("group")
        total += max(n, seconds / costly_seconds * epochs) if timed else n
    return total


def bare_epoch_seconds(study: optuna.Study) -> float | None:
    """Seconds of one bare training epoch on this study's model and data (the wall-time unit)."""
    value = study.user_attrs.get("bare_epoch_seconds")
    return None if value is None else float(value)


def save_bare_epoch_seconds(study: optuna.Study, seconds: float) -> None:
    study.set_user_attr("bare_epoch_seconds", float(seconds))


def completed_trials(study: optuna.Study) -> int:
    """Trials that trained for their whole budget (diverged ones report COMPLETE with a penalty)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if t.user_attrs.get("measurement", {}).get("outcome") == "completed")


def waiting_trials(study: optuna.Study, purpose: str | None = None) -> int:
    """Enqueued trials (of ``purpose``, or any) not started yet."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
               if purpose is None or t.user_attrs.get("purpose") == purpose)


def finished_trials(study: optuna.Study, purposes: Sequence[str] = SEARCH_PURPOSES) -> int:
    """Trials of these purposes that ended (interrupted ones excepted): the budget already spent."""
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        outcome = t.user_attrs.get("measurement", {}).get("outcome")
        if t.user_attrs.get("purpose", "search") in purposes and outcome not in ("interrupted", "cancelled"):
            count += 1
    return count


def read_records(study: optuna.Study, specs: Sequence[OptimizerSpec]) -> list[TrialRecord]:
    """Every finished trial of the study as a TrialRecord, read back from the storage."""
    families = {s.name: s.family for s in specs}
    records = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.RUNNING, TrialState.WAITING) or "measurement" not in t.user_attrs:
            continue
        if t.user_attrs["measurement"].get("outcome") == "cancelled":
            continue  # never trained: only a queue entry that its phase did not reach
        cand = t.user_attrs["candidate"]
        records.append(
            TrialRecord(
                number=t.number,
                candidate=Candidate(cand["optimizer"], dict(cand["params"])),
                family=families.get(cand["optimizer"], "unknown"),
                seed=int(t.user_attrs.get("seed", 0)),
                purpose=str(t.user_attrs.get("purpose", "search")),
                measurement=Measurement.from_dict(t.user_attrs["measurement"]),
            )
        )
    return records


def save_tracking(study: optuna.Study, tracking_uri: str | None, parent_run_id: str | None) -> None:
    """Where MLflow records this study, so that a stored study can say where its record is."""
    if tracking_uri and parent_run_id:
        study.set_user_attr("mlflow", {"tracking_uri": tracking_uri, "parent_run_id": parent_run_id})


def load_tracking(study: optuna.Study) -> tuple[str | None, str | None]:
    record = study.user_attrs.get("mlflow") or {}
    return record.get("tracking_uri"), record.get("parent_run_id")


def quiet_optuna() -> int:
    """Silence Optuna's per-trial INFO lines (we show our own progress); returns the old level."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return level


def restore_optuna_verbosity(level: int) -> None:
    optuna.logging.set_verbosity(level)
