"""Which learning-rate schedule should a configuration train with by default? (issue 12)

For each development problem, the grid's 3 best configurations (constant learning rate, chosen on the
grid seeds) and each one's rate a grid step higher (a decaying schedule's mean rate is lower) are
trained with each schedule (constant; cosine and linear decay, both after a 5% linear warm-up) on two
fresh seeds (2 and 3: neither the grid's nor the held-out ones). A schedule's score on a problem is
its best cell's mean final loss; the table compares it with the constant schedule's on the same cells.

    python benchmarks/schedule_default.py --jobs 2    # about 15 min here; results/schedule_default-dev.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV  # noqa: E402
from grids import best_configs, evaluate, final_loss, load, lr_of, params_of  # noqa: E402

SCHEDULES = {"constant": {}, "cosine": {"schedule": "cosine", "warmup_fraction": 0.05},
             "linear": {"schedule": "linear", "warmup_fraction": 0.05}}
SEEDS = (2, 3)
OUT = Path(__file__).resolve().parent / "results" / "schedule_default-dev.json"


def _job(name: str, optimizer: str, k: int, schedule: str, seed: int) -> tuple[tuple, float | None]:
    import torch

    torch.set_num_threads(1)
    params = {**params_of(optimizer, lr_of(k)), **SCHEDULES[schedule]}
    return (name, optimizer, k, schedule, seed), final_loss(evaluate(name, optimizer, params, seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    cells = {n: sorted({(c["optimizer"], c["k"] + d) for c in best_configs(load(n)) for d in (0, 1)}) for n in DEV}
    jobs = [(n, o, k, s, seed) for n in DEV for o, k in cells[n] for s in SCHEDULES for seed in SEEDS]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = dict(pool.map(_job, *zip(*jobs), chunksize=4))
    rows, table = [], {}
    for name in DEV:
        best = {}
        for schedule in SCHEDULES:
            means = []
            for o, k in cells[name]:
                losses = [results[(name, o, k, schedule, seed)] for seed in SEEDS]
                means.append(math.inf if any(v is None for v in losses) else float(np.mean(losses)))
            best[schedule] = min(means)
        table[name] = best
        rows.append(f"{name:<22}" + "".join(f"  {s} {best[s] / best['constant'] - 1:+7.1%}" for s in SCHEDULES))
    print("\n".join(rows))
    for schedule in SCHEDULES:
        ratios = np.array([table[n][schedule] / table[n]["constant"] for n in DEV])
        ratios = ratios[np.isfinite(ratios)]
        print(f"{schedule:<9} mean change {np.mean(ratios) - 1:+.1%} (median {np.median(ratios) - 1:+.1%}), "
              f"better on {int(np.sum(ratios < 0.99))}, worse on {int(np.sum(ratios > 1.01))} of {len(DEV)}")
    OUT.write_text(json.dumps({"seeds": SEEDS, "schedules": SCHEDULES, "cells": {n: cells[n] for n in DEV},
                               "best": table, "runs": {"|".join(map(str, k)): v for k, v in results.items()}},
                              separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
