"""What the recorder process does with one study's messages: every MLflow call after ``start_study``.

The study's process (``tracker.py``) sends what happens; this writes it, in order:

- A child run is created when its trial has run for ``flush_seconds`` (then its epochs go out every
  ``flush_seconds``, one epoch behind, so a diverging epoch is never sent) or when it ends: a short
  trial costs three calls in all.
- ``summary`` reconciles MLflow with the Optuna storage's records: every trained trial gets exactly
  one complete child run (missing ones are written, half-written ones rewritten; a run another
  process may still be writing is left to it, and none is deleted before its trial has a complete
  one), the run that stands for each optimizer (``compared.py``: the recommended run for the chosen
  one) and the recommended runs are tagged, the recommended run named so (stale tags and names
  undone), the experiment gets the study's comparison view (``links.py``) and the parent the
  recommendation and the link to that view.
  The same code backfills after a server outage (``autoopt sync``), idempotently. Then it tells the
  study its answer is recorded, and draws and uploads the charts and files.

``StudyRecorder`` is over the package's 200-line guide for a class, on purpose: it is one study's
writer, and its parts (live runs, the summary's reconcile, tags and names) share one state, the runs it
has written, which a split would pass back and forth on every message.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from ...records import Candidate, EpochRecord, TrialRecord
from ..compared import compared_trials
from ..study_files import draw_study_charts, files_digest, write_study_tables
from . import links, runs
from .description import CHOICE_NOTE_START, describe_choice, describe_study
from .calls import FAILED, Calls

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

    from ...recommendation.record import Recommendation

__all__ = ["StudyRecorder"]

_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's per-call limits
#: Milliseconds after its trial ended that a run still RUNNING is taken as abandoned (its writer lost the
#: server or died) rather than still being written: a recorder writes a trial's end at once, and one call
#: takes at most two tries of ``call_timeout`` (10 s).
STALE_RUN_MS = 120_000

_REC_METRICS = ("val_loss", "val_loss_std", "expected_val_loss", "val_accuracy", "seconds_to_target",
                "epochs_to_target", "optimizer_state_bytes", "peak_memory_bytes")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Live:
    """A running trial, as the recorder knows it."""

    candidate: Candidate
    family: str
    seed: int
    purpose: str
    start_ms: int
    started: float  # monotonic (one clock for every process of the machine)
    run_id: str | None = None
    failed: bool = False  # its run could not be created or written: the summary rewrites it
    epochs: list[EpochRecord] = field(default_factory=list)
    sent: int = 0  # epochs already sent
    last_sent: float = 0.0


class StudyRecorder:
    """One study's MLflow record, written in the recorder process from the messages it is sent.

    ``config``: ``tracking_uri`` (absolute), ``experiment_id``, ``parent_run_id``, ``study_name``,
    ``flush_seconds``, and the study's ``env`` (its MLFLOW_* settings) and ``cwd``. ``emit(kind,
    *payload)`` answers the study: "warn" (text), "summary" (unsent, synced), "closed" (unsent).

    >>> # StudyRecorder(config, emit).handle("end_trial", (record, end_ms))  # in the recorder only
    """

    METHODS = frozenset({"start_trial", "epoch", "end_trial", "summary", "close", "tick"})

    def __init__(self, config: Mapping[str, Any], emit: Callable[..., None]) -> None:
        _adopt_environment(config.get("env", {}), config.get("cwd"))
        self.tracking_uri: str = config["tracking_uri"]
        self.experiment_id: str = config["experiment_id"]
        self.parent_run_id: str = config["parent_run_id"]
        self.study_name: str = config["study_name"]
        self.flush_seconds: float = config["flush_seconds"]
        self._emit = emit
        self._client = MlflowClient(self.tracking_uri)
        self.calls = Calls(self._client, self.tracking_uri, lambda text: emit("warn", text),
                           config.get("call_timeout", 10))
        self.synced: dict[str, int] = {}
        self._live: dict[int, _Live] = {}
        self._child_tags: dict[str, dict[str, str]] = {}
        self._parent_tags: dict[str, str] = {}  # the parent run's tags as the summary found them
        self._abandoned: set[str] = set()  # runs this recorder created and could not finish

    def handle(self, method: str, args: Sequence[Any]) -> None:
        """Run one message; whatever it raises is counted and reported, and the next one runs."""
        try:
            if method not in self.METHODS:
                raise ValueError(f"unknown recorder message {method!r}; expected one of {sorted(self.METHODS)}")
            getattr(self, method)(*args)
        except Exception as exc:  # a bug in one message must not stop the others
            self.calls.unsent += 1
            self.calls.failure(exc)

    # --- messages -------------------------------------------------------------------------------------

    def start_trial(self, number: int, candidate: Candidate, family: str, seed: int, purpose: str,
                    start_ms: int, started: float) -> None:
        self._live[number] = _Live(candidate, family, seed, purpose, start_ms, started)

    def epoch(self, number: int, record: EpochRecord, started_ms: int) -> None:
        live = self._live.get(number)
        if live is not None:
            if not live.epochs:
                live.start_ms = started_ms
            live.epochs.append(record)
            self.tick()

    def tick(self) -> None:
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
            if self.calls.attempt(self._write, live.run_id, [Metric(*m) for m in metrics]) is FAILED:
                live.failed = True
            live.sent, live.last_sent = upto, now

    def end_trial(self, record: TrialRecord, end_ms: int) -> None:
        """Write the trial's run whole: params, epochs, summary at step 0, outcome, end time."""
        number = record.number
        live = self._live.pop(number, None) if number is not None else None
        if not runs.trained(record):
            return  # never trained: no run (the parent's description lists it)
        if live is None:  # ended without start_trial: write it whole
            live = _Live(record.candidate, record.family, record.seed, record.purpose, end_ms, time.monotonic())
        if live.run_id is None:  # the same start a backfilled run gets
            live.start_ms = runs.training_start_ms(record.measurement, end_ms, live.start_ms)
        if live.failed:
            self._abandon(live)
            return  # the summary (or a sync) writes this trial's run from the storage
        if live.run_id is None:  # a short trial: its whole run in three calls, as a backfill writes it
            child = runs.child_run(record, self.study_name, self.parent_run_id, live.start_ms, end_ms)
            self.calls.attempt(self._write_child, child)
            return
        m = record.measurement
        metrics = runs.metrics_of_epochs(runs.logged_epochs(m)[live.sent:], live.start_ms)
        metrics += [(k, v, end_ms, 0) for k, v in runs.summary_metrics(m).items()]
        tags = [RunTag(k, v) for k, v in runs.end_tags(record).items()]
        if (self.calls.attempt(self._write, live.run_id, [Metric(*x) for x in metrics], tags=tags) is FAILED
                or self.calls.attempt(self._client.set_terminated, live.run_id, runs.run_status(m.outcome),
                                      end_ms) is FAILED):
            self._abandon(live)

    def _abandon(self, live: _Live) -> None:
        if live.run_id is not None:
            self._abandoned.add(live.run_id)

    def summary(self, rec: Recommendation | None, trials: pd.DataFrame, records: list[TrialRecord],
                times: dict[int, tuple[int, int]], killed: list[int], settled: bool = False) -> None:
        """Reconcile every trial's run with ``records``, tag the best and the recommended runs, write
        the recommendation on the parent; tell the study; then draw and attach the files. ``settled``:
        no other process is writing this study's runs (a sync), so every half-written run is abandoned."""
        calls = self.calls
        try:
            if not calls.recheck():
                calls.unsent += 1
                return
            run_ids = calls.attempt(self._reconcile, records, times, killed, settled)
            if run_ids is FAILED:
                return
            shown = compared_trials(trials, rec)
            calls.attempt(self._tag_comparison, rec, shown, trials, records, run_ids)
            calls.attempt(self._write_parent, rec, shown, trials, records, run_ids, len(killed))
        finally:
            self._emit("summary", calls.unsent, dict(self.synced))  # tune() has its answer
        calls.attempt(self._attach_files, rec, trials, run_ids)

    def close(self, status: str, end_study: bool, end_ms: int | None = None) -> None:
        """End the runs of trials cut off without an end (KILLED), and the parent unless the study's
        process is a worker that leaves it to the process that started the study."""
        try:
            for live in list(self._live.values()):
                if live.run_id is not None:
                    outcome = "interrupted" if status == "KILLED" else "unfinished"
                    self.calls.attempt(self._write, live.run_id, tags=[RunTag(runs.OUTCOME_TAG, outcome)])
                    self.calls.attempt(self._client.set_terminated, live.run_id, "KILLED")
            self._live.clear()
            if end_study:
                self.calls.attempt(self._client.set_terminated, self.parent_run_id, status, end_ms)
        finally:
            self._emit("closed", self.calls.unsent)

    # --- MLflow writes -----------------------------------------------------------------------------

    def _write(self, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
               tags: Sequence[RunTag] = ()) -> None:
        """One ``log_batch`` per MLflow limit's worth of each kind (usually exactly one)."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self._client.log_batch(run_id, metrics=metrics[:_BATCH["metrics"]], params=params[:_BATCH["params"]],
                                   tags=tags[:_BATCH["tags"]])
            metrics, params, tags = (metrics[_BATCH["metrics"]:], params[_BATCH["params"]:], tags[_BATCH["tags"]:])

    def _create_child(self, number: int, live: _Live) -> str | None:
        tags = runs.trial_tags(number, live.family, live.purpose, self.study_name, self.parent_run_id,
                               live.candidate.optimizer)
        name = runs.run_name(number, live.candidate.optimizer, live.seed, live.purpose)
        run = self.calls.attempt(self._client.create_run, self.experiment_id, start_time=live.start_ms,
                                 tags=tags, run_name=name)
        if run is FAILED:
            live.failed = True
            return None
        live.run_id = run.info.run_id
        params = runs.trial_params(live.candidate, live.seed, live.purpose)
        if self.calls.attempt(self._write, live.run_id, params=[Param(k, v) for k, v in params.items()]) is FAILED:
            live.failed = True
        return live.run_id

    def _write_child(self, child: runs.ChildRun) -> str:
        run_id = self._client.create_run(self.experiment_id, start_time=child.start_ms, tags=child.tags,
                                         run_name=child.name).info.run_id
        self._write(run_id, [Metric(*m) for m in child.metrics], [Param(k, v) for k, v in child.params.items()])
        self._client.set_terminated(run_id, child.status, child.end_ms)
        return run_id

    # --- the summary: reconcile with the storage, tag, explain, attach --------------------------------

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
                   killed: Sequence[int] = (), settled: bool = False) -> dict[int, str]:
        """Exactly one complete child run per trained trial, and the runs of trials whose process
        died closed as KILLED (their re-runs are trials of their own); returns trial number -> run id.

        Several processes reconcile one study (workers, each at its end), each while the others'
        recorders may be writing. So a run that may still be being written is never deleted, a trial
        gets a new run only when none of its runs can still be finished, and a run is deleted only once
        its trial has a complete one: the complete run with the smallest id, which every process keeps,
        so a trial can never lose all its runs (two summaries deleting each other's half-written
        replacements once left a trial with none)."""
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
            abandoned = {r.info.run_id for r in found if not _complete(r)
                         and self._is_abandoned(r, times.get(record.number), settled)}
            complete = [r for r in found if _complete(r)]
            if complete:  # every process keeps the same one
                ids[record.number] = min(complete, key=lambda r: r.info.run_id).info.run_id
            elif len(abandoned) < len(found):
                continue  # another process is finishing this trial's run; its own summary reconciles it
            else:
                start_ms, end_ms = times.get(record.number, (None, None))
                end_ms = end_ms or _now_ms()
                start_ms = runs.training_start_ms(record.measurement, end_ms, start_ms or end_ms)
                ids[record.number] = self._write_child(runs.child_run(record, self.study_name, self.parent_run_id,
                                                                      start_ms, end_ms))
                created += not found
                rewritten += bool(found)
            for run in found:  # duplicates, and half-written runs nobody will finish
                if run.info.run_id != ids[record.number] and (_complete(run) or run.info.run_id in abandoned):
                    self._client.delete_run(run.info.run_id)
        if created or rewritten:  # another process may have written the same trials meanwhile
            ids.update(self._one_run_per_trial(set(ids)))
        self.synced = {"created": created, "rewritten": rewritten}
        return ids

    def _is_abandoned(self, run: Run, trial_times: tuple[int, int] | None, settled: bool) -> bool:
        """Whether a run that is not complete will never be finished by its writer: this recorder gave it
        up, or it is ended without an outcome, or no process is writing (``settled``), or its trial ended
        (or has no end in the storage) more than STALE_RUN_MS ago."""
        if settled or run.info.run_id in self._abandoned or run.info.status != "RUNNING":
            return True
        return trial_times is None or _now_ms() - trial_times[1] > STALE_RUN_MS

    def _one_run_per_trial(self, numbers: set[int]) -> dict[int, str]:
        """Where two processes each wrote a trial's run at once (their summaries raced, or one's while the
        other's recorder was still writing it), the run with the smallest id stays, whichever process
        looks: trial number -> the run kept."""
        complete: dict[int, list[Run]] = {}
        for run in self._children():
            number = run.data.tags.get(runs.TRIAL_TAG, "")
            if number.isdigit() and int(number) in numbers and _complete(run):
                complete.setdefault(int(number), []).append(run)
        kept = {}
        for number, found in complete.items():
            keep = min(found, key=lambda r: r.info.run_id)
            for run in found:
                if run is not keep:
                    self._client.delete_run(run.info.run_id)
            kept[number] = keep.info.run_id
        return kept

    def _tag_comparison(self, rec: Recommendation | None, shown: pd.DataFrame, trials: pd.DataFrame,
                        records: list[TrialRecord], run_ids: dict[int, str]) -> None:
        """``autoopt.best_of_optimizer`` on the runs that stand for their optimizer (``shown``), and
        ``autoopt.recommended`` on the recommended runs, on exactly those; the times to the target loss
        (known only now) on them; the run that stands for the choice named so. Stale tags and names undone."""
        best = {int(n) for n in shown["number"].dropna()}
        chosen = {int(n) for n in shown.loc[shown["recommended"], "number"].dropna()}
        recommended = set(rec.trial_numbers) if rec is not None else set()
        names = _base_names(records)
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
            base = names.get(number)
            if base is not None:
                name = runs.chosen_name(base) if number in chosen else base
                if tags.get(runs.RUN_NAME_TAG, base) != name:
                    new.append(RunTag(runs.RUN_NAME_TAG, name))
            # the recommended run's page says why, one click from the comparison chart's run list
            note = describe_choice(rec, self.experiment_id, self.parent_run_id) if number in chosen else ""
            if note and tags.get(runs.NOTE_TAG) != note:
                new.append(RunTag(runs.NOTE_TAG, runs.tag_value(note)))
            elif not note and tags.get(runs.NOTE_TAG, "").startswith(CHOICE_NOTE_START):
                self._client.delete_tag(run_id, runs.NOTE_TAG)  # no longer the choice (a resumed study)
            if new:
                row = rows.get(number)
                metrics = [Metric(k, float(row[k]), now, 0) for k in ("epochs_to_target", "seconds_to_target")
                           if row is not None and math.isfinite(float(row[k]))]
                self._write(run_id, metrics, tags=new)

    def _write_parent(self, rec: Recommendation | None, shown: pd.DataFrame, trials: pd.DataFrame,
                      records: list[TrialRecord], run_ids: dict[int, str], killed: int = 0) -> None:
        """The summary metrics and tags on the parent run, and the experiment's view tag: only the values
        that differ from what is there, so that summarizing an unchanged study again writes nothing."""
        now = _now_ms()
        values = {f"trials_{outcome}": float(n) for outcome, n in trials["outcome"].value_counts().items()}
        values["trials"] = float(len(trials))
        if killed:  # trials whose process died: in the storage as failed, each re-run as a trial of its own
            values["trials_killed"] = float(killed)
        target = trials.attrs.get("target_loss", math.nan)
        if isinstance(target, float) and math.isfinite(target):
            values["target_val_loss"] = target
        # the view the link opens: an experiment tag (a resumed study's too)
        view_key, view = links.comparison_view_tag(self.parent_run_id)
        if self._client.get_experiment(self.experiment_id).tags.get(view_key) != view:
            self._client.set_experiment_tag(self.experiment_id, view_key, view)
        tags = {runs.COMPARISON_LINK_TAG: links.comparison_link(self.tracking_uri, self.experiment_id,
                                                                self.parent_run_id)}
        if rec is not None:
            values.update({f"rec_{k}": float(getattr(rec, k)) for k in _REC_METRICS
                           if math.isfinite(float(getattr(rec, k)))})
            ids = [run_ids[n] for n in rec.trial_numbers if n in run_ids]
            tags[runs.RECOMMENDED_RUNS_TAG] = ",".join(ids)
            tags["autoopt.recommendation"] = runs.tag_value(f"{rec.optimizer} {runs.param_value(rec.params)}")
        note = describe_study(rec, shown, trials, records, run_ids, self.experiment_id, self.parent_run_id)
        tags[runs.NOTE_TAG] = runs.tag_value(note)
        current = self._client.get_run(self.parent_run_id).data
        self._parent_tags = dict(current.tags)
        metrics = [Metric(k, v, now, 0) for k, v in values.items() if current.metrics.get(k) != v]
        self._write(self.parent_run_id, metrics,
                    tags=[RunTag(k, v) for k, v in tags.items() if current.tags.get(k) != v])

    def _attach_files(self, rec: Recommendation | None, trials: pd.DataFrame, run_ids: dict[int, str]) -> None:
        """recommendation.json, trials.csv and the charts on the parent run, unless the same files are
        there already (their digest is a tag): a sync of an unchanged study uploads nothing."""
        with tempfile.TemporaryDirectory(prefix="autoopt-mlflow-") as tmp:
            folder = Path(tmp)
            write_study_tables(folder, rec, trials, run_ids)
            digest = files_digest(folder)  # the tables hold everything the charts are drawn from
            if self._parent_tags.get(runs.FILES_DIGEST_TAG) == digest:
                return
            draw_study_charts(folder, rec, trials)
            self._client.log_artifacts(self.parent_run_id, tmp)
            self._client.set_tag(self.parent_run_id, runs.FILES_DIGEST_TAG, digest)


def _complete(run: Run) -> bool:
    """A trial's run that was written whole: ended, with its outcome."""
    return run.info.status != "RUNNING" and runs.OUTCOME_TAG in run.data.tags


def _adopt_environment(env: Mapping[str, str], cwd: str | None) -> None:
    """The study's MLFLOW_* settings and working directory, which may differ from those this
    (long-lived) process started with: a later study of the same process set them otherwise."""
    for key in [k for k in os.environ if k.startswith("MLFLOW_") and k not in env]:
        del os.environ[key]
    os.environ.update(env)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _base_names(records: list[TrialRecord]) -> dict[int, str]:
    """Each trained trial's run name as its end gives it (``sgd-t007-pruned@2``), before any mark."""
    return {r.number: runs.run_name(r.number, r.candidate.optimizer, r.seed, r.purpose, r.measurement.outcome,
                                    len(r.measurement.epochs)) for r in records if runs.trained(r)}
