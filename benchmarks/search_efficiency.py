"""Search efficiency (issue #5): how close does each search get to an exhaustive grid, for how much training?

For each problem (a recipe with a fixed validation split):

1. the reference grid (7 optimizers x 13 learning rates x seeds 0 and 1) gives the best configuration,
   cached in ``results/grid-<problem>.json`` by code version (``reference.py``);
2. every method (autoopt, its one-mechanism ablations, plain Optuna TPE and random search) runs with
   sampler seeds 0, 1, 2 and a budget of 5 training-run equivalents (TRE: epochs spent / EPOCHS);
3. the grid's best configuration and every method's recommendation are trained on 5 held-out seeds
   (1000-1004) no search ever sees; regret = (method mean - reference mean) / reference mean.

The target: regret <= 1%, or, where seed noise is larger, a seed-paired mean difference <= 1% of the
reference + 2 standard errors; and no recommendation may diverge on any held-out seed.

    python benchmarks/search_efficiency.py --jobs 2                      # everything (see README)
    python benchmarks/search_efficiency.py --quick                       # smoke run: 1 problem, 1 seed
    python benchmarks/search_efficiency.py --methods tpe random --merge  # add rows to the last results

Writes ``results/search_efficiency.json`` (every run, every held-out loss) and
``results/search_efficiency.md`` (the table for the README).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods import default_settings, expand_methods, method_name, run_method  # noqa: E402
from problems import (HELD_OUT_SEEDS, OPTIMIZERS, PROBLEMS, RESULTS, autoopt_version, evaluate,  # noqa: E402
                      evaluation_version, load_problem, set_single_thread)
from reference import (HeldOutCache, cached_grid, fidelity, grid_jobs, grid_table, make_grid,  # noqa: E402
                       score, stale_reason)

DEFAULT_METHODS = ["all"]
QUICK_PROBLEM = "diabetes"
QUICK_METHODS = ["autoopt", "tpe", "random"]


# --- running jobs ----------------------------------------------------------------------------------

def run_jobs(fn: Callable[..., Any], calls: list[tuple], jobs: int, label: str,
             on_result: Callable[[tuple, Any], None] | None = None) -> list[Any]:
    """``fn(*call)`` for every call, in a process pool of ``jobs`` (in this process for 1); in order."""
    results: list[Any] = [None] * len(calls)
    start = time.perf_counter()
    done = 0

    def finished(i: int, result: Any) -> None:
        nonlocal done
        results[i] = result
        done += 1
        if on_result is not None:
            on_result(calls[i], result)
        if done == len(calls) or done % max(1, len(calls) // 10) == 0:
            print(f"  {label}: {done}/{len(calls)} done, {time.perf_counter() - start:.0f} s", flush=True)

    if jobs <= 1 or len(calls) <= 1:
        for i, call in enumerate(calls):
            finished(i, fn(*call))
        return results
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=set_single_thread) as pool:
        futures = {pool.submit(fn, *call): i for i, call in enumerate(calls)}
        for future in as_completed(futures):
            finished(futures[future], future.result())
    return results


# --- the three phases ------------------------------------------------------------------------------

def reference_grids(problems: list[str], jobs: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The grid of every problem: from its cache when the code has not changed, else computed."""
    grids: dict[str, dict[str, Any]] = {}
    missing = []
    for name in problems:
        grid = cached_grid(name)
        if grid is not None:
            grid["cached"] = True
            grids[name] = grid
            print(f"grid {name}: CACHED (made {grid['created']} by code {grid['version']['sha256']}, "
                  f"took {grid['wall_seconds']} s with {grid['jobs']} job(s) then)")
        else:
            print(f"grid {name}: computing ({stale_reason(name)})")
            missing.append(name)
    start = time.perf_counter()
    versions = {name: evaluation_version(name) for name in missing}  # the code the runs below use
    calls = [job for name in missing for job in grid_jobs(name)]
    results = run_jobs(evaluate, calls, jobs, "grid runs") if calls else []
    wall = time.perf_counter() - start
    for name in missing:
        if evaluation_version(name)["sha256"] != versions[name]["sha256"]:
            print(f"WARNING: the evaluation code of {name} changed while its grid ran; the cache is tagged with "
                  "the version at the start and will be recomputed next time.")
        mine = [r for (p, *_), r in zip(calls, results) if p == name]
        share = wall * len(mine) / max(len(calls), 1)  # the pool mixes problems: wall time split by runs
        grids[name] = {**make_grid(name, mine, share, jobs, versions[name]), "cached": False}
    for name in problems:
        best = grids[name]["best"]
        print(f"\n{name}: mean final val loss over seeds 0-1 ('div' = diverged on a seed); "
              f"best {best['optimizer']} lr={best['params']['lr']:.3g} ({best['mean_val_loss']:.4f}), "
              f"{grids[name]['tre']:.1f} TRE")
        print(grid_table(grids[name]))
        if all("val_curve" in r for r in grids[name]["runs"]):
            grids[name]["fidelity"] = fidelity(grids[name])
            print("does the loss after k epochs rank the runs as their final loss does? (grid runs that trained)")
            for f in grids[name]["fidelity"]:
                print(f"  epoch {f['epoch']:>2}: Spearman {f['spearman']:+.2f}; the run best at epoch {f['epoch']} "
                      f"ends {100 * f['regret_of_best_at_epoch']:+.1f}% above the best final loss "
                      f"(best of its top 3: {100 * f['regret_of_best_of_top3_at_epoch']:+.1f}%)")
    return grids, {"wall_seconds": round(wall, 1), "computed": missing,
                   "cached": [n for n in problems if n not in missing]}


def search_runs(problems: list[str], methods: list[str], seeds: list[int], budget: float,
                jobs: int) -> tuple[list[dict[str, Any]], float]:
    calls = [(p, m, s, budget) for p in problems for m in methods for s in seeds]

    def show(call: tuple, run: dict[str, Any]) -> None:
        rec = run["recommendation"]
        what = (f"{rec['optimizer']} lr={rec['params']['lr']:.3g}" if rec else run.get("error") or "no recommendation")
        tre = f"{run['tre']:.2f} TRE" if run.get("tre") is not None else "-"
        print(f"    {run['problem']:<14} {run['method']:<32} seed {run['sampler_seed']}: {what} ({tre}, "
              f"{run['wall_seconds']:.0f} s)", flush=True)

    start = time.perf_counter()
    version = autoopt_version()  # the workers import autoopt as they start, right after this
    runs = run_jobs(run_method, calls, jobs, "search runs", show)
    stamp = now()
    changed = autoopt_version()["sha256"] != version["sha256"]
    for run in runs:
        run.update(run_at=stamp, autoopt_version=version["sha256"], autoopt_changed_during_run=changed)
    return runs, time.perf_counter() - start


def held_out(problems: list[str], grids: dict[str, dict[str, Any]], runs: list[dict[str, Any]],
             jobs: int) -> tuple[dict[str, HeldOutCache], dict[str, Any]]:
    """Evaluate the reference and every recommendation on the held-out seeds (cached ones are reused)."""
    caches = {name: HeldOutCache(name) for name in problems}
    for name, cache in caches.items():
        if cache.discarded:
            print(f"held-out cache {name}: code changed, discarded")
    wanted: dict[tuple, None] = {}
    for name in problems:
        best = grids[name]["best"]
        for seed in HELD_OUT_SEEDS:
            wanted[(name, best["optimizer"], _frozen(best["params"]), seed)] = None
    for run in runs:
        if run["recommendation"] is not None and run["problem"] in caches:
            rec = run["recommendation"]
            for seed in HELD_OUT_SEEDS:
                wanted[(run["problem"], rec["optimizer"], _frozen(rec["params"]), seed)] = None
    calls = [(n, o, dict(p), s) for (n, o, p, s) in wanted if caches[n].get(o, dict(p), s) is None]
    print(f"\nheld-out evaluations: {len(wanted)} needed, {len(wanted) - len(calls)} cached, {len(calls)} to train")
    start = time.perf_counter()
    results = run_jobs(evaluate, calls, jobs, "held-out runs") if calls else []
    for (name, opt, params, seed), result in zip(calls, results):
        caches[name].put(opt, params, seed, result)
    for cache in caches.values():
        cache.save()
    return caches, {"wall_seconds": round(time.perf_counter() - start, 1), "trained": len(calls),
                    "cached": len(wanted) - len(calls)}


def _frozen(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


# --- scoring and the tables ------------------------------------------------------------------------

def losses_on(cache: HeldOutCache, optimizer: str, params: dict[str, Any]) -> list[float | None]:
    out = []
    for seed in HELD_OUT_SEEDS:
        result = cache.get(optimizer, params, seed)
        out.append(result["final_val_loss"] if result and result["outcome"] == "completed" else None)
    return out


def score_runs(problems: list[str], grids: dict[str, dict[str, Any]], runs: list[dict[str, Any]],
               caches: dict[str, HeldOutCache]) -> dict[str, dict[str, Any]]:
    references = {}
    for name in problems:
        best = grids[name]["best"]
        losses = losses_on(caches[name], best["optimizer"], best["params"])
        if any(v is None for v in losses):
            raise RuntimeError(f"{name}: the grid's best configuration diverged on a held-out seed: {losses}")
        references[name] = {**best, "heldout_losses": losses, "heldout_mean": float(np.mean(losses)),
                            "grid_tre": grids[name]["tre"], "grid_cached": grids[name]["cached"],
                            "grid_created": grids[name]["created"], "grid_version": grids[name]["version"],
                            "fidelity": grids[name].get("fidelity")}
    for run in runs:
        rec = run["recommendation"]
        if rec is None:
            run["heldout"] = {"losses": None, "regret": math.inf, "target_met": False, "diverged": False,
                              "no_recommendation": True}
            continue
        losses = losses_on(caches[run["problem"]], rec["optimizer"], rec["params"])
        run["heldout"] = {"losses": losses, **score(losses, references[run["problem"]]["heldout_losses"])}
        run["heldout"]["same_as_reference"] = (rec["optimizer"] == references[run["problem"]]["optimizer"]
                                               and rec["params"] == references[run["problem"]]["params"])
    return references


def summarize(problems: list[str], methods: list[str], runs: list[dict[str, Any]], budget: float,
              current: set[tuple]) -> list[dict[str, Any]]:
    rows = []
    for name in problems:
        for method in methods:
            mine = [r for r in runs if r["problem"] == name and r["method"] == method]
            if not mine:
                continue
            errors = [r for r in mine if r.get("error")]
            scored = [r for r in mine if not r.get("error")]
            regrets = [r["heldout"]["regret"] for r in scored]
            tres = [r["tre"] for r in scored]
            rows.append({
                "problem": name, "method": method, "runs": len(mine), "errors": len(errors),
                "error": errors[0]["error"] if errors else None,
                "mean_regret": float(np.mean(regrets)) if regrets else None,
                "worst_regret": float(max(regrets)) if regrets else None,
                "mean_tre": float(np.mean(tres)) if tres else None,
                "max_tre": float(max(tres)) if tres else None,
                "over_budget": sum(t > budget + 1e-9 for t in tres),
                "target_met": sum(r["heldout"]["target_met"] for r in scored),
                "heldout_diverged": sum(bool(r["heldout"].get("diverged")) for r in scored),
                "no_recommendation": sum(bool(r["heldout"].get("no_recommendation")) for r in scored),
                "earlier_invocation": any((r["problem"], r["method"], r["sampler_seed"]) not in current for r in mine),
                "recommendations": [_short_rec(r) for r in mine],
            })
    return rows


def _short_rec(run: dict[str, Any]) -> str:
    rec = run["recommendation"]
    if rec is None:
        return "error" if run.get("error") else "none"
    return f"{rec['optimizer']}@{rec['params']['lr']:.2g}"


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf"
    return f"{100 * value:+.1f}%"


def table_rows(rows: list[dict[str, Any]], references: dict[str, dict[str, Any]]) -> list[list[str]]:
    out = []
    for name, ref in references.items():
        out.append([name, "grid (reference)", "0 (def.)", "-", f"{ref['grid_tre']:.0f}", "-", "0",
                    f"{ref['optimizer']}@{ref['params']['lr']:.2g}, held-out {ref['heldout_mean']:.4g}"
                    + (" (grid cached)" if ref["grid_cached"] else "")])
        for row in (r for r in rows if r["problem"] == name):
            if row["errors"] == row["runs"]:
                out.append([name, row["method"], "error", "-", "-", f"0/{row['runs']}", "-",
                            _clip(row["error"], 70)])
                continue
            note = ", ".join(row["recommendations"])
            if row["errors"]:
                note += f"; {row['errors']} run(s) failed: {_clip(row['error'], 50)}"
            if row["over_budget"]:
                note += f"; OVER BUDGET in {row['over_budget']} run(s) (max {row['max_tre']:.2f} TRE)"
            if row["earlier_invocation"]:
                note += "; from an earlier invocation (--merge)"
            out.append([name, row["method"], _pct(row["mean_regret"]), _pct(row["worst_regret"]),
                        f"{row['mean_tre']:.2f}", f"{row['target_met']}/{row['runs']}",
                        str(row["heldout_diverged"]) + ("" if not row["no_recommendation"]
                                                        else f" (+{row['no_recommendation']} no rec.)"),
                        note])
    return out


def ablation_effects(rows: list[dict[str, Any]], base_method: str) -> tuple[list[str], list[list[str]]]:
    """Each autoopt variant's mean regret minus ``base_method``'s, per problem, in percentage points.

    Positive: the variant is worse, so the mechanism it switches away from helps on that problem.
    """
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    base = {r["problem"]: r["mean_regret"] for r in rows if r["method"] == base_method}
    variants = [m for m in dict.fromkeys(r["method"] for r in rows) if m.startswith("autoopt") and m != base_method]
    header = ["variant (vs " + base_method + ")", *problems, "worse on", "better on"]
    out = []
    for method in variants:
        mine = {r["problem"]: r["mean_regret"] for r in rows if r["method"] == method}
        cells, worse, better = [], 0, 0
        for p in problems:
            a, b = mine.get(p), base.get(p)
            if a is None or b is None:
                cells.append("-")
                continue
            if not (math.isfinite(a) and math.isfinite(b)):
                cells.append("inf" if a != b else "=")
                worse += (not math.isfinite(a)) and math.isfinite(b)
                better += math.isfinite(a) and not math.isfinite(b)
                continue
            delta = 100 * (a - b)
            cells.append("=" if abs(delta) < 0.05 else f"{delta:+.1f}")
            worse += delta >= 0.05
            better += delta <= -0.05
        out.append([method, *cells, str(worse), str(better)])
    return header, out


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header, *rows])


HEADER = ["problem", "method", "mean regret", "worst regret", "mean TRE", "target met", "held-out div.",
          "recommendations (per sampler seed) / notes"]


def _clip(text: str | None, n: int) -> str:
    text = (text or "").replace("\n", " ").replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER) - 1)]
    lines = []
    for row in [HEADER, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    lines.insert(1, "-" * min(len(lines[0]) + 40, 160))
    return "\n".join(lines)


def markdown_table(rows: list[list[str]], header: list[str] = HEADER) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- the machine and the files ---------------------------------------------------------------------

def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
            "optuna": optuna.__version__, "torch_threads": 1, "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in load] if load else None}


def write_markdown(path: Path, info: dict[str, Any], rows: list[list[str]],
                   effects: tuple[list[str], list[list[str]]]) -> None:
    m = info["machine"]
    t = info["timings"]
    text = f"""### Search efficiency (issue #5)

Budget {info['budget']} TRE per search (training-run equivalents: all epochs spent / the recipe's EPOCHS);
sampler seeds {', '.join(map(str, info['sampler_seeds']))}; regret of each recommendation against the exhaustive
grid's best configuration ({len(OPTIMIZERS)} optimizers x 13 learning rates x 2 seeds), both trained on the held-out
seeds {HELD_OUT_SEEDS[0]}-{HELD_OUT_SEEDS[-1]}. *Target met*: regret <= 1%, or the seed-paired mean difference <= 1%
of the reference + 2 SE. *held-out div.*: runs whose recommendation diverged on a held-out seed (must be 0).
autoopt's defaults: `{info['autoopt_defaults']}`.

{markdown_table(rows)}

Each autoopt variant's mean regret minus that of `{info['base_method']}`, in percentage points (positive: the
variant is worse, so the mechanism it switches away from helps there; `=`: the same recommendations' regret):

{markdown_table(effects[1], effects[0]) if effects[1] else '(no variants run)'}

Machine: {m['nproc']} cores ({m['cpu']}), torch {m['torch']} (1 thread per worker, {info['jobs']} worker(s)),
optuna {m['optuna']}, Python {m['python']}; {info['finished'][:10]}; autoopt code {info['autoopt_version']['sha256']}
(commit {str(info['autoopt_version']['commit'])[:10]}{', with uncommitted changes' if info['autoopt_version']['dirty'] else ''}).
Wall time of the last invocation: grid {t['grid']['wall_seconds']:.0f} s (cached: {', '.join(t['grid']['cached']) or 'none'}),
searches {t['searches_wall_seconds']:.0f} s, held-out {t['held_out']['wall_seconds']:.0f} s (rows marked "earlier invocation" were
run before, with the autoopt code named in the JSON's `runs[].autoopt_version`).
Made by `{info['command']}`.
"""
    path.write_text(text)


INVOCATION_KEYS = ("command", "started", "finished", "jobs", "methods", "autoopt_version", "timings")


def previous_invocations(path: Path) -> list[dict[str, Any]]:
    """What the runs of the last results file came from: each earlier invocation's command and timings."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return previous.get("invocations") or [{k: previous.get(k) for k in INVOCATION_KEYS}]


def merge_previous(path: Path, runs: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    """Runs from the last results file that this invocation did not redo (kept as they were)."""
    try:
        previous = json.loads(path.read_text())["runs"]
    except (OSError, KeyError, json.JSONDecodeError):
        return runs
    redone = {(r["problem"], r["method"], r["sampler_seed"]) for r in runs}
    kept = [r for r in previous if (r["problem"], r["method"], r["sampler_seed"]) not in redone
            and r["problem"] in problems]
    if kept:
        print(f"--merge: kept {len(kept)} run(s) from {path} (made {sorted({r['run_at'] for r in kept})})")
    return kept + runs


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=None, help=f"recipes (default: {' '.join(PROBLEMS)})")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="autoopt, autoopt:key=value[,...], ablations, tpe, random, all (default: all)")
    parser.add_argument("--sampler-seeds", nargs="+", type=int, default=None, help="default: 0 1 2")
    parser.add_argument("--budget", type=float, default=5.0, help="TRE per search (default: 5)")
    parser.add_argument("--base", nargs="*", default=[], metavar="KEY=VALUE",
                        help="settings put into every autoopt method and its name, ablations switch one "
                             "mechanism from there (e.g. --base reevaluate_top=2 seeds=2)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_PROBLEM}, seed 0, methods {' '.join(QUICK_METHODS)}; "
                             "writes results/quick/")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1 torch thread each)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the last results file's runs that this invocation does not redo")
    parser.add_argument("--rescore", action="store_true",
                        help="run no search: score the last results file's runs again and rewrite its tables")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems = args.problems[:1] if args.problems else [QUICK_PROBLEM]
        args.sampler_seeds = args.sampler_seeds[:1] if args.sampler_seeds else [0]
        args.methods = args.methods or QUICK_METHODS
        args.out = args.out or RESULTS / "quick"
    if args.rescore:
        args.methods, args.merge = [], True
    args.problems = args.problems or list(PROBLEMS)
    args.methods = args.methods if args.methods is not None else DEFAULT_METHODS
    args.sampler_seeds = args.sampler_seeds if args.sampler_seeds is not None else [0, 1, 2]
    args.out = args.out or RESULTS
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    base = dict(parse_base(args.base))
    methods = expand_methods(args.methods, base)
    for name in args.problems:
        load_problem(name)  # a bad recipe name fails here, before anything trains
    version_start = autoopt_version()
    info: dict[str, Any] = {
        "command": " ".join(["python benchmarks/search_efficiency.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": now(), "machine": machine(), "jobs": args.jobs, "budget": args.budget,
        "problems": args.problems, "methods": methods, "sampler_seeds": args.sampler_seeds,
        "held_out_seeds": list(HELD_OUT_SEEDS), "optimizers": list(OPTIMIZERS),
        "autoopt_defaults": default_settings(), "autoopt_base_settings": base, "autoopt_version": version_start,
    }
    print(f"machine: {info['machine']['nproc']} cores, {info['machine']['cpu']}, torch {torch.__version__}, "
          f"optuna {optuna.__version__}, load {info['machine']['load_average_at_start']}")
    print(f"autoopt code {version_start['sha256']} (commit {version_start['commit']}, dirty={version_start['dirty']})")
    print(f"StudyConfig defaults: {info['autoopt_defaults']}" + (f"; base settings for autoopt: {base}" if base else ""))
    print(f"problems {args.problems}; methods {methods}; sampler seeds {args.sampler_seeds}; budget {args.budget} TRE\n")

    grids, grid_timing = reference_grids(args.problems, args.jobs)
    print(f"\nsearches: {len(args.problems) * len(methods) * len(args.sampler_seeds)} runs")
    runs, search_wall = search_runs(args.problems, methods, args.sampler_seeds, args.budget, args.jobs) \
        if methods else ([], 0.0)
    current = {(r["problem"], r["method"], r["sampler_seed"]) for r in runs}
    json_path = args.out / "search_efficiency.json"
    earlier = previous_invocations(json_path) if args.merge else []
    if args.merge:
        runs = merge_previous(json_path, runs, args.problems)
        methods = list(dict.fromkeys([*methods, *(r["method"] for r in runs)]))
    caches, heldout_timing = held_out(args.problems, grids, runs, args.jobs)
    references = score_runs(args.problems, grids, runs, caches)
    rows = summarize(args.problems, methods, runs, args.budget, current)

    version_end = autoopt_version()
    if version_end["sha256"] != version_start["sha256"]:
        print(f"WARNING: autoopt's code changed during this run ({version_start['sha256']} -> "
              f"{version_end['sha256']}); the autoopt rows may mix versions.")
    per_method = {m: round(sum(r["wall_seconds"] for r in runs if r["method"] == m and
                               (r["problem"], r["method"], r["sampler_seed"]) in current), 1) for m in methods}
    info.update(
        finished=now(), autoopt_version_end=version_end,
        timings={"grid": grid_timing, "searches_wall_seconds": round(search_wall, 1),
                 "search_seconds_by_method": per_method, "held_out": heldout_timing,
                 "total_wall_seconds": round(time.perf_counter() - started, 1)},
    )
    table = table_rows(rows, references)
    print("\n" + text_table(table))
    info["base_method"] = method_name(base)
    effects = ablation_effects(rows, info["base_method"])
    if effects[1]:
        print(f"\nmean regret of each autoopt variant minus {info['base_method']}'s, percentage points "
              "(positive: worse without the mechanism):")
        print(plain_table(*effects))
    print(f"\ntimings: {json.dumps(info['timings'])}")
    args.out.mkdir(parents=True, exist_ok=True)
    invocations = [*earlier, {k: info.get(k) for k in INVOCATION_KEYS}]
    record = {**info, "invocations": invocations, "references": references, "summary": rows, "runs": runs}
    json_path.write_text(json.dumps(_strict(record), indent=1, allow_nan=False) + "\n")
    write_markdown(args.out / "search_efficiency.md", info, table, effects)
    print(f"wrote {json_path} and {args.out / 'search_efficiency.md'}")
    return 0


def parse_base(items: list[str]) -> Iterable[tuple[str, Any]]:
    from methods import parse_method

    _, settings = parse_method("autoopt:" + ",".join(items)) if items else ("autoopt", {})
    return settings.items()


def _strict(value: Any) -> Any:
    """Standard JSON: an infinite regret (a run that diverged on a held-out seed) becomes "inf"."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


if __name__ == "__main__":
    sys.exit(main())
