"""What each MLflow run of a study says: pure functions from autoopt's records to names, params,
tags, metrics and statuses. No MLflow client here: the live tracker and the backfill (sync) both
build their runs from these, so a run written during the study and one written later from the
Optuna storage are the same run.

The rules the UI depends on:

- A child run holds the trial's own params only (optimizer, its hyperparameters, seed, purpose, and
  ``log10_lr``, so that MLflow's Compare view, whose axes are linear, spreads the learning rates
  evenly); the study's settings are params of the parent, prefixed ``study.``.
- A child run has its optimizer's colour (``mlflow.runColor``, the colours of the PNG charts), and the
  run that stands for the recommendation is named so: ``★ adam-t011-refine (recommended)``.
- Per-epoch metrics are at step = epoch; summary metrics (and every parent metric) at step 0, so
  MLflow never draws a line between unrelated values.
- No NaN or infinite value is ever logged, and a diverged trial's diverging epoch is not logged
  either (its loss is huge by definition and would flatten every other curve): divergence is the
  ``autoopt.outcome`` tag and the ``diverged_at_epoch`` metric.
- Candidates that never trained (cancelled, infeasible) get no run: a
  FAILED run for something that was never tried would sort to the top and mislead. The parent's
  description lists them.

>>> stage_name("reevaluation")
're-evaluation'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...records import Candidate, Measurement, TrialRecord
from ..marks import CHOICE_MARK, optimizer_color

try:  # MLflow's own limits; the fallbacks are its values since 2.x (this import is light)
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
except ImportError:  # pragma: no cover
    MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH = 250, 6000, 8000

ROLE_TAG = "autoopt.role"  # "study" on the parent run, "trial" on child runs
STUDY_TAG = "autoopt.study"
TRIAL_TAG = "autoopt.trial"  # the Optuna trial number: the key a run is found by
STAGE_TAG = "autoopt.stage"
OUTCOME_TAG = "autoopt.outcome"
FAMILY_TAG = "autoopt.optimizer_family"
ERROR_TAG = "autoopt.error"
RECOMMENDED_TAG = "autoopt.recommended"
BEST_TAG = "autoopt.best_of_optimizer"
RECOMMENDED_RUNS_TAG = "autoopt.recommended_run_ids"  # on the parent
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
NOTE_TAG = "mlflow.note.content"  # shown by the UI as the run's description
RUN_NAME_TAG = "mlflow.runName"
COLOR_TAG = "mlflow.runColor"  # the run's colour in MLflow's charts and run list
COMPARISON_LINK_TAG = "autoopt.comparison_link"  # on the parent: the link that opens the comparison chart
FILES_DIGEST_TAG = "autoopt.files_digest"  # on the parent: the digest of the files attached to it

#: Outcomes of trials that never trained: no child run.
NOT_TRAINED = ("eliminated", "cancelled", "infeasible")

#: MLflow status of a child run for each outcome of a trial that trained. A pruned trial ended as
#: planned (the pruner stopped it), so it is FINISHED; its name says "pruned" (see run_name).
RUN_STATUS = {
    "completed": "FINISHED", "pruned": "FINISHED",
    "diverged": "FAILED", "oom": "FAILED", "failed": "FAILED",
    "interrupted": "KILLED", "killed": "KILLED",
}

#: The outcome tag of the run of a trial whose process died mid-trial (kill -9, a lost machine): the
#: storage failed the trial and queued it again under a new number, which gets its own run.
KILLED_OUTCOME = "killed: its process died mid-trial; re-run as a new trial"

#: Readable stage names for the strategy's trial purposes; an unknown purpose is shown as it is.
STAGES = {"race": "race", "portfolio": "portfolio", "refine": "lr line search", "search": "search",
          "reevaluation": "re-evaluation"}


def stage_name(purpose: str) -> str:
    return STAGES.get(purpose, purpose)


def trained(record: TrialRecord) -> bool:
    """Whether the trial trained at all (only those get a child run)."""
    return record.number is not None and record.measurement.outcome not in NOT_TRAINED


def run_status(outcome: str) -> str:
    return RUN_STATUS.get(outcome, "FAILED")


def run_name(number: int, optimizer: str, seed: int, purpose: str, outcome: str | None = None,
             epochs: int = 0) -> str:
    """``adamw-t012``; ``adamw-t020-seed1`` (a re-evaluation); ``sgd-t003-portfolio``; once ended, a
    trial that did not complete says so: ``sgd-t007-pruned@2``, ``sgd-t008-diverged@1``.

    >>> run_name(7, "sgd", 0, "search", "pruned", 2)
    'sgd-t007-pruned@2'
    """
    name = f"{optimizer}-t{number:03d}"
    if purpose == "reevaluation":
        name += f"-seed{seed}"
    elif purpose != "search":
        name += f"-{purpose}"
    if outcome in ("pruned", "diverged"):
        name += f"-{outcome}@{epochs}"
    elif outcome not in (None, "completed"):
        name += f"-{outcome}"
    return name


def chosen_name(name: str) -> str:
    """The name of the run that stands for the recommendation in the comparison chart.

    >>> chosen_name("adam-t011-refine")
    '★ adam-t011-refine (recommended)'
    """
    return f"{CHOICE_MARK} {name} (recommended)"


def outcome_text(m: Measurement, purpose: str = "search") -> str:
    if m.outcome == "pruned":
        return f"pruned at epoch {len(m.epochs)}"
    if m.outcome == "diverged":
        return f"diverged at epoch {len(m.epochs)}"
    if m.outcome == "failed":
        return f"failed: {(m.error or 'unknown error').split(':')[0]}"
    return m.outcome


def param_key(key: Any) -> str:
    return str(key)[:MAX_ENTITY_KEY_LENGTH]


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else (f"{value:.6g}" if isinstance(value, float) else str(value))
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[:MAX_PARAM_VAL_LENGTH - 3] + "..."


def tag_value(text: str) -> str:
    return text if len(text) <= MAX_TAG_VAL_LENGTH else text[:MAX_TAG_VAL_LENGTH - 3] + "..."


def study_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The study's settings as parent params: ``study.epochs``, ``study.optimizers`` ..."""
    return {param_key(f"study.{k}"): param_value(v) for k, v in config.items()}


def trial_params(candidate: Candidate, seed: int, purpose: str) -> dict[str, str]:
    """The trial's own params; ``log10_lr`` beside ``lr`` (``"-1.633"`` for 0.0233) where it has one.

    >>> trial_params(Candidate("sgd", {"lr": 0.01}), 0, "search")["log10_lr"]
    '-2'
    """
    values = {"optimizer": candidate.optimizer, **candidate.params, "seed": seed, "purpose": purpose}
    lr = candidate.params.get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 and math.isfinite(lr):
        values["log10_lr"] = round(math.log10(lr), 3)
    return {param_key(k): param_value(v) for k, v in values.items()}


def trial_tags(record_number: int, family: str, purpose: str, study_name: str, parent_run_id: str,
               optimizer: str = "") -> dict[str, str]:
    """The tags a child run has from its creation on (its outcome comes when it ends)."""
    tags = {ROLE_TAG: "trial", STUDY_TAG: study_name, TRIAL_TAG: str(record_number), FAMILY_TAG: family,
            STAGE_TAG: stage_name(purpose), PARENT_TAG: parent_run_id}
    if optimizer:
        tags[COLOR_TAG] = optimizer_color(optimizer)
    return tags


def end_tags(record: TrialRecord) -> dict[str, str]:
    """The tags a child run gets when its trial ends: outcome, error, and the name that says it."""
    m, c = record.measurement, record.candidate
    tags = {OUTCOME_TAG: outcome_text(m, record.purpose),
            RUN_NAME_TAG: run_name(record.number, c.optimizer, record.seed, record.purpose, m.outcome, len(m.epochs))}
    if m.error:
        tags[ERROR_TAG] = tag_value(m.error)
    return tags


def killed_tags(name: str) -> dict[str, str]:
    """The tags that close the run ``name`` of a trial whose process died: ``sgd-t003-killed``."""
    return {OUTCOME_TAG: KILLED_OUTCOME, RUN_NAME_TAG: name if name.endswith("-killed") else f"{name}-killed"}


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def logged_epochs(m: Measurement) -> list:
    """The epochs whose metrics are logged: all but a diverged trial's diverging epoch."""
    return m.epochs[:-1] if m.outcome == "diverged" else list(m.epochs)


def epoch_metrics(m: Measurement, start_ms: int) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step = epoch) of every finite per-epoch value worth logging.

    Timestamps are the epoch's own (training start + elapsed training time), so MLflow's
    time axes are the training's, also for a run written later from the storage.
    """
    return metrics_of_epochs(logged_epochs(m), start_ms)


#: What is logged per epoch. Not the epoch's seconds: each metric value costs the sqlite store about
#: half a millisecond, and training time is already there twice, as the summary ``seconds`` and as
#: the timestamps (training start + elapsed training time: MLflow's "relative time" axis).
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy")


def metrics_of_epochs(epochs: list, start_ms: int) -> list[tuple[str, float, int, int]]:
    out = []
    for record in epochs:
        when = start_ms + int(1000 * record.elapsed_seconds)
        values = record.metrics()
        out.extend((k, float(values[k]), when, record.epoch) for k in EPOCH_METRICS if _finite(values.get(k)))
    return out


def summary_metrics(m: Measurement) -> dict[str, float]:
    """Summary values of a trial, logged at step 0; only finite ones."""
    epochs = logged_epochs(m)
    values: dict[str, Any] = {"epochs_trained": len(m.epochs), "seconds": m.seconds, "steps": m.steps,
                              "optimizer_state_bytes": m.optimizer_state_bytes,
                              "peak_memory_bytes": m.peak_memory_bytes}
    if m.outcome == "diverged":
        values["diverged_at_epoch"] = len(m.epochs)
    finite = [e.val_loss for e in epochs if _finite(e.val_loss)]
    if finite:
        values["best_val_loss"] = min(finite)
    if m.outcome in ("completed", "pruned") and epochs:
        values["final_val_loss"] = epochs[-1].val_loss  # at the epoch it stopped, for a pruned one
        values["final_val_accuracy"] = epochs[-1].val_accuracy
    return {k: float(v) for k, v in values.items() if _finite(v)}


@dataclass
class ChildRun:
    """Everything one child run holds, ready to write in one go (backfill, or a short trial)."""

    number: int
    name: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[tuple[str, float, int, int]]  # (key, value, timestamp ms, step)
    status: str
    start_ms: int
    end_ms: int
    extra_tags: dict[str, str] = field(default_factory=dict)


def training_start_ms(m: Measurement, end_ms: int, fallback_ms: int) -> int:
    """When the training of a trial that ended at ``end_ms`` began: its training time before the end.

    Not the trial's start: the first trial of a process spends seconds on one-time set-up (torch's
    lazy imports) that are no part of any run's duration.
    """
    return end_ms - int(1000 * m.seconds) if m.epochs else fallback_ms


def child_run(record: TrialRecord, study_name: str, parent_run_id: str, start_ms: int, end_ms: int) -> ChildRun:
    """The whole child run of a trial that trained, from its record alone."""
    m, c = record.measurement, record.candidate
    tags = {**trial_tags(record.number, record.family, record.purpose, study_name, parent_run_id, c.optimizer),
            **end_tags(record)}
    metrics = epoch_metrics(m, start_ms) + [(k, v, end_ms, 0) for k, v in summary_metrics(m).items()]
    return ChildRun(record.number, tags[RUN_NAME_TAG], tags, trial_params(c, record.seed, record.purpose),
                    metrics, run_status(m.outcome), start_ms, end_ms)


def not_trained_lines(records: list[TrialRecord]) -> list[str]:
    """One line per never-trained candidate kind, for the parent's description."""
    counts: dict[tuple[str, str, str], int] = {}
    for r in records:
        if r.measurement.outcome in NOT_TRAINED:
            reason = r.measurement.error or {"eliminated": "dominated after screening",
                                             "cancelled": "its stage's budget ran out first",
                                             "infeasible": "does not fit the memory budget"}[r.measurement.outcome]
            key = (r.candidate.optimizer, r.measurement.outcome, reason)
            counts[key] = counts.get(key, 0) + 1
    return [f"{name}: {outcome} ({reason})" + (f", {n} trials" if n > 1 else "")
            for (name, outcome, reason), n in sorted(counts.items())]
