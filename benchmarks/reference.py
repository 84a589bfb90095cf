"""The reference every search is judged against: an exhaustive grid, and the held-out evaluations.

The grid trains every optimizer of ``OPTIMIZERS`` at its registry defaults, at 13 learning rates
(half-decades from 1e-5 to 10), on seeds 0 and 1. Its best configuration has the lowest mean final
validation loss over both seeds; one that diverged on either seed is out. Both caches live in
``benchmarks/results/`` with the version of the code that made them (see
``problems.evaluation_version``) and are recomputed when that version changes:

- ``grid-<problem>.json``: every grid run, its best configuration, and its cost;
- ``heldout-<problem>.json``: evaluations on the held-out seeds, keyed by configuration and seed
  (the reference's and every recommendation's; a recommendation seen before is not retrained).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from problems import OPTIMIZERS, RESULTS, config_key, evaluation_version, grid_params, load_problem

GRID_LRS = tuple(float(lr) for lr in np.logspace(-5, 1, 13))
GRID_SEEDS = (0, 1)

Job = tuple[str, str, dict[str, Any], int]  # (problem, optimizer, params, seed) for problems.evaluate


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


# --- the grid --------------------------------------------------------------------------------------

def grid_path(name: str) -> Path:
    return RESULTS / f"grid-{name}.json"


def cached_grid(name: str) -> dict[str, Any] | None:
    """The cached grid of ``name`` if it was made by the current code with the current settings."""
    grid = _read(grid_path(name))
    problem = load_problem(name)
    if grid is None:
        return None
    same = (grid.get("version", {}).get("sha256") == evaluation_version(name)["sha256"]
            and grid.get("version", {}).get("torch") == evaluation_version(name)["torch"]
            and grid.get("epochs") == problem.epochs and grid.get("batch_size") == problem.batch_size
            and grid.get("optimizers") == list(OPTIMIZERS) and grid.get("seeds") == list(GRID_SEEDS)
            and np.allclose(grid.get("lrs", []), GRID_LRS) and len(grid.get("lrs", [])) == len(GRID_LRS))
    return grid if same else None


def stale_reason(name: str) -> str:
    """Why the cached grid of ``name`` cannot be used (for the log)."""
    grid = _read(grid_path(name))
    if grid is None:
        return "no cache"
    now = evaluation_version(name)
    then = grid.get("version", {})
    if then.get("sha256") != now["sha256"] or then.get("torch") != now["torch"]:
        return f"code changed (cache {then.get('sha256')}/torch {then.get('torch')}, now {now['sha256']}/torch {now['torch']})"
    return "grid settings changed"


def grid_jobs(name: str) -> list[Job]:
    return [(name, opt, grid_params(opt, lr), seed) for opt in OPTIMIZERS for lr in GRID_LRS for seed in GRID_SEEDS]


def make_grid(name: str, results: list[dict[str, Any]], wall_seconds: float, jobs: int,
              version: dict[str, Any]) -> dict[str, Any]:
    """The grid record from the results of ``grid_jobs(name)`` (same order); saved to its cache.

    ``version`` is ``evaluation_version(name)`` taken before the runs started (the code they used).
    """
    problem = load_problem(name)
    runs = [{"optimizer": opt, "lr": params["lr"], "seed": seed, **result}
            for (_, opt, params, seed), result in zip(grid_jobs(name), results)]
    configs = []
    for opt in OPTIMIZERS:
        for lr in GRID_LRS:
            mine = [r for r in runs if r["optimizer"] == opt and r["lr"] == lr]
            ok = all(r["outcome"] == "completed" for r in mine)
            configs.append({"optimizer": opt, "lr": lr, "ok": ok,
                            "mean_val_loss": float(np.mean([r["final_val_loss"] for r in mine])) if ok else None})
    good = [c for c in configs if c["ok"]]
    if not good:
        raise RuntimeError(f"every grid configuration diverged on {name}; the grid has no reference.")
    best = min(good, key=lambda c: c["mean_val_loss"])
    grid = {
        "problem": name,
        "version": version,
        "created": _now(),
        "epochs": problem.epochs,
        "batch_size": problem.batch_size,
        "optimizers": list(OPTIMIZERS),
        "lrs": list(GRID_LRS),
        "seeds": list(GRID_SEEDS),
        "best": {"optimizer": best["optimizer"], "params": grid_params(best["optimizer"], best["lr"]),
                 "mean_val_loss": best["mean_val_loss"]},
        "tre": sum(r["epochs"] for r in runs) / problem.epochs,
        "train_seconds": round(sum(r["seconds"] for r in runs), 1),
        "wall_seconds": round(wall_seconds, 1),
        "jobs": jobs,
        "configs": configs,
        "runs": runs,
    }
    _write(grid_path(name), grid)
    return grid


def fidelity(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """How well the loss after k epochs predicts the final loss, over the grid's runs that trained cleanly.

    For k = 1, 2, 3, EPOCHS // 10 and 9 (those below EPOCHS): the Spearman rank correlation between the
    val loss at epoch k and the final one, and whether the run best at epoch k is within 1% / 10% of
    the final best. Low-fidelity screening and successive halving rely on this ranking.
    """
    runs = [r for r in grid["runs"] if r["outcome"] == "completed" and r.get("val_curve")]
    finals = np.array([r["final_val_loss"] for r in runs])
    out = []
    for k in sorted({1, 2, 3, max(1, grid["epochs"] // 10), 9}):
        if k >= grid["epochs"] or not runs:
            continue
        early = np.array([r["val_curve"][k - 1] for r in runs], dtype=float)
        rho = float(np.corrcoef(_ranks(early), _ranks(finals))[0, 1])
        pick = finals[int(np.argmin(early))]
        top3 = np.sort(finals[np.argsort(early)[:3]])[0]
        out.append({"epoch": k, "spearman": round(rho, 3), "runs": len(runs),
                    "final_of_best_at_epoch": float(pick), "best_final": float(finals.min()),
                    "regret_of_best_at_epoch": float(pick / finals.min() - 1),
                    "regret_of_best_of_top3_at_epoch": float(top3 / finals.min() - 1)})
    return out


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(float)


def grid_table(grid: dict[str, Any]) -> str:
    """Mean final val loss of every grid configuration: optimizers down, learning rates across."""
    lines = ["lr         " + " ".join(f"{lr:>8.0e}" for lr in grid["lrs"])]
    for opt in grid["optimizers"]:
        cells = []
        for c in grid["configs"]:
            if c["optimizer"] == opt:
                cells.append(f"{c['mean_val_loss']:>8.4f}" if c["ok"] else f"{'div':>8}")
        lines.append(f"{opt:<10} " + " ".join(cells))
    return "\n".join(lines)


# --- held-out evaluations --------------------------------------------------------------------------

def heldout_path(name: str) -> Path:
    return RESULTS / f"heldout-{name}.json"


class HeldOutCache:
    """Evaluations on held-out seeds of problem ``name``, valid for the current evaluation code."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = evaluation_version(name)
        stored = _read(heldout_path(name))
        valid = (stored is not None and stored.get("version", {}).get("sha256") == self.version["sha256"]
                 and stored.get("version", {}).get("torch") == self.version["torch"])
        self.evaluations: dict[str, dict[str, Any]] = stored["evaluations"] if valid else {}
        self.discarded = bool(stored) and not valid

    def get(self, optimizer: str, params: dict[str, Any], seed: int) -> dict[str, Any] | None:
        return self.evaluations.get(config_key(optimizer, params), {}).get(str(seed))

    def put(self, optimizer: str, params: dict[str, Any], seed: int, result: dict[str, Any]) -> None:
        self.evaluations.setdefault(config_key(optimizer, params), {})[str(seed)] = {**result, "made": _now()}

    def save(self) -> None:
        _write(heldout_path(self.name), {"problem": self.name, "version": self.version,
                                         "evaluations": self.evaluations})


def score(losses: list[float | None], reference: list[float]) -> dict[str, Any]:
    """Regret of held-out losses against the reference's on the same seeds, and the target check.

    Regret = (mean - reference mean) / reference mean. The target holds when regret <= 1%, or, where
    the seed noise is larger, when the seed-paired mean difference <= 1% of the reference mean + 2 SE.
    A loss of None (diverged) on any seed fails the target.
    """
    ref_mean = float(np.mean(reference))
    if any(v is None or not math.isfinite(v) for v in losses):
        return {"mean": None, "regret": math.inf, "paired_diff": None, "paired_se": None,
                "target_met": False, "diverged": True}
    diff = np.asarray(losses, dtype=float) - np.asarray(reference, dtype=float)
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    regret = float(diff.mean() / ref_mean)
    met = regret <= 0.01 or float(diff.mean()) <= 0.01 * ref_mean + 2 * se
    return {"mean": float(np.mean(losses)), "regret": regret, "paired_diff": float(diff.mean()),
            "paired_se": se, "target_met": bool(met), "diverged": False}
