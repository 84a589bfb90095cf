"""What charging Muon's CPU time would cost in regret: the trade-off behind wall-TRE on this machine.

On CPU, torch's Muon runs its Newton-Schulz iterations in bfloat16, which this machine computes about
50x slower than float32 (a 32x32 matmul: ~140 us against ~2.7 us), so a Muon epoch costs 3-9 bare
epochs on the corpus's MLPs (about 1 on its CNNs and GRUs, where the data's compute dominates). The
portfolio puts Muon first because it is best per *epoch*; a study charged per *wall second* would see
it differently. This replays three policies on the development grids (``simulate.py``'s replay, the
portfolio learned leave-fold-out, scored on the unseen grid seed), with each problem's Muon cost ratio
taken from its grid runs' seconds (median Muon run / median SGD run; other families count 1):

- ``as autoopt``: the first min(B, 8) portfolio entries run at once, charges apply afterwards (what a
  study does today: the epoch budget holds, the charged budget is overrun);
- ``charged``: entries one at a time, stopping once the charged budget is spent;
- ``muon-free``: where Muon is costly (ratio > 2), a portfolio learned without Muon.

    python benchmarks/costly_muon.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV  # noqa: E402
from grids import GRID_SEEDS  # noqa: E402
from simulate import Grid, Search, _line_search, candidate_configs, cv_folds, greedy_portfolio  # noqa: E402

COSTLY = 2.0  # as autoopt.search.COSTLY: epochs over this many bare epochs are charged by time


def muon_ratio(grid: Grid) -> float:
    """Median seconds of the grid's completed Muon runs over its SGD runs'."""
    seconds: dict[str, list[float]] = {}
    for (optimizer, _, _), run in grid.runs.items():
        if run.get("seconds") and run["outcome"] == "completed" and run["epochs"] == grid.epochs:
            seconds.setdefault(optimizer, []).append(run["seconds"])
    return float(np.median(seconds["muon"]) / np.median(seconds["sgd"]))


def charge(ratio: float, config: tuple[str, int]) -> float:
    return ratio if config[0] == "muon" and ratio > COSTLY else 1.0


def replay(grid: Grid, seed: int, budget: float, portfolio: list, ratio: float, mode: str) -> tuple[Any, float]:
    """One search; returns (recommendation, charged TRE spent)."""
    search, charged, queue, entries = Search(grid, seed, 1e9), 0.0, list(portfolio), 0
    if mode == "as autoopt":
        for config in queue[:min(8, int(budget))]:
            search.train(config)
            charged += charge(ratio, config)
        entries, queue = min(8, int(budget)), queue[min(8, int(budget)):]
    while queue and entries < 8 and (budget - charged >= 1 - 1e-9 or not search.finals):
        config = queue.pop(0)
        search.train(config)
        charged += charge(ratio, config)
        entries += 1
    search.budget_epochs = search.spent + max(0.0, budget - charged) * grid.epochs
    before = search.spent
    _line_search(search, None)
    while queue and search.room >= grid.epochs:
        search.train(queue.pop(0))
    charged += (search.spent - before) / grid.epochs
    return search.smoothed_best(), charged


def main() -> int:
    grids = {n: Grid.load(n) for n in DEV}
    ratios = {n: muon_ratio(g) for n, g in grids.items()}
    print(f"{len(grids)} dev problems; Muon cost ratio per problem: median {np.median(list(ratios.values())):.1f}, "
          f"costly (> {COSTLY:g}) on {sum(r > COSTLY for r in ratios.values())}")
    print(f"{'policy':<12}" + "".join(f"  B={b:<3g} regret / charged TRE" for b in (1, 3, 5, 10)))
    pool = candidate_configs()
    for mode in ("as autoopt", "charged", "muon-free"):
        cells = []
        for budget in (1, 3, 5, 10):
            regrets, costs = [], []
            for part in cv_folds(list(grids), 4):
                train = [grids[n] for n in grids if n not in part]
                portfolio = greedy_portfolio(train, 27)
                without = greedy_portfolio(train, 27, pool=[c for c in pool if c[0] != "muon"])
                for name in part:
                    use = without if mode == "muon-free" and ratios[name] > COSTLY else portfolio
                    for seed in GRID_SEEDS:
                        rec, cost = replay(grids[name], seed, budget, use, ratios[name],
                                           "charged" if mode == "muon-free" else mode)
                        regrets.append(grids[name].regret_on(rec, 1 - seed))
                        costs.append(cost)
            cells.append(f"  {np.mean(regrets):6.1%} / {np.mean(costs):5.1f}      ")
        print(f"{mode:<12}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
