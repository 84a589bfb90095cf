"""The search: the one module that talks to Optuna's trial API (where studies live: ``storage.py``).

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
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .objective import VAL_LOSS, Objective
from .records import Candidate, EpochRecord, Measurement, TrialRecord
from .storage import HEARTBEAT_ATTR, enqueue_once, heartbeat_seconds, is_storage_error, open_storage
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


def create_study(
    *,
    study_name: str | None,
    storage: str | Path | optuna.storages.BaseStorage | None,
    sampler: str | optuna.samplers.BaseSampler,
    pruner: str | optuna.pruners.BasePruner,
    seed: int,
    epochs: int,
    objective: Objective = VAL_LOSS,
) -> optuna.Study:
    """A new study, or the stored one of the same name (resume), in ``objective``'s direction.

    A storage that cannot be opened (a server that does not answer, a database that is not Optuna's)
    is one ValueError naming it, not the database library's exception; a stored study made for
    another objective is a ValueError too (its trial values mean something else).
    """
    try:
        opened = open_storage(storage)
        study = optuna.create_study(
            study_name=study_name,
            storage=opened,
            sampler=make_sampler(sampler, seed),
            pruner=make_pruner(pruner, epochs),
            direction=objective.direction,
            load_if_exists=True,
        )
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"storage={_describe(storage)} cannot be opened: {type(exc).__name__}: {first}") from None
    _check_stored_objective(study, objective)
    return study


#: The study user attribute naming its objective: {"name": ..., "direction": ...}.
OBJECTIVE_ATTR = "autoopt:objective"


def _check_stored_objective(study: optuna.Study, objective: Objective) -> None:
    """Record the study's objective; refuse to resume a study made for another one."""
    stored = study.user_attrs.get(OBJECTIVE_ATTR)
    if stored is None and study.trials:  # made before objectives had a name: the validation loss
        stored = {"name": VAL_LOSS.name, "direction": study.direction.name.lower()}
    wanted = {"name": objective.name, "direction": objective.direction}
    if stored is not None and stored != wanted:
        raise ValueError(f"study {study.study_name!r} was made to {stored['direction']} {stored['name']!r}, not to "
                         f"{wanted['direction']} {wanted['name']!r}; run it with objective={stored['name']!r}, or "
                         "give this objective a new study_name.")
    if stored is None:
        study.set_user_attr(OBJECTIVE_ATTR, wanted)


def load_objective(study: optuna.Study) -> Objective:
    """The objective a stored study was made for (its values are in the trials' records)."""
    stored = study.user_attrs.get(OBJECTIVE_ATTR) or {"name": VAL_LOSS.name, "direction": "minimize"}
    return Objective.recorded(stored["name"], stored["direction"])


def _describe(storage: Any) -> str:
    return repr(str(storage)) if isinstance(storage, (str, Path)) else type(storage).__name__


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
    purposes: frozenset[str] = frozenset(PURPOSES),
    objective: Objective = VAL_LOSS,
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: sample (or take the queued candidate), train through ``run_trial``, store.

    Each epoch reports ``objective``'s value (for pruning); a trial returns its final value.

    A trial queued for another phase than ``purposes`` ends at once, untrained, as "cancelled".
    """
    measured = objective  # the name ``objective`` is Optuna's function below

    def objective(trial: optuna.Trial) -> float:
        with trial_heartbeat(trial):
            return run_objective(trial)

    def run_objective(trial: optuna.Trial) -> float:
        member = _begin_trial(trial, specs, seed, space, purposes, measured)
        if member is None:  # queued for another phase: never trained here
            raise optuna.TrialPruned()
        number, candidate, trial_seed, purpose, should_stop = member
        try:
            measurement = run_trial(number, candidate, trial_seed, purpose, should_stop)
        except TrainingInterrupted as exc:
            trial.set_user_attr("measurement", exc.measurement.to_dict())
            raise
        except Exception as exc:
            failed = Measurement.failure(exc)
            trial.set_user_attr("measurement", failed.to_dict())
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
                 purposes: frozenset[str], measured: Objective) -> GroupMember | None:
    """Take the trial's candidate and record what it is; None (recorded "cancelled") for a trial
    queued for a phase not in ``purposes``."""
    purpose = str(trial.user_attrs.get("purpose", "search"))
    trial_seed = int(trial.user_attrs.get("seed", seed))
    group = bool(trial.user_attrs.get("group", False))
    candidate = suggest_candidate(trial, specs, space)
    trial.set_user_attr("purpose", purpose)
    trial.set_user_attr("seed", trial_seed)
    trial.set_user_attr("key", candidate.key())
    trial.set_user_attr("candidate", {"optimizer": candidate.optimizer, "params": candidate.params})
    if purpose not in purposes:
        trial.set_user_attr("measurement", Measurement("cancelled").to_dict())
        return None

    def should_stop(record: EpochRecord) -> bool:
        if purpose == "reevaluation":  # re-runs measure the full budget on a new seed
            return False
        if not math.isfinite(record.val_loss):
            return True  # diverged: the training loop records it as such
        trial.report(measured.value(record), record.epoch)
        return False if group else trial.should_prune()  # a group's rungs decide for its runs

    return trial.number, candidate, trial_seed, purpose, should_stop


def _end_trial(trial: optuna.Trial, measurement: Measurement, measured: Objective) -> tuple[TrialState, float | None]:
    """Store the measurement; the state and value the trial ends with."""
    trial.set_user_attr("measurement", measurement.to_dict())
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
                 space: str, *, n: int, max_size: int, purposes: frozenset[str],
                 objective: Objective = VAL_LOSS, deadline: float | None = None) -> None:
    """Run the next ``n`` queued trials like ``run``, but up to ``max_size`` of one seed at a time in one
    ``train_group`` call (ask and tell: each is still one trial, told its own value or state).

    A group is the queued trials that come next and share a seed, so the trials run in the order they
    were queued, as ``run`` runs them. Ctrl-C ends every member of the group "interrupted", as ``run``
    ends the one trial it is training. No group starts after ``deadline`` (``time.monotonic()``).
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
                member = _begin_trial(trial, specs, seed, space, purposes, objective)
                if member is None:
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                beats.enter_context(trial_heartbeat(trial, asked=True))
                members.append((trial, member))
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
                    if len(group) > 1:
                        trial.set_user_attr(GROUP_SIZE_ATTR, len(group))
                    _tell(study, trial, measurement, objective)
        if study.study_name in _CLOCKS:
            _CLOCKS[study.study_name].save(study)


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


@contextlib.contextmanager
def trial_heartbeat(trial: optuna.Trial, *, asked: bool = False) -> Iterator[None]:
    """While the trial runs, beat every heartbeat_seconds() in a system attribute (journal storages).

    Optuna keeps heartbeats only in RDB storages (sqlite, PostgreSQL), and only for trials that
    ``study.optimize`` runs: for a trial taken with ``study.ask()`` (``asked``, see ``run_together``)
    this beats there too, as Optuna's own heartbeat thread would.
    """
    storage = trial.study._storage
    if isinstance(storage, optuna.storages.JournalStorage):
        def record() -> None:
            storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
        interval: float = heartbeat_seconds()
    elif asked and getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:
        def record() -> None:
            storage.record_heartbeat(trial._trial_id)
        interval = storage.get_heartbeat_interval()
    else:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                record()
            except Exception:  # the trial ended meanwhile (or the file is gone): nothing left to keep alive
                return
            if stop.wait(interval):
                return

    record()
    thread = threading.Thread(target=beat, name=f"autoopt-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
) -> None:
    """Run up to ``n_trials`` trials within ``timeout``; a trial's exception is a FAIL, not a crash."""
    if n_trials is not None and n_trials <= 0:
        return
    callbacks = []
    total = study.user_attrs.get(TRIAL_BUDGET_ATTR)
    if total is not None:
        callbacks.append(stop_at_study_total(int(total)))
    if study.study_name in _CLOCKS:  # the study's search time, for a timeout that is the study's total
        callbacks.append(_CLOCKS[study.study_name].save)
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout,
        n_jobs=n_jobs,
        catch=(Exception,),
        callbacks=callbacks or None,
    )


#: The study user attribute holding its total search-trial budget (n_trials), for every process.
TRIAL_BUDGET_ATTR = "autoopt:n_trials"


def save_trial_budget(study: optuna.Study, n_trials: int | None) -> None:
    """Store the study's total n_trials in the storage, where every process's ``run`` reads it."""
    if n_trials is not None and study.user_attrs.get(TRIAL_BUDGET_ATTR) != n_trials:
        study.set_user_attr(TRIAL_BUDGET_ATTR, n_trials)


def stop_at_study_total(total: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback: stop this process once the study (all processes) has ``total`` search trials.

    It looks after each counted trial of this process, so each other process can finish at most the
    one trial it is running: the study ends with at most total + processes - 1 search trials.
    """

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        outcome = trial.user_attrs.get("measurement", {}).get("outcome")
        counted = trial.user_attrs.get("purpose", "search") in SEARCH_PURPOSES and outcome not in (
            None, "interrupted", "cancelled")
        if counted and finished_trials(study) >= total:
            study.stop()

    return callback


#: The study user attribute holding the seconds its search has run, all processes together.
SEARCH_SECONDS_ATTR = "autoopt:search_seconds"
_CLOCKS: dict[str, StudyClock] = {}


class StudyClock:
    """The study's search time, a total like n_trials: what earlier processes stored, plus this one's.

    ``timeout`` is the study's, whoever runs it: a resume gets what is left of it. Processes that run
    at once overlap, so the stored value is the largest any of them reached (four workers started
    together with timeout=60 stop after about 60 s). Saved after each trial (``run``), so a process
    killed mid-study loses at most its trial in flight from the count.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.before = float(study.user_attrs.get(SEARCH_SECONDS_ATTR, 0.0))
        self.started = time.monotonic()

    def left(self, timeout: float) -> float:
        """Seconds of ``timeout`` left to this process."""
        return max(timeout - self.before, 0.0)

    def save(self, study: optuna.Study, *_: Any) -> None:
        seconds = self.before + time.monotonic() - self.started
        if seconds > float(study.user_attrs.get(SEARCH_SECONDS_ATTR, 0.0)):
            study.set_user_attr(SEARCH_SECONDS_ATTR, seconds)


def start_clock(study: optuna.Study) -> StudyClock:
    """Start this process's share of the study's search time; ``run`` saves it after each trial."""
    clock = _CLOCKS[study.study_name] = StudyClock(study)
    return clock


def stop_clock(study: optuna.Study) -> None:
    clock = _CLOCKS.pop(study.study_name, None)
    if clock is not None:
        clock.save(study)


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
        if "measurement" not in t.user_attrs:
            continue  # its process died mid-trial: re-run by recover_stale_trials, not a spent trial
        outcome = t.user_attrs["measurement"].get("outcome")
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
