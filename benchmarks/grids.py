"""The exhaustive reference grid of every corpus problem, computed in pieces and cached (``grid_cache.py``).

For each problem: every optimizer family (``grid_cache.FAMILIES``; six for the problems whose single run
takes seconds) at its registry defaults, learning rates on a third-of-a-decade grid (lr = 10 ** (k / 3)),
seeds 0 and 1. Each family starts on its own window of ``WINDOW`` learning rates; wherever a family's
best rate lies on an edge of what was tried, two more rates are added on that side, until every
family's best is interior (or the rates are absurd). Then the grid's top 3 configurations are trained on
the 5 reference seeds and the 5 score seeds, which no search ever sees (``grid_cache.reference``).

Every run keeps its per-epoch validation curve, so strategies that choose among grid configurations can
be replayed from the cache (``simulate.py``) without training. Results are saved as they arrive: a run
stopped at any point loses at most the runs in flight, and the next run goes on from there.

    python benchmarks/grids.py --plan                    # what is missing, and about how long it takes
    python benchmarks/grids.py --jobs 2                  # every problem
    python benchmarks/grids.py --problems mlp_wine       # one problem; --version 2 or --fold dev: a piece
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, PROBLEMS, TEST  # noqa: E402
from grid_cache import (FAMILIES, GRID_SEEDS, REFERENCE_SEEDS, SCORE_SEEDS, START, WINDOW,  # noqa: E402,F401
                        best_configs, config_key, configs, edge_extensions, evaluate, families_of, final_loss,
                        heldout_losses, load, load_valid, lr_of, params_of, reference, run_key, save)

Work = tuple[str, str, dict[str, Any], int, Any]  # (problem, optimizer, params, seed, where the result goes)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _job(name: str, optimizer: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    return evaluate(name, optimizer, params, seed)


def window_work(record: dict[str, Any]) -> list[Work]:
    """The grid runs of the families' first windows that are not in the record yet."""
    name = record["problem"]
    return [(name, o, params_of(o, lr_of(k)), s, run_key(o, k, s))
            for o in families_of(name) for k in range(START[o], START[o] + WINDOW) for s in GRID_SEEDS
            if run_key(o, k, s) not in record["runs"]]


def heldout_work(record: dict[str, Any]) -> list[Work]:
    """The top configurations' runs on the reference and score seeds that are not in the record yet."""
    work = []
    for c in best_configs(record):
        params = params_of(c["optimizer"], lr_of(c["k"]))
        have = record["heldout"].get(config_key(c["optimizer"], params), {})
        work += [(record["problem"], c["optimizer"], params, s, (config_key(c["optimizer"], params), s))
                 for s in REFERENCE_SEEDS + SCORE_SEEDS if str(s) not in have]
    return work


def compute(problems: Iterable[str], jobs: int = 2, log: Any = print) -> dict[str, dict[str, Any]]:
    """Bring every problem's cache up to date; returns the records. Saves as results arrive."""
    problems = list(problems)
    torch.set_num_threads(1)
    records = {}
    for name in problems:
        records[name] = load_valid(name, log)
        records[name].setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        records[name].update(epochs=PROBLEMS[name].epochs, batch_size=PROBLEMS[name].batch_size,
                             kind=PROBLEMS[name].kind, task=PROBLEMS[name].task, corpus=PROBLEMS[name].version)
        save(records[name])
    with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
        def run_all(work: list[Work]) -> None:
            futures = {pool.submit(_job, n, o, p, s): (n, key) for n, o, p, s, key in work}
            last_save, pending = time.monotonic(), set()
            for i, future in enumerate(as_completed(futures), 1):
                name, key = futures[future]
                result = future.result()
                if isinstance(key, tuple):  # a held-out run: (config key, seed)
                    records[name]["heldout"].setdefault(key[0], {})[str(key[1])] = final_loss(result)
                else:
                    records[name]["runs"][key] = result
                pending.add(name)
                if time.monotonic() - last_save > 20 or i == len(futures):
                    for n in pending:
                        save(records[n])
                    pending.clear()
                    last_save = time.monotonic()
                    log(f"  {i}/{len(futures)} runs done")

        work = [w for n in problems for w in window_work(records[n])]
        for rounds in range(100):  # the grid, widened until every family's best rate is interior
            if not work:
                break
            log(f"grid round {rounds}: {len(work)} runs")
            run_all(work)
            work = [(n, o, params_of(o, lr_of(k)), s, run_key(o, k, s))
                    for n in problems for o, k in edge_extensions(records[n], n) for s in GRID_SEEDS
                    if run_key(o, k, s) not in records[n]["runs"]]
        work = [w for n in problems for w in heldout_work(records[n])]
        if work:
            log(f"held-out seeds: {len(work)} runs")
            run_all(work)
    for n in problems:
        runs = records[n]["runs"].values()
        records[n]["tre"] = round(sum(r["epochs"] for r in runs) / PROBLEMS[n].epochs, 1)
        records[n]["train_seconds"] = round(sum(r["seconds"] for r in runs), 1)
        save(records[n])
    return records


def evaluate_heldout(name: str, optimizer: str, params: dict[str, Any],
                     seeds: tuple[int, ...] = SCORE_SEEDS) -> list[float | None]:
    """Losses of a configuration on problem ``name``'s ``seeds``, from the cache or trained now (and cached)."""
    record = load(name)
    losses = heldout_losses(record, optimizer, params, seeds)
    if losses is not None:
        return losses
    runs = record["heldout"].setdefault(config_key(optimizer, params), {})
    for seed in seeds:
        if str(seed) not in runs:
            runs[str(seed)] = final_loss(evaluate(name, optimizer, params, seed))
    save(record)
    return [runs[str(s)] for s in seeds]


def plan(problems: Iterable[str]) -> str:
    """What is missing of each problem's grid (a first window and the held-out runs; edge extensions
    come on top) and an estimate of its time on one core from the problem's cached run times."""
    lines, total = [], 0.0
    for name in problems:
        record = load(name)
        seconds = [r["seconds"] for r in record["runs"].values()] or [math.nan]
        per_run = sorted(seconds)[len(seconds) // 2]
        missing = len(window_work(record)) + (len(heldout_work(record)) if record["runs"] else 0)
        known = "" if math.isfinite(per_run) else " (no run timed yet)"
        if missing:
            lines.append(f"{name:<28} {missing:4d} runs missing, about {missing * per_run / 60:5.1f} min on one core{known}")
            total += missing * per_run if math.isfinite(per_run) else 0.0
    return "\n".join(lines + [f"about {total / 60:.0f} min of known runs in all on one core (edge extensions on top)"])


def summary_line(record: dict[str, Any]) -> str:
    ref = reference(record)
    return (f"{record['problem']:<28} {record['kind']:<20} best {ref['optimizer']:<8} lr {ref['lr']:.2e}  "
            f"score seeds {ref['mean']:.4g}  grid {record['tre']:.0f} TRE, {record['train_seconds'] / 60:.0f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="*", default=None)
    parser.add_argument("--version", type=int, choices=(1, 2), help="only the problems of this corpus version")
    parser.add_argument("--fold", choices=("dev", "test"), help="only the problems of this fold")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plan", action="store_true", help="print what is missing and stop")
    args = parser.parse_args(argv)
    names = args.problems or list(PROBLEMS)
    unknown = sorted(set(names) - set(PROBLEMS))
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; the corpus has {sorted(PROBLEMS)}")
    names = [n for n in names if (args.version is None or PROBLEMS[n].version == args.version)
             and (args.fold is None or n in (DEV if args.fold == "dev" else TEST))]
    if args.plan:
        print(plan(names))
        return 0
    start = time.perf_counter()
    records = compute(names, args.jobs)
    for name in names:
        print(summary_line(records[name]))
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
