"""The exhaustive reference of every corpus problem, cached as compact JSON and computed in parallel.

For each problem: every optimizer of ``FAMILIES`` at its registry defaults, learning rates on a
third-of-a-decade grid (lr = 10 ** (k / 3)), seeds 0 and 1. Each family starts on its own window of
``WINDOW`` learning rates; wherever a family's best rate lies on an edge of what was tried, two more
rates are added on that side, until every family's best is interior (or the rates are absurd). Then the
grid's top 3 configurations are trained on the 5 held-out seeds, which no search ever sees; the
reference is the best of them by held-out mean.

Every run keeps its per-epoch validation curve, so strategies that choose among grid configurations can
be replayed from the cache (``simulate.py``) without training.

The cache (``results/corpus/<problem>.json``) is valid while the problem's *fingerprint* is unchanged:
a hash of what decides a result, measured rather than read from file names: the problem's data, the
initial weights of seed 0, two short training runs of it (Adam and momentum SGD) through autoopt's own
loop, every family's update rule on a fixed tensor, and torch's version. A refactor that leaves results
unchanged keeps the cache; a change of behaviour anywhere in that chain invalidates it.

    python benchmarks/grids.py --jobs 2                 # every problem (about 40 min from scratch here)
    python benchmarks/grids.py --problems mlp_wine      # one problem
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import PROBLEMS, split_of  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "corpus"
#: The shipped optimizers the grid trains (10 families of update rule; nesterov, radam and adafactor
#: are left out for cost: they are near-copies of momentum and Adam on problems of this size).
FAMILIES = ("sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam", "adamax", "muon")
#: Where each family's window starts (k: lr = 10 ** (k / 3)) and how many rates it holds at first.
START = {"sgd": -9, "momentum": -10, "adagrad": -9, "rmsprop": -12, "adadelta": -3, "adam": -12, "adamw": -12,
         "nadam": -12, "adamax": -11, "muon": -9}
WINDOW = 10
K_RANGE = (-21, 9)  # 1e-7 .. 1e3: no family's best lies outside this on any sane problem
GRID_SEEDS = (0, 1)
HELD_OUT_SEEDS = (1000, 1001, 1002, 1003, 1004)
TOP = 3


def lr_of(k: int) -> float:
    return float(10.0 ** (k / 3.0))


def params_of(optimizer: str, lr: float) -> dict[str, Any]:
    from autoopt.optimizers.registry import get_spec

    return {**get_spec(optimizer).defaults, "lr": float(lr)}


# --- one evaluation --------------------------------------------------------------------------------

def evaluate(name: str, optimizer: str, params: dict[str, Any], seed: int, epochs: int | None = None) -> dict[str, Any]:
    """Train ``optimizer(**params)`` on problem ``name`` from ``seed``'s weights with autoopt's own loop.

    Returns the outcome, the per-epoch validation curve (the last entry is the final loss), the epochs
    trained and the training seconds. The data order is seeded by ``seed``, as in a study.
    """
    from autoopt.optimizers.registry import get_spec
    from autoopt.records import Candidate
    from autoopt.training.loop import TrainingSetup, train_candidate
    from autoopt.training.task import infer_task

    problem = PROBLEMS[name]
    split = split_of(name)
    model = problem.model(seed)
    setup = TrainingSetup(template=model, split=split, task=infer_task(model, split), device=torch.device("cpu"),
                          epochs=epochs or problem.epochs, batch_size=problem.batch_size, seed=seed)
    m = train_candidate(setup, get_spec(optimizer), Candidate(optimizer, dict(params)), seed=seed)
    curve = [float(f"{v:.6g}") if math.isfinite(v) else None for v in m.val_losses]
    outcome = m.outcome if m.outcome != "completed" or curve[-1] is not None else "diverged"
    return {"outcome": outcome, "curve": curve, "epochs": len(m.epochs), "seconds": round(m.seconds, 4),
            "initial": float(f"{m.initial_val_loss:.6g}") if math.isfinite(m.initial_val_loss) else None}


def final_loss(run: dict[str, Any]) -> float | None:
    """The final validation loss of a run that completed, else None."""
    return run["curve"][-1] if run["outcome"] == "completed" else None


# --- the fingerprint -------------------------------------------------------------------------------

def fingerprint(name: str) -> str:
    """A hash of everything that decides a result on problem ``name``, measured (see the module doc)."""
    from autoopt.optimizers.registry import get_spec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the grid's workers: kernels on more threads sum in another order
    try:
        return _fingerprint(name, get_spec)
    finally:
        torch.set_num_threads(threads)


def _fingerprint(name: str, get_spec: Any) -> str:
    digest = hashlib.sha256(torch.__version__.encode())
    X, y = PROBLEMS[name].make_data()
    digest.update(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes())
    for tensor in PROBLEMS[name].model(0).state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    epochs = min(2, PROBLEMS[name].epochs)
    for optimizer, lr in (("adam", 1e-3), ("momentum", 1e-2)):
        run = evaluate(name, optimizer, params_of(optimizer, lr), 0, epochs=epochs)
        digest.update(repr((run["outcome"], run["curve"], run["initial"])).encode())
    torch.manual_seed(0)
    for optimizer in FAMILIES:  # each update rule on a fixed 2-D and 1-D parameter, three steps
        w, b = torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True)
        opt = get_spec(optimizer).build([w, b], params_of(optimizer, 0.01))
        for _ in range(3):
            opt.zero_grad()
            ((w.sin() @ b.cos()) ** 2).sum().backward()
            opt.step()
        digest.update(w.detach().numpy().tobytes() + b.detach().numpy().tobytes())
    return digest.hexdigest()[:16]


# --- the cache -------------------------------------------------------------------------------------

def cache_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def run_key(optimizer: str, k: int, seed: int) -> str:
    return f"{optimizer}|{k}|{seed}"


def config_key(optimizer: str, params: dict[str, Any]) -> str:
    """An exact text key for a configuration (floats in full precision)."""
    return json.dumps([optimizer, sorted((key, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                                          else v) for key, v in params.items())])


def load(name: str, version: str | None = None) -> dict[str, Any]:
    """The cached record of ``name``; an empty one when missing or made by other code (``version``)."""
    try:
        record = json.loads(cache_path(name).read_text())
    except (OSError, json.JSONDecodeError):
        record = None
    if record is None or (version is not None and record.get("version") != version):
        return {"problem": name, "version": version, "runs": {}, "heldout": {}}
    return record


def save(record: dict[str, Any]) -> None:
    path = cache_path(record["problem"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
    tmp.replace(path)


# --- reading a grid --------------------------------------------------------------------------------

def configs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (optimizer, k) of the grid with its runs on both grid seeds and their mean final loss."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for key, run in record["runs"].items():
        optimizer, k, seed = key.split("|")
        entry = out.setdefault((optimizer, int(k)), {"optimizer": optimizer, "k": int(k), "runs": {}})
        entry["runs"][int(seed)] = run
    for entry in out.values():
        finals = [final_loss(entry["runs"][s]) if s in entry["runs"] else None for s in GRID_SEEDS]
        entry["ok"] = all(f is not None for f in finals)
        entry["mean"] = float(np.mean(finals)) if entry["ok"] else math.inf
    return sorted(out.values(), key=lambda e: (e["optimizer"], e["k"]))


def best_configs(record: dict[str, Any], n: int = TOP) -> list[dict[str, Any]]:
    """The ``n`` grid configurations with the lowest mean final loss (diverged on any seed: out)."""
    return sorted((c for c in configs(record) if c["ok"]), key=lambda c: c["mean"])[:n]


def reference(record: dict[str, Any]) -> dict[str, Any]:
    """The reference: the top configuration with the lowest held-out mean, and its held-out losses."""
    best = None
    for c in best_configs(record):
        losses = heldout_losses(record, c["optimizer"], params_of(c["optimizer"], lr_of(c["k"])))
        if losses is None or any(v is None for v in losses):
            continue
        mean = float(np.mean(losses))
        if best is None or mean < best["mean"]:
            best = {"optimizer": c["optimizer"], "k": c["k"], "lr": lr_of(c["k"]), "mean": mean, "losses": losses,
                    "grid_mean": c["mean"]}
    if best is None:
        raise RuntimeError(f"{record['problem']}: no top configuration completed on every held-out seed.")
    return best


def heldout_losses(record: dict[str, Any], optimizer: str, params: dict[str, Any]) -> list[float | None] | None:
    """Final losses on the held-out seeds (None for a diverged seed), or None if not all evaluated yet."""
    runs = record["heldout"].get(config_key(optimizer, params), {})
    if not all(str(s) in runs for s in HELD_OUT_SEEDS):
        return None
    return [runs[str(s)] for s in HELD_OUT_SEEDS]


def edge_extensions(record: dict[str, Any], problem: str) -> list[tuple[str, int]]:
    """(optimizer, k) to add: two rates beyond an edge where a family's best (or only finite) rate lies."""
    add = []
    for optimizer in FAMILIES:
        mine = [c for c in configs(record) if c["optimizer"] == optimizer]
        if not mine:
            continue
        ks = [c["k"] for c in mine]
        ok = [c for c in mine if c["ok"]]
        if ok:
            best = min(ok, key=lambda c: c["mean"])["k"]
        else:  # every rate diverged: the usable rates are lower
            best = min(ks)
        if best == min(ks) and min(ks) > K_RANGE[0]:
            add += [(optimizer, min(ks) - i) for i in (1, 2) if min(ks) - i >= K_RANGE[0]]
        if best == max(ks) and max(ks) < K_RANGE[1]:
            add += [(optimizer, max(ks) + i) for i in (1, 2) if max(ks) + i <= K_RANGE[1]]
    return add


# --- computing -------------------------------------------------------------------------------------

def _init_worker() -> None:
    torch.set_num_threads(1)


def _job(name: str, optimizer: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    return evaluate(name, optimizer, params, seed)


def compute(problems: Iterable[str], jobs: int = 2, log: Any = print) -> dict[str, dict[str, Any]]:
    """Bring every problem's cache up to date; returns the records. Saves as results arrive."""
    problems = list(problems)
    torch.set_num_threads(1)
    records = {}
    for name in problems:
        version = fingerprint(name)
        records[name] = load(name, version)
        records[name].setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        records[name].update(epochs=PROBLEMS[name].epochs, batch_size=PROBLEMS[name].batch_size,
                             kind=PROBLEMS[name].kind, task=PROBLEMS[name].task)
    pending_save: set[str] = set()
    with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
        def run_all(work: list[tuple[str, str, dict[str, Any], int, Any]]) -> None:
            futures = {pool.submit(_job, n, o, p, s): (n, key) for n, o, p, s, key in work}
            last_save = time.monotonic()
            for i, future in enumerate(as_completed(futures), 1):
                name, key = futures[future]
                result = future.result()
                if isinstance(key, tuple):  # a held-out evaluation: (config key, seed)
                    records[name]["heldout"].setdefault(key[0], {})[str(key[1])] = (
                        final_loss(result))
                else:
                    records[name]["runs"][key] = result
                pending_save.add(name)
                if time.monotonic() - last_save > 20 or i == len(futures):
                    for n in pending_save:
                        save(records[n])
                    pending_save.clear()
                    last_save = time.monotonic()
                    log(f"  {i}/{len(futures)} runs done")

        # the grid, widened until every family's best rate is interior
        work = [(n, o, params_of(o, lr_of(k)), s, run_key(o, k, s))
                for n in problems for o in FAMILIES for k in range(START[o], START[o] + WINDOW) for s in GRID_SEEDS
                if run_key(o, k, s) not in records[n]["runs"]]
        rounds = 0
        while True:
            if work:
                log(f"grid round {rounds}: {len(work)} runs")
                run_all(work)
            rounds += 1
            work = [(n, o, params_of(o, lr_of(k)), s, run_key(o, k, s))
                    for n in problems for o, k in edge_extensions(records[n], n) for s in GRID_SEEDS
                    if run_key(o, k, s) not in records[n]["runs"]]
            if not work:
                break
        # the top configurations on the held-out seeds
        work = []
        for n in problems:
            for c in best_configs(records[n]):
                params = params_of(c["optimizer"], lr_of(c["k"]))
                have = records[n]["heldout"].get(config_key(c["optimizer"], params), {})
                work += [(n, c["optimizer"], params, s, (config_key(c["optimizer"], params), s))
                         for s in HELD_OUT_SEEDS if str(s) not in have]
        if work:
            log(f"held-out seeds: {len(work)} runs")
            run_all(work)
    for n in problems:
        records[n]["tre"] = round(sum(r["epochs"] for r in records[n]["runs"].values()) / PROBLEMS[n].epochs, 1)
        records[n]["train_seconds"] = round(sum(r["seconds"] for r in records[n]["runs"].values()), 1)
        save(records[n])
    return records


def evaluate_heldout(name: str, optimizer: str, params: dict[str, Any], jobs_pool: Any = None) -> list[float | None]:
    """Held-out losses of a configuration on problem ``name``, from the cache or trained now (and cached)."""
    record = load(name)
    losses = heldout_losses(record, optimizer, params)
    if losses is not None:
        return losses
    runs = record["heldout"].setdefault(config_key(optimizer, params), {})
    for seed in HELD_OUT_SEEDS:
        if str(seed) not in runs:
            runs[str(seed)] = final_loss(evaluate(name, optimizer, params, seed))
    save(record)
    return [runs[str(s)] for s in HELD_OUT_SEEDS]


def summary_line(record: dict[str, Any]) -> str:
    ref = reference(record)
    return (f"{record['problem']:<22} {record['kind']:<11} best {ref['optimizer']:<8} lr {ref['lr']:.2e}  "
            f"held-out {ref['mean']:.4g}  grid {record['tre']:.0f} TRE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.problems) - set(PROBLEMS))
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; the corpus has {sorted(PROBLEMS)}")
    start = time.perf_counter()
    records = compute(args.problems, args.jobs)
    for name in args.problems:
        print(summary_line(records[name]))
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
