"""How one trial, or a group trained together, is trained with the tracker and the progress bar told.

``trial_runner`` gives the Optuna glue (``study.trials``) the function that trains one trial;
``group_trainer`` the one that trains a group of one seed in one fused pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..objective import VAL_LOSS, Objective
from ..optimizers.spec import OptimizerSpec
from ..records import Candidate, EpochRecord, Measurement, TrialRecord
from ..study.trials import GroupMember, RunTrial, TrainGroup
from ..tracking.progress import ProgressBar
from ..tracking.tracker import Tracker
from ..training.fused.loop import FusedInterrupted, GroupStop, train_fused
from ..training.loop import TrainingInterrupted, TrainingSetup, train_candidate


class Rungs(Protocol):
    """Where runs trained at once meet at each rung (``halving.Rendezvous``)."""

    def join(self, member: int) -> None: ...

    def leave(self, member: int) -> None: ...

    def should_stop(self, member: int, epoch: int, loss: float) -> bool: ...


def trial_runner(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                  progress: ProgressBar, rendezvous: Rungs | None = None,
                  objective: Objective = VAL_LOSS) -> RunTrial:
    """Train one candidate with the tracker and the progress bar told about it (and the rendezvous of
    the runs it trains beside, in successive halving, which ranks them by ``objective``)."""

    def run_trial(number: int, candidate: Candidate, seed: int, purpose: str,
                  should_stop: Callable[[EpochRecord], bool]) -> Measurement:
        spec = by_name[candidate.optimizer]
        tracker.start_trial(number, candidate, spec.family, seed, purpose)

        def on_epoch(record: EpochRecord) -> bool:
            tracker.log_epoch(number, record)
            stop = should_stop(record)
            if rendezvous is not None and not stop:
                stop = rendezvous.should_stop(number, record.epoch, objective.score(objective.value(record)))
            return stop

        if rendezvous is not None:
            rendezvous.join(number)
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
        finally:
            if rendezvous is not None:
                rendezvous.leave(number)
        record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
        tracker.end_trial(record)
        progress.update(record)
        return measurement

    return run_trial


def group_trainer(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                   progress: ProgressBar, group_stop: GroupStop | None = None) -> TrainGroup:
    """Train a group of trials of one seed in one fused pass, with the tracker and the progress bar told
    about each as ``trial_runner`` tells them about one."""

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
            measurements = train_fused(setup, [(spec, m[1]) for spec, m in zip(specs, members)], members[0][2],
                                       [on_epoch(m[0], m[4]) for m in members], group_stop=group_stop)
        except FusedInterrupted as stop:
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
