"""autoopt's wall time per training-run equivalent against a bare PyTorch loop, and its parallel speed-up.

Two measurements, each against a baseline taken in the same run:

1. Overhead (target: within 10%, MLflow tracking on). A bare loop trains the same optimizers on the same
   recipe (tensors sliced by a random permutation, validation loss after every epoch, as a person
   would write it); autoopt runs a study of the same number of full trials (no pruning, no screening,
   no re-evaluation: only the per-trial machinery is measured), tracking to a fresh sqlite store.
   Reported: seconds per training run for each and their ratio. Study set-up and the summary
   (plots, artifacts) are included in autoopt's time, so short studies pay them visibly.
2. Parallel trials (target: 2 workers give at least 1.7x the trials per minute of one on 2 cores).

    python benchmarks/overhead.py                 # both, digits_mlp, about a minute on 2 cores
    python benchmarks/overhead.py --runs 24 --recipe breast_cancer
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import autoopt
from autoopt.cli.recipes import load_recipe
from autoopt.optimizers.registry import get_spec
from autoopt.training.intake import prepare_data
from autoopt.training.task import infer_task

OPTIMIZERS = ["sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad"]
RESULTS = Path(__file__).resolve().parent / "results"


def bare_loop(model: torch.nn.Module, data, epochs: int, batch_size: int, runs: int) -> float:
    """Seconds for ``runs`` full training runs written by hand, cycling through OPTIMIZERS."""
    split = prepare_data(data)
    loss_fn = infer_task(model, split).loss_fn
    X, y, Xv, yv = split.train.X, split.train.y, split.val.X, split.val.y
    start = time.perf_counter()
    for run in range(runs):
        net = copy.deepcopy(model)
        spec = get_spec(OPTIMIZERS[run % len(OPTIMIZERS)])
        opt = spec.build(net.parameters(), spec.defaults)
        g = torch.Generator().manual_seed(run)
        for _ in range(epochs):
            net.train()
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad(set_to_none=True)
                loss_fn(net(X[idx]), y[idx]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                loss_fn(net(Xv), yv).item()
    return time.perf_counter() - start


#: One MLflow store for every tracked study: creating a store's schema takes MLflow 10-20 s once,
#: which is a cost of the first study in a folder, not of every study.
STORE = f"sqlite:///{tempfile.mkdtemp(prefix='autoopt-bench-')}/mlflow.db"


def autoopt_study(model, data, epochs: int, batch_size: int, runs: int, n_jobs: int = 1,
                  tracking: bool = True) -> tuple[float, float]:
    """(wall seconds, training-run equivalents) of a study of ``runs`` full trials."""
    start = time.perf_counter()
    report = autoopt.tune(model, data, epochs=epochs, batch_size=batch_size, optimizers=OPTIMIZERS,
                          n_trials=runs, pruner="none", refine_lr=False, reevaluate_top=0,
                          sampler="random", n_jobs=n_jobs, tracking=tracking, tracking_uri=STORE,
                          study_name=f"bench-{time.time_ns()}", verbose=False)
    return time.perf_counter() - start, report.cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits_mlp")
    parser.add_argument("--runs", type=int, default=18, help="full training runs per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-parallel", action="store_true")
    args = parser.parse_args()

    # autoopt trains models this small on one thread; the bare loop gets the same, so the ratio is
    # autoopt's own overhead and not a difference in threading
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe)
    model, data = recipe.make(seed=0)
    epochs, batch = recipe.epochs or 10, recipe.batch_size or 64
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"problem: {args.recipe}, {epochs} epochs x batch {batch}, {args.runs} runs per measurement")

    autoopt_study(model, data, 1, batch, 1)  # create the store and import MLflow before timing
    bare, tuned, untracked = [], [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        bare.append(bare_loop(model, data, epochs, batch, args.runs) / args.runs)
        seconds, tre = autoopt_study(model, data, epochs, batch, args.runs)
        tuned.append(seconds / tre)
        seconds, tre = autoopt_study(model, data, epochs, batch, args.runs, tracking=False)
        untracked.append(seconds / tre)
    b, t, u = statistics.median(bare), statistics.median(tuned), statistics.median(untracked)
    result = {"recipe": args.recipe, "runs": args.runs, "bare_s_per_run": b, "autoopt_s_per_tre": t,
              "autoopt_untracked_s_per_tre": u, "overhead_ratio": t / b, "untracked_ratio": u / b}
    print(f"bare loop            {b:.3f} s per run")
    print(f"autoopt, MLflow on   {t:.3f} s per TRE   ratio {t / b:.3f}  (target <= 1.10)")
    print(f"autoopt, MLflow off  {u:.3f} s per TRE   ratio {u / b:.3f}")

    if not args.skip_parallel:
        one, two = [], []
        for _ in range(args.repeats):
            seconds, _tre = autoopt_study(model, data, epochs, batch, args.runs, n_jobs=1, tracking=False)
            one.append(args.runs / seconds * 60)
            seconds, _tre = autoopt_study(model, data, epochs, batch, args.runs, n_jobs=2, tracking=False)
            two.append(args.runs / seconds * 60)
        o, w = statistics.median(one), statistics.median(two)
        result.update(trials_per_min_1=o, trials_per_min_2=w, parallel_speedup=w / o)
        print(f"trials per minute    1 worker {o:.1f}, 2 workers {w:.1f}: speed-up {w / o:.2f}x (target >= 1.7x)")

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"overhead-{args.recipe}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
