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
import threading

from ..objective import Objective
from ..records import EpochRecord
from ..study import trials
from ..training.fused.loop import GroupStop
from .portfolio import portfolio_candidates
from .runner import StudyRunner
from .trial_runners import group_trainer, trial_runner

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
    """Where runs trained at once meet at each rung: each waits for the others, then the best go on.

    ``keep`` maps a rung epoch to how many runs continue past it. A run that ends for any reason before
    a rung (diverged, failed, completed) calls ``leave`` so that nobody waits for it.
    """

    def __init__(self, keep: dict[int, int], members: int) -> None:
        self.keep, self.members = keep, members
        self._cond = threading.Condition()
        self._joined = 0  # no decision before every member has started: a late one would miss it
        self._running: set[int] = set()
        self._losses: dict[int, dict[int, float]] = {epoch: {} for epoch in keep}

    def join(self, member: int) -> None:
        with self._cond:
            self._running.add(member)
            self._joined += 1
            self._cond.notify_all()

    def leave(self, member: int) -> None:
        with self._cond:
            self._running.discard(member)
            self._cond.notify_all()

    def should_stop(self, member: int, epoch: int, loss: float) -> bool:
        """At a rung, wait for every running member, then stop unless among the ``keep[epoch]`` best.

        ``loss``: lower is better (the objective's score)."""
        if epoch not in self.keep:
            return False
        with self._cond:
            losses = self._losses[epoch]
            losses[member] = loss if math.isfinite(loss) else math.inf
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._joined >= self.members and self._running <= set(losses))
            best = _best(losses, self.keep[epoch])
            if member not in best:
                self._running.discard(member)
                self._cond.notify_all()
                return True
            return False

    def group_stop(self, objective: Objective) -> GroupStop:
        """The rungs for runs trained in one fused pass, where every member's epoch ends at once: at a
        rung, the members not among the ``keep[epoch]`` best stop (ranked by ``objective``)."""

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

    The entries train at once in threads (or in one fused pass); at each rung every running entry
    waits for the others (a ``Rendezvous``), and only the best 1/HALVING_RATE go on. Each entry is
    still one trial.
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
    rendezvous = Rendezvous(dict(zip(rungs[:-1], sizes[1:])), n)
    portfolio = frozenset({"portfolio"})
    if runner.fused_size >= n:  # one fused pass; its rungs are decided once an epoch
        train = group_trainer(runner.by_name, runner.setup, runner.tracker, runner.progress,
                              rendezvous.group_stop(config.objective))
        trials.run_together(runner.study, runner.specs, train, config.seed, config.space, n=n, max_size=n,
                            purposes=portfolio, objective=config.objective)
        return
    run_trial = trial_runner(runner.by_name, runner.setup, runner.tracker, runner.progress, rendezvous,
                             config.objective)
    objective = trials.make_objective(runner.specs, run_trial, config.seed, config.space, purposes=portfolio,
                                      objective=config.objective)
    trials.run(runner.study, objective, n_trials=n, timeout=None, n_jobs=n)
