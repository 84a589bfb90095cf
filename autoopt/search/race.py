"""A race: many configurations trained together for a few epochs, the best third (or half: ``race_rate``)
going on at each rung, the winner trained to the end (successive halving with continuation: nothing restarts, no epoch is
trained twice). The first stage of a study whose budget is small.

The race's entries are the portfolio's (``portfolio.json``, ``entries``), or, for a model whose weights are
already trained and a budget under two runs, its list learned on fine-tuning problems
(``pretrained_entries``, ``race_pool``). Its members train
together, fused where one pass holds them, else side by side, an epoch each in turn
(``training.interleaved``): the same trials on any machine, however busy. Each member is its own trial.
"""

from __future__ import annotations

import math

from ..objective import Objective
from ..records import Candidate, EpochRecord
from ..study import trials
from ..training.fused.sizing import max_group_size
from ..training.loop import GroupStop
from .runner import StudyRunner
from .trial_runners import group_trainer

#: Budgets (TRE) below which a study starts with a race instead of training the portfolio entry by entry.
RACE_BELOW = 3.0
#: The portfolio's list a race starts from.
RACE_POOL = "entries"
#: The list a short race starts from when the model's weights are already trained (fine-tuning,
#: ``training.initialization.looks_trained``): learned on the corpus's fine-tuning problems, whose best
#: rates are lower; decided by ``benchmarks/first_answers.py`` (below SHORT_BELOW only: at 2 runs it lost).
PRETRAINED_POOL = "pretrained_entries"
#: Budgets below this many runs race with a first rung of SHORT_RUNG epochs and may spend SHORT_ALLOWANCE
#: runs beyond the budget (a study always trains one run to the end; the race that chooses it costs this
#: much more); larger budgets race by successive halving within the budget. Decided on the corpus's
#: development problems by ``benchmarks/first_answers.py`` (budget 1: mean regret 46.5% with the short
#: rung and a quarter run more, 91% training the first entry; budget 2: halving and short rungs tie).
SHORT_BELOW = 2.0
SHORT_RUNG = 1
SHORT_ALLOWANCE = 0.25
#: Runs kept at each rung: the best 1 / RACE_RATE ...
RACE_RATE = 3
#: ... or, in a short race of SHORT_HALF_FROM runs or more (and under SHORT_BELOW), the best 1 / SHORT_HALF_RATE.
SHORT_HALF_FROM = 1.5
SHORT_HALF_RATE = 2
#: At most this many configurations race.
RACE_MAX = 27


def race_plan(n: int, epochs: int, first_rung: int | None = None,
              rate: int = RACE_RATE) -> tuple[list[int], list[int], int]:
    """(runs alive at each rung, the rung epochs, epochs in all) of a race of ``n`` runs of ``epochs``.

    The rungs are ``first_rung``, ``first_rung * rate`` ... below ``epochs``, then ``epochs``, with a
    1/rate of the runs (at least one) going on past each; with no ``first_rung``, as many rungs as halving
    ``n`` down to one takes, spread evenly on a log scale below ``epochs`` (successive halving).

    >>> race_plan(9, 18)
    ([9, 3, 1], [2, 6, 18], 42)
    >>> race_plan(5, 20, first_rung=1)
    ([5, 2, 1, 1], [1, 3, 9, 20], 26)
    """
    if first_rung is None:
        sizes = [n]
        while sizes[-1] > 1:
            sizes.append(max(1, sizes[-1] // rate))
        rungs = [max(1, round(epochs / rate ** (len(sizes) - 1 - i))) for i in range(len(sizes))]
        rungs[-1] = epochs
    else:
        rungs = [first_rung]
        while rungs[-1] * rate < epochs:
            rungs.append(rungs[-1] * rate)
        rungs = [r for r in rungs if r < epochs] + [epochs]
        sizes = [n] + [max(1, math.ceil(n / rate ** i)) for i in range(1, len(rungs) - 1)] + ([1] if len(rungs) > 1 else [])
    total = sum(size * (rung - (rungs[i - 1] if i else 0)) for i, (size, rung) in enumerate(zip(sizes, rungs)))
    return sizes, rungs, total


def largest_race(epochs: int, budget_epochs: float, first_rung: int | None, cap: int, rate: int = RACE_RATE) -> int:
    """The most runs (at most ``cap``) whose race fits in ``budget_epochs``; 1 when even two do not."""
    n = 1
    while n < cap and race_plan(n + 1, epochs, first_rung, rate)[2] <= budget_epochs + 1e-9:
        n += 1
    return n


def race_shape(total_budget: float, epochs: int) -> tuple[int | None, float]:
    """(the first rung's epochs, None for successive halving; the epochs a race may spend) for a study
    of ``total_budget`` runs of ``epochs`` epochs.

    >>> race_shape(1, 20)
    (1, 25.0)
    >>> race_shape(2, 20)
    (None, 40)
    """
    if total_budget < SHORT_BELOW:
        return SHORT_RUNG, max(total_budget, 1 + SHORT_ALLOWANCE) * epochs
    return None, total_budget * epochs


def race_rate(total_budget: float) -> int:
    """How many runs of a race of a study of ``total_budget`` runs share one place at the next rung.

    The best third go on, except in a short race with room for 1.5 runs or more, where the best half
    do: the room it has beyond the one run it trains to the end then keeps more runs going past the
    first rung instead of starting more of them after one epoch, which is when a rung ranks worst.
    Decided on the development fold (``benchmarks/small_budget_variants.py``, leave-fold-out at 3, 4,
    5, 6, 8, 11 and 33 folds): at 1.5 runs 42.8% -> 33.7% mean regret at 4/6/8 folds (-9.1 +- 6.6
    points), better at all 7 splits; at 1.75 runs better at 6 of 7; at 1 and 1.25 runs worse at every
    split (+2.6 to +23 points), so the best third stays there.

    >>> [race_rate(b) for b in (1, 1.25, 1.5, 1.75, 2, 2.5)]
    [3, 3, 2, 2, 3, 3]
    """
    return SHORT_HALF_RATE if SHORT_HALF_FROM <= total_budget < SHORT_BELOW else RACE_RATE


def race_pool(total_budget: float, pretrained: bool) -> str:
    """The portfolio list (``portfolio.json``) a race of a study of ``total_budget`` runs starts from.

    >>> race_pool(1, pretrained=True), race_pool(2, pretrained=True), race_pool(1, pretrained=False)
    ('pretrained_entries', 'entries', 'entries')
    """
    return PRETRAINED_POOL if pretrained and total_budget < SHORT_BELOW else RACE_POOL


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


def run_race(runner: StudyRunner, entries: list[Candidate], purpose: str, budget_epochs: float,
             first_rung: int | None = None, pool: str = RACE_POOL, rate: int = RACE_RATE) -> None:
    """Race as many of ``entries`` as ``budget_epochs`` affords (at least 2, else nothing happens), the
    best 1 / ``rate`` going on at each rung; each
    is queued once as a trial of ``purpose`` with its index (``race_index``), so a resumed study races
    the same entries and queues none twice, and the list it came from (``race_list``: ``pool``, shown
    with the trial in Optuna's storage and dashboard)."""
    config = runner.config
    distinct: dict[str, Candidate] = {}  # entries that are one configuration within the search space race once
    for entry in map(runner.within_space, entries):
        distinct.setdefault(entry.key(), entry)
    entries = list(distinct.values())[:RACE_MAX]
    n = largest_race(config.epochs, budget_epochs, first_rung, len(entries), rate)
    fused = runner.fused_size >= n
    if not fused:  # side by side: every member's model and optimizer state are held at once
        largest = max(entries[:n], key=lambda c: runner.by_name[c.optimizer].predict_state_bytes(
            runner.by_name[c.optimizer].parameters_of(runner.setup.template), c.params))
        n = min(n, max_group_size(runner.setup, [(runner.by_name[largest.optimizer], largest)] * n,
                                  memory_budget=config.memory_budget))
    if n < 2:
        return
    sizes, rungs, _ = race_plan(n, config.epochs, first_rung, rate)
    for i, candidate in enumerate(entries[:n]):
        runner.enqueue(candidate, purpose, extra={"race_index": i, "group": True, "race_list": pool}, once=f"{purpose}:{i}")
    rendezvous = Rendezvous(dict(zip(rungs[:-1], sizes[1:])))
    # one group, its rungs decided once an epoch, when every member's epoch has ended
    train = group_trainer(runner.by_name, runner.setup, runner.tracker, runner.progress,
                          rendezvous.group_stop(config.objective), fused=fused)
    trials.run_together(runner.study, runner.specs, train, config.seed, config.space, n=n, max_size=n,
                        objective=config.objective, fused=fused)
