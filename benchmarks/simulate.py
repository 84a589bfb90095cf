"""Replay search strategies on the cached reference grids, to choose the default strategy on the dev fold.

A strategy that only trains grid configurations (an optimizer at its registry defaults and a learning
rate on the third-of-a-decade grid) on a grid seed can be replayed exactly from the grid's cached
curves: each run's per-epoch validation losses are known, so stopping it early (pruning, a budget)
costs what it would have cost. That makes it cheap to compare many strategies and settings, over every
development problem and both grid seeds, before anything is implemented or run for real.

The score of a replay (``--score``): by default (``other-seed``) the recommended configuration's final
loss on the grid seed the search did *not* train on, against the grid's best mean (a diverged run:
regret ``DIVERGED``); lower is better. ``both-seeds`` scores the mean over both grid seeds instead, which
includes the seed the search chose on: it rewards a lucky draw, and it once made longer searches look
better than they are (judged on the other seed, the plain portfolio's regret *grows* from 5 to 20 TRE,
the winner's curse of choosing among more noisy losses). This is a *development* measure only: the
README table comes from real runs on the test fold, judged on held-out seeds (``compare.py``).

Anything learned from the grids (the portfolio) is judged by leave-fold-out here: ``--cv K`` splits the
development problems into K parts, learns the portfolio on K-1 and replays on the part left out.

    python benchmarks/simulate.py                     # the candidate strategies at budgets 1..20 on DEV
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, PROBLEMS  # noqa: E402
from grids import GRID_SEEDS, START, WINDOW, configs, load, lr_of  # noqa: E402

DIVERGED = 10.0  # the regret a diverging recommendation counts for (1000%) in development scores
Config = tuple[str, int]  # (optimizer, k): lr = 10 ** (k / 3)


@dataclass
class Grid:
    """One problem's grid as curves: (optimizer, k, seed) -> per-epoch val losses and outcome."""

    name: str
    epochs: int
    runs: dict[tuple[str, int, int], dict[str, Any]]
    means: dict[Config, float]  # mean final loss over both seeds (inf: diverged on one)
    best: float

    @classmethod
    def load(cls, name: str) -> "Grid":
        record = load(name)
        runs = {}
        for key, run in record["runs"].items():
            optimizer, k, seed = key.split("|")
            runs[(optimizer, int(k), int(seed))] = run
        means = {(c["optimizer"], c["k"]): c["mean"] for c in configs(record)}
        return cls(name, PROBLEMS[name].epochs, runs, means, min(means.values()))

    def regret(self, config: Config | None) -> float:
        if config is None or not math.isfinite(self.means.get(config, math.inf)):
            return DIVERGED
        return self.means[config] / self.best - 1.0

    def regret_on(self, config: Config | None, seed: int) -> float:
        """The regret of ``config``'s final loss on grid seed ``seed`` alone, against the best mean."""
        run = None if config is None else self.runs.get((config[0], config[1], seed))
        if run is None or run["outcome"] != "completed" or run["curve"][-1] is None:
            return DIVERGED
        return run["curve"][-1] / self.best - 1.0


@dataclass
class Search:
    """The state of one replayed search: what it trained, what it spent."""

    grid: Grid
    seed: int
    budget_epochs: float
    spent: float = 0.0
    finals: dict[Config, float] = field(default_factory=dict)  # completed runs: final loss on the search seed
    curves: dict[Config, list[float]] = field(default_factory=dict)

    @property
    def room(self) -> float:
        return self.budget_epochs - self.spent

    def train(self, config: Config, prune: Callable[[int, float], bool] | None = None,
              epochs: int | None = None) -> float | None:
        """Train ``config`` (at most ``epochs``, default all); returns its final loss if it completed."""
        if config in self.finals or config in self.curves:
            return self.finals.get(config)
        run = self.grid.runs.get((config[0], config[1], self.seed))
        if self.room < self.grid.epochs and self.finals:
            return None  # as in autoopt: a trial starts only while a whole run fits (or none completed yet)
        limit = epochs or self.grid.epochs
        if run is None:  # a rate the grid never trained: lower than any rate that learned, or past divergence
            self.spent += 1
            self.curves[config] = []
            return None
        curve = run["curve"]
        trained = []
        for epoch, loss in enumerate(curve[:limit], 1):
            trained.append(loss)
            if loss is None or (prune is not None and epoch < self.grid.epochs and prune(epoch, loss)):
                break
        self.spent += len(trained)
        self.curves[config] = trained
        if len(trained) == self.grid.epochs and run["outcome"] == "completed":
            self.finals[config] = trained[-1]
            return trained[-1]
        return None

    def best(self) -> Config | None:
        return min(self.finals, key=self.finals.get) if self.finals else None

    def smoothed_best(self, weight: float = 0.5, penalty: float = 3.0) -> Config | None:
        """As ``autoopt.recommendation.configs.smoothed_scores``: each final loss averaged with its trained lr
        neighbours' (a neighbour that did not complete counts ``penalty`` x the loss itself)."""
        def selection(config: Config) -> float:
            own = self.finals[config]
            values = [own] + [self.finals.get((config[0], config[1] + d), penalty * own)
                              for d in (-1, 1) if (config[0], config[1] + d) in self.curves]
            return (1 - weight) * own + weight * float(np.mean(values))

        return min(self.finals, key=selection) if self.finals else None


# --- strategies ------------------------------------------------------------------------------------

def percentile_pruner(search: Search, factor: float, warmup: int = 1) -> Callable[[int, float], bool]:
    """Stop a run whose loss at an epoch is over ``factor`` x the best completed run's loss there."""

    def prune(epoch: int, loss: float) -> bool:
        if epoch <= warmup or not search.finals:
            return False
        at = [c[epoch - 1] for cfg, c in search.curves.items() if cfg in search.finals]
        return loss > factor * min(at)

    return prune


def run_portfolio(grid: Grid, seed: int, budget: float, portfolio: Sequence[Config], *, prune_factor: float | None = None,
                  refine: str = "none", refine_after: int = 3, smooth: bool = False) -> tuple[Config | None, float]:
    """Train the portfolio's entries in order until the budget; optionally refine the lr around the best.

    refine: "none"; "line" (after ``refine_after`` entries, step the best configuration's lr by a third of
    a decade up and down, and keep stepping in a direction while it improves).
    """
    search = Search(grid, seed, budget * grid.epochs)
    prune = percentile_pruner(search, prune_factor) if prune_factor else None
    queue = list(portfolio)
    entries = 0
    while fits(search) and queue:
        search.train(queue.pop(0), prune)
        entries += 1
        if refine == "line" and entries >= refine_after:
            break
    if refine == "line":
        _line_search(search, prune)
        while fits(search) and queue:
            search.train(queue.pop(0), prune)
    return search.smoothed_best() if smooth else search.best(), search.spent / grid.epochs


def fits(search: Search) -> bool:
    return search.room >= search.grid.epochs or not search.finals


def _line_search(search: Search, prune: Callable[[int, float], bool] | None) -> None:
    """Around the best configuration, try lr one grid step up and down; go on while it improves.

    As autoopt's ``strategy._line_search``: steps stay inside the registry's lr range, and when a step
    becomes the new best, the search starts again around it.
    """
    tried_best: set[Config] = set()
    while fits(search):
        best = search.best()
        if best is None or best in tried_best:
            return
        tried_best.add(best)
        best_loss = search.finals[best]
        for step in (1, -1):
            k = best[1] + step
            while fits(search) and in_range((best[0], k)):
                if (best[0], k) not in search.curves:
                    search.train((best[0], k), prune)
                loss = search.finals.get((best[0], k))
                if loss is None or loss >= best_loss:
                    break
                best_loss = loss
                k += step


# --- the portfolio ---------------------------------------------------------------------------------

def in_range(config: Config) -> bool:
    """Whether the lr of ``config`` lies in its optimizer's registry range (what a study can train)."""
    from autoopt.optimizers.registry import get_spec

    dim = next(d for d in get_spec(config[0]).space if d.name == "lr")
    return dim.low * (1 - 1e-9) <= lr_of(config[1]) <= dim.high * (1 + 1e-9)


def candidate_configs() -> list[Config]:
    """Configurations every grid trained (each family's starting window) inside the registry's ranges."""
    return [(o, k) for o, start in START.items() for k in range(start, start + WINDOW) if in_range((o, k))]


def greedy_portfolio(grids: Sequence[Grid], size: int, cap: float = 1.0,
                     pool: Sequence[Config] | None = None) -> list[Config]:
    """Entries chosen one at a time to minimize the mean over ``grids`` of the best regret so far (capped),
    from ``pool`` (default: ``candidate_configs()``)."""
    pool = list(pool) if pool is not None else candidate_configs()
    chosen: list[Config] = []
    current = np.full(len(grids), cap)
    table = np.array([[min(g.regret(c), cap) for g in grids] for c in pool])
    for _ in range(size):
        scores = np.minimum(table, current).mean(axis=1)
        i = int(np.argmin(scores))
        chosen.append(pool[i])
        current = np.minimum(current, table[i])
    return chosen


def cv_folds(names: Sequence[str], k: int) -> list[list[str]]:
    """``k`` parts of ``names``, dealt in order of model kind so each part spans kinds."""
    ordered = sorted(names, key=lambda n: (PROBLEMS[n].kind, n))
    return [ordered[i::k] for i in range(k)]


def evaluate_strategy(strategy: Callable[[Grid, int, float, list[Config]], tuple[Config | None, float]],
                      grids: dict[str, Grid], budgets: Sequence[float], cv: int, size: int = 27,
                      score: str = "other-seed") -> dict[float, dict[str, Any]]:
    """Mean regret over problems and seeds at each budget, the portfolio learned leave-fold-out."""
    out: dict[float, dict[str, Any]] = {}
    folds = cv_folds(list(grids), cv)
    for budget in budgets:
        regrets, costs, per = [], [], {}
        for part in folds:
            train = [grids[n] for n in grids if n not in part]
            portfolio = greedy_portfolio(train, size)
            for name in part:
                for seed in GRID_SEEDS:
                    rec, cost = strategy(grids[name], seed, budget, portfolio)
                    r = (grids[name].regret_on(rec, 1 - seed) if score == "other-seed" else grids[name].regret(rec))
                    regrets.append(r)
                    costs.append(cost)
                    per.setdefault(name, []).append(r)
        out[budget] = {"mean": float(np.mean(regrets)), "worst": float(max(np.mean(v) for v in per.values())),
                       "over5": sum(np.mean(v) > 0.05 for v in per.values()), "cost": float(np.mean(costs)),
                       "per": {n: float(np.mean(v)) for n, v in per.items()}}
    return out


STRATEGIES: dict[str, Callable[..., tuple[Config | None, float]]] = {
    "portfolio": lambda g, s, b, p: run_portfolio(g, s, b, p),
    "portfolio+prune2": lambda g, s, b, p: run_portfolio(g, s, b, p, prune_factor=2.0),
    "portfolio+prune1.3": lambda g, s, b, p: run_portfolio(g, s, b, p, prune_factor=1.3),
    "portfolio+line": lambda g, s, b, p: run_portfolio(g, s, b, p, refine="line"),
    "portfolio+line2": lambda g, s, b, p: run_portfolio(g, s, b, p, refine="line", refine_after=2),
    "portfolio+prune1.3+line": lambda g, s, b, p: run_portfolio(g, s, b, p, prune_factor=1.3, refine="line"),
    "portfolio+prune2+line": lambda g, s, b, p: run_portfolio(g, s, b, p, prune_factor=2.0, refine="line"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    parser.add_argument("--budgets", nargs="*", type=float, default=[1, 2, 3, 5, 10, 20])
    parser.add_argument("--cv", type=int, default=4)
    parser.add_argument("--per-problem", action="store_true")
    parser.add_argument("--score", choices=("other-seed", "both-seeds"), default="other-seed")
    args = parser.parse_args(argv)
    grids = {n: Grid.load(n) for n in DEV if len(load(n)["runs"]) >= 2 * WINDOW * len(START)}
    print(f"{len(grids)} development problems with grids; portfolio learned {args.cv}-fold leave-fold-out; "
          f"scored on {'the grid seed the search did not see' if args.score == 'other-seed' else 'both grid seeds'}")
    print(f"{'strategy':<28}" + "".join(f"  B={b:<5g} mean/worst/>5%/cost" for b in args.budgets))
    for name in args.strategies:
        result = evaluate_strategy(STRATEGIES[name], grids, args.budgets, args.cv, score=args.score)
        cells = "".join(f"  {r['mean']:6.1%} {r['worst']:6.0%} {r['over5']:2d} {r['cost']:4.1f}"
                        for r in result.values())
        print(f"{name:<28}{cells}")
        if args.per_problem:
            for problem in grids:
                print("   ", f"{problem:<22}", " ".join(f"{result[b]['per'][problem]:7.1%}" for b in args.budgets))
    return 0



def sh_cost(n: int, epochs: int, eta: int) -> tuple[list[int], list[int], float]:
    """Rung sizes, rung epochs and total epochs of successive halving: autoopt's own plan."""
    from autoopt.search.race import race_plan

    return race_plan(n, epochs, rate=eta)


def run_halving(grid: Grid, seed: int, budget: float, portfolio: Sequence[Config], *, eta: int = 3,
                line: bool = True, max_n: int = 27) -> tuple[Config | None, float]:
    """Successive halving with continuation over the first n portfolio entries (n as large as the budget
    allows), then, with what is left, a full-fidelity lr line search around the winner."""
    search = Search(grid, seed, budget * grid.epochs)
    n = 1
    while n + 1 <= min(max_n, len(portfolio)) and sh_cost(n + 1, grid.epochs, eta)[2] <= budget * grid.epochs:
        n += 1
    sizes, rungs, _ = sh_cost(n, grid.epochs, eta)
    alive = list(portfolio[:n])
    for size, rung in zip(sizes, rungs):
        alive = alive[:size]
        scores = []
        for config in alive:
            run = grid.runs.get((config[0], config[1], seed))
            curve = run["curve"] if run else [None]
            upto = curve[:rung]
            prev = search.curves.get(config, [])
            search.spent += len(upto) - len(prev) if len(upto) >= len(prev) else 0
            search.curves[config] = upto
            last = upto[-1] if upto and len(upto) == min(rung, len(curve)) else None
            scores.append((last if last is not None and len(upto) == rung else math.inf, config))
        scores.sort(key=lambda item: item[0])
        alive = [c for s, c in scores if math.isfinite(s)] or [scores[0][1]]
    for config in alive[:1]:
        run = grid.runs.get((config[0], config[1], seed))
        if run and run["outcome"] == "completed" and len(search.curves[config]) == grid.epochs:
            search.finals[config] = run["curve"][-1]
    if line:
        _line_search(search, None)
    return search.best(), search.spent / grid.epochs


STRATEGIES.update({
    "halving3": lambda g, s, b, p: run_halving(g, s, b, p, line=False),
    "halving3+line": lambda g, s, b, p: run_halving(g, s, b, p),
    "halving2+line": lambda g, s, b, p: run_halving(g, s, b, p, eta=2),
    "halving4+line": lambda g, s, b, p: run_halving(g, s, b, p, eta=4),
})



def asha_pruner(search: Search, eta: int = 3, min_epochs: int = 1) -> Callable[[int, float], bool]:
    """Optuna's SuccessiveHalvingPruner, replayed: at rungs min_epochs * eta**i, a run goes on only while
    it is in the top 1/eta of every run that reached that rung (itself included)."""
    rungs = set()
    r = min_epochs
    while r < search.grid.epochs:
        rungs.add(r)
        r *= eta

    def prune(epoch: int, loss: float) -> bool:
        if epoch not in rungs:
            return False
        competing = sorted([c[epoch - 1] for c in search.curves.values() if len(c) >= epoch and c[epoch - 1] is not None]
                           + [loss])
        keep = max(1, len(competing) // eta)
        return loss > competing[keep - 1]

    return prune


def run_portfolio_asha(grid: Grid, seed: int, budget: float, portfolio: Sequence[Config], *, eta: int = 3,
                       min_fraction: float = 0.1, refine_after: int | None = None) -> tuple[Config | None, float]:
    search = Search(grid, seed, budget * grid.epochs)
    prune = asha_pruner(search, eta, max(1, round(grid.epochs * min_fraction)))
    queue = list(portfolio)
    entries = 0
    while fits(search) and queue:
        search.train(queue.pop(0), prune)
        entries += 1
        if refine_after is not None and entries >= refine_after:
            _line_search(search, prune)
            refine_after = None
    return search.best(), search.spent / grid.epochs


STRATEGIES.update({
    "asha3": lambda g, s, b, p: run_portfolio_asha(g, s, b, p),
    "asha3+line5": lambda g, s, b, p: run_portfolio_asha(g, s, b, p, refine_after=5),
    "asha3+line8": lambda g, s, b, p: run_portfolio_asha(g, s, b, p, refine_after=8),
    "asha2": lambda g, s, b, p: run_portfolio_asha(g, s, b, p, eta=2),
    "asha3_r.2": lambda g, s, b, p: run_portfolio_asha(g, s, b, p, min_fraction=0.2),
    "asha4": lambda g, s, b, p: run_portfolio_asha(g, s, b, p, eta=4),
})



def run_oracle(grid: Grid, seed: int, budget: float, portfolio: Sequence[Config]) -> tuple[Config | None, float]:
    """A bound, not a strategy: the first floor(budget) entries, the truly best of them (grid means)."""
    first = list(portfolio[:max(1, int(budget))])
    return min(first, key=grid.regret), float(len(first))


STRATEGIES.update({
    "oracle": run_oracle,
    "portfolio+line8": lambda g, s, b, p: run_portfolio(g, s, b, p, refine="line", refine_after=8),
    "portfolio+line12": lambda g, s, b, p: run_portfolio(g, s, b, p, refine="line", refine_after=12),
    # autoopt's default from 3 TRE: the recommendation compares losses smoothed over lr neighbours
    "portfolio+line8+smooth": lambda g, s, b, p: run_portfolio(g, s, b, p, refine="line", refine_after=8, smooth=True),
})


if __name__ == "__main__":
    raise SystemExit(main())
