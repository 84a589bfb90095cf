"""Four more ways to spend a small budget, replayed on the development fold against the shipped strategy
(issue 20; measured 2026-12-03, none shipped):

1. **A race ranked toward lower rates** (1 and 2 TRE): at every rung before the last, a member's loss
   is scored as log(loss) + lam x (its rate's grid step - its family's median best step on the
   training folds), so that a fast, high rate must lead by more to go on (the short-horizon bias
   measured in ``early_budget.py`` favours high rates).
2. **The race's keep rate** (1, 1.25, 1.5 and 1.75 TRE): the best half, third or quarter going on at
   each rung, against the shipped one (``search/race.py``'s ``race_rate``: a half from 1.5 TRE, decided
   here, a third below).
3. **A race, then the line search** (3, 4 and 5 TRE): a race over part of the budget (successive
   halving, or the short race from a 1-epoch rung), then 0 or 1 portfolio entries and the learning-rate
   line search around the best with the rest, instead of the entries trained to the end.
4. **The first three entries chosen jointly** (3, 5 and 10 TRE): the portfolio's first three, learned on
   the training folds, are the triple (searched exhaustively) with the lowest mean best-of-three regret
   (``oracle``), or with the lowest regret of the one of the three whose final loss is lowest on one grid
   seed, scored on the other (``by one seed``), instead of three entries chosen one at a time
   (``simulate.greedy_portfolio``); the rest of the list follows as before.

Scored as ``first_answers.py`` scores (the choice's final loss on the other grid seed), lists learned
leave-fold-out, averaged over the splits given (each split's mean shown after the row).

    python benchmarks/small_budget_variants.py                 # about a minute
    python benchmarks/small_budget_variants.py --cvs 3 5 11    # other splits
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import first_answers as fa  # noqa: E402
from corpus import DEV  # noqa: E402
from early_budget import CAP, HEADER, Context, Replay, choose, contexts, evaluate, load_grids, pool_of, row  # noqa: E402
from simulate import Config, Grid, candidate_configs  # noqa: E402


def family_median_step(ctx: Context) -> dict[str, float]:
    """Per family, the median grid step of its best rate over the training folds' grids."""
    def make() -> dict[str, float]:
        steps: dict[str, list[int]] = {}
        for grid in ctx.train:
            for family in {c[0] for c in grid.means}:
                finite = {c: v for c, v in grid.means.items() if c[0] == family and math.isfinite(v)}
                if finite:
                    steps.setdefault(family, []).append(min(finite, key=finite.get)[1])
        return {f: float(np.median(v)) for f, v in steps.items()}

    return ctx.get(("family_median_step",), make)


def tilted(grid: Grid, seed: int, budget: float, ctx: Context, lam: float) -> tuple[Config | None, float]:
    """The shipped study, its race ranked by log(loss) + lam x (step - the family's median best step)."""
    median = family_median_step(ctx)
    plain = Replay.advance

    def advance(rep: Replay, c: Config, e: int) -> float:
        v = plain(rep, c, e)
        if e < rep.E and math.isfinite(v) and v > 0:  # a rung of the race; full runs are not ranked here
            return math.exp(math.log(v) + lam * (c[1] - median.get(c[0], c[1])))
        return v

    Replay.advance = advance
    try:
        chosen, rep = fa.replay_study(grid, seed, budget, ctx, **fa.autoopt_settings(budget))
    finally:
        Replay.advance = plain
    return chosen, rep.tre()


def kept_rate(grid: Grid, seed: int, budget: float, ctx: Context, rate: int) -> tuple[Config | None, float]:
    """The shipped study with 1/``rate`` of the race going on at each rung."""
    return fa.study(grid, seed, budget, ctx, **{**fa.autoopt_settings(budget), "rate": rate})


def race_then_line(grid: Grid, seed: int, budget: float, ctx: Context, race_tre: float, rung: int | None,
                   entries: int) -> tuple[Config | None, float]:
    """A race over ``race_tre`` TRE of the portfolio, then ``entries`` entries and the line search."""
    rep = Replay(grid, seed, budget)
    fa.race(rep, pool_of("portfolio", grid, ctx, rung or 1), race_tre * grid.epochs, rung)
    fa._portfolio_and_line_search(rep, pool_of("portfolio", grid, ctx, 1), entries, 1)
    scores = fa.shrunk(rep)
    return fa.steadied(rep, "smooth", scores, choose(rep, "smooth", finals=scores)), rep.tre()


def joint_triple(train: list[Grid], objective: str) -> list[Config]:
    """The three candidate configurations best together on ``train`` (exhaustively over triples):
    ``oracle``, the lowest mean of the best regret of the three; ``by one seed``, the lowest mean regret
    on the other grid seed of the one whose final loss is lowest on a grid seed."""
    pool = candidate_configs()
    n = len(pool)
    if objective == "oracle":
        R = np.array([[min(g.regret(c), CAP) for g in train] for c in pool])
        best = (math.inf, (0, 1, 2))
        for a in range(n):
            for b in range(a + 1, n - 1):
                totals = np.minimum(np.minimum(R[a], R[b])[None, :], R[b + 1:]).mean(axis=1)
                i = int(np.argmin(totals))
                best = min(best, (float(totals[i]), (a, b, b + 1 + i)))
        return [pool[i] for i in best[1]]
    L = np.full((2, n, len(train)), np.inf)  # final loss on grid seed s (inf: diverged)
    G = np.full((2, n, len(train)), CAP)  # regret on the other seed
    for ci, c in enumerate(pool):
        for pi, g in enumerate(train):
            for s in (0, 1):
                run = g.runs.get((c[0], c[1], s))
                if run and run["outcome"] == "completed" and run["curve"][-1] is not None:
                    L[s, ci, pi] = run["curve"][-1]
                G[s, ci, pi] = min(g.regret_on(c, 1 - s), CAP)
    best = (math.inf, (0, 1, 2))
    for a in range(n):
        for b in range(a + 1, n - 1):
            low = np.minimum(L[:, a], L[:, b])
            chosen = np.where(L[:, a] <= L[:, b], G[:, a], G[:, b])
            totals = np.where(L[:, b + 1:] < low[:, None, :], G[:, b + 1:], chosen[:, None, :]).mean(axis=(0, 2))
            i = int(np.argmin(totals))
            best = min(best, (float(totals[i]), (a, b, b + 1 + i)))
    return [pool[i] for i in best[1]]


def with_joint_triple(objective: str) -> Callable[[Grid, int, float, Context], tuple[Config | None, float]]:
    """The shipped study on a portfolio whose first three entries are ``joint_triple``'s."""
    def strategy(grid: Grid, seed: int, budget: float, ctx: Context) -> tuple[Config | None, float]:
        def make() -> Context:
            triple = joint_triple(ctx.train, objective)
            return Context(ctx.train, triple + [c for c in ctx.portfolio if c not in triple])
        return fa.study(grid, seed, budget, ctx.get(("joint_triple", objective), make), **fa.autoopt_settings(budget))

    return strategy


Strategy = Callable[[Grid, int, float, Context], tuple[Config | None, float]]


def variants(budget: float) -> list[tuple[str, Strategy]]:
    out: list[tuple[str, Strategy]] = []
    if budget < 3:
        out += [(f"race ranked toward lower rates, lam {lam}", lambda g, s, b, c, lam=lam: tilted(g, s, b, c, lam))
                for lam in (0.03, 0.06, 0.1, 0.15)]
    if budget < 2:
        out += [(f"race keeps 1/{rate} at each rung", lambda g, s, b, c, rate=rate: kept_rate(g, s, b, c, rate))
                for rate in (2, 3, 4) if rate != fa.autoopt_settings(budget)["rate"]]
    if budget >= 3:
        for race_tre in (1.25, 1.5, 2.0, 2.5):
            for rung in (None, 1):
                for entries in (0, 1):
                    if race_tre <= budget - 1 + 1e-9:
                        out.append((f"race {race_tre:g} TRE ({'halving' if rung is None else 'rung 1'}), {entries} entries, line",
                                    lambda g, s, b, c, r=race_tre, u=rung, e=entries: race_then_line(g, s, b, c, r, u, e)))
    if budget in (3, 5, 10):
        out += [(f"first three entries chosen jointly, {objective}", with_joint_triple(objective))
                for objective in ("oracle", "by one seed")]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cvs", nargs="*", type=int, default=[4, 6, 8])
    parser.add_argument("--budgets", nargs="*", type=float, default=[1, 1.25, 1.5, 1.75, 2, 3, 4, 5, 10])
    args = parser.parse_args(argv)
    grids = load_grids(list(DEV))
    ctxs = {cv: contexts(grids, cv) for cv in args.cvs}
    print(f"{len(grids)} development problems; scored at cv = {args.cvs}, averaged (then each split's mean)")

    def cell(strategy: Strategy, budget: float) -> tuple[dict[str, Any], str]:
        cells = [evaluate(strategy, grids, ctx, budget) for ctx in ctxs.values()]
        avg = {k: float(np.mean([c[k] for c in cells])) for k in ("mean", "capped", "worst", "tre", "median")}
        per = {n: float(np.mean([c["per"][n] for c in cells])) for n in cells[0]["per"]}
        return {**cells[0], **avg, "per": per}, " ".join(f"{c['mean']:.1%}" for c in cells)

    for budget in args.budgets:
        base, splits = cell(lambda g, s, b, c: fa.study(g, s, b, c, **fa.autoopt_settings(b)), budget)
        print(f"\nbudget {budget:g} TRE{HEADER[2 + 52:]}")
        print(row("shipped", base, base), splits)
        for name, strategy in variants(budget):
            r, splits = cell(strategy, budget)
            print(row(name, r, base), splits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
