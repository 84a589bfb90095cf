"""The MLflow tracker: one parent run per study, one child run per trial that trained.

With ``autoopt.mlflow_writer`` (the transport) and ``autoopt.mlflow_runs`` (what each run says), the
only code that talks to MLflow. Every call goes through ``MlflowClient`` with explicit run ids: the
fluent API's global active run is neither thread- nor process-safe.

- ``start_study`` runs in the caller, before any training: it checks that the store answers (an
  unreachable server is an error here, never mid-study), finds or creates the experiment, and
  reopens the study's parent run (its id is kept in the Optuna storage, so a resumed study or a
  worker process gets the same one) or creates it.
- Trials only queue closures for the writer thread. A child run is created when its trial has run
  for ``flush_seconds`` (then its epochs go out every ``flush_seconds``, one epoch behind, so a
  diverging epoch is never sent) or when it ends: a short trial costs three calls in all.
- ``log_summary`` reconciles MLflow with the Optuna storage: every trained trial gets exactly one
  complete child run (missing ones are written, half-written ones rewritten), the best run of each
  optimizer and the recommended runs are tagged (stale tags removed), and the parent gets the
  recommendation. The same code backfills after a server outage (``autoopt sync``), idempotently.
- The charts and files are drawn and uploaded after ``tune()`` has its answer, in the background.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from . import mlflow_runs as runs
from .artifacts import write_study_files
from .mlflow_writer import FAILED, TrackingWarning, Writer, probe, quiet_calls
from .records import Candidate, EpochRecord, TrialRecord
from .results import best_trained_per_optimizer

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

    from .recommend import Recommendation

__all__ = ["MlflowTracker", "TrackingWarning", "RUN_STATUS"]

RUN_STATUS = runs.RUN_STATUS
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's per-call limits
_REC_METRICS = ("val_loss", "val_loss_std", "val_accuracy", "seconds_to_target", "epochs_to_target",
                "optimizer_state_bytes", "peak_memory_bytes")


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


@dataclass
class _Live:
    """A running trial, as the writer thread knows it."""

    candidate: Candidate
    family: str
    seed: int
    purpose: str
    start_ms: int
    started: float  # monotonic
    run_id: str | None = None
    failed: bool = False  # its run could not be created or written: the summary rewrites it
    epochs: list[EpochRecord] = field(default_factory=list)
    sent: int = 0  # epochs already sent
    last_sent: float = 0.0


class MlflowTracker:
    """Records a study in MLflow; ``tune(..., tracking=True)`` creates and drives it.

    ``tracking_uri=None`` uses MLflow's own resolution (``MLFLOW_TRACKING_URI``, then
    ``sqlite:///mlflow.db`` in the working directory); ``experiment_name=None`` names the
    experiment after the study. After ``start_study``, ``tracking_uri`` is the resolved URI and
    ``parent_run_id`` the study's run; ``unsent`` counts MLflow calls that could not be made.

    >>> import torch, autoopt
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> report = autoopt.tune(torch.nn.Linear(3, 2), (X, y), epochs=1, n_trials=2, seeds=1,
    ...                      optimizers=["sgd"], verbose=False)  # doctest: +SKIP
    >>> report.parent_run_id  # then: autoopt ui, and open the experiment  # doctest: +SKIP
    """

    def __init__(self, *, tracking_uri: str | None = None, experiment_name: str | None = None,
                 flush_seconds: float | None = None, probe_timeout: int = 5, close_timeout: float = 30.0) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        # a trial shorter than this is written whole at its end (three calls); a longer one streams its
        # epochs this often, so that it can be watched live: 5 s keeps the per-trial calls of a study of
        # few-second trials at three, where 2 s doubled them (benchmarks/tracking_overhead.py --preset 30s)
        self.flush_seconds = flush_seconds if flush_seconds is not None else default_flush_seconds()
        self.probe_timeout = probe_timeout
        self.close_timeout = close_timeout
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self.unsent = 0
        self.synced: dict[str, int] = {}  # what the last summary wrote: {"created": n, "rewritten": n}
        self._writer: Writer | None = None
        self._accepting = False  # between start_study and close: calls are queued
        self._child_tags: dict[str, dict[str, str]] = {}

    # --- the Tracker protocol: called by tune() -------------------------------------------------

    def start_study(self, study_name: str, config: dict[str, Any], parent_run_id: str | None = None) -> None:
        """Reopen the study's parent run ``parent_run_id`` (if it exists in this store) or create one;
        record the study's settings as ``study.*`` params. Raises if the store is unreachable."""
        self.tracking_uri = self.tracking_uri or mlflow.get_tracking_uri()
        self._client = MlflowClient(self.tracking_uri)
        self._study_name = study_name
        problem = probe(self._client, self.tracking_uri, self.probe_timeout)
        if problem:
            raise ConnectionError(
                f"cannot reach the MLflow tracking store at {self.tracking_uri} ({problem}). "
                "Start the server or point tracking_uri= / MLFLOW_TRACKING_URI at one that runs, "
                "or pass tracking=False to train without MLflow.")
        with quiet_calls(self.tracking_uri, 30, retries=3):
            self.parent_run_id = self._open_parent(study_name, parent_run_id)
            if config:
                self._log_params_once(self.parent_run_id, runs.study_params(config))
        self._live: dict[int, _Live] = {}
        self._summary_done = threading.Event()
        self._summary_queued = False
        self._writer = Writer(self._client, self.tracking_uri, tick_seconds=self.flush_seconds,
                              on_tick=self._send_due, close_timeout=self.close_timeout)
        self._accepting = True

    def start_trial(self, number: int, candidate: Candidate, family: str, seed: int, purpose: str) -> None:
        """Note the trial's start (its run's start time); its run is created later, on the writer."""
        live = _Live(candidate, family, seed, purpose, _now_ms(), time.monotonic())
        self._submit(lambda: self._live.__setitem__(number, live))

    def log_epoch(self, number: int, record: EpochRecord) -> None:
        """One epoch's metrics (step = epoch), sent with the trial's other unsent epochs."""
        # the run starts when training did: now, less the epoch's training time (see training_start_ms)
        started_ms = _now_ms() - int(1000 * record.elapsed_seconds)
        self._submit(lambda: self._on_epoch(number, record, started_ms))

    def end_trial(self, record: TrialRecord) -> None:
        """Write the trial's run whole: params, epochs, summary at step 0, outcome, end time."""
        end_ms = _now_ms()
        self._submit(lambda: self._on_end(record, end_ms))

    def log_summary(self, recommendation: Recommendation | None, trials: pd.DataFrame,
                    records: Sequence[TrialRecord] = (), times: Mapping[int, tuple[int, int]] | None = None,
                    killed: Sequence[int] = ()) -> None:
        """Reconcile every trial's run with ``records`` (the Optuna storage's), tag the best and the
        recommended runs, write the recommendation on the parent; then, in the background, the files.
        ``killed``: trials whose process died mid-trial; a run of theirs still RUNNING ends as KILLED."""
        trials = trials.copy()
        self._summary_queued = True
        self._submit(lambda: self._summary(recommendation, trials, list(records), dict(times or {}), list(killed)))

    def close(self, status: str = "FINISHED", end_study: bool = True) -> None:
        """Return once the trials and the summary are recorded (the charts may still be uploading);
        end the parent run with ``status`` after them unless ``end_study`` is False: a worker
        process leaves the study's run to the process that started the study."""
        writer = self._writer
        if not self._accepting:
            return
        self._submit(lambda: self._close(status, end_study))
        self._accepting = False
        done = writer.finish(wait_for=self._summary_done if self._summary_queued else None)
        self.unsent = writer.unsent
        if not done or writer.unsent:
            warnings.warn(
                f"{writer.unsent or 'some'} MLflow call(s) to {self.tracking_uri} could not be made; the Optuna "
                f"storage holds every result: `autoopt sync {self._study_name} --storage URL` (or running the "
                "study again) writes the missing runs.", TrackingWarning, stacklevel=2)

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

    def _open_parent(self, study_name: str, parent_run_id: str | None) -> str:
        """The study's parent run: the one the storage names (resume, a worker), or a new one."""
        if parent_run_id:
            try:
                run = self._client.get_run(parent_run_id)
            except Exception:  # not in this store (another tracking URI) or purged: start afresh
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                if run.info.status != "RUNNING":  # a resumed study: its run is live again
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
        self._write(run_id, params=params, tags=tags)

    # --- the writer thread ------------------------------------------------------------------------

    def _submit(self, action: Any) -> None:
        if self._accepting:  # False: start_study was not called, or close was
            self._writer.submit(action)

    def _write(self, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
               tags: Sequence[RunTag] = ()) -> None:
        """One ``log_batch`` per MLflow limit's worth of each kind (usually exactly one)."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self._client.log_batch(run_id, metrics=metrics[:_BATCH["metrics"]], params=params[:_BATCH["params"]],
                                   tags=tags[:_BATCH["tags"]])
            metrics, params, tags = (metrics[_BATCH["metrics"]:], params[_BATCH["params"]:], tags[_BATCH["tags"]:])

    def _create_child(self, number: int, live: _Live) -> str | None:
        tags = runs.trial_tags(number, live.family, live.purpose, self._study_name, self.parent_run_id)
        name = runs.run_name(number, live.candidate.optimizer, live.seed, live.purpose)
        run = self._writer_attempt(self._client.create_run, self.experiment_id, start_time=live.start_ms,
                                   tags=tags, run_name=name)
        if run is FAILED:
            live.failed = True
            return None
        live.run_id = run.info.run_id
        params = runs.trial_params(live.candidate, live.seed, live.purpose)
        if self._writer_attempt(self._write, live.run_id, params=[Param(k, v) for k, v in params.items()]) is FAILED:
            live.failed = True
        return live.run_id

    def _writer_attempt(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        return self._writer.attempt(action, *args, **kwargs)

    def _on_epoch(self, number: int, record: EpochRecord, started_ms: int) -> None:
        live = self._live.get(number)
        if live is not None:
            if not live.epochs:
                live.start_ms = started_ms
            live.epochs.append(record)
            self._send_due()

    def _send_due(self) -> None:
        """Send the epochs of trials running longer than ``flush_seconds`` since their last send,
        all but the latest epoch (which may turn out to be a diverging one)."""
        now = time.monotonic()
        for number, live in self._live.items():
            if live.failed or len(live.epochs) - 1 <= live.sent:
                continue
            if now - max(live.started, live.last_sent) < self.flush_seconds:
                continue
            if live.run_id is None and self._create_child(number, live) is None:
                continue
            upto = len(live.epochs) - 1
            metrics = runs.metrics_of_epochs(live.epochs[live.sent:upto], live.start_ms)
            if self._writer_attempt(self._write, live.run_id, [Metric(*m) for m in metrics]) is FAILED:
                live.failed = True
            live.sent, live.last_sent = upto, now

    def _on_end(self, record: TrialRecord, end_ms: int) -> None:
        number = record.number
        live = self._live.pop(number, None) if number is not None else None
        if not runs.trained(record):
            return  # never trained: no run (the parent's description lists it)
        if live is None:  # ended without start_trial: write it whole
            live = _Live(record.candidate, record.family, record.seed, record.purpose, end_ms, time.monotonic())
        if live.run_id is None:  # the same start a backfilled run gets
            live.start_ms = runs.training_start_ms(record.measurement, end_ms, live.start_ms)
        if live.failed:
            return  # the summary (or a sync) writes this trial's run from the storage
        if live.run_id is None:  # a short trial: its whole run in three calls, as a backfill writes it
            child = runs.child_run(record, self._study_name, self.parent_run_id, live.start_ms, end_ms)
            self._writer_attempt(self._write_child, child)
            return
        m = record.measurement
        metrics = runs.metrics_of_epochs(runs.logged_epochs(m)[live.sent:], live.start_ms)
        metrics += [(k, v, end_ms, 0) for k, v in runs.summary_metrics(m).items()]
        tags = [RunTag(k, v) for k, v in runs.end_tags(record).items()]
        if self._writer_attempt(self._write, live.run_id, [Metric(*x) for x in metrics], tags=tags) is not FAILED:
            self._writer_attempt(self._client.set_terminated, live.run_id, runs.run_status(m.outcome), end_ms)

    def _close(self, status: str, end_study: bool) -> None:
        for number, live in list(self._live.items()):  # trials cut off without an end_trial
            if live.run_id is not None:
                outcome = "interrupted" if status == "KILLED" else "unfinished"
                self._writer_attempt(self._write, live.run_id, tags=[RunTag(runs.OUTCOME_TAG, outcome)])
                self._writer_attempt(self._client.set_terminated, live.run_id, "KILLED")
        self._live.clear()
        if end_study:
            self._writer_attempt(self._client.set_terminated, self.parent_run_id, status)
        self._summary_done.set()

    # --- the summary: reconcile with the storage, tag, explain, attach --------------------------------

    def _summary(self, rec: Recommendation | None, trials: pd.DataFrame, records: list[TrialRecord],
                 times: dict[int, tuple[int, int]], killed: list[int]) -> None:
        writer = self._writer
        try:
            if not writer.recheck():
                writer.unsent += 1
                return
            run_ids = writer.attempt(self._reconcile, records, times, killed)
            if run_ids is FAILED:
                return
            writer.attempt(self._tag_comparison, rec, trials, run_ids)
            writer.attempt(self._write_parent, rec, trials, records, run_ids, len(killed))
        finally:
            self._summary_done.set()  # tune() has its answer; what follows is background work
        writer.attempt(self._attach_files, rec, trials, run_ids)

    def _children(self) -> list[Run]:
        found, token = [], None
        while True:
            page = self._client.search_runs([self.experiment_id], f"tags.`{runs.PARENT_TAG}` = '{self.parent_run_id}'",
                                            max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def _reconcile(self, records: list[TrialRecord], times: dict[int, tuple[int, int]],
                   killed: Sequence[int] = ()) -> dict[int, str]:
        """Exactly one complete child run per trained trial, and the runs of trials whose process
        died closed as KILLED (their re-runs are trials of their own); returns trial number -> run id."""
        by_number: dict[int, list[Run]] = {}
        self._child_tags = {}  # run id -> tags, for _tag_comparison (one search for both)
        for run in self._children():
            self._child_tags[run.info.run_id] = run.data.tags
            number = run.data.tags.get(runs.TRIAL_TAG, "")
            if number.isdigit():
                by_number.setdefault(int(number), []).append(run)
        for number in killed:
            for run in by_number.get(number, []):
                if run.info.status == "RUNNING":  # its process died before it could end it
                    name = run.data.tags.get(runs.RUN_NAME_TAG) or run.info.run_name or f"t{number:03d}"
                    self._write(run.info.run_id, tags=[RunTag(k, v) for k, v in runs.killed_tags(name).items()])
                    self._client.set_terminated(run.info.run_id, "KILLED", times.get(number, (None, None))[1])
        ids, created, rewritten = {}, 0, 0
        for record in records:
            if not runs.trained(record):
                continue
            found = by_number.get(record.number, [])
            complete = [r for r in found if r.info.status != "RUNNING" and runs.OUTCOME_TAG in r.data.tags]
            keep = complete[0] if complete else None
            for run in found:
                if run is not keep:  # half-written (the server went away) or a duplicate
                    self._client.delete_run(run.info.run_id)
            if keep is not None:
                ids[record.number] = keep.info.run_id
                continue
            start_ms, end_ms = times.get(record.number, (None, None))
            end_ms = end_ms or _now_ms()
            start_ms = runs.training_start_ms(record.measurement, end_ms, start_ms or end_ms)
            ids[record.number] = self._write_child(runs.child_run(record, self._study_name, self.parent_run_id,
                                                                  start_ms, end_ms))
            created += not found
            rewritten += bool(found)
        self.synced = {"created": created, "rewritten": rewritten}
        return ids

    def _write_child(self, child: runs.ChildRun) -> str:
        run_id = self._client.create_run(self.experiment_id, start_time=child.start_ms, tags=child.tags,
                                         run_name=child.name).info.run_id
        self._write(run_id, [Metric(*m) for m in child.metrics], [Param(k, v) for k, v in child.params.items()])
        self._client.set_terminated(run_id, child.status, child.end_ms)
        return run_id

    def _tag_comparison(self, rec: Recommendation | None, trials: pd.DataFrame, run_ids: dict[int, str]) -> None:
        """``autoopt.best_of_optimizer`` and ``autoopt.recommended`` on exactly the runs they belong to,
        with the times to the target loss (known only now) on those runs; stale tags removed."""
        best = {int(n) for n in best_trained_per_optimizer(trials)["number"]}
        recommended = set(rec.trial_numbers) if rec is not None else set()
        rows = {int(r["number"]): r for _, r in trials.dropna(subset=["number"]).iterrows()}
        current = self._child_tags  # runs written by _reconcile itself have neither tag: {} is right
        now = _now_ms()
        for number, run_id in run_ids.items():
            tags = current.get(run_id, {})
            wanted = {runs.BEST_TAG: number in best, runs.RECOMMENDED_TAG: number in recommended}
            for key, on in wanted.items():
                if not on and tags.get(key) == "true":
                    self._client.delete_tag(run_id, key)
            new = [RunTag(k, "true") for k, on in wanted.items() if on and tags.get(k) != "true"]
            if new:
                row = rows.get(number)
                metrics = [Metric(k, float(row[k]), now, 0) for k in ("epochs_to_target", "seconds_to_target")
                           if row is not None and math.isfinite(float(row[k]))]
                self._write(run_id, metrics, tags=new)

    def _write_parent(self, rec: Recommendation | None, trials: pd.DataFrame, records: list[TrialRecord],
                      run_ids: dict[int, str], killed: int = 0) -> None:
        now = _now_ms()
        metrics = [Metric(f"trials_{outcome}", float(n), now, 0) for outcome, n in trials["outcome"].value_counts().items()]
        metrics.append(Metric("trials", float(len(trials)), now, 0))
        if killed:  # trials whose process died: in the storage as failed, each re-run as a trial of its own
            metrics.append(Metric("trials_killed", float(killed), now, 0))
        target = trials.attrs.get("target_loss", math.nan)
        if isinstance(target, float) and math.isfinite(target):
            metrics.append(Metric("target_val_loss", target, now, 0))
        tags = {}
        if rec is not None:
            metrics += [Metric(f"rec_{k}", float(getattr(rec, k)), now, 0) for k in _REC_METRICS
                        if math.isfinite(float(getattr(rec, k)))]
            ids = [run_ids[n] for n in rec.trial_numbers if n in run_ids]
            tags[runs.RECOMMENDED_RUNS_TAG] = ",".join(ids)
            tags["autoopt.recommendation"] = runs.tag_value(f"{rec.optimizer} {runs.param_value(rec.params)}")
        tags[runs.NOTE_TAG] = runs.tag_value(_explanation(rec, trials, records, run_ids))
        self._write(self.parent_run_id, metrics, tags=[RunTag(k, v) for k, v in tags.items()])

    def _attach_files(self, rec: Recommendation | None, trials: pd.DataFrame, run_ids: dict[int, str]) -> None:
        with tempfile.TemporaryDirectory(prefix="autoopt-mlflow-") as tmp:
            write_study_files(Path(tmp), rec, trials, run_ids)
            self._client.log_artifacts(self.parent_run_id, tmp)


def _explanation(rec: Recommendation | None, trials: pd.DataFrame, records: list[TrialRecord],
                 run_ids: dict[int, str]) -> str:
    """The parent run's description (Markdown in the UI): the choice, its runs, how to compare."""
    names = {r.number: runs.run_name(r.number, r.candidate.optimizer, r.seed, r.purpose, r.measurement.outcome,
                                     len(r.measurement.epochs)) for r in records if runs.trained(r)}
    lines = [rec.explanation if rec is not None else "No recommendation: no trial completed.", ""]
    if rec is not None:
        lines.append("**Recommended runs** (tag `autoopt.recommended = \"true\"`): "
                     + ", ".join(f"`{names.get(n, n)}` ({run_ids.get(n, 'not recorded')})" for n in rec.trial_numbers))
    best = best_trained_per_optimizer(trials)
    if len(best):
        lines.append("")
        lines.append("**Best run of each optimizer** (filter `tags.autoopt.best_of_optimizer = \"true\"`, "
                     "then the Chart view: one `val_loss` curve per optimizer):")
        for _, row in best.iterrows():
            n = int(row["number"])
            loss = row["final_val_loss"] if row["outcome"] == "completed" else row["best_val_loss"]
            lines.append(f"- {row['optimizer']}: `{names.get(n, n)}`, {row['outcome']}, val loss {loss:.4g}, "
                         f"lr {row['lr']:.3g}, {int(row['epochs'])} epochs")
    skipped = runs.not_trained_lines(records)
    if skipped:
        lines += ["", "**Not trained** (no run):"] + [f"- {line}" for line in skipped]
    return "\n".join(lines)
