"""Small budgets (1, 2, 3, 5 TRE), replayed exactly on the cached grids: which mechanisms give good answers.

Every strategy here trains only grid configurations on a grid seed, so it replays exactly from the
cached per-epoch validation curves (``results/corpus/<problem>.json``): a run stopped after ``e`` epochs
spent ``e`` epochs and saw the curve's first ``e`` values; a run continued later picks up where it
stopped (the same initial weights and data order), so no epoch is ever trained twice. A run that
diverged costs the epochs up to its divergence, and its loss from there on is infinite.

The score (as ``simulate.py --score other-seed``): the chosen configuration's final loss on the grid
seed the search did not train on, against the grid's best 2-seed mean (``Grid.regret_on``; a diverged
or missing choice counts ``DIVERGED`` = 1000%), over the problems x the 2 grid seeds. Reported: the
mean, the median and the worst of the per-problem means (mean over the 2 seeds), how many problems are
over 100%, and the mean spent TRE (epochs / epochs of one run). Anything learned from the grids (a
portfolio, a per-kind first configuration, a learning-rate shift, a fit's settings) is learned on the
other folds (``simulate.cv_folds``) and scored on the fold left out, never in-sample. Confirmation
runs are the one exception: they use the other grid seed, so they are scored in-sample on both seeds'
mean (``Grid.regret``) against the same strategies scored the same way, and the table says so.

Mechanisms (see ``main``'s tables; ``--problems`` takes any problem list with grids, so it re-runs on
a later corpus unchanged):

1. probes + continuation: many configurations trained for 1-2 epochs, the best continued by
   successive halving, the survivor(s) trained to the end; at budget 1 over-spending by the probes;
2. the short-horizon bias of probes: how often the probe winner is the final winner, its log10 lr gap
   per family, and a learned shift of the finalist's rate (on this corpus the probe winner's rate is too
   HIGH, not too low: the learned shift is one or two grid steps down);
3. early abort of a full run far behind the best curve at the same epoch;
4. a noise-aware choice among finals (a local quadratic or a small GP over log lr) and confirmation
   on the other seed;
5. a first configuration looked up by the model's kind (known before training) instead of a global one.

The main tables use ``--cv`` (4) folds, as simulate.py; a last table re-runs the main candidates under
3, 4, 6, 8 and 24 (leave one problem out) folds, because with 24 problems one split's mean moves by
tens of points (today's strategy at 5 TRE: 19% with 4 folds, 26-54% with the others).

    python benchmarks/early_budget.py                 # every table on the development fold (seconds)
    python benchmarks/early_budget.py --problems a b  # another problem list (their grids must exist)
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

import simulate
from corpus import DEV, PROBLEMS
from grid_cache import families_of
from grids import FAMILIES, GRID_SEEDS, START, WINDOW, load
from simulate import DIVERGED, Config, Grid, cv_folds, run_halving, run_portfolio

INF = math.inf

in_range = simulate.in_range
candidate_configs = simulate.candidate_configs
greedy_portfolio = simulate.greedy_portfolio
CAP = 1.0  # regret cap when learning (as make_portfolio.py): one hopeless problem cannot dictate
PORTFOLIO_SIZE = 27  # as simulate.evaluate_strategy


# --- the replay ------------------------------------------------------------------------------------

class Replay:
    """One search on one grid seed: which configuration has been trained how far, and what was spent."""

    def __init__(self, grid: Grid, seed: int, budget: float) -> None:
        self.grid, self.seed, self.E = grid, seed, grid.epochs
        self.budget_epochs = budget * grid.epochs
        self.done: dict[Config, int] = {}  # epochs trained so far (insertion order: order of first training)
        self.spent = 0

    def run(self, c: Config) -> dict[str, Any] | None:
        return self.grid.runs.get((c[0], c[1], self.seed))

    def at(self, c: Config, e: int) -> float:
        """The validation loss after epoch ``e`` (1-based); inf once diverged (or never trainable)."""
        return loss_at(self.run(c), e)

    def reachable(self, c: Config) -> int:
        run = self.run(c)
        return 1 if run is None else len(run["curve"])

    def advance(self, c: Config, e: int) -> float:
        """Train ``c`` up to epoch ``e`` (continuing where it stopped); returns its loss there."""
        have = self.done.get(c, 0)
        new = min(e, self.reachable(c))
        if new > have:
            self.spent += new - have
            self.done[c] = new
        else:
            self.done.setdefault(c, have)
        return self.at(c, e)

    def final(self, c: Config) -> float | None:
        if self.done.get(c, 0) < self.E:
            return None
        v = self.at(c, self.E)
        return v if math.isfinite(v) else None

    def finals(self) -> dict[Config, float]:
        return {c: v for c in self.done if (v := self.final(c)) is not None}

    def dead(self, c: Config) -> bool:
        """Trained until it diverged (or the grid never had it): a bad outcome the recommendation sees."""
        return c in self.done and self.done[c] >= self.reachable(c) and self.final(c) is None

    @property
    def room(self) -> float:
        return self.budget_epochs - self.spent

    def tre(self) -> float:
        return self.spent / self.E


def loss_at(run: dict[str, Any] | None, e: int) -> float:
    if run is None:
        return INF
    curve = run["curve"]
    if e > len(curve) or e < 1:
        return INF
    v = curve[e - 1]
    if v is None or not math.isfinite(v) or (run["outcome"] != "completed" and e == len(curve)):
        return INF
    return float(v)


# --- choosing among finals (mechanism 4) -----------------------------------------------------------

def choose(rep: Replay, rule: str = "lowest", finals: dict[Config, float] | None = None,
           **kw: Any) -> Config | None:
    """The recommendation among the configurations trained to the end.

    lowest: the lowest single-seed final loss; smooth: autoopt's ``recommend.smoothed_scores`` (half
    the own loss, half the mean with the lr neighbours that completed or diverged, a diverged one 3x);
    local: per optimizer, a Gaussian-weighted local quadratic of log loss against k (bandwidth ``h``
    grid steps) over its finals, a diverged rate counting as log(3 x the worst final); gp: a GP with an
    RBF kernel (length scale ``ell`` steps, noise sd ``tau`` in log loss) on the same points; both choose
    by the fitted value at the trained rates. With fewer than 3 points for an optimizer, the smoothing.
    ``finals``: the losses to choose by, if not the runs' own (``rep.finals()``)."""
    finals = rep.finals() if finals is None else finals
    if not finals:
        return None
    if rule == "lowest":
        return min(finals, key=finals.get)
    if rule == "smooth":
        return min(finals, key=lambda c: smoothed(rep, finals, c))
    fitted = {}
    for opt in {c[0] for c in finals}:
        ks = sorted(k for (o, k) in rep.done if o == opt and ((o, k) in finals or rep.dead((o, k))))
        own = [finals[(opt, k)] for k in ks if (opt, k) in finals]
        worst = max(own)
        ys = np.array([math.log(finals[(opt, k)]) if (opt, k) in finals else math.log(3 * worst) for k in ks])
        x = np.array(ks, dtype=float)
        good = [k for k in ks if (opt, k) in finals]
        if len(ks) < 3:  # too few points for a fit: autoopt's smoothing
            for k in good:
                fitted[(opt, k)] = math.log(smoothed(rep, finals, (opt, k)))
            continue
        for k in good:
            fitted[(opt, k)] = (_local_fit(x, ys, k, kw.get("h", 1.5)) if rule == "local"
                                else _gp_fit(x, ys, k, kw.get("ell", 1.5), kw.get("tau", 0.1)))
    return min(fitted, key=fitted.get)


def smoothed(rep: Replay, finals: dict[Config, float], c: Config, weight: float = 0.5) -> float:
    own = finals[c]
    values = [own]
    for d in (-1, 1):
        n = (c[0], c[1] + d)
        if n in finals:
            values.append(finals[n])
        elif rep.dead(n):
            values.append(3 * own)
    return (1 - weight) * own + weight * float(np.mean(values))


def _local_fit(x: np.ndarray, y: np.ndarray, at: float, h: float) -> float:
    w = np.exp(-0.5 * ((x - at) / h) ** 2)
    deg = 2 if (w > 0.05).sum() >= 4 else 1
    A = np.vander(x - at, deg + 1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    return float(coef[-1])


def _gp_fit(x: np.ndarray, y: np.ndarray, at: float, ell: float, tau: float) -> float:
    mean = float(np.mean(y))
    var = max(float(np.var(y)), tau ** 2)
    K = var * np.exp(-0.5 * ((x[:, None] - x[None, :]) / ell) ** 2) + tau ** 2 * np.eye(len(x))
    k = var * np.exp(-0.5 * ((x - at) / ell) ** 2)
    return float(mean + k @ np.linalg.solve(K, y - mean))


# --- what is learned on the training folds ---------------------------------------------------------

@dataclass
class Context:
    """What a strategy may know about the fold it is scored on: the training folds' grids and what was
    learned from them (a portfolio, per-kind lookups, shifts), memoized per fold."""

    train: list[Grid]
    portfolio: list[Config]
    memo: dict[Any, Any] = field(default_factory=dict)

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]


def weighted_greedy(grids: Sequence[Grid], size: int, weights: Sequence[float] | None = None,
                    pool: Sequence[Config] | None = None) -> list[Config]:
    """``simulate.greedy_portfolio`` with a weight per grid (those of the same kind weighted up, say),
    never the same entry twice."""
    pool = list(pool) if pool is not None else candidate_configs()
    w = np.ones(len(grids)) if weights is None else np.asarray(weights, float)
    table = np.array([[min(g.regret(c), CAP) for g in grids] for c in pool])
    current = np.full(len(grids), CAP)
    chosen: list[int] = []
    for _ in range(min(size, len(pool))):
        scores = (np.minimum(table, current) * w).sum(axis=1)
        scores[chosen] = INF
        i = int(np.argmin(scores))
        chosen.append(i)
        current = np.minimum(current, table[i])
    return [pool[i] for i in chosen]


def kind_of(grid: Grid) -> str:
    """The model's kind, known before any training (a user's model shows its layers)."""
    return _meta(grid.name).get("kind") or PROBLEMS[grid.name].kind


def task_of(grid: Grid) -> str:
    return _meta(grid.name).get("task") or PROBLEMS[grid.name].task


_META: dict[str, dict[str, Any]] = {}


def _meta(name: str) -> dict[str, Any]:
    if name not in _META:
        _META[name] = {k: v for k, v in load(name).items() if k not in ("runs", "heldout")}
    return _META[name]


def looked_up_portfolio(ctx: Context, grid: Grid, feature: str, w: float, size: int = PORTFOLIO_SIZE) -> list[Config]:
    """A portfolio learned on the training grids with those sharing ``grid``'s feature weighted ``w``
    times (w = inf: those first, the others only to break their ties); feature: "kind", "task" or
    "pretrained"."""
    return portfolio_for(ctx, feature, FEATURES[feature](grid), w, size)


def portfolio_for(ctx: Context, feature: str, value: Any, w: float, size: int = PORTFOLIO_SIZE) -> list[Config]:
    """``looked_up_portfolio`` for the training grids whose ``feature`` is ``value`` (the whole
    portfolio where none is)."""
    of = FEATURES[feature]

    def make() -> list[Config]:
        same = [of(g) == value for g in ctx.train]
        if not any(same):
            return ctx.portfolio
        return weighted_greedy(ctx.train, size, [(1e6 if math.isinf(w) else w) if s else 1.0 for s in same])

    return ctx.get(("lookup", feature, value, w, size), make)


def probe_portfolio(ctx: Context, r0: int, size: int = PORTFOLIO_SIZE, shifted_by: str | None = None) -> list[Config]:
    """A portfolio for probing: greedy, each entry the one that most lowers the training grids' mean
    (capped) other-seed regret of "the entry with the lowest loss after ``r0`` epochs" (``shifted_by``
    "bias": that entry's rate shifted by ``bias_shift``, as the strategy will)."""

    def make() -> list[Config]:
        shift = bias_shift(ctx, r0) if shifted_by == "bias" else 0
        pool = candidate_configs()
        cells = [(g, s) for g in ctx.train for s in GRID_SEEDS]
        P = np.array([[loss_at(g.runs.get((c[0], c[1], s)), r0) / g.best for g, s in cells] for c in pool])
        R = np.array([[min(g.regret_on(shifted(c, shift), 1 - s), CAP) for g, s in cells] for c in pool])
        cur_p = np.full(len(cells), INF)
        cur_r = np.full(len(cells), CAP)
        chosen: list[int] = []
        for _ in range(min(size, len(pool))):
            better = P < cur_p
            scores = np.where(better, R, cur_r).mean(axis=1)
            scores[chosen] = INF
            i = int(np.argmin(scores))
            chosen.append(i)
            cur_r = np.where(better[i], R[i], cur_r)
            cur_p = np.minimum(cur_p, P[i])
        return [pool[i] for i in chosen]

    return ctx.get(("probe_portfolio", r0, size, shifted_by), make)


# --- strategies ------------------------------------------------------------------------------------

Strategy = Callable[[Grid, int, float, Context], tuple[Config | None, float]]


def today(grid: Grid, seed: int, budget: float, ctx: Context) -> tuple[Config | None, float]:
    """autoopt as it is: the first entry at 1 TRE, halving + line search below 3, then the portfolio
    (a line search after 8 entries) and the smoothed recommendation."""
    if budget < 1.5:
        return run_portfolio(grid, seed, budget, ctx.portfolio)
    if budget < 3:
        return run_halving(grid, seed, budget, ctx.portfolio)
    return run_portfolio(grid, seed, budget, ctx.portfolio, refine="line", refine_after=8, smooth=True)


def plan(n: int, E: int, r0: int, eta: float, final: int = 1) -> tuple[list[int], list[int], int]:
    """Successive halving with continuation: (runs alive at each rung, the rungs' epochs, epochs in all).

    The rungs are r0, r0 eta, r0 eta^2, ... below E, then E; ``n`` runs at the first rung, n / eta^i
    (rounded up, at least ``final``) at the next ones, ``final`` at E. eta = inf: probe, then straight
    to the end."""
    rungs = [r0]
    while not math.isinf(eta) and round(rungs[-1] * eta) < E:
        rungs.append(round(rungs[-1] * eta))
    rungs = [r for r in rungs if r < E] + [E]
    sizes = [n] + [max(final, math.ceil(n / eta ** i)) if not math.isinf(eta) else final
                   for i in range(1, len(rungs) - 1)] + ([final] if len(rungs) > 1 else [])
    sizes = [min(s, n) for s in sizes]
    total = sum(s * (r - (rungs[i - 1] if i else 0)) for i, (s, r) in enumerate(zip(sizes, rungs)))
    return sizes, rungs, total


def largest_n(E: int, budget_epochs: float, r0: int, eta: float, final: int, cap: int, restart: bool = False) -> int:
    """The most runs the plan can start within the budget; ``restart``: its finalists may start over
    from scratch (a shifted rate that was not probed), so the epochs they had are counted twice."""
    def cost(n: int) -> float:
        sizes, rungs, total = plan(n, E, r0, eta, final)
        return total + (sizes[-1] * rungs[-2] if restart and len(rungs) > 1 else 0)

    n = 1
    while n < cap and cost(n + 1) <= budget_epochs + 1e-9:
        n += 1
    return n


def probe_sh(grid: Grid, seed: int, budget: float, ctx: Context, *, pool: str = "portfolio", r0: int = 1,
             eta: float = 3, final: int = 1, n: int | None = None, rule: str = "lowest", shift: Any = 0,
             rule_kw: dict | None = None, keep: list | None = None) -> tuple[Config | None, float]:
    """Probes + continuation: the first n configurations of ``pool`` trained ``r0`` epochs, the best
    1/eta continued rung by rung (``plan``), ``final`` of them to the end, chosen among by ``rule``
    (n: as many as the budget allows, or fixed: then the budget is over-spent as the plan needs).
    ``shift``: each finalist's rate moved that many grid steps (up: +) before its last stretch (an int,
    or a dict per optimizer family); a shifted rate that was not probed starts from scratch, and the
    budget plans for that. ``keep``: a list that receives the replay (for a caller that goes on)."""
    rep = Replay(grid, seed, budget)
    configs = pool_of(pool, grid, ctx, r0)
    if n is None:
        n = largest_n(grid.epochs, rep.budget_epochs, r0, eta, final, len(configs), restart=bool(shift))
    sizes, rungs, _ = plan(n, grid.epochs, r0, eta, final)
    alive = list(configs[:n])
    for size, rung in zip(sizes, rungs):
        if rung == grid.epochs and shift:
            alive = list(dict.fromkeys(shifted(c, shift) for c in alive[:size]))
        scores = [(rep.advance(c, rung), j, c) for j, c in enumerate(alive[:size])]
        scores.sort(key=lambda t: (t[0], t[1]))
        alive = [c for _, _, c in scores]
    if keep is not None:
        keep.append(rep)
    return choose(rep, rule, **(rule_kw or {})), rep.tre()


def shifted(c: Config, shift: Any) -> Config:
    s = shift.get(c[0], 0) if isinstance(shift, dict) else int(shift)
    return (c[0], c[1] + s) if in_range((c[0], c[1] + s)) else c


def pool_of(pool: str, grid: Grid, ctx: Context, r0: int) -> list[Config]:
    if pool == "portfolio":
        return ctx.portfolio
    if pool == "probe":
        return probe_portfolio(ctx, r0)
    if pool == "probe-bias":  # learned for winners shifted by the bias
        return probe_portfolio(ctx, r0, shifted_by="bias")
    if pool.startswith("kind"):  # "kind3": same kind weighted 3x; "kind": same kind only
        w = float(pool[4:]) if pool[4:] else INF
        return looked_up_portfolio(ctx, grid, "kind", w)
    if pool.startswith("task"):
        w = float(pool[4:]) if pool[4:] else INF
        return looked_up_portfolio(ctx, grid, "task", w)
    if pool == "pretrained":  # a model whose weights are already trained races a list learned on such problems
        return pretrained_portfolio(ctx) if is_pretrained(grid) else ctx.portfolio
    if pool.startswith("pretrained+"):  # the same, and the others a list looked up by another pool ("pretrained+task3")
        return pretrained_portfolio(ctx) if is_pretrained(grid) else pool_of(pool.split("+", 1)[1], grid, ctx, r0)
    raise ValueError(pool)


def is_pretrained(grid: Grid) -> bool:
    """Whether the problem's model starts from trained weights: what ``autoopt.training.pretrained``
    sees in the weights before training (on this corpus it flags exactly the fine-tuning problems)."""
    return kind_of(grid).startswith("finetune")


def pretrained_portfolio(ctx: Context, size: int = PORTFOLIO_SIZE) -> list[Config]:
    """The portfolio learned on the training folds' fine-tuning problems (the other problems only break
    its ties: once every fine-tuning problem is covered, the entries go on as for the rest); the whole
    portfolio where the training folds hold none."""
    return portfolio_for(ctx, "pretrained", True, INF, size)


FEATURES: dict[str, Callable[[Grid], Any]] = {"kind": kind_of, "task": task_of, "pretrained": is_pretrained}


SHIFTS = (0, -1, -2, 1, 2)  # ties: the smaller move


def learned_shift(ctx: Context, per_family: bool, **kw: Any) -> Any:
    """The shift of the probe winner's rate (-2 .. +2 grid steps) that scores best on the training grids
    (other-seed regret, capped), globally or per family (each family's shift chosen with the others at 0)."""
    def make() -> Any:
        def score(shift: Any) -> float:
            return float(np.mean([min(g.regret_on(probe_sh(g, s, kw["budget"], ctx, shift=shift,
                                                           **{k: v for k, v in kw.items() if k != "budget"})[0],
                                                   1 - s), CAP)
                                  for g in ctx.train for s in GRID_SEEDS]))
        if not per_family:
            return min(SHIFTS, key=score)
        return {f: min(SHIFTS, key=lambda s: score({f: s})) for f in FAMILIES}

    return ctx.get(("shift", per_family, tuple(sorted(kw.items()))), make)


def bias_shift(ctx: Context, r0: int) -> dict[str, int]:
    """Per family, the probe winner's mean log10 lr gap to the final winner on the training grids
    (``family_gaps``), turned into a correction: minus the gap in grid steps, rounded, within +-2."""
    def make() -> dict[str, int]:
        gaps = family_gaps(ctx.train, r0)
        return {f: int(np.clip(-round(3 * np.mean(v)), -2, 2)) if v else 0 for f, v in gaps.items()}

    return ctx.get(("bias_shift", r0), make)


def probe_shift(grid: Grid, seed: int, budget: float, ctx: Context, how: str = "tuned",
                **kw: Any) -> tuple[Config | None, float]:
    """``probe_sh`` with the finalists' rates shifted as learned on the training folds: "tuned" (one
    shift for all, the best of -2..+2 replayed there), "tuned-family" (one per family) or "bias" (from
    the measured gap, ``bias_shift``)."""
    if how == "bias":
        shift = bias_shift(ctx, kw.get("r0", 1))
    else:
        shift = learned_shift(ctx, how == "tuned-family", budget=budget, **kw)
    return probe_sh(grid, seed, budget, ctx, shift=shift, **kw)


def portfolio_abort(grid: Grid, seed: int, budget: float, ctx: Context, *, factor: float, upto: int,
                    rule: str = "lowest") -> tuple[Config | None, float]:
    """The portfolio's entries in order at full length (a run starts only while a whole run fits), each
    stopped at an epoch <= ``upto`` where its loss is over ``factor`` x the lowest loss any earlier run
    had at that epoch; the epochs it did not train go to the next entry."""
    rep = Replay(grid, seed, budget)
    best_at: dict[int, float] = {}
    for c in ctx.portfolio:
        if rep.room < grid.epochs and rep.finals():
            break
        for e in range(1, grid.epochs + 1):
            v = rep.advance(c, e)
            if not math.isfinite(v):
                break
            if e <= upto and e in best_at and v > factor * best_at[e]:
                break
        for e in range(1, rep.done[c] + 1):
            v = rep.at(c, e)
            if math.isfinite(v):
                best_at[e] = min(best_at.get(e, INF), v)
    return choose(rep, rule), rep.tre()


def first_entry(grid: Grid, seed: int, budget: float, ctx: Context, *, pool: str) -> tuple[Config | None, float]:
    rep = Replay(grid, seed, budget)
    rep.advance(pool_of(pool, grid, ctx, 1)[0], grid.epochs)
    return choose(rep), rep.tre()


def portfolio_line(grid: Grid, seed: int, budget: float, ctx: Context, *, after: int, rule: str = "lowest",
                   pool: str = "portfolio", rule_kw: dict | None = None) -> tuple[Config | None, float]:
    """``after`` portfolio entries, then autoopt's line search, then the rest: choice by ``rule``."""
    from simulate import Search, _line_search, fits

    configs = pool_of(pool, grid, ctx, 1)
    search = Search(grid, seed, budget * grid.epochs)
    queue = list(configs)
    for _ in range(after):
        if fits(search) and queue:
            search.train(queue.pop(0))
    _line_search(search, None)
    while fits(search) and queue:
        search.train(queue.pop(0))
    rep = Replay(grid, seed, budget)
    for c, curve in search.curves.items():
        rep.done[c] = len(curve) if search.grid.runs.get((c[0], c[1], seed)) else 1
    rep.spent = search.spent
    return choose(rep, rule, **(rule_kw or {})), search.spent / grid.epochs


# --- confirmation (mechanism 4, scored in-sample) --------------------------------------------------

def portfolio_runs(grid: Grid, seed: int, budget: float, ctx: Context, *, rule: str = "smooth",
                   keep: list | None = None) -> tuple[Config | None, float]:
    """The portfolio's entries in order at full length while a whole run fits (today's strategy below
    ``refine_after`` = 8 entries, i.e. at 3 to 8 TRE), chosen by ``rule``."""
    rep = Replay(grid, seed, budget)
    for c in ctx.portfolio:
        if rep.room < grid.epochs and rep.finals():
            break
        rep.advance(c, grid.epochs)
    if keep is not None:
        keep.append(rep)
    return choose(rep, rule), rep.tre()


def confirm(grid: Grid, seed: int, budget: float, ctx: Context, *, inner: Callable[..., Any], trigger: str,
            worse: float = 1.5, **kw: Any) -> tuple[Config | None, float]:
    """``inner`` (a replay strategy taking ``keep``) at budget - 1, its choice by autoopt's smoothing; then
    the winner trained to the end on the other grid seed, when ``trigger`` says so: "always", or
    "unstable" (the search trained its rate one step up and that run diverged or was over 2x worse at the
    last epoch both reached). If the re-run diverges or ends over ``worse`` x the winner's search-seed
    loss, the recommendation falls back to the best other final (by the same smoothing), or, when the
    search has none, to the winner's rate one step down. Uses the other grid seed: score in-sample."""
    box: list[Replay] = []
    inner(grid, seed, budget - 1, ctx, keep=box, **kw)
    rep = box[0]
    choice = choose(rep, "smooth")
    if choice is None:
        return None, rep.tre()
    own = rep.final(choice)
    up = (choice[0], choice[1] + 1)
    if trigger == "unstable":
        if up not in rep.done:
            return choice, rep.tre()
        e = min(rep.done[up], rep.done[choice])
        if not (rep.dead(up) or rep.at(up, e) > 2 * rep.at(choice, e)):
            return choice, rep.tre()
    other = grid.runs.get((choice[0], choice[1], 1 - seed))
    cost = 1 if other is None else len(other["curve"])
    again = loss_at(other, grid.epochs)
    spent = rep.tre() + cost / grid.epochs
    if math.isfinite(again) and again <= worse * own:
        return choice, spent
    rest = {c: v for c, v in rep.finals().items() if c != choice}
    if rest:
        return min(rest, key=lambda c: smoothed(rep, rest, c)), spent
    return (choice[0], choice[1] - 1), spent


def whole_grid(grid: Grid, seed: int, budget: float, ctx: Context, *, rule: str = "lowest",
               rule_kw: dict | None = None) -> tuple[Config | None, float]:
    """Not a budget strategy: every grid configuration on the search seed, then ``rule``: what the choice
    rule does with every neighbour known (the winner's curse at its largest)."""
    rep = Replay(grid, seed, INF)
    for (o, k, s) in grid.runs:
        if s == seed:
            rep.advance((o, k), grid.epochs)
    return choose(rep, rule, **(rule_kw or {})), rep.tre()


def tuned(fn: Callable[..., tuple[Config | None, float]], options: Sequence[dict[str, Any]], **kw: Any) -> Strategy:
    """``fn`` with the keyword arguments among ``options`` that score best (mean other-seed regret,
    capped) when replayed on the training folds' grids at the same budget: learned leave-fold-out."""
    def strategy(grid: Grid, seed: int, budget: float, ctx: Context) -> tuple[Config | None, float]:
        def make() -> dict[str, Any]:
            def score(option: dict[str, Any]) -> float:
                return float(np.mean([min(g.regret_on(fn(g, s, budget, ctx, **kw, **option)[0], 1 - s), CAP)
                                      for g in ctx.train for s in GRID_SEEDS]))
            return min(options, key=score)

        key = ("tuned", fn.__name__, budget, repr(sorted(kw.items())), repr(options))
        return fn(grid, seed, budget, ctx, **kw, **ctx.get(key, make))

    return strategy


# --- evaluation ------------------------------------------------------------------------------------

def load_grids(names: Sequence[str]) -> dict[str, Grid]:
    """The grids of ``names`` that are complete (every family's starting window on both seeds); the rest
    (a corpus whose grids are still being computed) are left out."""
    return {n: Grid.load(n) for n in names if len(load(n)["runs"]) >= 2 * WINDOW * len(families_of(n))
            and "families" in load(n)}


def contexts(grids: dict[str, Grid], cv: int) -> dict[str, Context]:
    """Each problem's context: the other folds' grids and their greedy portfolio."""
    out = {}
    for part in cv_folds(list(grids), cv):
        train = [grids[n] for n in grids if n not in part]
        ctx = Context(train, greedy_portfolio(train, PORTFOLIO_SIZE))
        for name in part:
            out[name] = ctx
    return out


def evaluate(strategy: Strategy, grids: dict[str, Grid], ctxs: dict[str, Context], budget: float,
             score: str = "other-seed") -> dict[str, Any]:
    per: dict[str, list[float]] = {}
    costs = []
    for name, grid in grids.items():
        for seed in GRID_SEEDS:
            rec, cost = strategy(grid, seed, budget, ctxs[name])
            per.setdefault(name, []).append(grid.regret_on(rec, 1 - seed) if score == "other-seed" else grid.regret(rec))
            costs.append(cost)
    means = np.array([np.mean(v) for v in per.values()])
    return {"mean": float(means.mean()), "median": float(np.median(means)), "worst": float(means.max()),
            "worst_name": list(per)[int(means.argmax())], "over100": int((means > 1.0).sum()),
            "capped": float(np.mean([np.mean(np.minimum(v, 1.0)) for v in per.values()])),
            "tre": float(np.mean(costs)), "tre_max": float(np.max(costs)),
            "per": {n: float(np.mean(v)) for n, v in per.items()}}


def row(label: str, r: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """One line of a table; against ``base`` (the same problems), the paired difference of the per-problem
    means with its standard error, and on how many problems it is better / worse by over 1 point."""
    vs = ""
    if base is not None:
        d = np.array([r["per"][n] - base["per"][n] for n in r["per"]])
        vs = f"  {d.mean():+7.1%} +-{d.std(ddof=1) / math.sqrt(len(d)):5.1%} {int((d < -0.01).sum()):2d}/{int((d > 0.01).sum()):2d}"
    return (f"  {label:<52} {r['mean']:7.1%} {r['median']:6.1%} {r['worst']:6.0%} {r['over100']:3d} {r['capped']:6.1%}"
            f"  {r['tre']:5.2f} {r['tre_max']:5.2f}{vs}  {r['worst_name']}")


HEADER = (f"  {'mechanism':<52} {'mean':>7} {'median':>6} {'worst':>6} >1x {'cap1x':>6}  spent   max  "
          f"{'vs first row':>13} {'':6} +/-  worst problem")


# --- mechanism 2: the short-horizon bias, measured -------------------------------------------------

def family_gaps(grids: Sequence[Grid], e: int) -> dict[str, list[float]]:
    """Per family, over grids x seeds: the log10 lr of the family's best configuration after ``e``
    epochs minus that of its best at the end (same seed; + : the probe prefers a larger rate)."""
    gaps: dict[str, list[float]] = {f: [] for f in FAMILIES}
    for g in grids:
        for s in GRID_SEEDS:
            for f in FAMILIES:
                runs = {k: r for (o, k, seed), r in g.runs.items() if seed == s and o == f}
                if not runs:
                    continue
                at_e = {k: loss_at(r, min(e, g.epochs)) for k, r in runs.items()}
                fin = {k: loss_at(r, g.epochs) for k, r in runs.items()}
                if math.isfinite(min(fin.values())):
                    gaps[f].append((min(at_e, key=at_e.get) - min(fin, key=fin.get)) / 3)
    return gaps


def probe_bias(grids: dict[str, Grid], epochs: Sequence[int]) -> list[str]:
    """How often the best configuration after ``e`` epochs is the best at the end (same seed), what the
    probe winner's regret is (other seed) against the final winner's, and per family the mean log10 gap
    between the probe winner's lr and the final winner's (in-sample: a description, nothing is chosen)."""
    lines = []
    for e in epochs:
        same = same_family = cells = 0
        regrets: dict[str, list[float]] = {"final winner": [], "probe winner": [], "probe winner k-1": [],
                                           "probe winner k-2": [], "probe winner k+1": []}
        for g in grids.values():
            for s in GRID_SEEDS:
                runs = {(o, k): r for (o, k, seed), r in g.runs.items() if seed == s}
                at_e = {c: loss_at(r, min(e, g.epochs)) for c, r in runs.items()}
                fin = {c: loss_at(r, g.epochs) for c, r in runs.items()}
                pw, fw = min(at_e, key=at_e.get), min(fin, key=fin.get)
                same += pw == fw
                same_family += pw[0] == fw[0]
                cells += 1
                for label, c in (("final winner", fw), ("probe winner", pw), ("probe winner k-1", (pw[0], pw[1] - 1)),
                                 ("probe winner k-2", (pw[0], pw[1] - 2)), ("probe winner k+1", (pw[0], pw[1] + 1))):
                    regrets[label].append(g.regret_on(c, 1 - s))
        lines.append(f"  after {e} epoch(s): the probe winner is the final winner in {same}/{cells} cells (problem x "
                     f"seed), of the same family in {same_family}/{cells}; mean / median other-seed regret of the whole "
                     f"grid's " + ", ".join(f"{k} {np.mean(v):.0%} / {np.median(v):.0%}" for k, v in regrets.items()))
        gaps = family_gaps(list(grids.values()), e)
        lines.append("    per family, probe winner's log10 lr - final winner's (mean, share below 0): "
                     + "  ".join(f"{f} {np.mean(v):+.2f} ({np.mean(np.array(v) < 0):.0%})" for f, v in gaps.items() if v))
    return lines


# --- main ------------------------------------------------------------------------------------------

def table(title: str, grids: dict[str, Grid], ctxs: dict[str, Context], budget: float,
          entries: Sequence[tuple[str, Strategy]], score: str = "other-seed") -> list[str]:
    lines = [f"\nB = {budget:g} TRE: {title}", HEADER]
    base = None
    for label, strategy in entries:
        result = evaluate(strategy, grids, ctxs, budget, score)
        lines.append(row(label, result, base))
        base = base or result
    print("\n".join(lines), flush=True)
    return lines


def S(fn: Callable[..., tuple[Config | None, float]], **kw: Any) -> Strategy:
    return lambda g, s, b, c: fn(g, s, b, c, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="*", default=list(DEV))
    parser.add_argument("--cv", type=int, default=4)
    parser.add_argument("--budgets", nargs="*", type=float, default=[1, 2, 3, 5])
    args = parser.parse_args(argv)
    grids = load_grids(args.problems)
    ctxs = contexts(grids, args.cv)
    E = np.array([g.epochs for g in grids.values()])
    print(f"{len(grids)} problems with grids, {args.cv}-fold leave-fold-out. Regret: the choice's final loss on the "
          f"grid seed the search did not train on / the grid's best 2-seed mean - 1 (diverged: {DIVERGED:.0%}); per "
          f"problem the mean over the 2 search seeds; mean / median / worst over problems, >1x: problems over "
          f"100%, cap1x: the mean with each regret capped at 100%; spent: mean and max TRE; 'vs first row': the "
          f"paired difference of the per-problem means +- its standard error, problems better / worse by > 1 point.")
    print(f"A 1-epoch probe costs 1/epochs of a run: mean {np.mean(1 / E):.1%}, median {np.median(1 / E):.1%}, "
          f"{np.min(1 / E):.1%}-{np.max(1 / E):.1%} (epochs {E.min()}-{E.max()}).")
    print("\nMechanism 2, the short-horizon bias (every grid configuration, same seed; in-sample, descriptive):")
    print("\n".join(probe_bias(grids, (1, 2))))
    shifts = {}
    for ctx in {id(c): c for c in ctxs.values()}.values():
        for f, v in bias_shift(ctx, 1).items():
            shifts.setdefault(f, []).append(v)
    print("  learned on each fold's training grids (bias shift, 1-epoch probes), grid steps per family: "
          + "  ".join(f"{f} {'/'.join(f'{v:+d}' for v in vs)}" for f, vs in shifts.items()))
    for budget in args.budgets:
        table("", grids, ctxs, budget, entries_for(budget))
    table("mechanism 4 at its limit: every grid configuration trained on the search seed, chosen by each rule "
          "(not a budget strategy; spent = the grid)", grids, ctxs, 1, CHOICE_LIMIT)
    robustness(grids, args.budgets)
    for budget in [b for b in args.budgets if b >= 2]:
        table("confirmation on the other grid seed, scored IN-SAMPLE on both seeds' mean (every row)", grids, ctxs,
              budget, confirmation_entries(), score="both-seeds")
    return 0


def robustness(grids: dict[str, Grid], budgets: Sequence[float], cvs: Sequence[int] = (3, 4, 6, 8, 24)) -> None:
    """The main candidates again under other leave-fold-out splits (24: leave one problem out): with 24
    problems one split's mean moves by tens of points, so a verdict should hold across splits."""
    ctxs = {cv: contexts(grids, cv) for cv in cvs if cv <= len(grids)}
    print(f"\nThe same under other splits: mean / cap1x regret for cv = {', '.join(map(str, ctxs))}, then their average")
    for budget in budgets:
        for label, strategy in ROBUST.get(min(ROBUST, key=lambda b: abs(b - budget)), []):
            cells = [evaluate(strategy, grids, c, budget) for c in ctxs.values()]
            print(f"  B={budget:<3g} {label:<50}" + "".join(f" {r['mean']:5.0%}/{r['capped']:3.0%}" for r in cells)
                  + f"   avg {np.mean([r['mean'] for r in cells]):5.0%}/{np.mean([r['capped'] for r in cells]):3.0%}",
                  flush=True)


P1 = {"r0": 1, "eta": INF}  # budget 1: probes of one epoch, the winner continued to the end
SH = {"r0": 1, "eta": 3}  # successive halving from 1-epoch probes, as many as the budget allows
FIT_OPTIONS = ([{"rule": "local", "rule_kw": {"h": h}} for h in (1, 1.5, 2)]
               + [{"rule": "gp", "rule_kw": {"ell": ell, "tau": tau}} for ell in (1, 2) for tau in (0.1, 0.2, 0.4)])


def entries_for(budget: float) -> list[tuple[str, Strategy]]:
    """The rows of one budget's table; the first is autoopt as it is, which the others are paired with."""
    out: list[tuple[str, Strategy]] = [("today (autoopt as it is)", today)]
    if budget < 1.5:
        out += [
            ("[5] first entry looked up by kind (kind's problems only)", S(first_entry, pool="kind")),
            ("[5] first entry, same-kind problems weighted x3", S(first_entry, pool="kind3")),
            ("[5] first entry, same-kind problems weighted x10", S(first_entry, pool="kind10")),
            ("[5] first entry, same-task problems weighted x3", S(first_entry, pool="task3")),
        ]
        for pool in ("portfolio", "probe"):
            for n in (3, 5, 9):
                out.append((f"[1] {n} probes of 1 epoch ({pool} pool), best continued", S(probe_sh, pool=pool, n=n, **P1)))
        out.append(("[1] 5 probes of 2 epochs (probe pool), best continued", S(probe_sh, pool="probe", n=5, r0=2, eta=INF)))
        for pool in ("portfolio", "probe"):
            for n in (5, 9):
                out += [
                    (f"[1+2] {n} probes ({pool}), winner shifted: bias per family", S(probe_shift, how="bias", pool=pool, n=n, **P1)),
                    (f"[1+2] {n} probes ({pool}), winner shifted: tuned, one for all", S(probe_shift, how="tuned", pool=pool, n=n, **P1)),
                ]
        for n in (5, 9):
            out.append((f"[1+2] {n} probes (pool learned for shifted winners), bias shift",
                        S(probe_shift, how="bias", pool="probe-bias", n=n, **P1)))
        out += [
            ("[1+2] 9 probes (probe), winner k-1 (fixed, not learned)", S(probe_sh, pool="probe", n=9, shift=-1, **P1)),
            ("[1+2] 9 probes (probe), winner k+1 (fixed, not learned)", S(probe_sh, pool="probe", n=9, shift=1, **P1)),
            ("[1+5] 9 probes (same kind x3 pool), bias shift", S(probe_shift, how="bias", pool="kind3", n=9, **P1)),
            ("today at 1.5 TRE (halving of 2)", lambda g, s, b, c: today(g, s, 1.5, c)),
            ("today at 2 TRE (halving)", lambda g, s, b, c: today(g, s, 2, c)),
        ]
        return out
    out.append(("portfolio entries at full length (no halving)", S(portfolio_runs, rule="lowest")))
    for pool in ("portfolio", "probe", "kind3"):
        for r0 in (1, 2):
            out.append((f"[1{'+5' if pool == 'kind3' else ''}] halving from {r0}-epoch probes, {pool} pool",
                        S(probe_sh, pool=pool, r0=r0, eta=3)))
    for pool in ("portfolio", "probe", "probe-bias"):
        out += [
            (f"[1+2] halving from 1-epoch probes ({pool}), bias shift", S(probe_shift, how="bias", pool=pool, **SH)),
        ]
        if pool != "probe-bias":
            out.append((f"[1+2] halving from 1-epoch probes ({pool}), tuned shift", S(probe_shift, how="tuned", pool=pool, **SH)))
    if budget >= 3:
        out += [
            ("[1+4] 1-epoch probes, best 2 to the end (probe pool), smoothed", S(probe_sh, pool="probe", r0=1, eta=INF, final=2, rule="smooth")),
            ("[1+2+4] the same, bias shift", S(probe_shift, how="bias", pool="probe", r0=1, eta=INF, final=2, rule="smooth")),
            (f"[1] halving, best {int(budget) - 1} to the end (probe pool), smoothed",
             S(probe_sh, pool="probe", r0=1, eta=3, final=int(budget) - 1, rule="smooth")),
        ]
    for f in (1.5, 2, 3):
        for upto in (1, 3):
            out.append((f"[3] portfolio, abort at epoch <= {upto} if > {f}x the best curve", S(portfolio_abort, factor=f, upto=upto)))
    if budget >= 3:
        for after in (1, 2) if budget >= 5 else (1,):
            out += [
                (f"[4] {after} entr{'y' if after == 1 else 'ies'} + line search, lowest", S(portfolio_line, after=after, rule="lowest")),
                (f"[4] {after} entr{'y' if after == 1 else 'ies'} + line search, smoothed (autoopt)", S(portfolio_line, after=after, rule="smooth")),
                (f"[4] {after} entr{'y' if after == 1 else 'ies'} + line search, local quadratic h=1.5", S(portfolio_line, after=after, rule="local", rule_kw={"h": 1.5})),
                (f"[4] {after} entr{'y' if after == 1 else 'ies'} + line search, GP ell=1 tau=0.2", S(portfolio_line, after=after, rule="gp", rule_kw={"ell": 1, "tau": 0.2})),
                (f"[4] {after} entr{'y' if after == 1 else 'ies'} + line search, fit tuned on train", tuned(portfolio_line, FIT_OPTIONS, after=after)),
            ]
    return out


ROBUST: dict[float, list[tuple[str, Strategy]]] = {
    1: [("today", today),
        ("[5] first entry, same kind x3", S(first_entry, pool="kind3")),
        ("[1] 5 probes (probe pool), best continued", S(probe_sh, pool="probe", n=5, **P1)),
        ("[1] 9 probes (probe pool), best continued", S(probe_sh, pool="probe", n=9, **P1)),
        ("[1+2] 5 probes (probe-bias pool), bias shift", S(probe_shift, how="bias", pool="probe-bias", n=5, **P1)),
        ("[1+2] 9 probes (probe-bias pool), bias shift", S(probe_shift, how="bias", pool="probe-bias", n=9, **P1)),
        ("[1+2] 9 probes (probe pool), bias shift", S(probe_shift, how="bias", pool="probe", n=9, **P1)),
        ("[1+2] 9 probes (portfolio), bias shift", S(probe_shift, how="bias", pool="portfolio", n=9, **P1))],
    2: [("today", today),
        ("[1] halving, 2-epoch probes, portfolio pool", S(probe_sh, pool="portfolio", r0=2, eta=3)),
        ("[1] halving, 1-epoch probes, probe pool", S(probe_sh, pool="probe", **SH)),
        ("[1+2] halving, 1-epoch probes, portfolio, bias shift", S(probe_shift, how="bias", pool="portfolio", **SH)),
        ("[1+2] halving, 1-epoch probes, probe-bias pool, bias shift", S(probe_shift, how="bias", pool="probe-bias", **SH))],
    3: [("today", today),
        ("[1] halving, 1-epoch probes, probe pool", S(probe_sh, pool="probe", **SH)),
        ("[1] halving, 1-epoch probes, portfolio pool", S(probe_sh, pool="portfolio", **SH)),
        ("[1+2] halving, 1-epoch probes, portfolio, bias shift", S(probe_shift, how="bias", pool="portfolio", **SH)),
        ("[1+2] halving, 1-epoch probes, probe-bias pool, bias shift", S(probe_shift, how="bias", pool="probe-bias", **SH)),
        ("[3] portfolio, abort at epoch <= 3 if > 3x", S(portfolio_abort, factor=3, upto=3))],
    5: [("today", today),
        ("[1] halving, 1-epoch probes, probe pool", S(probe_sh, pool="probe", **SH)),
        ("[1+2] halving, 1-epoch probes, portfolio, bias shift", S(probe_shift, how="bias", pool="portfolio", **SH)),
        ("[1] halving, best 4 to the end (probe pool), smoothed", S(probe_sh, pool="probe", r0=1, eta=3, final=4, rule="smooth")),
        ("[3] portfolio, abort at epoch <= 3 if > 3x", S(portfolio_abort, factor=3, upto=3))],
}


CHOICE_LIMIT: list[tuple[str, Strategy]] = (
    [("lowest single-seed final loss", S(whole_grid)), ("smoothed over lr neighbours (autoopt)", S(whole_grid, rule="smooth"))]
    + [(f"local quadratic in log lr, h={h}", S(whole_grid, rule="local", rule_kw={"h": h})) for h in (1, 1.5, 2)]
    + [(f"GP over log lr, ell={ell} tau={tau}", S(whole_grid, rule="gp", rule_kw={"ell": ell, "tau": tau}))
       for ell in (1, 2) for tau in (0.1, 0.2, 0.4)]
    + [("local / GP settings tuned on the training folds", tuned(whole_grid, FIT_OPTIONS))])


def confirmation_entries() -> list[tuple[str, Strategy]]:
    return [
        ("today at B", today),
        ("portfolio entries at B - 1 (no confirmation)", lambda g, s, b, c: portfolio_runs(g, s, b - 1, c)),
        ("[4] portfolio at B - 1, winner confirmed (fallback if > 1.5x)", S(confirm, inner=portfolio_runs, trigger="always")),
        ("[4] portfolio at B - 1, winner confirmed (fallback if > 2x)", S(confirm, inner=portfolio_runs, trigger="always", worse=2)),
        ("[4] portfolio at B - 1, confirmed only if k+1 unstable", S(confirm, inner=portfolio_runs, trigger="unstable")),
        ("halving (probe pool) at B - 1 (no confirmation)", lambda g, s, b, c: probe_sh(g, s, b - 1, c, pool="probe", **SH)),
        ("[4] halving (probe pool) at B - 1, winner confirmed", S(confirm, inner=probe_sh, trigger="always", pool="probe", **SH)),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
