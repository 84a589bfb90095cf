"""Successive halving with continuation over the portfolio: the first stage of a study below
``HALVING_BELOW`` training-run equivalents of budget.

Every entry the budget allows trains together, a third of them go on at each rung, one reaches the
end, and no epoch is trained twice (the survivors continue; nothing restarts). On the corpus's 24
development problems (``benchmarks/simulate.py``, portfolio learned leave-fold-out) that gave 64% mean
regret at 2 TRE against 151% for training entries one by one, and lost to it from 3 TRE on (50%
against 40%).
"""

from __future__ import annotations

import math

from ..objective import Objective
from ..records import EpochRecord
from ..study import trials
from ..training.loop import GroupStop
from .portfolio import portfolio_candidates
from .runner import StudyRunner
from .trial_runners import group_trainer

#: Budgets (TRE) below which the portfolio is raced by successive halving instead of run entry by entry.
HALVING_BELOW = 3.0

#: Successive halving keeps the best 1 / HALVING_RATE of its runs at each rung.
HALVING_RATE = 3

#: At most this many portfolio entries train at once in successive halving.
HALVING_MAX = 27


def halving_plan(n: int, epochs: int, rate: int) -> tuple[list[int], list[int], int]:
    """(runs alive at each rung, the rung epochs, epochs in all) of successive halving from ``n`` runs.

    >>> halving_plan(9, 18, 3)
    ([9, 3, 1], [2, 6, 18], 42)
    """
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // rate))
    m = len(sizes)
    rungs = [max(1, round(epochs / rate ** (m - 1 - i))) for i in range(m)]
    rungs[-1] = epochs
    total = sum(size * (rung - (rungs[i - 1] if i else 0)) for i, (size, rung) in enumerate(zip(sizes, rungs)))
    return sizes, rungs, total


class Rendezvous:
    """A race's rungs: ``keep`` maps a rung epoch to how many runs continue past it."""

    def __init__(self, keep: dict[int, int]) -> None:
        self.keep = keep

    def group_stop(self, objective: Objective) -> GroupStop:
        """The members to stop at an epoch where every member's epoch ended: at a rung, those not among
        the ``keep[epoch]`` best (ranked by ``objective``)."""

        def stop(epoch: int, records: dict[int, EpochRecord]) -> set[int]:
            if epoch not in self.keep:
                return set()
            scores = {}
            for member, record in records.items():
                score = objective.score(objective.value(record))
                scores[member] = score if math.isfinite(score) else math.inf
            return set(scores) - set(_best(scores, self.keep[epoch]))

        return stop


def _best(scores: dict[int, float], keep: int) -> list[int]:
    """The ``keep`` members with the lowest scores (ties: the member first in order)."""
    return sorted(scores, key=lambda m: (scores[m], m))[:keep]


def run_halving(runner: StudyRunner) -> None:
    """Successive halving with continuation over as many portfolio entries as the budget affords.

    The entries train together (in one fused pass, or side by side an epoch each in turn); at each
    rung only the best 1/HALVING_RATE go on (a ``Rendezvous``). Each entry is still one trial.
    """
    config = runner.config
    entries = portfolio_candidates(runner.specs)[:HALVING_MAX]
    epochs, budget = config.epochs, config.total_epochs - config.reevaluation_cost * config.epochs
    n = 1
    while n < len(entries) and halving_plan(n + 1, epochs, HALVING_RATE)[2] <= budget:
        n += 1
    if n < 2:
        return
    sizes, rungs, _ = halving_plan(n, epochs, HALVING_RATE)
    for i, candidate in enumerate(entries[:n]):
        runner.enqueue(candidate, "portfolio", extra={"portfolio_index": i, "group": True}, once=f"portfolio:{i}")
    rendezvous = Rendezvous(dict(zip(rungs[:-1], sizes[1:])))
    # one group: fused where one pass holds it, else side by side, an epoch each in turn; its rungs are
    # decided once an epoch, when every member's epoch has ended
    fused = runner.fused_size >= n
    train = group_trainer(runner.by_name, runner.setup, runner.tracker, runner.progress,
                          rendezvous.group_stop(config.objective), fused=fused)
    trials.run_together(runner.study, runner.specs, train, config.seed, config.space, n=n, max_size=n,
                        purposes=frozenset({"portfolio"}), objective=config.objective, fused=fused)
