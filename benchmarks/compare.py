"""autoopt against its peers on the corpus, at the same budgets, judged on held-out seeds.

Every method gets the same problem (its fixed train/validation split), the same model builder (the
sampler seed ``s`` gives the initial weights and the data order) and a budget in training-run
equivalents (TRE: epochs spent / the problem's epochs). Its recommendation is then trained on the 5
score seeds no search ever sees, and compared with the grid's reference on the same seeds: regret =
(mean - reference mean) / reference mean, with the seed-paired difference's standard error. The
reference was chosen among the grid's top configurations on 5 *other* held-out seeds
(``grid_cache.reference``), so that no method is measured against a choice that won by luck on the very
seeds it is scored on; the ``exhaustive_grid`` row (the grid's own choice, by its 2 grid seeds, scored
the same way) is the floor a search of this space can reach.

Methods (``METHODS``):

- ``autoopt``: ``autoopt.tune`` at its defaults (every registered optimizer, the shipped portfolio);
- ``optuna_tpe_hyperband``: plain Optuna, TPESampler + HyperbandPruner over (optimizer in the grid's
  families, log-uniform lr in [1e-5, 10]), other hyperparameters at registry defaults, trials until the
  budget is spent;
- ``random``: the same space with RandomSampler and no pruner;
- ``adam_1e-3``: Adam at lr 1e-3, one run;
- ``defaults``: each of the grid's families at its registry defaults, as many as the budget buys, the
  best kept (the "several optimizers at their defaults" baseline of Schmidt et al., 2021);
- ``algoperf_adamw5``: a fixed list of 5 AdamW / NAdamW points in the style of AlgoPerf's
  external-tuning baselines, as many as the budget buys;
- ``schedulefree``: one Schedule-Free AdamW run at its defaults (the ``schedulefree`` package);
- ``practitioner``: what a practitioner sweeps by hand, as far as the budget goes: Adam, AdamW and SGD
  with momentum at half-decade learning rates, the likeliest first, and from 4 runs of budget on, the
  best re-run on a second seed (the re-run ones are compared by their mean); ``practitioner_grid`` is
  the whole sweep (21 runs, the top 3 on a second seed);
- ``previous``: autoopt as it was before this round's changes (commit ``PREVIOUS``), run from that
  commit's code in a subprocess.

    python benchmarks/compare.py --jobs 2                      # the test fold, every method (README table)
    python benchmarks/compare.py --fold dev --methods autoopt  # development problems
    python benchmarks/compare.py --methods autoopt --budgets 1 --out results/compare-test-b1.json \
        --replace-in results/compare-test.json                  # re-run some rows of the table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, FOLD_RULE, PROBLEMS, TEST, split_of  # noqa: E402
from grid_cache import (  # noqa: E402
    SCORE_SEEDS,
    best_configs,
    config_key,
    evaluate,
    families_of,
    final_loss,
    load,
    lr_of,
    params_of,
    reference,
    save,
)

REPO = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results"
PREVIOUS = "ade3024"  # autoopt before corpus v2, Muon as intended and the first-answers strategy
BUDGETS = (1, 2, 3, 5, 10, 20)
PEER_BUDGETS = (1, 3, 5)
SAMPLER_SEEDS = (0, 1, 2)
PLAIN_LR = (1e-5, 10.0)
ALGOPERF_POINTS = (  # (optimizer, params beyond registry defaults)
    ("adamw", {"lr": 1e-3, "weight_decay": 0.01}),
    ("nadam", {"lr": 2e-3, "weight_decay": 0.05, "decoupled_weight_decay": True}),
    ("adamw", {"lr": 3e-3, "beta2": 0.99, "weight_decay": 0.1}),
    ("nadam", {"lr": 5e-4, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    ("adamw", {"lr": 1e-2, "beta1": 0.95, "weight_decay": 0.1}),
)
#: A practitioner's sweep: half-decade rates, the likeliest first (each family's usual rate, then out from it)
PRACTITIONER_POINTS = tuple(
    (optimizer, {"lr": lr}) for step in range(7) for optimizer, centre in (("adam", 1e-3), ("momentum", 1e-2),
                                                                          ("adamw", 1e-3))
    for lr in [centre * math.sqrt(10) ** (((step + 1) // 2) * (1 if step % 2 else -1))]
    if (optimizer != "momentum" or lr <= 1.0) and lr >= 1e-5)
METHODS = ("autoopt", "optuna_tpe_hyperband", "random", "adam_1e-3", "defaults", "algoperf_adamw5", "schedulefree",
           "practitioner", "practitioner_grid", "previous")
#: autoopt with one setting changed, for ablations on the dev fold (``--methods autoopt autoopt+reeval2``)
ABLATIONS = {"autoopt+reeval2": {"reevaluate_top": 2, "seeds": 2}}
ONE_RUN = ("adam_1e-3", "schedulefree", "practitioner_grid")  # each one search, the same at every budget
GRID_FLOOR = "exhaustive_grid"  # not a search: the grid's own best (see ``grid_floor``), one row  # the same single run at every budget: run once per seed


# --- the methods -----------------------------------------------------------------------------------

def _setup(name: str, seed: int) -> Any:
    from autoopt.training.setup import TrainingSetup
    from autoopt.training.task import infer_task

    problem, split = PROBLEMS[name], split_of(name)
    model = problem.model(seed)
    return TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), problem.epochs,
                         problem.batch_size, seed)


def _params(optimizer: str, extra: dict[str, Any]) -> dict[str, Any]:
    from autoopt.optimizers.registry import get_spec

    return {**get_spec(optimizer).defaults, **extra}


def _train(setup: Any, optimizer: str, params: dict[str, Any], on_epoch: Any = None) -> Any:
    from autoopt.optimizers.registry import get_spec
    from autoopt.records import Candidate
    from autoopt.training.loop import train_candidate

    return train_candidate(setup, get_spec(optimizer), Candidate(optimizer, dict(params)), setup.seed, on_epoch)


def _best_of(runs: list[tuple[str, dict[str, Any], Any]]) -> dict[str, Any] | None:
    done = [(m.final_val_loss, o, p) for o, p, m in runs if m.outcome == "completed" and math.isfinite(m.final_val_loss)]
    if not done:
        return None
    _, o, p = min(done, key=lambda item: item[0])
    return {"optimizer": o, "params": p}


def run_fixed_list(name: str, seed: int, budget: float, points: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Train ``points`` in order while a whole run fits in the budget; recommend the best."""
    setup = _setup(name, seed)
    runs, epochs = [], 0
    for optimizer, extra in points:
        if runs and epochs + setup.epochs > budget * setup.epochs:
            break
        params = _params(optimizer, extra)
        m = _train(setup, optimizer, params)
        runs.append((optimizer, params, m))
        epochs += len(m.epochs)
    return {"recommendation": _best_of(runs), "tre": epochs / setup.epochs}


def run_practitioner(name: str, seed: int, budget: float | None) -> dict[str, Any]:
    """The practitioner's sweep as far as ``budget`` goes (None: all of it, the top 3 on a second seed)."""
    setup = _setup(name, seed)
    if budget is None:
        n_points, reruns = len(PRACTITIONER_POINTS), 3
    else:
        n_points = int(budget) if budget < 4 else math.ceil(2 * budget / 3)
        reruns = max(int(budget) - n_points, 0)
    runs = []
    for optimizer, extra in PRACTITIONER_POINTS[:n_points]:
        params = _params(optimizer, extra)
        runs.append((optimizer, params, _train(setup, optimizer, params)))
    finals = {i: m.final_val_loss for i, (_, _, m) in enumerate(runs)
              if m.outcome == "completed" and math.isfinite(m.final_val_loss)}
    again = _setup(name, seed + 100)  # a second seed: other initial weights and data order
    means = {}
    for i in sorted(finals, key=finals.get)[:reruns]:
        optimizer, params, _ = runs[i]
        m = _train(again, optimizer, params)
        if m.outcome == "completed" and math.isfinite(m.final_val_loss):
            means[i] = (finals[i] + m.final_val_loss) / 2
    pool = means or finals
    epochs = sum(len(m.epochs) for _, _, m in runs) + len(means) * setup.epochs
    if not pool:
        return {"recommendation": None, "tre": epochs / setup.epochs}
    optimizer, params, _ = runs[min(pool, key=pool.get)]
    return {"recommendation": {"optimizer": optimizer, "params": params}, "tre": epochs / setup.epochs}


def run_plain_optuna(name: str, seed: int, budget: float, kind: str) -> dict[str, Any]:
    """Plain Optuna over (optimizer, log lr): TPE + Hyperband, or random search without pruning."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    setup = _setup(name, seed)
    if kind == "tpe":
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                                    pruner=optuna.pruners.HyperbandPruner(1, setup.epochs, 3))
    else:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed),
                                    pruner=optuna.pruners.NopPruner())
    limit, spent, runs = budget * setup.epochs, 0, []
    while limit - spent >= 1:
        trial = study.ask()
        optimizer = trial.suggest_categorical("optimizer", list(families_of(name)))
        params = _params(optimizer, {"lr": trial.suggest_float("lr", *PLAIN_LR, log=True)})
        room = limit - spent

        def on_epoch(record: Any, trial: Any = trial, room: float = room) -> bool:
            if not math.isfinite(record.val_loss):
                return True
            trial.report(record.val_loss, record.epoch)
            return record.epoch + 1 > room or trial.should_prune()

        m = _train(setup, optimizer, params, on_epoch)
        spent += len(m.epochs)
        if m.outcome == "completed":
            study.tell(trial, m.final_val_loss)
            runs.append((optimizer, params, m))
        elif m.outcome == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif math.isfinite(m.final_val_loss):
            study.tell(trial, m.final_val_loss)  # diverged with a finite loss: what a plain objective returns
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return {"recommendation": _best_of(runs), "tre": spent / setup.epochs}


def run_autoopt(name: str, seed: int, budget: float, **options: Any) -> dict[str, Any]:
    import autoopt

    problem, split = PROBLEMS[name], split_of(name)
    report = autoopt.tune(problem.model(seed), (split.train.X, split.train.y), val_data=(split.val.X, split.val.y),
                          epochs=problem.epochs, batch_size=problem.batch_size, budget=budget, seed=seed,
                          device="cpu", tracking=False, verbose=False, **options)
    rec = report.recommendation
    bare_run = bare_run_seconds(name, seed)
    trained = float(report.trials["seconds"].sum())
    return {"recommendation": {"optimizer": rec.optimizer, "params": dict(rec.params)}, "tre": report.cost,
            "wall_seconds": report.wall_seconds, "bare_run_seconds": bare_run, "wall_tre": report.wall_seconds / bare_run,
            "untrained_seconds": report.wall_seconds - trained, "n_seeds": rec.n_seeds,
            "reported_loss": _reported(rec), "last_epoch_loss": rec.val_loss,
            # the curves the report reads, so that another reading can be checked without a re-run
            "reported_curves": [[float(v) for v in c] for c in
                                report.trials.loc[report.trials["number"].isin(rec.trial_numbers), "val_curve"]],
            "trials": [[r.purpose, r.optimizer, float(r.lr), r.outcome, int(r.epochs)] for r in report.trials.itertuples()]}


def _reported(rec: Any) -> float:
    """What the study told the user a fresh seed would reach (``Recommendation.expected_val_loss``, the
    mean of its last epochs); the last epoch's loss where it has none (a diverged curve)."""
    return float(rec.expected_val_loss if math.isfinite(rec.expected_val_loss) else rec.val_loss)


def bare_run_seconds(name: str, seed: int) -> float:
    """One bare training run of the problem, timed in this process right after the study: its epochs of
    forward, backward and a no-op SGD step, and a validation pass each (``measure_bare_epoch``: warm,
    the faster of 2 epochs, x epochs)."""
    from autoopt.training.bare_epoch import measure_bare_epoch

    setup = _setup(name, seed)
    return measure_bare_epoch(setup) * setup.epochs


def run_schedulefree(name: str, seed: int, budget: float) -> dict[str, Any]:
    from autoopt.optimizers.registry import list_optimizers

    optimizer = next((n for n in list_optimizers() if "schedulefree" in n or "schedule_free" in n), None)
    if optimizer is None:
        raise RuntimeError("no Schedule-Free optimizer registered (pip install schedulefree)")
    return run_fixed_list(name, seed, 1, [(optimizer, {})])


_PREVIOUS_SCRIPT = """
import json, sys, torch
sys.path.insert(0, {bench!r})
from corpus import PROBLEMS
import autoopt
name, seed, budget = {name!r}, {seed}, {budget}
torch.set_num_threads(1)
problem = PROBLEMS[name]
split = autoopt.prepare_data(problem.make_data(), seed=0, device=torch.device("cpu"))  # as corpus.split_of
report = autoopt.tune(problem.model(seed), (split.train.X, split.train.y), val_data=(split.val.X, split.val.y),
                      epochs=problem.epochs, batch_size=problem.batch_size, budget=budget, seed=seed,
                      device="cpu", tracking=False, verbose=False)
rec = report.recommendation
print(json.dumps({{"recommendation": {{"optimizer": rec.optimizer, "params": dict(rec.params)}}, "tre": report.cost}}))
"""


def previous_tree() -> Path:
    """The previous autoopt's package, extracted once from git into a temporary folder."""
    root = Path(tempfile.gettempdir()) / f"autoopt-{PREVIOUS}"
    if not (root / "autoopt" / "__init__.py").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", PREVIOUS, "autoopt"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def run_previous(name: str, seed: int, budget: float) -> dict[str, Any]:
    script = _PREVIOUS_SCRIPT.format(bench=str(Path(__file__).resolve().parent), name=name, seed=seed, budget=budget)
    env = {**os.environ, "PYTHONPATH": str(previous_tree()), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _warm_up() -> None:
    """A worker imports what every study imports before its first study is timed: a user pays the
    imports once per process, not once per study (under load they took 10 s and more here)."""
    torch.set_num_threads(1)
    import optuna  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    import autoopt.tune  # noqa: F401


def run_method(name: str, method: str, seed: int, budget: float) -> dict[str, Any]:
    """One search; never raises (an error is a result: no recommendation)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        if method == "autoopt":
            result = run_autoopt(name, seed, budget)
        elif method in ABLATIONS:
            result = run_autoopt(name, seed, budget, **ABLATIONS[method])
        elif method == "optuna_tpe_hyperband":
            result = run_plain_optuna(name, seed, budget, "tpe")
        elif method == "random":
            result = run_plain_optuna(name, seed, budget, "random")
        elif method == "adam_1e-3":
            result = run_fixed_list(name, seed, 1, [("adam", {"lr": 1e-3})])
        elif method == "defaults":
            result = run_fixed_list(name, seed, budget, [(o, {}) for o in families_of(name)])
        elif method == "practitioner":
            result = run_practitioner(name, seed, budget)
        elif method == "practitioner_grid":
            result = run_practitioner(name, seed, None)
        elif method == "algoperf_adamw5":
            result = run_fixed_list(name, seed, budget, list(ALGOPERF_POINTS))
        elif method == "schedulefree":
            result = run_schedulefree(name, seed, budget)
        elif method == "previous":
            result = run_previous(name, seed, budget)
        else:
            raise ValueError(f"unknown method {method!r}; use one of {[*METHODS, *ABLATIONS]}")
    except Exception as exc:
        result = {"recommendation": None, "tre": None, "error": f"{type(exc).__name__}: {exc}"}
    result.update(problem=name, method=method, seed=seed, budget=budget, code=code_version(),
                  seconds=round(time.perf_counter() - start, 2))
    if result.get("recommendation"):
        result["recommendation"]["params"] = {k: (v.item() if hasattr(v, "item") else v)
                                              for k, v in result["recommendation"]["params"].items()}
    return result


# --- held-out evaluation and scores ----------------------------------------------------------------

def _heldout_job(name: str, optimizer: str, params: dict[str, Any], seed: int) -> float | None:
    torch.set_num_threads(1)
    return final_loss(evaluate(name, optimizer, params, seed))


def grid_floor(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The exhaustive grid as a method: its best configuration by the mean over both grid seeds.

    Its cost is every grid run (about 200-300 TRE). Scored on the score seeds like every method, it
    shows what no search of this space can beat by much: the seed noise left after choosing on two seeds.
    """
    top = best_configs(record, 1)[0]
    params = params_of(top["optimizer"], lr_of(top["k"]))
    return {"recommendation": {"optimizer": top["optimizer"], "params": params}, "tre": record["tre"],
            "problem": name, "method": GRID_FLOOR, "seed": 0, "budget": record["tre"]}


def score(losses: list[float | None], ref: list[float]) -> dict[str, Any]:
    """Regret against the reference on the same held-out seeds; None losses (diverged): regret inf."""
    ref_mean = float(np.mean(ref))
    if any(v is None for v in losses):
        return {"regret": math.inf, "se": None, "diverged": True}
    diff = np.asarray(losses) - np.asarray(ref)
    return {"regret": float(diff.mean() / ref_mean), "se": float(diff.std(ddof=1) / math.sqrt(len(diff)) / ref_mean),
            "diverged": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", choices=("test", "dev", "all"), default="test")
    parser.add_argument("--problems", nargs="*")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SAMPLER_SEEDS))
    parser.add_argument("--budgets", nargs="*", type=float, help="only these budgets (default: each method's own)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--replace-in", type=Path, help="a previous result (.json) whose rows of the methods and "
                        "budgets run here are replaced by this run's, the rest kept (a change that moves only "
                        "some rows re-runs only those); its .md is rewritten")
    args = parser.parse_args(argv)
    problems = args.problems or {"test": list(TEST), "dev": list(DEV), "all": list(PROBLEMS)}[args.fold]
    out = args.out or OUT / f"compare-{args.fold}.json"
    calls = []
    for method in args.methods:
        budgets = args.budgets or (BUDGETS if method == "autoopt" or method in ABLATIONS
                                   else (1,) if method in ONE_RUN else PEER_BUDGETS)
        calls += [(n, method, s, b) for n in problems for s in args.seeds for b in budgets]
    # the budgets every method is compared at first, so that a run stopped early still has a table
    calls.sort(key=lambda c: (c[3] not in PEER_BUDGETS, c[3], c[2]))
    start = time.perf_counter()
    done = _load_done(out, calls)
    runs = list(done.values())
    todo = [c for c in calls if c not in done]
    print(f"{len(runs)} searches kept from {out.with_suffix('.jsonl')}, {len(todo)} to run", flush=True)
    with ProcessPoolExecutor(args.jobs, initializer=_warm_up) as pool, out.with_suffix(".jsonl").open("a") as log:
        futures = [pool.submit(run_method, *call) for call in todo]
        for i, future in enumerate(as_completed(futures), 1):
            run = future.result()
            runs.append(run)
            log.write(json.dumps(run) + "\n")  # every finished search is kept: a rerun resumes
            log.flush()
            if i % 20 == 0 or i == len(futures):
                print(f"  searches {i}/{len(futures)} ({time.perf_counter() - start:.0f} s)", flush=True)
        # the held-out evaluations, computed in the pool and written to each problem's cache here
        records = {n: load(n) for n in problems}
        jobs = {}
        for run in runs:
            rec = run.get("recommendation")
            if rec:
                key = config_key(rec["optimizer"], rec["params"])
                have = records[run["problem"]]["heldout"].get(key, {})
                for seed in SCORE_SEEDS:
                    if str(seed) not in have:
                        jobs[(run["problem"], key, seed)] = (run["problem"], rec["optimizer"], rec["params"], seed)
        futures = {pool.submit(_heldout_job, *job): k for k, job in jobs.items()}
        for i, future in enumerate(as_completed(futures), 1):
            name, key, seed = futures[future]
            records[name]["heldout"].setdefault(key, {})[str(seed)] = future.result()
            if i % 50 == 0 or i == len(futures):
                for record in records.values():
                    save(record)
                print(f"  held-out runs {i}/{len(futures)}", flush=True)
    refs = {n: reference(records[n]) for n in problems}
    runs = [r for r in runs if r["method"] != GRID_FLOOR] + [grid_floor(n, records[n]) for n in problems]
    for run in runs:
        rec = run.get("recommendation")
        if rec:
            held = records[run["problem"]]["heldout"][config_key(rec["optimizer"], rec["params"])]
            run["heldout"] = [held[str(s)] for s in SCORE_SEEDS]
            run["score"] = score(run["heldout"], refs[run["problem"]]["losses"])
        else:
            run["score"] = {"regret": math.inf, "se": None, "diverged": False, "none": True}
    result = {"made": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fold": args.fold,
              "fold_rule": FOLD_RULE, "problems": problems, "machine": machine(),
              "wall_seconds": round(time.perf_counter() - start, 1), "references": refs, "runs": runs}
    out.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(report_tables(result))
    (out.with_suffix(".md")).write_text(report_tables(result) + "\n")
    if args.replace_in:
        merged = replace_rows(json.loads(args.replace_in.read_text()), result)
        args.replace_in.write_text(json.dumps(merged, separators=(",", ":")) + "\n")
        args.replace_in.with_suffix(".md").write_text(report_tables(merged) + "\n")
        print(f"rows replaced in {args.replace_in}")
    return 0


def replace_rows(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with its searches of each (method, budget) that ``new`` ran replaced by ``new``'s; which
    rows came from which run is kept in ``merged_from``."""
    rows = {(r["method"], r["budget"]) for r in new["runs"] if r["method"] != GRID_FLOOR}
    kept = [r for r in old["runs"] if (r["method"], r["budget"]) not in rows]
    fresh = [r for r in new["runs"] if (r["method"], r["budget"]) in rows]
    history = old.get("merged_from", [{"made": old["made"], "rows": "all"}])
    history.append({"made": new["made"], "rows": sorted(f"{m} {b:g}" for m, b in rows), "machine": new["machine"]})
    return {**old, "runs": kept + fresh, "merged_from": history}


def _load_done(out: Path, calls: list[tuple]) -> dict[tuple, dict[str, Any]]:
    """Searches already finished by this code (the same autoopt and benchmark sources), by call."""
    path, version = out.with_suffix(".jsonl"), code_version()
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            run = json.loads(line)
            key = (run["problem"], run["method"], run["seed"], run["budget"])
            if run.get("code") == version and key in set(calls):
                done[key] = run
    return done


def code_version() -> str:
    """A hash of the package and this benchmark's sources: a search result is reused only while it holds."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("autoopt/**/*.py"), *REPO.glob("autoopt/**/*.json"), *REPO.glob("benchmarks/**/*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def machine() -> dict[str, Any]:
    """What the numbers depend on; the CPU's vector capability too: the same seed's run of a model with
    convolutions or attention takes other kernels on AVX2 than on AVX-512, and on a chaotic problem
    (``large_rescnn_shapes``) ends elsewhere."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(), "threads_per_run": 1}


# --- tables ----------------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return "div." if v == math.inf else f"{v:+.1%}"


def per_problem(runs: list[dict[str, Any]], method: str, budget: float) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["method"] == method and (r["budget"] == budget or method in (*ONE_RUN, GRID_FLOOR)):
            out.setdefault(r["problem"], []).append(r)
    return out


def summary(runs: list[dict[str, Any]], method: str, budget: float) -> dict[str, Any]:
    """Mean regret over problems (each the mean over sampler seeds), worst problem, target checks."""
    groups = per_problem(runs, method, budget)
    if not groups:
        return {}
    means, met5, met1, diverged = {}, 0, 0, 0
    for name, rs in groups.items():
        regrets = [r["score"]["regret"] for r in rs]
        means[name] = float(np.mean(regrets))
        diverged += sum(bool(r["score"].get("diverged")) for r in rs)
        se = np.mean([r["score"]["se"] or 0.0 for r in rs])
        met5 += means[name] <= 0.05 + 2 * se
        met1 += means[name] <= 0.01 + 2 * se
    costs = [r["tre"] for rs in groups.values() for r in rs if r.get("tre") is not None]
    timed = [r for rs in groups.values() for r in rs if r.get("bare_run_seconds")]
    # wall time against a bare run measured in the same process: as a ratio where the bare run takes a
    # second or more; below that, what the study took beyond its epochs at the bare loop's speed
    walls = [r["wall_seconds"] / r["bare_run_seconds"] for r in timed if r["bare_run_seconds"] >= 1.0]
    extra = [r["wall_seconds"] - r["tre"] * r["bare_run_seconds"] for r in timed if r["bare_run_seconds"] < 1.0]
    own = [r["untrained_seconds"] for r in timed if r["bare_run_seconds"] < 1.0]  # setup, validation, the search
    reported = [(r["reported_loss"], np.mean(r["heldout"])) for rs in groups.values() for r in rs
                if r.get("reported_loss") is not None and r.get("heldout") and None not in r["heldout"]]
    within = [abs(held / rep - 1) <= 0.25 for rep, held in reported if rep > 0]
    return {"mean": float(np.mean(list(means.values()))), "worst": max(means.values()), "per": means,
            "within5": met5, "within1": met1, "n": len(groups), "diverged": diverged,
            "tre": float(np.mean(costs)) if costs else math.nan,
            "wall_tre": float(np.max(walls)) if walls else math.nan, "wall_n": len(walls),
            "extra_seconds": float(np.max(extra)) if extra else math.nan,
            "own_seconds": float(np.max(own)) if own else math.nan,
            "reproduces": float(np.mean(within)) if within else math.nan}


def report_tables(result: dict[str, Any]) -> str:
    runs, problems = result["runs"], result["problems"]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    lines = [f"## {result['fold']} fold: {len(problems)} problems, sampler seeds {sorted({r['seed'] for r in runs})}",
             "", "Regret of the recommendation's mean over the 5 score seeds against the reference's (chosen on the "
             "5 reference seeds); worst problem: the mean over sampler seeds; wall: the most of any study, in bare "
             "runs where a bare run takes >= 1 s, else seconds beyond its epochs at the bare loop's speed (and of those, "
             "the seconds not spent in a trial's training: setup, validation, the search itself); "
             "reproduces: searches whose score-seed mean is within 25% of the loss the study reported a fresh seed "
             "would reach (autoopt: `expected_val_loss`, the mean of its last 3 epochs, since the runs of "
             "2026-12-03; before, the last epoch's loss).", "",
             "| method | budget (TRE) | mean regret | worst problem | within 5% (+2 SE) | within 1% (+2 SE) | "
             "score-seed divergences | epoch-TRE | wall (bare runs) | wall beyond epochs (s) | not training (s) | "
             "reproduces |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in methods:
        budgets = sorted({r["budget"] for r in runs if r["method"] == method})
        for budget in budgets[:1] if method == GRID_FLOOR else budgets:
            s = summary(runs, method, budget)
            if not s:
                continue
            wall = f"{s['wall_tre']:.2f}" if math.isfinite(s["wall_tre"]) else "-"
            extra = f"{s['extra_seconds']:.1f}" if math.isfinite(s["extra_seconds"]) else "-"
            repro = f"{s['reproduces']:.0%}" if math.isfinite(s["reproduces"]) else "-"
            own = f"{s['own_seconds']:.1f}" if math.isfinite(s["own_seconds"]) else "-"
            label = f"{s['tre']:.0f}" if method == GRID_FLOOR else f"{budget:g}"
            lines.append(f"| {method} | {label} | {_pct(s['mean'])} | {_pct(s['worst'])} | {s['within5']}/{s['n']} | "
                         f"{s['within1']}/{s['n']} | {s['diverged']} | {s['tre']:.2f} | {wall} | {extra} | {own} | {repro} |")
    peers = " / ".join(f"{b:g}" for b in PEER_BUDGETS)
    lines += ["", "Per problem (mean regret over sampler seeds); reference = the grid's best on the reference seeds, "
              "scored on the score seeds:", "",
              "| problem | reference | " + " | ".join(f"autoopt {b:g}" for b in BUDGETS) + " | "
              + " | ".join(f"{m} {'' if m in (*ONE_RUN, GRID_FLOOR) else peers}".rstrip()
                           for m in methods if m != "autoopt") + " |",
              "|---|---|" + "---|" * (len(BUDGETS) + len(methods) - 1)]
    for name in problems:
        ref = result["references"][name]
        cells = [f"{ref['optimizer']} {ref['lr']:.2g}"]
        for b in BUDGETS:
            s = summary(runs, "autoopt", b)
            cells.append(_pct(s["per"][name]) if s and name in s["per"] else "-")
        for m in methods:
            if m == "autoopt":
                continue
            parts = []
            for b in ((1,) if m in (*ONE_RUN, GRID_FLOOR) else PEER_BUDGETS):
                s = summary(runs, m, b)
                parts.append(_pct(s["per"][name]) if s and name in s["per"] else "-")
            cells.append(" / ".join(parts))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
