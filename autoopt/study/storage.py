"""Where a study lives, and what keeps it whole across processes: storages, heartbeats, locks.

``open_storage`` turns a URL, ``journal:PATH`` or a journal file into an Optuna storage (with
Optuna's heartbeat on RDB storages; ``trial_heartbeat`` keeps the equivalent on journal files, and
on RDB storages for trials taken with ``study.ask()``), one per database server URL in a process;
processes opening a new database at once all join it, and on sqlite a queued trial is taken by one
process only (``SqliteStorage``). Each running trial names its process (host, pid and the process's
start time). A trial died with its process when that process is gone (same
host) or its heartbeat stopped (any host), or ended "interrupted" (Ctrl-C): ``recover_stale_trials``
marks it failed and queues it again, once. ``storage_lock`` serializes what must happen once per study
whichever process gets there first (a PostgreSQL advisory lock, a file lock beside a sqlite or journal
file, a process lock in memory), and ``enqueue_once`` uses it so that each portfolio entry, line-search
step or re-run is queued exactly once. ``trials.py`` runs trials on top of this.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..config import JOURNAL_PREFIX, journal_file
from .owners import mark_owner, owner_gone

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
            return _server_storage(storage) if _sqlite_path(storage) is None else _open_rdb(storage)
        return storage
    except OSError as exc:
        raise ValueError(f"storage={str(storage)!r} cannot be opened: {exc}.") from None


#: One storage per database server URL (and heartbeat interval) in a process. A storage holds a pool
#: of connections until it is garbage-collected, so one opened per call (a progress poll, a report read
#: back, a second ``tune``) piles up idle connections until the server refuses new clients ("too many
#: clients already"). MLflow keeps one store per tracking URI the same way.
_SERVER_STORAGES: dict[tuple[str, int], optuna.storages.RDBStorage] = {}
_SERVER_STORAGES_LOCK = threading.Lock()


def _server_storage(url: str) -> optuna.storages.RDBStorage:
    key = (url, heartbeat_seconds())
    with _SERVER_STORAGES_LOCK:
        if key not in _SERVER_STORAGES:
            _SERVER_STORAGES[key] = _open_rdb(url)
        return _SERVER_STORAGES[key]


def close_connections() -> None:
    """Close every pooled database connection this process holds (the storages of ``open_storage`` and
    the advisory-lock engines); they reconnect on their next use. For a caller about to drop a database.

    >>> close_connections()
    """
    with _SERVER_STORAGES_LOCK:
        for storage in _SERVER_STORAGES.values():
            storage.engine.dispose()
    for engine in list(_ENGINES.values()):
        engine.dispose()


def _forget_inherited_connections() -> None:
    """In a forked child: the parent's pooled connections are the parent's (SQLAlchemy's recipe for
    fork, ``dispose(close=False)``): closing them here would close them under the parent."""
    for storage in _SERVER_STORAGES.values():
        storage.engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


#: Attempts at opening a database whose schema another process may be creating at the same moment.
SCHEMA_ATTEMPTS = 5


def _open_rdb(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage of ``url``, its tables created if it has none.

    Processes that open a new database at the same moment would each create the tables and all but
    one fail (``UNIQUE constraint failed: alembic_version.version_num`` on sqlite): a sqlite file is
    opened under a file lock beside it, and a server's database is opened again after such an error,
    when the winner's tables are there.
    """
    interval = heartbeat_seconds()
    path = _sqlite_path(url)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with _file_lock(Path(f"{path}.autoopt-lock") if path else None), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                kind = SqliteStorage if path else optuna.storages.RDBStorage
                return kind(url, heartbeat_interval=interval, grace_period=GRACE_FACTOR * interval,
                            heartbeat_stale_trial_callback=_requeue_callback)
        except Exception as exc:
            if attempt == SCHEMA_ATTEMPTS - 1 or not is_storage_error(exc) or isinstance(exc, OSError):
                raise
            time.sleep(0.1 * (attempt + 1))  # the other process is committing its tables
    raise AssertionError("unreachable")


class SqliteStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage on a sqlite file, where one queued trial is taken by one process only.

    Optuna takes a queued trial by reading that it is WAITING and writing RUNNING in one transaction
    with ``SELECT ... FOR UPDATE``, which sqlite ignores: two processes could both read WAITING and
    both train the trial (a second MLflow run for it, its reports ignored as 'already reported').
    Here the read and the write happen under the file lock beside the database.
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        if state != TrialState.RUNNING:
            return super().set_trial_state_values(trial_id, state, values)
        with _file_lock(Path(f"{_sqlite_path(self.url)}.autoopt-lock")):
            return super().set_trial_state_values(trial_id, state, values)


def _sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL; None for other databases and in-memory sqlite."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return path if path and path != ":memory:" else None


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (nothing for None): every process respects it."""
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


def is_storage_error(exc: BaseException) -> bool:
    """An error of the database layer (SQLAlchemy, its driver, the file system) rather than of autoopt."""
    module = type(exc).__module__
    return isinstance(exc, OSError) or module.startswith(("sqlalchemy", "psycopg", "sqlite3"))


def stale_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose process died: on this host, its process is gone (known at once, whenever
    the next run starts); on any host, its heartbeat stopped more than GRACE_FACTOR intervals ago.

    A running trial of a live process (any machine) keeps beating and is never listed. In-memory
    studies live in one process: nothing there is stale.
    """
    storage = _backend(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if isinstance(storage, optuna.storages.RDBStorage) and storage.heartbeat_interval is not None:
        stale = set(storage._get_stale_trial_ids(study._study_id))
        return [t for t in running if t._trial_id in stale or owner_gone(t)]
    if isinstance(storage, optuna.storages.JournalStorage):
        limit = time.time() - GRACE_FACTOR * heartbeat_seconds()
        return [t for t in running if owner_gone(t) or float(t.system_attrs.get(
            HEARTBEAT_ATTR, t.datetime_start.timestamp() if t.datetime_start else time.time())) < limit]
    return []


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the trials whose process died and queue each again, once, with its params and user attrs.

    A trial died when its process is gone or its heartbeat stopped (``stale_trials``), when it is
    FAIL without a measurement (another process already failed it: Optuna does so for RDB storages
    before each trial), or when it ended "interrupted" (Ctrl-C). The re-run keeps ``purpose``,
    ``seed`` and its portfolio index, so a killed portfolio entry, promotion or re-evaluation is redone
    as what it was; it is queued now, before anything new, so it is the next trial the study trains.
    Returns the numbers of the dead trials queued again now; a second call (from any process) queues
    nothing more.

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
        if _cut_short(trial) and _requeue(study, trial):
            requeued.append(trial.number)
    return requeued


def _cut_short(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a FAIL trial ended because its process did (killed, or Ctrl-C), not by its candidate's
    own failure: it has no measurement, or an "interrupted" one."""
    return trial.user_attrs.get("measurement", {}).get("outcome", "interrupted") == "interrupted"


def dead_trials(study: optuna.Study) -> list[int]:
    """Numbers of the trials whose process died mid-trial: FAIL without a measurement (see
    ``recover_stale_trials``); their MLflow runs are closed as KILLED by the summary."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if "measurement" not in t.user_attrs]


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    params = dict(trial.system_attrs.get("fixed_params") or trial.params)
    kept = ("purpose", "seed", "key", "portfolio_index", "race_index", "race_list")
    attrs = {k: v for k, v in trial.user_attrs.items() if k in kept}
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
#: One SQLAlchemy engine per PostgreSQL URL for the advisory locks, made once per process.
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
        with _file_lock(_lock_file(storage)):
            yield


def _lock_file(storage: Any) -> Path | None:
    """The lock file beside a sqlite database or a journal file; None for other storages."""
    if isinstance(storage, optuna.storages.JournalStorage):
        target = getattr(storage._backend, "_file_path", None)
    elif isinstance(storage, optuna.storages.RDBStorage):
        target = _sqlite_path(storage.url)
    else:
        return None
    return Path(f"{target}.autoopt-lock") if target and target != ":memory:" else None


@contextlib.contextmanager
def trial_heartbeat(trial: optuna.Trial, *, asked: bool = False) -> Iterator[None]:
    """While the trial runs, beat every heartbeat_seconds() in a system attribute (journal storages).

    Optuna keeps heartbeats only in RDB storages (sqlite, PostgreSQL), and only for trials that
    ``study.optimize`` runs: for a trial taken with ``study.ask()`` (``asked``, see ``run_together``)
    this beats there too, as Optuna's own heartbeat thread would. On every storage it first records
    which process runs the trial (``mark_owner``).
    """
    mark_owner(trial)
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
