"""The MLflow tracker: one parent run per study, one child run per trial.

The only module that imports MLflow. Every call goes through ``MlflowClient`` with explicit run ids:
the fluent API's global active run is neither thread- nor process-safe.

How it stays cheap and safe:

- ``start_study`` runs in the caller, before any training: it checks that the store answers (fast,
  without MLflow's minutes of HTTP retries), finds or creates the experiment and the study's parent
  run, and records the configuration. An unreachable server is an error here, never mid-study.
- Every later call only puts a record on a queue (microseconds, from any thread). One writer thread
  sends them in order, so the MLflow client is used by one thread at a time, and training never waits
  on the network or the database. A trial's epochs are sent as one ``log_batch`` per epoch (step =
  epoch, every metric in the call); epochs that come faster than ``flush_seconds`` apart are sent
  together, so a fast study makes a few calls per trial instead of one per epoch. Never per step.
- If the store goes away mid-study, training goes on: the writer warns once, counts what it could
  not send, and ``close`` says how many calls were lost (Optuna's storage still has every result).

Several worker processes may run the same study (``tune(n_jobs=2)`` forks them; or separate
processes sharing an Optuna storage): they share the parent run, found by its tags
(``autoopt.role=study``, ``autoopt.study=<name>``), and each trial's child run is keyed by its
Optuna trial number, which the shared storage makes unique. A resumed study reuses its parent run.
If two processes create a parent at the same instant, the oldest is kept and the other's children
are moved to it.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from .artifacts import write_study_files
from .records import Candidate, EpochRecord, TrialRecord

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

    from .recommend import Recommendation

try:  # MLflow's own limits; the fallbacks are its values since 2.x
    from mlflow.utils.validation import (
        MAX_ENTITY_KEY_LENGTH,
        MAX_METRICS_PER_BATCH,
        MAX_PARAM_VAL_LENGTH,
        MAX_PARAMS_TAGS_PER_BATCH,
        MAX_TAG_VAL_LENGTH,
    )
except ImportError:  # pragma: no cover
    MAX_ENTITY_KEY_LENGTH, MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH = 250, 1000, 6000
    MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH = 100, 8000

__all__ = ["MlflowTracker", "TrackingWarning", "RUN_STATUS"]

ROLE_TAG = "autoopt.role"  # "study" on the parent run, "trial" on child runs
STUDY_TAG = "autoopt.study"
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
NOTE_TAG = "mlflow.note.content"  # shown by the UI as the run's description
RUN_NAME_TAG = "mlflow.runName"

#: MLflow status of a child run for each trial outcome.
RUN_STATUS = {
    "completed": "FINISHED", "pruned": "FINISHED",
    "diverged": "FAILED", "oom": "FAILED", "infeasible": "FAILED", "failed": "FAILED",
    "interrupted": "KILLED",
    "eliminated": "KILLED",  # never trained: its optimizer was dropped as dominated after screening
}
SUMMARY_METRICS = ("final_val_loss", "best_val_loss", "final_val_accuracy", "optimizer_state_bytes",
                   "peak_memory_bytes", "seconds", "steps")
#: The study settings every child run repeats, so that runs compare without opening the parent.
STUDY_PARAMS_ON_TRIALS = ("epochs", "batch_size", "device")


_FAILED = object()  # what _attempt returns when an MLflow call raised


class TrackingWarning(UserWarning):
    """MLflow could not record something; the study itself goes on."""


@dataclass
class _Op:
    """One queued tracker call: what the writer thread has to send."""

    kind: str  # start | epoch | end | summary | close
    key: Any = None  # the trial number, or ("infeasible", optimizer) for a skipped candidate
    payload: Any = None


_TICK = _Op("tick")  # the writer woke up with no new call: time to send epochs that are due


class MlflowTracker:
    """Records a study in MLflow; ``tune(..., tracking=True)`` creates and drives it.

    ``tracking_uri=None`` uses MLflow's own resolution (``MLFLOW_TRACKING_URI``, then
    ``sqlite:///mlflow.db`` in the working directory); ``experiment_name=None`` names the
    experiment after the study. After ``start_study``, ``tracking_uri`` is the resolved URI and
    ``parent_run_id`` the study's run; ``lost_calls`` counts calls that never reached MLflow.

    >>> import torch, autoopt
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> report = autoopt.tune(torch.nn.Linear(3, 2), (X, y), epochs=1, n_trials=2, seeds=1,
    ...                      optimizers=["sgd"], verbose=False)  # doctest: +SKIP
    >>> report.parent_run_id  # then: mlflow ui, and open the experiment "autoopt-linear"  # doctest: +SKIP
    """

    def __init__(self, *, tracking_uri: str | None = None, experiment_name: str | None = None,
                 flush_seconds: float = 2.0, probe_timeout: int = 5, close_timeout: float = 30.0) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.flush_seconds = flush_seconds  # a running trial's epochs are sent at most this often
        self.probe_timeout = probe_timeout  # seconds the reachability check may take
        self.close_timeout = close_timeout  # close() gives up after this long without any progress
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self.lost_calls = 0

    # --- the Tracker protocol: called by tune() -------------------------------------------------

    def start_study(self, study_name: str, config: dict[str, Any]) -> None:
        """Find or create the experiment and the study's parent run; raise if the store is unreachable."""
        self.tracking_uri = self.tracking_uri or mlflow.get_tracking_uri()
        self._client = MlflowClient(self.tracking_uri)
        self._study_name = study_name
        self._trial_context = {k: config[k] for k in STUDY_PARAMS_ON_TRIALS if k in config}
        if not self._reachable():
            raise ConnectionError(
                f"cannot reach the MLflow tracking store at {self.tracking_uri} ({self._probe_error}). "
                "Start the server or point tracking_uri= / MLFLOW_TRACKING_URI at one that runs, "
                "or pass tracking=False to train without MLflow."
            )
        self.experiment_id = self._experiment(self.experiment_name or study_name)
        self.parent_run_id = self._open_parent(study_name)
        self._log_params_once(self.parent_run_id, config)

        self._lock = threading.Lock()
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._pending = 0  # queued calls not yet sent or counted as lost
        self._failed = False  # the first failure has been reported
        self._broken = False  # the server is gone: later calls are counted, not attempted
        self._abandoned = False  # close() stopped waiting for the writer
        self._last_progress = time.monotonic()
        self._open: dict[Any, str] = {}  # trial key -> run id of its open child run
        self._params_to_send: dict[Any, list[Param]] = {}  # sent with the run's first log_batch
        self._trial_runs: dict[int, str] = {}  # trial number -> run id, for the end-of-study metrics
        self._writer: threading.Thread | None = threading.Thread(
            target=self._write_loop, name="autoopt-mlflow-writer", daemon=True)
        self._writer.start()

    def start_trial(self, number: int, candidate: Candidate, family: str, seed: int, purpose: str) -> None:
        """Queue the creation of trial ``number``'s child run."""
        name = _run_name(number, candidate.optimizer, seed, purpose)
        self._put(_Op("start", number, (name, self._trial_tags(number, family),
                                        self._trial_params(candidate, seed, purpose))))

    def log_epoch(self, number: int, record: EpochRecord) -> None:
        """Queue one epoch's metrics (``step=epoch``); they go out in one ``log_batch``, together with
        the trial's other unsent epochs when epochs come faster than ``flush_seconds``."""
        now = _now_ms()
        self._put(_Op("epoch", number, [Metric(k, float(v), now, record.epoch)
                                        for k, v in record.metrics().items()]))

    def end_trial(self, record: TrialRecord) -> None:
        """Queue the trial's summary metrics, outcome tags and MLflow status."""
        m, c = record.measurement, record.candidate
        key = record.number if record.number is not None else ("infeasible", c.optimizer)
        now = _now_ms()
        metrics = [Metric(k, float(v), now, len(m.epochs)) for k in SUMMARY_METRICS
                   if (v := getattr(m, k)) is not None and math.isfinite(float(v))]
        tags = {"outcome": _outcome_text(record)}
        if m.error:
            tags["error"] = m.error[:MAX_TAG_VAL_LENGTH]
        creation = (_run_name(record.number, c.optimizer, record.seed, record.purpose),
                    self._trial_tags(record.number, record.family),
                    self._trial_params(c, record.seed, record.purpose))
        self._put(_Op("end", key, (metrics, tags, RUN_STATUS.get(m.outcome, "FAILED"), creation)))

    def log_summary(self, recommendation: Recommendation | None, trials: pd.DataFrame) -> None:
        """Queue the recommendation, the results table, the plots and each trial's time to target."""
        self._put(_Op("summary", None, (recommendation, trials.copy())))

    def close(self, status: str = "FINISHED", end_study: bool = True) -> None:
        """Wait for the queue to drain, report lost calls, and end the parent run with ``status``
        (FINISHED, FAILED or KILLED) unless ``end_study`` is False: a worker process leaves the
        study's run to the process that started the study."""
        writer = getattr(self, "_writer", None)
        if writer is None:
            return
        self._put(_Op("close", None, (status, end_study)))
        self._queue.put(None)
        while writer.is_alive():
            writer.join(timeout=0.2)
            if writer.is_alive() and time.monotonic() - self._last_progress > self.close_timeout:
                with self._lock:  # a call hangs (server gone, MLflow retrying): stop waiting for it
                    self._abandoned = True
                    self.lost_calls += self._pending
                    self._pending = 0
                break
        self._writer = None
        if self.lost_calls:
            warnings.warn(
                f"{self.lost_calls} MLflow log call(s) to {self.tracking_uri} were lost; "
                "the Optuna storage still holds every result (report.trials, autoopt.load_report).",
                TrackingWarning, stacklevel=2)

    # --- start_study helpers (caller's thread) ---------------------------------------------------

    def _reachable(self) -> bool:
        """Whether the store answers a cheap request; an HTTP server gets one try and a short timeout."""
        try:
            with _fail_fast_http(self.tracking_uri, self.probe_timeout):
                self._client.search_experiments(max_results=1)
        except Exception as exc:  # any failure means "cannot use it"; the message says which
            self._probe_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            return False
        return True

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
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or pass experiment_name=."
            )
        return experiment.experiment_id

    def _open_parent(self, study_name: str) -> str:
        """The study's parent run: the existing one (resume, another worker) or a new one."""
        parents = self._find_parents()
        if parents:
            run = parents[0]
            if run.info.status != "RUNNING":  # a resumed study: its run is live again
                self._client.update_run(run.info.run_id, status="RUNNING")
            return run.info.run_id
        mine = self._client.create_run(self.experiment_id, run_name=study_name,
                                       tags={ROLE_TAG: "study", STUDY_TAG: study_name}).info.run_id
        # Another worker may have created one at the same moment: all agree on the oldest.
        parents = self._find_parents()
        run_id = parents[0].info.run_id if parents else mine
        if run_id != mine:
            self._client.delete_run(mine)  # no child has been created under it yet
        return run_id

    # --- MLflow queries shared by both threads ---------------------------------------------------

    def _search(self, filter_string: str) -> list[Run]:
        runs, token = [], None
        while True:
            page = self._client.search_runs([self.experiment_id], filter_string, max_results=1000,
                                            page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _find_parents(self) -> list[Run]:
        # filtered by role on the server, by study name here: no quoting problems with odd names
        runs = self._search(f"tags.`{ROLE_TAG}` = 'study'")
        mine = [r for r in runs if r.data.tags.get(STUDY_TAG) == self._study_name]
        return sorted(mine, key=lambda r: (r.info.start_time, r.info.run_id))

    def _children(self, parent_id: str) -> list[Run]:
        return self._search(f"tags.`{PARENT_TAG}` = '{parent_id}'")

    def _log_params_once(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Log params not yet on the run; a changed value goes to tag ``latest.<key>``.

        MLflow params cannot change once logged, and a resumed study or a second worker may bring
        a new value (another n_trials, another recommendation): the tag keeps it visible. Two
        workers starting together may log the same params at the same moment; the store then
        rejects the second insert, so the loser looks again and finds nothing left to log.
        """
        for attempt in range(3):
            existing = self._client.get_run(run_id).data.params
            params, tags = [], []
            for key, value in values.items():
                key, text = _param_key(key), _param_value(value)
                if key not in existing:
                    params.append(Param(key, text))
                elif existing[key] != text:
                    tags.append(RunTag(_param_key(f"latest.{key}"), text))
            try:
                for i in range(0, max(len(params), len(tags)), MAX_PARAMS_TAGS_PER_BATCH):
                    self._client.log_batch(run_id, params=params[i:i + MAX_PARAMS_TAGS_PER_BATCH],
                                           tags=tags[i:i + MAX_PARAMS_TAGS_PER_BATCH])
                return
            except Exception:
                if attempt == 2:
                    raise

    def _merge_duplicate_parents(self) -> None:
        """Keep the oldest parent run of the study; move the others' children to it."""
        parents = self._find_parents()
        if len(parents) < 2:
            return
        keep = parents[0].info.run_id
        for run in parents[1:]:
            for child in self._children(run.info.run_id):
                self._client.set_tag(child.info.run_id, PARENT_TAG, keep)
            # a parent still RUNNING belongs to a live worker, which merges it when it ends
            if run.info.run_id == self.parent_run_id or run.info.status != "RUNNING":
                self._client.delete_run(run.info.run_id)
        self.parent_run_id = keep

    # --- the writer thread ------------------------------------------------------------------------

    def _put(self, op: _Op) -> None:
        if getattr(self, "_writer", None) is None:
            return  # start_study was not called (or close was): nothing is being recorded
        with self._lock:
            self._pending += 1
        self._queue.put(op)

    def _write_loop(self) -> None:
        buffered: dict[Any, list[_Op]] = {}  # epochs not sent yet, per trial
        last_sent: dict[Any, float] = {}
        while True:
            try:
                op = self._queue.get(timeout=self.flush_seconds if self.flush_seconds > 0 else None)
            except queue.Empty:
                op = _TICK
            if self._abandoned:
                return
            if op is None:
                self._flush_epochs(buffered)
                return
            if op.kind == "epoch":
                buffered.setdefault(op.key, []).append(op)
            elif op.kind == "end":
                self._end(op, buffered.pop(op.key, []))
            elif op.kind == "start":
                self._start(op)
                last_sent[op.key] = time.monotonic()
            elif op.kind in ("summary", "close"):
                self._flush_epochs(buffered)
                {"summary": self._summary, "close": self._close}[op.kind](op)
            # A trial's epochs go out together once flush_seconds have passed since its last send:
            # one call per epoch when epochs are slow, far fewer calls than epochs when they are fast.
            now = time.monotonic()
            due = {k: v for k, v in buffered.items() if now - last_sent.get(k, 0.0) >= self.flush_seconds}
            for key in due:
                last_sent[key] = now
                del buffered[key]
            self._flush_epochs(due)

    def _attempt(self, calls: int, action: Any, *args: Any) -> Any:
        """Run one MLflow action carrying ``calls`` queued calls; on failure count them lost and
        return ``_FAILED``."""
        if self._broken or self._abandoned:
            self._settle(calls, lost=True)
            return _FAILED
        try:
            result = action(*args)
        except Exception as exc:  # the study must go on whatever MLflow raises
            self._settle(calls, lost=True)
            self._failure(exc)
            return _FAILED
        self._settle(calls, lost=False)
        return result

    def _settle(self, calls: int, *, lost: bool) -> None:
        with self._lock:
            if self._abandoned:
                return  # close() already counted these
            self._pending -= calls
            if lost:
                self.lost_calls += calls
            self._last_progress = time.monotonic()

    def _failure(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            warnings.warn(
                f"MLflow logging to {self.tracking_uri} failed ({type(exc).__name__}: {str(exc)[:300]}). "
                "Training goes on; calls that cannot be sent are counted and reported at the end.",
                TrackingWarning, stacklevel=2)
        if not self._reachable():
            self._broken = True  # gone, not a one-off error: stop trying (each try may retry for minutes)

    def _start(self, op: _Op) -> None:
        name, tags, params = op.payload
        tags = {**tags, PARENT_TAG: self.parent_run_id, "outcome": "running"}
        run = self._attempt(1, lambda: self._client.create_run(self.experiment_id, tags=tags, run_name=name))
        if run is not _FAILED:
            self._open[op.key] = run.info.run_id
            self._params_to_send[op.key] = params

    def _flush_epochs(self, epochs: dict[Any, list[_Op]]) -> None:
        for key, ops in epochs.items():
            run_id = self._open.get(key)
            if run_id is None:  # its run could not be created
                self._settle(len(ops), lost=True)
                continue
            metrics = [m for op in ops for m in op.payload]
            self._attempt(len(ops), self._send, run_id, metrics, self._params_to_send.pop(key, []), [])
        epochs.clear()

    def _send(self, run_id: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> None:
        for i in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS_PER_BATCH],
                                   params=params if i == 0 else [], tags=tags if i == 0 else [])

    def _end(self, op: _Op, epochs: list[_Op]) -> None:
        metrics, tags, status, (name, creation_tags, params) = op.payload
        calls = 1 + len(epochs)
        run_id = self._open.pop(op.key, None)
        if run_id is None:  # a skipped candidate, or a trial whose run could not be created
            if isinstance(op.key, tuple) and self._attempt(0, self._already_recorded, name) is True:
                self._settle(calls, lost=False)  # a resumed study or another worker logged this skip
                return
            creation_tags = {**creation_tags, PARENT_TAG: self.parent_run_id}
            run = self._attempt(0, lambda: self._client.create_run(self.experiment_id, tags=creation_tags,
                                                                   run_name=name))
            if run is _FAILED:
                self._settle(calls, lost=True)
                return
            run_id = run.info.run_id
        else:
            params = self._params_to_send.pop(op.key, [])
        all_metrics = [m for e in epochs for m in e.payload] + metrics
        sent = self._attempt(0, self._send, run_id, all_metrics, params, [RunTag(k, v) for k, v in tags.items()])
        ended = self._attempt(0, _end_run, self._client, run_id, status)
        self._settle(calls, lost=sent is _FAILED or ended is _FAILED)
        if isinstance(op.key, int):
            self._trial_runs[op.key] = run_id

    def _already_recorded(self, name: str) -> bool:
        return any(r.data.tags.get(RUN_NAME_TAG) == name for r in self._children(self.parent_run_id))

    def _summary(self, op: _Op) -> None:
        recommendation, trials = op.payload
        self._attempt(0, self._merge_duplicate_parents)
        self._attempt(1, self._write_summary, recommendation, trials)

    def _write_summary(self, rec: Recommendation | None, trials: pd.DataFrame) -> None:
        pid, step, now = self.parent_run_id, len(trials), _now_ms()
        metrics = [Metric(f"trials_{outcome}", float(n), now, step)
                   for outcome, n in trials["outcome"].value_counts().items()]
        metrics.append(Metric("trials", float(len(trials)), now, step))
        target = trials.attrs.get("target_loss", math.nan)
        if isinstance(target, float) and math.isfinite(target):
            metrics.append(Metric("target_val_loss", target, now, step))
        tags: list[RunTag] = []
        if rec is not None:
            self._log_params_once(pid, {"rec_optimizer": rec.optimizer,
                                        **{f"rec_{k}": v for k, v in rec.params.items()}})
            for key in ("val_loss", "val_loss_std", "val_accuracy", "seconds_to_target", "epochs_to_target",
                        "optimizer_state_bytes", "peak_memory_bytes"):
                value = float(getattr(rec, key))
                if math.isfinite(value):
                    metrics.append(Metric(f"rec_{key}", value, now, step))
            tags.append(RunTag(NOTE_TAG, rec.explanation[:MAX_TAG_VAL_LENGTH]))
            tags.append(RunTag("recommendation", _param_value(f"{rec.optimizer} {rec.params}")[:MAX_TAG_VAL_LENGTH]))
        self._send(pid, metrics, [], tags)
        self._log_time_to_target(trials)
        with tempfile.TemporaryDirectory(prefix="autoopt-mlflow-") as tmp:
            write_study_files(Path(tmp), rec, trials)
            self._client.log_artifacts(pid, tmp)

    def _log_time_to_target(self, trials: pd.DataFrame) -> None:
        """Epochs and seconds to the target loss, known only now that the best loss is.

        Trials the tracker was never told about (``eliminated`` ones end inside the search without
        training) get their child run here, so that every trial has one.
        """
        runs = dict(self._trial_runs)
        numbered = trials.dropna(subset=["number"])
        if any(int(n) not in runs for n in numbered["number"]):  # other workers' or an earlier session's
            for child in self._children(self.parent_run_id):
                number = child.data.tags.get("trial_number", "")
                if number.isdigit():
                    runs.setdefault(int(number), child.info.run_id)
        now = _now_ms()
        for _, row in numbered.iterrows():
            run_id = runs.get(int(row["number"]))
            if run_id is None and row["outcome"] == "eliminated":
                run_id = self._backfill(row)
            metrics = [Metric(k, float(row[k]), now, 0) for k in ("epochs_to_target", "seconds_to_target")
                       if math.isfinite(float(row[k]))]
            if run_id is not None and metrics:
                self._client.log_batch(run_id, metrics=metrics)

    def _backfill(self, row: pd.Series) -> str:
        number = int(row["number"])
        tags = {**self._trial_tags(number, str(row["family"])), PARENT_TAG: self.parent_run_id,
                "outcome": str(row["outcome"])}
        name = _run_name(number, str(row["optimizer"]), int(row["seed"]), str(row["purpose"]))
        run_id = self._client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        params = self._trial_params(Candidate(str(row["optimizer"]), dict(row["params"])), int(row["seed"]),
                                    str(row["purpose"]))
        self._client.log_batch(run_id, params=params)
        _end_run(self._client, run_id, RUN_STATUS.get(str(row["outcome"]), "FAILED"))
        return run_id

    def _close(self, op: _Op) -> None:
        status, end_study = op.payload
        leftover = "KILLED" if status == "KILLED" else "FAILED"
        for key, run_id in list(self._open.items()):  # trials cut off without an end_trial
            self._attempt(0, self._send, run_id, [], self._params_to_send.pop(key, []),
                          [RunTag("outcome", "interrupted" if status == "KILLED" else "unfinished")])
            self._attempt(0, _end_run, self._client, run_id, leftover)
        self._open.clear()
        if not end_study:
            self._settle(1, lost=False)
            return
        self._attempt(1, self._client.set_terminated, self.parent_run_id, status)
        self._attempt(0, self._merge_duplicate_parents)

    # --- what each child run says ------------------------------------------------------------------

    def _trial_tags(self, number: int | None, family: str) -> dict[str, str]:
        tags = {ROLE_TAG: "trial", STUDY_TAG: self._study_name, "optimizer_family": family}
        if number is not None:
            tags["trial_number"] = str(number)
        return tags

    def _trial_params(self, candidate: Candidate, seed: int, purpose: str) -> list[Param]:
        values = {"optimizer": candidate.optimizer, **candidate.params, "seed": seed, "purpose": purpose,
                  **self._trial_context}
        return [Param(_param_key(k), _param_value(v)) for k, v in values.items()]


# --- small pure helpers -------------------------------------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_key(key: Any) -> str:
    return str(key)[:MAX_ENTITY_KEY_LENGTH]


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else (f"{value:.6g}" if isinstance(value, float) else str(value))
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[:MAX_PARAM_VAL_LENGTH - 3] + "..."


def _run_name(number: int | None, optimizer: str, seed: int, purpose: str) -> str:
    """``adamw-t012``; a re-evaluation ``adamw-t020-seed1``; a skipped candidate ``muon-infeasible``."""
    if number is None:
        return f"{optimizer}-infeasible"
    suffix = {"reevaluation": f"-seed{seed}", "screen": "-screen"}.get(purpose, "")
    return f"{optimizer}-t{number:03d}{suffix}"


def _outcome_text(record: TrialRecord) -> str:
    m = record.measurement
    if m.outcome == "pruned":
        return f"pruned at epoch {len(m.epochs)}"
    if m.outcome == "failed":
        return f"failed: {(m.error or 'unknown error').split(':')[0]}"
    return m.outcome


_ENV_LOCK = threading.Lock()  # our trackers override MLflow's env settings one at a time


def _after_fork_in_child() -> None:
    """A forked worker process (``tune(n_jobs=2)``) must not reuse what the parent's threads hold.

    The parent's writer thread may hold the env lock at the moment of the fork; and MLflow caches
    one SQLAlchemy engine per database, whose pooled sqlite connections belong to the parent
    (SQLite forbids using a connection across fork). ``dispose(close=False)`` forgets them without
    closing them under the parent's feet; the child opens its own. (HTTP sessions are already
    cached per process id by MLflow.)
    """
    global _ENV_LOCK
    _ENV_LOCK = threading.Lock()
    store_module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    store_class = getattr(store_module, "SqlAlchemyStore", None)
    for engine in list(getattr(store_class, "_engine_map", {}).values()):
        with contextlib.suppress(Exception):
            engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _temporary_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for one MLflow call, then put them back.

    MLflow reads its HTTP and printing settings from the environment at each call and offers no
    per-client setting; the override lasts only as long as the call.
    """
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _fail_fast_http(uri: str, timeout: int) -> contextlib.AbstractContextManager[None]:
    """No retries and a short timeout for an HTTP store: MLflow's defaults retry a refused
    connection for minutes, and a probe must answer in seconds. Other stores ignore these."""
    if not uri.startswith(("http://", "https://")):
        return contextlib.nullcontext()
    return _temporary_env({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout))})


def _end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """``set_terminated`` without MLflow's "View run ... at" lines on stdout, and the extra request
    they take, for every child run of a server-backed study."""
    with _temporary_env({"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}):
        client.set_terminated(run_id, status)
