"""The strategy a study follows, replayed on the development fold's grids, to choose its settings.

``early_budget.py`` measured mechanisms one by one; this replays the whole strategy as autoopt runs it
(``autoopt/search/strategy.py``), with the settings still to choose, at every budget from 1 to 20 TRE:

1. below ``race_below`` TRE, a race: the first entries of ``pool`` (the probe list, learned for races,
   or the portfolio) trained ``first_rung`` epochs, the best third going on at each rung, the winner to
   the end; where the budget buys no race, one spending up to ``allowance`` of a run more than the budget
   (a study always trains one run to the end; the race that chooses it may cost a little more);
2. the portfolio's entries trained to the end while a whole run fits (a configuration already trained is
   not trained again), ``refine_after`` of them before a learning-rate line search that steps
   ``line_first`` (up or down) first;
3. the recommendation: the lowest loss averaged with its learning-rate neighbours' (autoopt's rule).

Scored as ``early_budget.py`` scores (the choice's final loss on the grid seed the search did not train
on, against the grid's best 2-seed mean; diverged 1000%), every list learned leave-fold-out, at several
splits. The settings that win on the development fold are the ones autoopt ships.

    python benchmarks/first_answers.py                 # the development fold, seconds
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV  # noqa: E402
from early_budget import HEADER, Context, Replay, choose, contexts, evaluate, load_grids, plan, pool_of, row  # noqa: E402
from simulate import Config, Grid, in_range  # noqa: E402

RATE = 3
RACE_MAX = 27


def study(grid: Grid, seed: int, budget: float, ctx: Context, **settings: Any) -> tuple[Config | None, float]:
    """One study on ``grid`` from grid seed ``seed``, as autoopt runs it with these settings
    (``replay_study``'s); the recommendation and what it cost in TRE."""
    chosen, rep = replay_study(grid, seed, budget, ctx, **settings)
    return chosen, rep.tre()


def replay_study(grid: Grid, seed: int, budget: float, ctx: Context, *, race_below: float = 3.0,
                 pool: str = "portfolio", first_rung: int | None = None, allowance: float = 0.0,
                 refine_after: int | None = 8, line_first: int = 1, rule: str = "smooth", shade: bool = False,
                 shrink: bool = False, entries: str = "portfolio", steady: bool = False,
                 rate: int = RATE) -> tuple[Config | None, Replay]:
    """One study, as ``study``, with its replay (what it trained, how far) beside the recommendation.
    ``shade``: a race winner whose curve turned up is recommended a step lower
    (``recommendation/shading.py``); ``shrink``: the losses chosen by are shrunk by their curves' noise
    (``recommendation/shrinkage.py``); ``entries``: the list trained to the end (a pool of ``pool_of``'s:
    "portfolio", or one looked up by what the model shows before training); ``steady``: an erratic winner
    gives way to the next choice whose expected loss is lower (``recommendation/steadiness.py``);
    ``refine_after``: the entries before the line search, None for autoopt's rule by budget
    (``search/strategy.py``'s ``entries_before_line_search``); ``rate``: 1 / ``rate`` of the race goes on at
    each rung (``search/race.py``'s ``race_rate``)."""
    E = grid.epochs
    rep = Replay(grid, seed, budget)
    raced = False
    if budget < race_below:
        racers = pool_of(pool, grid, ctx, first_rung or 1)
        raced = race(rep, racers, max(rep.budget_epochs, (1 + allowance) * E), first_rung, rate)
    if refine_after is None:
        from autoopt.search.strategy import entries_before_line_search

        refine_after = entries_before_line_search(budget)
    _portfolio_and_line_search(rep, pool_of(entries, grid, ctx, 1), refine_after, line_first)
    scores = shrunk(rep) if shrink else rep.finals()
    chosen = choose(rep, rule, finals=scores)
    if steady:
        chosen = steadied(rep, rule, scores, chosen)
    if shade and raced and chosen is not None and len(rep.finals()) == 1:  # the race's winner, its only full run
        chosen = shaded(grid, seed, chosen)
    return chosen, rep


def race(rep: Replay, racers: Sequence[Config], room: float, first_rung: int | None, rate: int = RATE) -> bool:
    """autoopt's race (``search/race.py``) in ``rep``: as many of ``racers`` (at most ``RACE_MAX``) as fit
    in ``room`` epochs, from a ``first_rung``-epoch rung (None: successive halving), the best 1 / ``rate``
    going on at each rung; False where not even two fit (nothing is trained)."""
    E = rep.E
    racers = list(racers)[:RACE_MAX]

    def race_plan(n: int) -> tuple[list[int], list[int], int]:
        return plan(n, E, first_rung, rate) if first_rung else _halving(n, E, rate)

    n = 1
    while n < len(racers) and race_plan(n + 1)[2] <= room + 1e-9:
        n += 1
    if n < 2:
        return False
    sizes, rungs, _ = race_plan(n)
    alive = racers[:n]
    for size, epoch in zip(sizes, rungs):
        scored = sorted(((rep.advance(c, epoch), j, c) for j, c in enumerate(alive[:size])), key=lambda t: (t[0], t[1]))
        alive = [c for _, _, c in scored]
    return True


def shaded(grid: Grid, seed: int, config: Config) -> Config:
    """autoopt's shading: one grid step (the line search's) lower when the run's curve turned up."""
    from autoopt.recommendation.shading import shade_lr

    run = grid.runs.get((config[0], config[1], seed))
    lower = (config[0], config[1] - 1)
    if run is None or None in run["curve"] or not shade_lr(run["curve"]) or not in_range(lower):
        return config
    return lower


def steadied(rep: Replay, rule: str, scores: dict[Config, float], chosen: Config | None) -> Config | None:
    """autoopt's steadiness rule: a winner with no trained rate neighbour whose curve is erratic gives
    way to the next configuration in the choice's order whose last epochs' mean is lower."""
    from autoopt.recommendation.expected_loss import expected_final_loss
    from autoopt.recommendation.steadiness import is_erratic

    def tail(c: Config) -> float:
        return expected_final_loss([rep.run(c)["curve"][:rep.E]])

    if chosen is None or any((chosen[0], chosen[1] + d) in rep.done for d in (-1, 1)):
        return chosen
    curve = rep.run(chosen)["curve"][:rep.E]
    if not is_erratic(curve):
        return chosen
    left = {c: v for c, v in scores.items() if c != chosen}
    while left:
        nxt = choose(rep, rule, finals=left)
        if tail(nxt) < tail(chosen):
            return nxt
        del left[nxt]
    return chosen


def shrunk(rep: Replay) -> dict[Config, float]:
    """autoopt's shrinkage: each final loss pulled toward the others' mean by its own curve's noise."""
    from autoopt.recommendation.shrinkage import curve_noise, shrunk_scores

    finals = rep.finals()
    noise = {c: n for c in finals if (n := curve_noise(rep.run(c)["curve"][:rep.E])) is not None}
    configs = [c for c in finals if c in noise and finals[c] > 0]
    return {**finals, **dict(zip(configs, shrunk_scores([finals[c] for c in configs],
                                                         [noise[c] ** 2 for c in configs])))}


def _halving(n: int, epochs: int, rate: int = RATE) -> tuple[list[int], list[int], int]:
    """autoopt's race with no first rung: successive halving's rungs (``race.race_plan``)."""
    from autoopt.search.race import race_plan

    return race_plan(n, epochs, None, rate)


def _fits(rep: Replay) -> bool:
    return rep.room >= rep.E or not rep.finals()


def _portfolio_and_line_search(rep: Replay, portfolio: Sequence[Config], refine_after: int, line_first: int) -> None:
    queue = [c for c in portfolio if c not in rep.done]
    entries = 0
    while _fits(rep) and queue and entries < refine_after:
        rep.advance(queue.pop(0), rep.E)
        entries += 1
    _line_search(rep, line_first)
    while _fits(rep) and queue:
        c = queue.pop(0)
        if c not in rep.done:
            rep.advance(c, rep.E)


def _line_search(rep: Replay, first: int) -> None:
    """autoopt's line search (``search/line_search.py``): around the best configuration so far, a grid step
    in direction ``first``, then the other, on while it improves; again around a new best."""
    tried: set[Config] = set()
    while _fits(rep):
        finals = rep.finals()
        if not finals:
            return
        best = min(finals, key=finals.get)
        if best in tried:
            return
        tried.add(best)
        best_loss = finals[best]
        for step in (first, -first):
            k = best[1] + step
            while _fits(rep) and in_range((best[0], k)):
                if (best[0], k) not in rep.done:
                    rep.advance((best[0], k), rep.E)
                loss = rep.final((best[0], k))
                if loss is None or loss >= best_loss:
                    break
                best_loss = loss
                k += step


TODAY = {"race_below": 3.0, "pool": "portfolio", "first_rung": None, "allowance": 0.0, "line_first": 1}
#: What autoopt ships below 2 TRE (``search/race.py``'s ``SHORT_BELOW``): the short race from a 1-epoch
#: rung, a pretrained model's own list, a quarter run more; from 2 to 3 TRE it races as ``TODAY``.
SHIPPED = {"race_below": 3.0, "pool": "pretrained", "first_rung": 1, "allowance": 0.25, "line_first": 1}


def autoopt_settings(budget: float) -> dict[str, Any]:
    """What autoopt runs at ``budget`` TRE: below 2 TRE the short race (``SHIPPED``), from 2 to 3
    successive halving over the general list (``TODAY``'s race), from 3 no race (the race's settings do
    nothing there), keeping 1 / ``race_rate(budget)`` of the race at each rung; the shading of an
    overfitting race winner, the noise-aware choice and the steadiness rule at every budget (each acts
    only where it applies), and the line search's start by budget.

    >>> autoopt_settings(1)["first_rung"], autoopt_settings(2)["first_rung"], autoopt_settings(1.5)["rate"]
    (1, None, 2)
    """
    from autoopt.search.race import SHORT_BELOW, race_rate

    race = SHIPPED if budget < SHORT_BELOW else TODAY
    return {**race, "shade": True, "shrink": True, "steady": True, "refine_after": None, "rate": race_rate(budget)}


CHOICES = {"pool": ("probe", "portfolio", "pretrained"), "first_rung": (1, 2), "allowance": (0.0, 0.25, 0.5), "race_below": (3, 4, 6),
           "line_first": (1, -1)}


def variants() -> list[dict[str, Any]]:
    out = [dict(TODAY), {**TODAY, "shade": True}, {**SHIPPED, "shade": True},
           {**TODAY, "shrink": True}, {**TODAY, "shade": True, "shrink": True},
           {**SHIPPED, "shade": True, "shrink": True}, {**TODAY, "shrink": True, "steady": True},
           {**TODAY, "shrink": True, "steady": True, "refine_after": None}]
    # looking before spending on the runs trained to the end too: entries learned with the problem's own
    # task weighted (measured, not shipped: see benchmarks/README.md)
    out += [{**TODAY, "shrink": True, "entries": f"task{w}"} for w in (2, 3)]
    for pool, rung, floor, below, first in itertools.product(*CHOICES.values()):
        out.append({"pool": pool, "first_rung": rung, "allowance": floor, "race_below": below, "line_first": first})
    return out


def label(v: dict[str, Any]) -> str:
    if v == TODAY:
        return "today (autoopt as it was)"
    if "refine_after" in v:
        return label({k: x for k, x in v.items() if k != "refine_after"}) + (
            ", line search last 2" if v["refine_after"] is None else f", line search after {v['refine_after']}")
    if v.get("entries", "portfolio") != "portfolio":
        return label({k: x for k, x in v.items() if k != "entries"}) + f", entries {v['entries']}"
    for key, word in (("steady", "steadied"), ("shrink", "shrunk"), ("shade", "shaded")):  # the choice's rules, named after the search's
        if v.get(key):
            rest = {k: x for k, x in v.items() if k != key}
            return ("today" if rest == TODAY else label(rest)) + f", {word}"
    return (f"race<{v['race_below']:g} {v['pool']:<9} rung {v['first_rung']} +{v['allowance']:.2f} "
            f"line {'down' if v['line_first'] < 0 else 'up'} first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="*", default=list(DEV))
    parser.add_argument("--budgets", nargs="*", type=float, default=[1, 2, 3, 5, 10, 20])
    parser.add_argument("--cvs", nargs="*", type=int, default=[4, 6, 8])
    parser.add_argument("--top", type=int, default=12, help="rows shown per budget, best first")
    args = parser.parse_args(argv)
    grids = load_grids(args.problems)
    print(f"{len(grids)} development problems with grids; settings scored at cv = {args.cvs}, averaged")
    ctxs = {cv: contexts(grids, cv) for cv in args.cvs}
    results: dict[float, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for budget in args.budgets:
        rows = []
        for v in variants():
            search = {k: x for k, x in v.items() if k not in ("shade", "shrink", "entries", "steady", "refine_after")}
            if budget >= v["race_below"] and (v.get("shade") or search != TODAY and (
                    v["pool"], v["first_rung"], v["allowance"]) != ("probe", 1, 0.0)):
                continue  # no race at this budget: the settings of the race (and its shading) do not matter
            if budget < 5 and v["line_first"] < 0:
                continue  # no line search below 5 runs: its direction does not matter
            cells = [evaluate(lambda g, s, b, c, v=v: study(g, s, b, c, **v), grids, ctx, budget) for ctx in ctxs.values()]
            avg = {k: float(np.mean([c[k] for c in cells])) for k in ("mean", "capped", "worst", "tre", "median")}
            rows.append((label(v), v, {**cells[0], **avg, "per": {n: float(np.mean([c["per"][n] for c in cells]))
                                                                  for n in cells[0]["per"]}}))
        rows.sort(key=lambda r: r[2]["mean"])
        base = next(r for r in rows if r[1] == TODAY)[2]
        print(f"\nbudget {budget:g} TRE (mean over splits){HEADER[2 + 52:]}")
        for name, _, r in rows[:args.top]:
            print(row(name, r, base))
        print(row(label(TODAY), base, base))
        results[budget] = rows
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
