"""The learning-rate line search around the best configuration so far.

A third of a decade up and down, then on in the direction that improves, while it improves: the
learning rate matters more than the optimizer on most problems, and the corpus's best rates are
spread over three decades.
"""

from __future__ import annotations

from ..optimizers.spec import OptimizerSpec
from ..records import Candidate, Measurement, TrialRecord
from ..study.stored import read_records
from .runner import StudyRunner

#: Learning-rate steps of the line search: a third of a decade, the corpus grid's spacing.
LR_STEP = 10 ** (1 / 3)

#: Line-search steps at most in one direction (a guard; the budget usually stops it first).
MAX_STEPS = 6


def line_search(runner: StudyRunner) -> None:
    """Step the best configuration's learning rate by LR_STEP up and down; go on while it improves.

    Replayed from the storage on resume: a step already trained is read back, not trained again.
    """
    tried: set[str] = set()
    while True:
        best = _best_completed(runner)
        if best is None or best.key() in tried:
            return
        tried.add(best.key())
        best_loss = _loss_of(runner, best)
        spec = runner.by_name[best.optimizer]
        low, high = _lr_bounds(spec)
        for direction in (LR_STEP, 1 / LR_STEP):
            lr = best.lr
            for _ in range(MAX_STEPS):
                lr *= direction
                if not low <= lr <= high:
                    break
                step = Candidate(best.optimizer, {**best.params, "lr": lr})  # queued once: see run_one
                loss = _loss_of(runner, step)
                if loss is None and not _tried(runner, step):
                    if not runner.run_one(step, "refine"):
                        return
                    loss = _loss_of(runner, step)
                if loss is None or loss >= best_loss:
                    break
                best_loss = loss


def _lr_bounds(spec: OptimizerSpec) -> tuple[float, float]:
    dim = next(d for d in spec.space if d.name == "lr")
    return dim.low, dim.high


def _records(runner: StudyRunner) -> list[TrialRecord]:
    return [r for r in read_records(runner.study, runner.specs) if r.purpose != "reevaluation"]


def _score(runner: StudyRunner, measurement: Measurement) -> float:
    """The trial's final objective, lower is better: what the line search compares."""
    objective = runner.config.objective
    return objective.score(objective.final(measurement))


def _best_completed(runner: StudyRunner) -> Candidate | None:
    done = [r for r in _records(runner) if r.measurement.outcome == "completed"]
    return min(done, key=lambda r: _score(runner, r.measurement)).candidate if done else None


def _tried(runner: StudyRunner, candidate: Candidate) -> bool:
    return any(r.candidate.key() == candidate.key() for r in _records(runner))


def _loss_of(runner: StudyRunner, candidate: Candidate) -> float | None:
    """The final objective score of ``candidate`` if it completed in this study (any purpose but
    re-evaluation); lower is better."""
    for r in _records(runner):
        if r.candidate.key() == candidate.key() and r.measurement.outcome == "completed":
            return _score(runner, r.measurement)
    return None
