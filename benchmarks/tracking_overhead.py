"""What MLflow tracking costs a study: the same study with tracking off and on, interleaved.

The study: an MLP (64-w-w-10) on scikit-learn's digits (1797 8x8 images, no download), a handful of
optimizers, a fixed seed, so both modes train exactly the same trials. Tracking goes to a fresh
temporary sqlite store (MLflow's default kind of store). Runs alternate off/on and on/off so that
drift in the machine's load falls on both sides; the ratio of medians is the headline number.

One-time costs are reported apart, because a person pays them once per process or per store:
importing MLflow, and creating a new ``mlflow.db`` (MLflow runs its schema migrations).

    python benchmarks/tracking_overhead.py                # tiny trials (a fraction of a second each)
    python benchmarks/tracking_overhead.py --width 512    # trials of a few seconds each
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

import autoopt

OPTIMIZERS = ["adam", "adamw", "sgd", "momentum", "rmsprop"]


def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    X = ((data.data - data.data.mean(0)) / (data.data.std(0) + 1e-6)).astype(np.float32)
    return X, data.target.astype(np.int64)


def model(width: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, 10))


def run(data, args, *, tracking_uri: str | None, name: str) -> tuple[float, autoopt.Report]:
    start = time.perf_counter()
    report = autoopt.tune(model(args.width), data, optimizers=OPTIMIZERS, epochs=args.epochs, n_trials=args.trials,
                          seeds=2, reevaluate_top=2, seed=0, verbose=False, study_name=name,
                          tracking=tracking_uri is not None, tracking_uri=tracking_uri)
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="off/on pairs to time (default 5)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    parser.add_argument("--trials", type=int, default=10, help="search trials; 2 re-runs come on top (default 10)")
    parser.add_argument("--width", type=int, default=64,
                        help="hidden width of the 64-w-w-10 MLP (default 64: trials of a fraction of a second; "
                             "512: trials of seconds)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a small shared machine, torch threads competing "
                             "for the cores make epoch times swing by 10x and drown what is measured)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch threads {torch.get_num_threads()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, mlflow {metadata.version('mlflow')}; "
          f"load average {os.getloadavg()[0]:.1f} (timings are only as steady as the machine)")
    data = digits()
    with tempfile.TemporaryDirectory(prefix="autoopt-bench-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"

        start = time.perf_counter()
        import mlflow  # noqa: F401  (what the first tracked study of a process pays)
        import_seconds = time.perf_counter() - start
        first, _ = run(data, args, tracking_uri=uri, name="warmup-on")  # + creating mlflow.db
        baseline, report = run(data, args, tracking_uri=None, name="warmup-off")
        trials, epochs = len(report.trials), int(report.trials["epochs"].sum())
        print(f"study: digits, MLP 64-{args.width}-{args.width}-10, {len(OPTIMIZERS)} optimizers, {args.epochs} epochs per trial, "
              f"{trials} trials ({epochs} epochs trained), fixed seed")
        print(f"one-time: import mlflow {import_seconds:.1f} s; first tracked study with a new mlflow.db "
              f"{first:.1f} s vs {baseline:.1f} s untracked (+{first - baseline:.1f} s: schema creation)")

        times: dict[str, list[float]] = {"off": [], "on": []}
        for pair in range(args.pairs):
            order = ("off", "on") if pair % 2 == 0 else ("on", "off")
            for mode in order:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    seconds, _ = run(data, args, tracking_uri=uri if mode == "on" else None,
                                     name=f"bench-{mode}-{pair}")
                times[mode].append(seconds)
                print(f"  pair {pair + 1}/{args.pairs} tracking {mode:>3}: {seconds:6.2f} s", flush=True)

        start = time.perf_counter()  # the charts the summary draws, timed alone: a fixed cost per study
        for fig in (report.plot_curves(), report.plot_lr_sensitivity(), report.plot_tradeoff()):
            fig.savefig(Path(tmp) / "chart.png", dpi=100)
        plot_seconds = time.perf_counter() - start

    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    ratios = [b / a for a, b in zip(times["off"], times["on"])]
    print(f"median off {off:.2f} s, median on {on:.2f} s: ratio {on / off:.3f} "
          f"(overhead {100 * (on / off - 1):+.1f}%; per-pair ratios {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"tracking cost: {on - off:+.2f} s per study, of which {plot_seconds:.2f} s drawing the three PNGs "
          f"once at the end; the rest is {1000 * (on - off - plot_seconds) / trials:+.0f} ms per trial "
          f"(run creation, metrics, status, summary files); load average now {os.getloadavg()[0]:.1f}")
    target = 1.05
    print("target (overhead under 5%):", "met" if on / off < target else "NOT met")


if __name__ == "__main__":
    main()
