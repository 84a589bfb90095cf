"""The MLflow tracker: one parent run per study, one child run per trial that trained.

With ``transport.py`` (the transport), ``recorder.py`` (what the recorder
process writes) and ``runs.py`` (what each run says), the only code that talks to
MLflow. Every call goes through ``MlflowClient`` with explicit run ids: the fluent API's global
active run is neither thread- nor process-safe.

- ``start_study`` runs in the caller, before any training: it checks that the store answers (an
  unreachable server is an error here, never mid-study), finds or creates the experiment, and
  reopens the study's parent run (its id is kept in the Optuna storage, so a resumed study or a
  worker process gets the same one) or creates it.
- Everything after that is sent to the recorder process (``transport.py``): a trial's
  start, epochs and end, the summary, the close. Training pays for pickling a record, nothing more.
- ``close`` returns once the trials and the summary are recorded; the charts and files are drawn
  and uploaded after ``tune()`` has its answer, in the recorder.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag

from ...records import Candidate, EpochRecord, TrialRecord
from . import runs
from .calls import TrackingWarning, probe, quiet_calls
from .transport import Session, open_session

if TYPE_CHECKING:
    import pandas as pd

    from ...recommendation.record import Recommendation

__all__ = ["MlflowTracker", "TrackingWarning", "RUN_STATUS"]

RUN_STATUS = runs.RUN_STATUS


#: Seconds a trial runs before its child run is created and its epochs streamed (see __init__);
#: AUTOOPT_MLFLOW_FLUSH_SECONDS overrides it (the fault tests use 1 s to have a live run to kill).
FLUSH_SECONDS = 5.0


def default_flush_seconds() -> float:
    value = os.environ.get("AUTOOPT_MLFLOW_FLUSH_SECONDS", "")
    if not value:
        return FLUSH_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"AUTOOPT_MLFLOW_FLUSH_SECONDS must be a positive number of seconds but is {value!r}.")
    return seconds


def _now_ms() -> int:
    return int(time.time() * 1000)


def sync_hint(study_name: str, storage: Any) -> str:
    """What writes the missing runs later: the ``autoopt sync`` command of this study's storage.

    >>> sync_hint("digits", "sqlite:///digits.db")
    'the Optuna storage holds every result: `autoopt sync digits --storage sqlite:///digits.db` (or running the study again) writes the missing runs.'
    """
    import shlex

    if storage is None:
        return ("the study's storage is in memory, so nothing can write them later; give storage= (a file such as "
                "'sqlite:///study.db') to keep a study that `autoopt sync` can complete.")
    url = storage if isinstance(storage, str) else str(storage) if isinstance(storage, os.PathLike) else None
    command = f"autoopt sync {shlex.quote(study_name)}" + (f" --storage {shlex.quote(url)}" if url else
                                                            " --storage <its storage's URL>")
    return f"the Optuna storage holds every result: `{command}` (or running the study again) writes the missing runs."


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative local path made absolute: the recorder process is shared by every
    study of this process, whatever the working directory was when each started.

    >>> absolute_uri("http://127.0.0.1:5000"), absolute_uri("databricks")
    ('http://127.0.0.1:5000', 'databricks')
    """
    if uri.startswith("sqlite:///") and not uri.startswith(("sqlite:////", "sqlite:///:memory:")):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    if "://" not in uri and (uri.startswith(("./", "../")) or os.path.isdir(uri)):  # a folder: MLflow's file store
        return os.path.abspath(uri)
    return uri


class MlflowTracker:
    """Records a study in MLflow; ``tune(..., tracking=True)`` creates and drives it.

    ``tracking_uri=None`` uses MLflow's own resolution (``MLFLOW_TRACKING_URI``, then
    ``sqlite:///mlflow.db`` in the working directory); ``experiment_name=None`` names the
    experiment after the study. After ``start_study``, ``tracking_uri`` is the resolved URI and
    ``parent_run_id`` the study's run; after ``close``, ``unsent`` counts MLflow calls that could not
    be made and ``synced`` what the summary wrote ({"created": n, "rewritten": n}).

    >>> import torch, autoopt
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> report = autoopt.tune(torch.nn.Linear(3, 2), (X, y), epochs=1, n_trials=2, seeds=1,
    ...                      optimizers=["sgd"], verbose=False)  # doctest: +SKIP
    >>> report.parent_run_id  # then: autoopt ui, and open the experiment  # doctest: +SKIP
    """

    def __init__(self, *, tracking_uri: str | None = None, experiment_name: str | None = None,
                 flush_seconds: float | None = None, probe_timeout: int = 5, close_timeout: float = 30.0,
                 storage: Any = None) -> None:
        self.tracking_uri = tracking_uri
        self.storage = storage  # the study's Optuna storage: the warning that recommends a sync names it
        self.experiment_name = experiment_name
        # a trial shorter than this is written whole at its end (three calls); a longer one streams its
        # epochs this often, so that it can be watched live: 5 s keeps the per-trial calls of a study of
        # few-second trials at three, where 2 s doubled them (benchmarks/tracking_overhead.py --preset 30s)
        self.flush_seconds = flush_seconds if flush_seconds is not None else default_flush_seconds()
        self.probe_timeout = probe_timeout
        self.close_timeout = close_timeout
        self.parent_run_id: str | None = None
        self.parent_status: str | None = None  # the parent run's status when start_study found it
        self.experiment_id: str | None = None
        self.unsent = 0
        self.synced: dict[str, int] = {}
        self._session: Session | None = None
        self._accepting = False  # between start_study and close: messages are sent
        self._summary_queued = False

    # --- the Tracker protocol: called by tune() -------------------------------------------------

    def start_study(self, study_name: str, config: dict[str, Any], parent_run_id: str | None = None, *,
                    reopen: bool = True) -> None:
        """Reopen the study's parent run ``parent_run_id`` (if it exists in this store) or create one;
        record the study's settings as ``study.*`` params. Raises if the store is unreachable.
        ``reopen=False`` (a sync) leaves an ended parent run ended: its status and end time stay."""
        self.tracking_uri = self.tracking_uri or mlflow.get_tracking_uri()
        try:
            self._client = MlflowClient(self.tracking_uri)
        except Exception as exc:  # a store MLflow will not open (a folder, a bad database URL): said in our words
            first = (str(exc).splitlines() or [""])[0][:300]
            raise ValueError(
                f"MLflow cannot open the tracking store {self.tracking_uri!r} ({type(exc).__name__}: {first}); point "
                "tracking_uri= / MLFLOW_TRACKING_URI at a database such as 'sqlite:///mlflow.db' or a server such "
                "as 'http://127.0.0.1:5000', or pass tracking=False to train without MLflow.") from None
        self._study_name = study_name
        problem = probe(self._client, self.tracking_uri, self.probe_timeout)
        if problem:
            raise ConnectionError(
                f"cannot reach the MLflow tracking store at {self.tracking_uri} ({problem}). "
                "Start the server or point tracking_uri= / MLFLOW_TRACKING_URI at one that runs, "
                "or pass tracking=False to train without MLflow.")
        with quiet_calls(self.tracking_uri, 30, retries=3):
            self.parent_run_id = self._open_parent(study_name, parent_run_id, reopen)
            if config:
                self._log_params_once(self.parent_run_id, runs.study_params(config))
        self._summary_queued = False
        self._session = open_session({
            "tracking_uri": absolute_uri(self.tracking_uri), "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id, "study_name": study_name, "flush_seconds": self.flush_seconds,
            "env": {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}, "cwd": os.getcwd(),
        }, close_timeout=self.close_timeout)
        self._accepting = True

    def start_trial(self, number: int, candidate: Candidate, family: str, seed: int, purpose: str) -> None:
        """Note the trial's start (its run's start time); its run is created later, by the recorder."""
        self._send("start_trial", number, candidate, family, seed, purpose, _now_ms(), time.monotonic())

    def log_epoch(self, number: int, record: EpochRecord) -> None:
        """One epoch's metrics (step = epoch), sent with the trial's other unsent epochs."""
        # the run starts when training did: now, less the epoch's training time (see training_start_ms)
        self._send("epoch", number, record, _now_ms() - int(1000 * record.elapsed_seconds))

    def end_trial(self, record: TrialRecord) -> None:
        """Write the trial's run whole: params, epochs, summary at step 0, outcome, end time."""
        self._send("end_trial", record, _now_ms())

    def log_summary(self, recommendation: Recommendation | None, trials: pd.DataFrame,
                    records: Sequence[TrialRecord] = (), times: Mapping[int, tuple[int, int]] | None = None,
                    killed: Sequence[int] = (), settled: bool = False) -> None:
        """Reconcile every trial's run with ``records`` (the Optuna storage's), tag the best and the
        recommended runs, write the recommendation on the parent; then, in the background, the files.
        ``killed``: trials whose process died mid-trial; a run of theirs still RUNNING ends as KILLED.
        ``settled``: no process is writing the study's runs any more (``autoopt sync``), so a run left
        half-written is rewritten at once rather than left to a writer that may still finish it."""
        self._summary_queued = self._accepting
        self._send("summary", recommendation, trials, list(records), dict(times or {}), list(killed), settled)

    def close(self, status: str = "FINISHED", end_study: bool = True, end_ms: int | None = None) -> None:
        """Return once the trials and the summary are recorded (the charts may still be uploading);
        end the parent run with ``status`` after them (at ``end_ms``, else now) unless ``end_study`` is
        False: a worker process leaves the study's run to the process that started the study."""
        session = self._session
        if not self._accepting or session is None:
            return
        self._send("close", status, end_study, end_ms)
        self._accepting = False
        done = session.finish(wait_for_summary=self._summary_queued)
        # a close that timed out left calls unconfirmed: at least one is counted
        self.unsent, self.synced = max(session.unsent, 0 if done else 1), dict(session.synced)
        if not done or session.unsent:
            warnings.warn(
                f"{session.unsent or 'some'} MLflow call(s) to {self.tracking_uri} could not be made; "
                + sync_hint(self._study_name, self.storage), TrackingWarning, stacklevel=2)

    def _send(self, method: str, *args: Any) -> None:
        if self._accepting and self._session is not None:  # False: start_study was not called, or close was
            self._session.submit(method, *args)

    # --- start_study helpers (caller's thread) ---------------------------------------------------

    def _experiment(self, name: str) -> str:
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self._client.create_experiment(name)
            except Exception:  # another worker created it a moment ago
                experiment = self._client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"the MLflow experiment {name!r} at {self.tracking_uri} is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or pass experiment_name=.")
        return experiment.experiment_id

    def _open_parent(self, study_name: str, parent_run_id: str | None, reopen: bool = True) -> str:
        """The study's parent run: the one the storage names (resume, a worker), or a new one."""
        self.parent_status = "RUNNING"
        if parent_run_id:
            try:
                run = self._client.get_run(parent_run_id)
            except Exception:  # not in this store (another tracking URI) or purged: start afresh
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                self.parent_status = run.info.status
                if reopen and run.info.status != "RUNNING":  # a resumed study: its run is live again
                    self._client.update_run(parent_run_id, status="RUNNING")
                self.experiment_id = run.info.experiment_id
                return parent_run_id
        self.experiment_id = self._experiment(self.experiment_name or study_name)
        tags = {runs.ROLE_TAG: "study", runs.STUDY_TAG: study_name}
        return self._client.create_run(self.experiment_id, run_name=study_name, tags=tags).info.run_id

    def _log_params_once(self, run_id: str, values: Mapping[str, str]) -> None:
        """Log params not yet on the run; a changed value (a resumed study with another n_trials)
        goes to the tag ``latest.<key>``, since MLflow params never change once logged."""
        existing = self._client.get_run(run_id).data.params
        params = [Param(k, v) for k, v in values.items() if k not in existing]
        tags = [RunTag(runs.param_key(f"latest.{k}"), v) for k, v in values.items()
                if k in existing and existing[k] != v]
        for i in range(0, max(len(params), len(tags)), 100):  # MLflow takes 100 params and 100 tags a call
            self._client.log_batch(run_id, params=params[i:i + 100], tags=tags[i:i + 100])
