"""The search: the one module that talks to Optuna's study and trial API.

The study is single-objective on the final value of the study's objective (the validation loss
unless ``objective=`` says otherwise, minimized or maximized as it says), because Optuna's ``Trial.report`` and
``should_prune`` do not work in multi-objective studies; time and memory are recorded beside each
trial and weighed afterwards by the recommender. Every measurement is stored in the trial's user
attributes, so that a resumed study, or one shared by several workers, rebuilds the whole table
from its storage alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
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


#: Seconds between two heartbeats of a running trial; a trial whose heartbeat is older than
#: GRACE_FACTOR of them died with its process and is re-run. AUTOOPT_HEARTBEAT_SECONDS overrides it.
HEARTBEAT_SECONDS = 10
GRACE_FACTOR = 3
#: The user attribute that names a queued trial, so that it is queued once per study (enqueue_once).
QUEUE_KEY = "queue_key"
#: The user attribute of a re-run: the number of the trial whose process died.
RETRY_OF = "retry_of"
#: The system attribute in which a trial on a journal storage keeps its heartbeat (Unix time).
HEARTBEAT_ATTR = "autoopt:heartbeat"


def heartbeat_seconds() -> int:
    """The heartbeat interval: HEARTBEAT_SECONDS, or AUTOOPT_HEARTBEAT_SECONDS (a positive integer)."""
    value = os.environ.get("AUTOOPT_HEARTBEAT_SECONDS", "")
    if not value:
        return HEARTBEAT_SECONDS
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"AUTOOPT_HEARTBEAT_SECONDS must be a positive integer of seconds but is {value!r}.")
    return int(value)


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


#: A storage string that names a journal file (Optuna's file storage that several processes share):
#: ``journal:study.log`` or ``journal:///abs/path/study.log``.
JOURNAL_PREFIX = "journal:"


def journal_file(storage: str) -> str:
    """The file of a ``journal:PATH`` (or ``journal:///abs/path``) storage.

    >>> journal_file("journal:///tmp/s.log"), journal_file("journal:s.log")
    ('/tmp/s.log', 's.log')
    """
    rest = storage[len(JOURNAL_PREFIX):]
    return rest[2:] if rest.startswith("//") else rest


def open_storage(storage: str | Path | optuna.storages.BaseStorage | None) -> Any:
    """An Optuna storage from a URL, ``journal:PATH`` or a journal file path, or a storage object.

    A library error (a server that does not answer, a file that cannot be written) becomes one
    ValueError that names the storage.
    """
    if isinstance(storage, str) and storage.startswith(JOURNAL_PREFIX):
        storage = Path(journal_file(storage))
    try:
        if isinstance(storage, Path):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(storage)))
        if isinstance(storage, str):
            # Optuna's heartbeat: a thread per running trial; a trial that stops beating is failed by
            # the next trial of any process and re-queued once (recover_stale_trials)
            interval = heartbeat_seconds()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(storage, heartbeat_interval=interval,
                                                  grace_period=GRACE_FACTOR * interval,
                                                  heartbeat_stale_trial_callback=_requeue_callback)
        return storage
    except OSError as exc:
        raise ValueError(f"storage={str(storage)!r} cannot be opened: {exc}.") from None


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
        if not _is_storage_error(exc):
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


def _is_storage_error(exc: BaseException) -> bool:
    """An error of the database layer (SQLAlchemy, its driver, the file system) rather than of autoopt."""
    module = type(exc).__module__
    return isinstance(exc, OSError) or module.startswith(("sqlalchemy", "psycopg", "sqlite3"))


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
        with journal_heartbeat(trial):
            return run_objective(trial)

    def run_objective(trial: optuna.Trial) -> float:
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
            trial.report(measured.value(record), record.epoch)
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
            return penalty(measurement, measured)
        return measured.final(measurement)

    return objective


@contextlib.contextmanager
def journal_heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """While the trial runs, beat every heartbeat_seconds() in a system attribute (journal storages).

    Optuna keeps heartbeats only in RDB storages (sqlite, PostgreSQL): there it does this itself.
    """
    storage = trial.study._storage
    if not isinstance(storage, optuna.storages.JournalStorage):
        yield
        return
    stop = threading.Event()
    interval = heartbeat_seconds()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
            except Exception:  # the trial ended meanwhile (or the file is gone): nothing left to keep alive
                return
            if stop.wait(interval):
                return

    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
    thread = threading.Thread(target=beat, name=f"autoopt-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stale_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose heartbeat stopped more than GRACE_FACTOR intervals ago (their process died).

    A running trial of a live process (any machine) keeps beating and is never listed. In-memory
    studies live in one process: nothing there is stale.
    """
    storage = _backend(study)
    if isinstance(storage, optuna.storages.RDBStorage) and storage.heartbeat_interval is not None:
        stale = set(storage._get_stale_trial_ids(study._study_id))
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t._trial_id in stale]
    if isinstance(storage, optuna.storages.JournalStorage):
        limit = time.time() - GRACE_FACTOR * heartbeat_seconds()
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if float(t.system_attrs.get(HEARTBEAT_ATTR, t.datetime_start.timestamp()
                                            if t.datetime_start else time.time())) < limit]
    return []


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the trials whose process died and queue each again, once, with its params and user attrs.

    A trial died when its heartbeat stopped (``stale_trials``), or when it is FAIL without a
    measurement (another process already failed it: Optuna does so for RDB storages before each
    trial). The re-run keeps ``purpose``, ``seed`` and its portfolio index, so a killed portfolio entry,
    promotion or re-evaluation is redone as what it was. Returns the numbers of the dead trials
    queued again now; a second call (from any process) queues nothing more.

    >>> study = optuna.create_study()
    >>> recover_stale_trials(study)
    []
    """
    for trial in stale_trials(study):
        try:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it finished, or another process failed it first: it is handled below either way
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if "measurement" in trial.user_attrs:
            continue  # ended with a measurement: a failure of the candidate, not of its process
        if _requeue(study, trial):
            requeued.append(trial.number)
    return requeued


def dead_trials(study: optuna.Study) -> list[int]:
    """Numbers of the trials whose process died mid-trial: FAIL without a measurement (see
    ``recover_stale_trials``); their MLflow runs are closed as KILLED by the summary."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if "measurement" not in t.user_attrs]


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    params = dict(trial.system_attrs.get("fixed_params") or trial.params)
    attrs = {k: v for k, v in trial.user_attrs.items() if k in ("purpose", "seed", "key", "portfolio_index")}
    return enqueue_once(study, f"retry:{trial.number}", params, {**attrs, RETRY_OF: trial.number})


def _requeue_callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """RDBStorage's stale-trial callback: a live worker that fails a dead trial queues it again."""
    _requeue(study, trial)


def enqueue_once(study: optuna.Study, key: str, params: dict[str, Any],
                 user_attrs: dict[str, Any] | None = None) -> bool:
    """Queue a trial with ``params`` unless a trial with this ``key`` exists; True if it queued one.

    The check and the queueing happen under a lock held in the storage's own medium, so that two
    processes queueing the same promotion or re-evaluation queue it once: a PostgreSQL advisory lock
    (session-level, on its own connection, held until Optuna has committed the new trial), a file
    lock (``flock``) beside a sqlite database or a journal file, a process lock for in-memory
    studies. Residual race: a storage reached by different paths (two mounts of one NFS file, or
    MySQL, which gets no lock here) relies on the check alone, so two processes arriving within the
    same few milliseconds could both queue.

    >>> study = optuna.create_study()
    >>> enqueue_once(study, "promote:adam", {"x": 1.0}), enqueue_once(study, "promote:adam", {"x": 1.0})
    (True, False)
    """
    with storage_lock(study, key):
        if any(t.user_attrs.get(QUEUE_KEY) == key for t in study.get_trials(deepcopy=False)):
            return False
        study.enqueue_trial(params, user_attrs={**(user_attrs or {}), QUEUE_KEY: key})
        return True


def _backend(study: optuna.Study) -> Any:
    """The study's storage, unwrapped from Optuna's cache (RDB storages); a JournalStorage as it is."""
    storage = study._storage
    if isinstance(storage, optuna.storages.JournalStorage):
        return storage
    return getattr(storage, "_backend", storage)


_PROCESS_LOCK = threading.Lock()
_ENGINES: dict[str, Any] = {}


@contextlib.contextmanager
def storage_lock(study: optuna.Study, key: str = "study") -> Iterator[None]:
    """A lock on ``study`` that every process sharing its storage respects (see ``enqueue_once``)."""
    storage = _backend(study)
    name = f"{study.study_name}:{key}"
    with _PROCESS_LOCK:  # threads of this process first; the storage-wide lock then orders processes
        if isinstance(storage, optuna.storages.RDBStorage) and storage.url.startswith("postgresql"):
            import sqlalchemy

            engine = _ENGINES.get(storage.url) or _ENGINES.setdefault(
                storage.url, sqlalchemy.create_engine(storage.url, poolclass=sqlalchemy.pool.NullPool))
            lock_id = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                    connection.commit()
            return
        path = _lock_file(storage)
        if path is None:
            yield
            return
        import fcntl

        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(storage: Any) -> Path | None:
    """The lock file beside a sqlite database or a journal file; None for other storages."""
    if isinstance(storage, optuna.storages.JournalStorage):
        target = getattr(storage._backend, "_file_path", None)
    elif isinstance(storage, optuna.storages.RDBStorage) and storage.url.startswith("sqlite:///"):
        target = storage.url[len("sqlite:///"):].split("?", 1)[0] or None
    else:
        return None
    return Path(f"{target}.autoopt-lock") if target and target != ":memory:" else None


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
