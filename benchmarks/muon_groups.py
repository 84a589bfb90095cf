"""Which parameters Muon gets besides the hidden linear matrices, decided on the development fold.

Muon's authors put embeddings, the output layer and vectors on AdamW and the hidden matrices on Muon
(``autoopt/optimizers/param_roles.py``). Three kinds of parameter are left to decide: convolution
kernels (orthogonalized as out_channels x the rest, as the reference implementation does for CIFAR),
recurrent gate matrices, and a network's first layer (``input``: not an embedding, not hidden either).
For each question, every development problem that has such parameters trains Muon with and without
them on Muon, at the learning rates of the grid's window around Muon's default (lr = 10 ** (k / 3),
k = -9 .. -3), on the 2 grid seeds; a variant's score on a problem is its best learning rate's mean
final validation loss, and the verdict is the geometric mean of its ratio to the baseline's (lower is
better) over the problems, with how many it wins.

    python benchmarks/muon_groups.py --jobs 2            # about 15 min on this project's 2-core CPU
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, PROBLEMS  # noqa: E402
from grids import GRID_SEEDS, evaluate, lr_of, params_of  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "muon_groups-dev.json"
BASE = frozenset({"matrix", "conv", "recurrent"})
#: question -> (the role it asks about, the variant without it / with it)
QUESTIONS = {
    "conv": ("conv", BASE - {"conv"}),
    "recurrent": ("recurrent", BASE - {"recurrent"}),
    "input": ("input", BASE | {"input"}),
}
KS = range(-9, -2)


def _roles(name: str) -> set[str]:
    from autoopt.optimizers.param_roles import parameter_roles

    return set(parameter_roles(PROBLEMS[name].model(0)).values())


def _run(name: str, roles: frozenset[str], k: int, seed: int) -> float | None:
    from autoopt.optimizers import param_roles

    torch.set_num_threads(1)
    param_roles.MUON_ROLES = roles  # this worker's choice: muon_groups reads it when it splits a model
    run = evaluate(name, "muon", params_of("muon", lr_of(k)), seed)
    return run["curve"][-1] if run["outcome"] == "completed" else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--problems", nargs="*", default=None, help="default: every development problem")
    args = parser.parse_args(argv)
    names = args.problems or list(DEV)
    plan: list[tuple[str, str, frozenset[str]]] = []  # (question, problem, roles)
    for question, (role, other) in QUESTIONS.items():
        for name in names:
            if role in _roles(name):
                plan += [(question, name, BASE), (question, name, frozenset(other))]
    jobs = sorted({(name, roles, k, seed) for _, name, roles in plan for k in KS for seed in GRID_SEEDS},
                  key=lambda j: (j[0], sorted(j[1]), j[2], j[3]))
    with ProcessPoolExecutor(args.jobs) as pool:
        finals = dict(zip(jobs, pool.map(_run, *zip(*jobs))))
    result: dict[str, Any] = {}
    for question, (role, other) in QUESTIONS.items():
        rows = []
        for name in dict.fromkeys(n for q, n, _ in plan if q == question):
            best = {}
            for label, roles in (("base", BASE), ("variant", frozenset(other))):
                means = [np.mean([finals[(name, roles, k, s)] for s in GRID_SEEDS])
                         for k in KS if all(finals[(name, roles, k, s)] is not None for s in GRID_SEEDS)]
                best[label] = float(min(means)) if means else math.inf
            rows.append({"problem": name, **best, "ratio": best["variant"] / best["base"]})
        ratios = [r["ratio"] for r in rows if math.isfinite(r["ratio"])]
        result[question] = {
            "variant": f"{role} on {'AdamW' if role in BASE else 'Muon'}", "rows": rows,
            "geomean_ratio": float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan,
            "variant_wins": sum(r < 1 for r in ratios), "base_wins": sum(r > 1 for r in ratios)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for question, r in result.items():
        print(f"{question}: {r['variant']} against {sorted(BASE)} on Muon: geometric mean ratio "
              f"{r['geomean_ratio']:.3f} (variant better on {r['variant_wins']}, base on {r['base_wins']})")
        for row in r["rows"]:
            print(f"   {row['problem']:<24} base {row['base']:.4g}  variant {row['variant']:.4g}  ratio {row['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
