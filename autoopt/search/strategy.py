"""The search strategy: what a study spends its budget on, in order.

Below ``RACE_BELOW`` training-run equivalents (TRE) of budget, a study starts with a race over the
portfolio (``race.py``, stage 0; below 2 TRE a model whose weights are already trained races the list
learned on fine-tuning problems). Each stage is its own module over one shared
``StudyRunner`` (``runner.py``): it decides what to train, the runner trains it within the budget.

1. **Portfolio.** Configurations chosen on the benchmark corpus's development problems
   (``portfolio.json``, made by ``benchmarks/make_portfolio.py``), trained in order at full
   length. Each is good on many problems, and together they cover the kinds of problem where the first
   one is not: the first entry alone is budget 1's answer. Entries train to the end: no pruner by
   default (``pruner=`` sets one; pruning portfolio runs early lost on the corpus).
2. **Learning-rate line search** around the best configuration so far: a third of a decade up and down,
   then on in the direction that improves, while it improves (the learning rate matters more than the
   optimizer on most problems, and the corpus's best rates are spread over three decades). It starts
   after 8 entries, or, with a budget of 5 to 9 runs, when 2 runs are left (``entries_before_line_search``).
3. **The rest of the portfolio, then Optuna's TPE** over the full conditional space, warm-started by
   everything the study already trained.
4. Optionally, **re-evaluation** of the best configurations on extra seeds (``reevaluate_top``; off by
   default: on the dev fold, for real on held-out seeds, it raised mean regret at 10 and 20 TRE).

Where the study fuses (``fused=True``, or by default on CUDA), the trials queued together, the
portfolio's entries, a race or re-runs of one seed, train in one fused pass (``training.fused``),
each still its own trial; line-search steps and TPE trials, which wait on the one before, train alone.

The recommendation (``autoopt.recommendation``) then compares configurations by their loss averaged with their
learning-rate neighbours', which guards longer searches against a lucky single-seed loss.

The budget is in training-run equivalents (TRE): epochs spent over the epochs of one run, whatever the
optimizer costs per epoch, so that every decision is a count and the same study trains the same trials
on a busy machine as on a quiet one (``tests/search/test_load.py``). A trial starts only while a whole
run fits in what is left, so the budget is never overrun and no run is cut short by it. Every step is stored in the study, so a
resumed study replays the same decisions from its storage and queues nothing twice.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..config import StudyConfig
from ..optimizers.spec import OptimizerSpec
from ..study import budget
from ..tracking.progress import ProgressBar
from ..tracking.tracker import Tracker
from ..training.initialization import looks_trained
from ..training.setup import TrainingSetup
from .line_search import line_search
from .portfolio import portfolio_candidates, run_portfolio
from .race import RACE_BELOW, race_pool, race_rate, race_shape, run_race
from .reevaluation import enqueue_reevaluations
from .runner import StudyRunner, Workers


#: Portfolio entries trained before the line search where the budget leaves it room after them.
REFINE_AFTER = 8
#: The runs a budget of ``LINE_SEARCH_FROM`` to ``REFINE_AFTER + LINE_SEARCH_RUNS - 1`` runs keeps for
#: the line search (below ``LINE_SEARCH_FROM`` runs the entries are worth more; see
#: ``entries_before_line_search``).
LINE_SEARCH_RUNS = 2
LINE_SEARCH_FROM = 5


def entries_before_line_search(runs: float | None, refine_after: int | None = None) -> int:
    """How many portfolio entries a study trains before its learning-rate line search: ``refine_after``
    where the user set it; else ``REFINE_AFTER``, or, where a budget of ``runs`` training runs (5 to 9)
    would leave the line search nothing after 8 entries, so many that its last 2 runs go to it.

    Decided on the development fold (``benchmarks/first_answers.py``, rows "line search last 2";
    leave-fold-out, averaged over 3, 4, 5, 6, 8, 11 and 33 folds, paired against 8 entries first): 5 runs
    18.6% -> 16.5% mean regret (-2.1 +- 1.3 points, 16 problems better, 9 worse; better at 5 splits of 7),
    6 runs -3.0 +- 1.6, 7 runs -3.4 +- 1.4, 8 runs -3.2 +- 1.6, 9 runs -3.6 +- 2.3. At 4 runs, 2 or 3
    entries before the line search lost up to 29 points (3 entries: 1 to 6 points at each of 4, 6 and
    8 folds). From 10 runs up this is the 8 entries it was.

    >>> [entries_before_line_search(b) for b in (3, 4, 5, 6.5, 9, 10, 20, None)]
    [8, 8, 3, 4, 7, 8, 8, 8]
    >>> entries_before_line_search(5, refine_after=2)
    2
    """
    if refine_after is not None:
        return refine_after
    if runs is None or runs < LINE_SEARCH_FROM:
        return REFINE_AFTER
    return min(REFINE_AFTER, math.floor(runs + 1e-9) - LINE_SEARCH_RUNS)


def run_strategy(study: Any, specs: list[OptimizerSpec], setup: TrainingSetup, config: StudyConfig,
                 tracker: Tracker, workers: Workers | None = None, fused: bool = False) -> None:
    """Run the whole search on ``study``: portfolio, line search, TPE, re-evaluation.

    ``fused``: trials queued together (the portfolio's entries, a race, re-evaluations of one
    seed) train in one fused pass (``training.fused``) instead of one after another; the caller decides
    whether the model allows it (``training.fused.eligibility.why_not_fused``).
    """
    progress = ProgressBar.for_study(config, budget.spent(study, config.epochs), config.verbose)
    clock = budget.start_clock(study)  # the timeout is the study's total: earlier processes' time counts
    deadline = None if config.timeout is None else time.monotonic() + clock.left(config.timeout)
    runner = StudyRunner(study, specs, setup, config, tracker, workers, progress, deadline, fused and workers is None)
    try:
        if not study.trials and config.total_budget is not None and config.total_budget < RACE_BELOW:
            race_budget = config.total_budget - config.reevaluation_cost
            first_rung, race_epochs = race_shape(race_budget, config.epochs)
            pool = race_pool(race_budget, looks_trained(setup.template))  # the list goes with the race's shape
            run_race(runner, portfolio_candidates(specs, pool), "race", race_epochs, first_rung=first_rung, pool=pool,
                     rate=race_rate(race_budget))
        runner.run_queued("race")  # members of a race that a killed process left queued
        runner.run_queued(None)  # re-runs of killed or interrupted trials, then anything else left queued
        runs = None if config.total_budget is None else config.total_budget - config.reevaluation_cost
        run_portfolio(runner, entries_before_line_search(runs, config.refine_after))
        if config.refine_lr:
            line_search(runner)
        run_portfolio(runner, None)
        runner.run_sampled()
        if config.reevaluate_top and config.seeds > 1:
            enqueue_reevaluations(runner, [config.seed + i for i in range(1, config.seeds)])
            runner.run_queued("reevaluation", reevaluation=True)
        progress.finish()
    finally:
        budget.stop_clock(study)
        progress.close()
