"""Several candidates of one seed trained side by side, an epoch each in turn: a race whose rungs stop
the worse ones, without threads and without vmap.

Each member is a ``TrainingRun`` of its own (model, optimizer, data order and random state), so a
member's epochs are exactly those of ``train_candidate``, however the race interleaves them, and the
race trains the same on a busy machine as on a quiet one (threads, which the race used before, handed
the shared torch random state and the trial numbers out in the order the scheduler chose). Members are
kept in memory together: the caller sizes the group (``fused.sizing.max_group_size``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..records import Measurement
from .loop import GroupInterrupted, GroupStop, Member, OnEpoch, TrainingInterrupted, TrainingRun
from .setup import TrainingSetup


def train_interleaved(setup: TrainingSetup, members: Sequence[Member], seed: int,
                      on_epoch: Sequence[OnEpoch | None] | None = None, *,
                      group_stop: GroupStop | None = None) -> list[Measurement]:
    """Train every ``(spec, candidate)`` of ``members`` from seed ``seed``, an epoch each in turn; after
    each epoch ``group_stop`` may stop some (a race's rung). Per member the result is what
    ``train_candidate(setup, spec, candidate, seed, on_epoch[i])`` returns, stopped where the race says.

    Ctrl-C raises ``GroupInterrupted`` with every member's measurement so far.
    """
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(members)
    runs: list[TrainingRun] = []
    try:
        for (spec, candidate), callback in zip(members, callbacks):
            runs.append(TrainingRun(setup, spec, candidate, seed, callback))
        for epoch in range(1, setup.epochs + 1):
            alive = [i for i, run in enumerate(runs) if not run.done]
            if not alive:
                break
            for i in alive:
                runs[i].advance(epoch)
            ended = {i: runs[i].measurement.epochs[-1] for i in alive if not runs[i].done}
            for i in (group_stop(epoch, ended) if group_stop is not None and ended else set()):
                runs[i].stop()
    except TrainingInterrupted:
        so_far = [run.measurement for run in runs]
        for m in so_far:
            if m.outcome == "completed" and len(m.epochs) < setup.epochs:
                m.outcome = "interrupted"
        raise GroupInterrupted(so_far + [Measurement("interrupted") for _ in members[len(runs):]]) from None
    return [run.finish() for run in runs]
