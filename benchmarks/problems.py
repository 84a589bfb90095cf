"""The benchmark problems and the one way a configuration is judged on them.

A problem is a recipe (``recipes/<name>.py``) with a validation split made once, with
``prepare_data(data, seed=0)`` semantics (stratified for classification), and used by everything:
the reference grid, every search method (passed to ``tune`` as ``val_data=``) and the held-out
evaluation. The recipe's seed only changes the model's initial weights, never the data.

One evaluation of a configuration on a seed ``s`` trains ``recipe.make(seed=s)``'s model with
autoopt's own loop (``train_candidate``) for the recipe's EPOCHS and BATCH_SIZE, data order seeded
by ``s``, and returns its final validation loss, or "diverged".

>>> problem = load_problem("diabetes")                       # doctest: +SKIP
>>> evaluate("diabetes", "adam", {"lr": 1e-3}, seed=1000)     # doctest: +SKIP
{'outcome': 'completed', 'final_val_loss': 0.55..., 'epochs': 40, 'seconds': 0.4}
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autoopt.data import prepare_data
from autoopt.records import Candidate
from autoopt.recipes import load_recipe
from autoopt.registry import get_spec
from autoopt.task import infer_task
from autoopt.training import TrainingSetup, train_candidate

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

#: The candidates every method chooses from (the issue's seven), at their registry defaults but lr.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
#: The problems of issue #5: three ordinary ones and two learning-rate-sensitive ones.
PROBLEMS = ("digits_mlp", "breast_cancer", "diabetes", "autoencoder", "deep_tanh")
#: Seeds no search ever uses: every recommendation, and the reference, is judged on these.
HELD_OUT_SEEDS = (1000, 1001, 1002, 1003, 1004)

#: Files whose content decides an evaluation's numbers (besides the recipe itself).
EVALUATION_SOURCES = ("autoopt/training.py", "autoopt/registry.py", "autoopt/data.py", "autoopt/task.py",
                      "benchmarks/problems.py")


@dataclass(frozen=True)
class Problem:
    """A recipe with its fixed validation split, as tensors on the CPU."""

    name: str
    epochs: int
    batch_size: int
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    task_kind: str


@functools.lru_cache(maxsize=None)
def load_problem(name: str) -> Problem:
    """The recipe ``name`` with its validation split (made once per process)."""
    recipe = load_recipe(name)
    if recipe.epochs is None or recipe.batch_size is None:
        raise ValueError(f"recipe {name!r} must define EPOCHS and BATCH_SIZE to be a benchmark problem.")
    model, data = recipe.make(seed=0)
    split = prepare_data(data, seed=0)  # the split tune() itself would make with seed=0
    task = infer_task(model, split)
    return Problem(name, recipe.epochs, recipe.batch_size, (split.train.X, split.train.y),
                   (split.val.X, split.val.y), task.kind)


def build_model(name: str, seed: int) -> torch.nn.Module:
    """The recipe's model with the initial weights of ``seed``."""
    model, _ = load_recipe(name).make(seed=seed)
    return model


def evaluate(name: str, optimizer: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train ``optimizer(**params)`` on problem ``name`` from ``seed``'s initial weights; its final val loss."""
    problem = load_problem(name)
    model = build_model(name, seed)
    split = prepare_data(problem.train, val_data=problem.val)
    setup = TrainingSetup(template=model, split=split, task=infer_task(model, split), device=torch.device("cpu"),
                          epochs=problem.epochs, batch_size=problem.batch_size, seed=seed)
    start = time.perf_counter()
    measurement = train_candidate(setup, get_spec(optimizer), Candidate(optimizer, dict(params)), seed=seed)
    loss = measurement.final_val_loss
    outcome = measurement.outcome
    if outcome == "completed" and not math.isfinite(loss):
        outcome = "diverged"  # the training loop already calls a non-finite loss diverged; be sure
    return {
        "outcome": outcome,  # "completed", "diverged", or (never seen on a CPU) "oom"
        "final_val_loss": loss if math.isfinite(loss) else None,
        "epochs": len(measurement.epochs),
        "seconds": round(time.perf_counter() - start, 3),
        "val_curve": [float(f"{v:.6g}") if math.isfinite(v) else None for v in measurement.val_losses],
    }


def config_key(optimizer: str, params: dict[str, Any]) -> str:
    """An exact text key for a configuration (floats in full precision)."""
    return json.dumps([optimizer, sorted((k, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                                          else v) for k, v in params.items())])


def grid_params(optimizer: str, lr: float) -> dict[str, Any]:
    """``optimizer``'s registry defaults with ``lr`` replaced."""
    return {**get_spec(optimizer).defaults, "lr": float(lr)}


# --- code versions --------------------------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def files_version(paths: list[str]) -> dict[str, Any]:
    """What version of ``paths`` is in the working tree.

    ``commit``: the last commit touching them (git log); ``dirty``: some of them differ from it or
    are untracked; ``sha256``: a hash of their content, the value that decides whether a cache is
    still valid (a commit hash alone misses uncommitted and untracked edits).
    """
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.encode() + b"\0")
        file = REPO / path
        digest.update(file.read_bytes() if file.is_file() else b"<missing>")
        digest.update(b"\0")
    status = _git("status", "--porcelain", "--", *paths)
    return {"commit": _git("log", "-1", "--format=%H", "--", *paths) or None,
            "dirty": bool(status), "sha256": digest.hexdigest()[:16]}


def evaluation_version(name: str) -> dict[str, Any]:
    """The version of everything that decides an evaluation on problem ``name``, torch included."""
    recipe_path = Path(load_recipe(name).source).resolve()
    try:
        recipe = str(recipe_path.relative_to(REPO))
    except ValueError:
        recipe = str(recipe_path)
    return {**files_version([*EVALUATION_SOURCES, recipe]), "torch": torch.__version__}


def autoopt_version() -> dict[str, Any]:
    """The version of the whole autoopt package (what a search method's result depends on)."""
    paths = sorted(str(p.relative_to(REPO)) for p in (REPO / "autoopt").glob("*.py"))
    return files_version(paths)


def set_single_thread() -> None:
    """Process-pool initializer: one intra-op thread per worker (the machine has few cores)."""
    torch.set_num_threads(1)
