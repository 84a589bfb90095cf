"""How one trial, or a group trained together, is trained with the tracker and the progress bar told.

``trial_runner`` gives the Optuna glue (``study.trials``) the function that trains one trial;
``group_trainer`` the one that trains a group of one seed together: in one fused pass, or side by side
an epoch each in turn (a race: ``training.interleaved``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..optimizers.spec import OptimizerSpec
from ..records import Candidate, EpochRecord, Measurement, TrialRecord
from ..study.trials import GroupMember, RunTrial, TrainGroup
from ..tracking.progress import ProgressBar
from ..tracking.tracker import Tracker
from ..training.fused.loop import train_fused
from ..training.interleaved import train_interleaved
from ..training.loop import (
    GroupInterrupted,
    GroupStop,
    TrainingInterrupted,
    train_candidate,
)
from ..training.setup import TrainingSetup


def trial_runner(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                 progress: ProgressBar) -> RunTrial:
    """Train one candidate with the tracker and the progress bar told about it."""

    def run_trial(number: int, candidate: Candidate, seed: int, purpose: str,
                  should_stop: Callable[[EpochRecord], bool]) -> Measurement:
        spec = by_name[candidate.optimizer]
        tracker.start_trial(number, candidate, spec.family, seed, purpose)

        def on_epoch(record: EpochRecord) -> bool:
            tracker.log_epoch(number, record)
            return should_stop(record)

        try:
            measurement = train_candidate(setup, spec, candidate, seed, on_epoch)
        except TrainingInterrupted as exc:
            tracker.end_trial(TrialRecord(number, candidate, spec.family, seed, purpose, exc.measurement))
            raise
        except Exception as exc:
            measurement = Measurement.failure(exc)
            record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
            tracker.end_trial(record)
            progress.update(record)
            raise
        record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
        tracker.end_trial(record)
        progress.update(record)
        return measurement

    return run_trial


def group_trainer(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                  progress: ProgressBar, group_stop: GroupStop | None = None, *, fused: bool = True) -> TrainGroup:
    """Train a group of trials of one seed together, with the tracker and the progress bar told about
    each as ``trial_runner`` tells them about one: in one fused pass, or (``fused=False``) side by side."""
    train = train_fused if fused else train_interleaved

    def train_group(members: list[GroupMember]) -> list[Measurement]:
        specs = [by_name[candidate.optimizer] for _, candidate, _, _, _ in members]

        def record(i: int, measurement: Measurement) -> TrialRecord:
            number, candidate, seed, purpose, _ = members[i]
            return TrialRecord(number, candidate, specs[i].family, seed, purpose, measurement)

        def on_epoch(number: int, should_stop: Callable[[EpochRecord], bool]) -> Callable[[EpochRecord], bool]:
            def callback(epoch: EpochRecord) -> bool:
                tracker.log_epoch(number, epoch)
                return should_stop(epoch)
            return callback

        for (number, candidate, seed, purpose, _), spec in zip(members, specs):
            tracker.start_trial(number, candidate, spec.family, seed, purpose)
        try:
            measurements = train(setup, [(spec, m[1]) for spec, m in zip(specs, members)], members[0][2],
                                 [on_epoch(m[0], m[4]) for m in members], group_stop=group_stop)
        except GroupInterrupted as stop:
            for i, measurement in enumerate(stop.measurements):
                tracker.end_trial(record(i, measurement))
            raise
        except Exception as exc:  # the shared pass itself failed: every member with it
            measurements = [Measurement.failure(exc) for _ in members]
        for i, measurement in enumerate(measurements):
            done = record(i, measurement)
            tracker.end_trial(done)
            progress.update(done)
        return measurements

    return train_group
