"""A learning-rate range test as the first look at a model, measured on the development fold (issue 20).

The issue asks whether short probes could set the first runs' learning rates for the model at hand
instead of the portfolio's fixed ones. The best-known probe is the range test (Smith 2017, "Cyclical
Learning Rates"; fastai's ``lr_find`` and Lightning's ``tuner/lr_finder.py``): train for ``--steps``
mini-batches while the learning rate grows exponentially, smooth the training loss (an exponential
moving average with bias correction, beta 0.98), stop once it passes 4x its best, and read a rate off
the curve: where the smoothed loss is lowest, or where it falls fastest (Lightning's suggestion, the
first tenth of the sweep skipped). The rule's offset (the read rate times 10^(d/3), d grid steps) is
chosen here, in-sample, so the table flatters the range test.

Each (problem, grid seed, optimizer family) is swept from that seed's initial weights and data order,
as the grid's runs start; the suggested rate is rounded to the grid (a third of a decade) and scored as
``first_answers.py`` scores: that configuration's final loss on the *other* grid seed against the grid's
best 2-seed mean (capped at 100%; a rate outside the family's grid, which was never trained, counts as
100%, and how often that happens is shown). Beside it: the family at its best single fixed rate on the
whole development fold (in-sample too) and the portfolio's entry for it.

    python benchmarks/range_test.py --collect --jobs 2   # the sweeps: about 3.5 min here
    python benchmarks/range_test.py                      # the table, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, PROBLEMS  # noqa: E402
from early_budget import load_grids  # noqa: E402
from grid_cache import k_of, lr_of  # noqa: E402

from autoopt.search.portfolio import load_portfolio  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "range_test-dev.json"
FAMILIES = ("adamw", "adam", "momentum", "sgd", "rmsprop", "muon")
#: Each family's sweep (from, to): wide enough to hold every best rate of its grids.
SWEEP = {"sgd": (1e-5, 100.0), "momentum": (1e-6, 10.0)}
DEFAULT_SWEEP = (1e-6, 10.0)
BETA = 0.98  # the loss's moving average, as fastai and Lightning
STOP_FACTOR = 4.0  # a sweep stops once the smoothed loss passes this multiple of its best
CAP = 1.0
OFFSETS = range(-6, 3)  # grid steps (a third of a decade) added to the read rate


def portfolio_steps() -> dict[str, int]:
    """Each family's first entry in the shipped portfolio (``autoopt/search/portfolio.json``), as a grid step."""
    steps: dict[str, int] = {}
    for entry in load_portfolio()["entries"]:
        steps.setdefault(entry["optimizer"], k_of(entry["lr"]))
    return steps


def smoothed(losses: list[float]) -> np.ndarray:
    """The bias-corrected exponential moving average of ``losses``."""
    out, avg = [], 0.0
    for i, v in enumerate(losses):
        avg = BETA * avg + (1 - BETA) * v
        out.append(avg / (1 - BETA ** (i + 1)))
    return np.array(out)


def sweep(name: str, seed: int, steps: int) -> dict[str, Any]:
    """Every family's range test on problem ``name`` from grid seed ``seed``: its suggestions."""
    import torch

    from compare import _setup

    from autoopt.optimizers.registry import get_spec

    torch.set_num_threads(1)
    setup = _setup(name, seed)
    out: dict[str, Any] = {"steps_per_epoch": math.ceil(len(setup.split.train) / setup.batch_size)}
    for family in FAMILIES:
        spec = get_spec(family)
        low, high = SWEEP.get(family, DEFAULT_SWEEP)
        torch.manual_seed(seed)
        model = setup.fresh_model(seed)
        model.train()
        optimizer = spec.build(spec.parameters_of(model), {**spec.defaults, "lr": low})
        generator = torch.Generator().manual_seed(seed)
        batches = iter(setup.split.train.batches(setup.batch_size, generator))
        lrs, losses = [], []
        average, lowest = 0.0, math.inf  # ``smoothed``'s running average, kept as the sweep goes
        for i in range(steps):
            lr = low * (high / low) ** (i / (steps - 1))
            for group in optimizer.param_groups:  # Muon's AdamW groups keep adamw_lr, as in its grid
                if not (family == "muon" and "betas" in group):
                    group["lr"] = lr
            try:
                xb, yb = next(batches)
            except StopIteration:
                batches = iter(setup.split.train.batches(setup.batch_size, generator))
                xb, yb = next(batches)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = setup.task.batch_loss(model, xb, yb)
            value = loss.item()
            if not math.isfinite(value):
                break
            loss.backward()
            optimizer.step()
            lrs.append(lr)
            losses.append(value)
            average = BETA * average + (1 - BETA) * value
            now = average / (1 - BETA ** (i + 1))
            lowest = min(lowest, now)
            if now > STOP_FACTOR * lowest:
                break
        out[family] = suggestions(lrs, losses)
    return out


def suggestions(lrs: list[float], losses: list[float]) -> dict[str, float | None]:
    """The rates a range test reads off its curve: the smoothed loss's minimum, its steepest fall."""
    if len(losses) < 10:
        return {"min": None, "steep": None}
    sm, x = smoothed(losses), np.log(lrs)
    slope = np.gradient(sm, x)
    skip = max(1, len(slope) // 10)
    return {"min": float(lrs[int(np.argmin(sm))]), "steep": float(lrs[skip + int(np.argmin(slope[skip:]))])}


def collect(steps: int, jobs: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    cells = [(name, seed) for name in DEV for seed in (0, 1)]
    with ProcessPoolExecutor(jobs) as pool:
        found = dict(zip((f"{n}|{s}" for n, s in cells), pool.map(sweep, *zip(*cells), [steps] * len(cells))))
    RESULT.write_text(json.dumps({"steps": steps, "sweeps": found}, indent=0, sort_keys=True) + "\n")


def report() -> None:
    data = json.loads(RESULT.read_text())
    steps, sweeps = data["steps"], data["sweeps"]
    grids = load_grids(list(DEV))

    def regret(name: str, config: tuple[str, int], seed: int) -> float | None:
        if (config[0], config[1], seed) not in grids[name].runs:
            return None
        return min(grids[name].regret_on(config, seed), CAP)

    def mean_over_problems(pick: Any) -> tuple[float, int]:
        per: dict[str, list[float]] = {}
        outside = 0
        for name in grids:
            for seed in (0, 1):
                config = pick(name, seed)
                r = None if config is None else regret(name, config, 1 - seed)
                outside += r is None
                per.setdefault(name, []).append(CAP if r is None else r)
        return float(np.mean([np.mean(v) for v in per.values()])), outside

    cost = [steps / (v["steps_per_epoch"] * PROBLEMS[key.split("|")[0]].epochs) for key, v in sweeps.items()]
    print(f"{len(grids)} development problems x 2 grid seeds; range tests of {steps} steps, each costing "
          f"{np.median(cost):.2f} TRE (median; up to {max(cost):.2f}) per family")
    print("mean regret on the other grid seed (capped at 100%; rates outside the grid count 100%, how many in brackets)\n")
    print(f"  {'family':<9} {'range test, best rule and offset':<34} {'best fixed rate':<18} portfolio's rate")
    entries = portfolio_steps()
    for family in FAMILIES:
        options = []
        for rule in ("min", "steep"):
            for d in OFFSETS:
                def pick(name: str, seed: int, rule: str = rule, d: int = d) -> tuple[str, int] | None:
                    lr = sweeps[f"{name}|{seed}"][family][rule]
                    return None if lr is None else (family, k_of(lr) + d)
                m, outside = mean_over_problems(pick)
                options.append((m, f"{rule} {d:+d} steps", outside))
        m, how, outside = min(options)
        fixed = min((mean_over_problems(lambda n, s, k=k: (family, k))[0], k) for k in range(-15, 4))
        entry = (f"{mean_over_problems(lambda n, s: (family, entries[family]))[0]:6.1%} (lr {lr_of(entries[family]):.2g})"
                 if family in entries else "-")
        print(f"  {family:<9} {m:6.1%} ({how}, {outside:2d} outside)    {fixed[0]:6.1%} (lr {lr_of(fixed[1]):.2g})   {entry}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", action="store_true", help="run the sweeps (else: the table from the last ones)")
    parser.add_argument("--steps", type=int, default=100, help="mini-batches per sweep (fastai's and Lightning's 100)")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    if args.collect:
        collect(args.steps, args.jobs)
    report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
