"""Checks for the ready-made problems in ``recipes/``.

Every ``recipes/*.py`` file is loaded by path and checked for the recipe
contract: a module docstring, ``EPOCHS``, ``BATCH_SIZE`` and
``build(seed) -> (model, (X, y))`` with seed-independent data, seed-dependent
(and reproducible) model initialization, well-formed finite arrays, and one
Adam step that gives a finite loss of the kind the task implies.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPE_FILES = sorted(p for p in RECIPES_DIR.glob("*.py") if not p.name.startswith("_"))


def load_recipe(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_recipe_{path.stem}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


def task_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for integer targets (BCE-with-logits for a single-logit
    binary model), MSE for float targets."""
    if y.dtype == torch.int64:
        if out.ndim == 1 or out.shape[-1] == 1:
            return F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype))
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y)


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_recipes_exist():
    assert RECIPES_DIR.is_dir(), f"missing {RECIPES_DIR}"
    assert len(RECIPE_FILES) >= 1


@pytest.fixture(scope="module", params=RECIPE_FILES, ids=[p.stem for p in RECIPE_FILES])
def recipe(request) -> ModuleType:
    return load_recipe(request.param)


def test_interface(recipe):
    assert recipe.__doc__ and len(recipe.__doc__.strip()) > 40, "needs a descriptive module docstring"
    assert isinstance(recipe.EPOCHS, int) and not isinstance(recipe.EPOCHS, bool) and recipe.EPOCHS >= 1
    assert isinstance(recipe.BATCH_SIZE, int) and not isinstance(recipe.BATCH_SIZE, bool)
    assert recipe.BATCH_SIZE >= 1
    assert callable(recipe.build)


def test_build_contract(recipe):
    model0, (X0, y0) = recipe.build(seed=0)
    model0_again, (X0b, y0b) = recipe.build(seed=0)
    model1, (X1, y1) = recipe.build(seed=1)
    assert isinstance(model0, torch.nn.Module)

    X, y = as_tensor(X0), as_tensor(y0)
    # Data: same for every seed.
    assert torch.equal(X, as_tensor(X1)) and torch.equal(y, as_tensor(y1)), "data must not depend on seed"
    assert torch.equal(X, as_tensor(X0b)) and torch.equal(y, as_tensor(y0b))

    # Model init: reproducible for one seed, different across seeds.
    s0, s0b, s1 = state_of(model0), state_of(model0_again), state_of(model1)
    assert s0.keys() == s0b.keys() == s1.keys() and len(s0) > 0
    assert all(torch.equal(s0[k], s0b[k]) for k in s0), "same seed must give the same initial weights"
    assert any(not torch.equal(s0[k], s1[k]) for k in s0), "different seeds must give different weights"

    # Shapes, dtypes, finiteness.
    assert len(X) == len(y) > 0
    assert X.dtype == torch.float32, f"features must be float32, got {X.dtype}"
    assert y.dtype in (torch.int64, torch.float32), f"targets must be int64 or float32, got {y.dtype}"
    assert torch.isfinite(X).all() and torch.isfinite(y.to(torch.float64)).all()
    if y.dtype == torch.int64:
        assert y.ndim == 1 and int(y.min()) == 0, "class ids must be 0..K-1"
        assert len(torch.unique(y)) == int(y.max()) + 1 >= 2, "class ids must be 0..K-1"
    else:
        assert y.ndim in (1, 2)


def test_one_adam_step(recipe):
    model, (X, y) = recipe.build(seed=0)
    X, y = as_tensor(X), as_tensor(y)
    batch = min(recipe.BATCH_SIZE, len(X))
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(X), generator=g)[:batch]
    xb, yb = X[idx], y[idx]

    model.train()
    out = model(xb)
    assert out.shape[0] == batch
    if y.dtype == torch.int64:
        n_classes = int(y.max()) + 1
        if out.ndim == 1 or out.shape[-1] == 1:
            assert n_classes == 2, "a single-logit model only fits binary targets"
        else:
            assert out.shape == (batch, n_classes), f"expected {n_classes} logits, got {tuple(out.shape)}"
    else:
        assert out.shape == yb.shape, f"model output {tuple(out.shape)} vs target {tuple(yb.shape)}"

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = state_of(model)
    loss = task_loss(out, yb)
    assert loss.ndim == 0 and torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = state_of(model)
    assert any(not torch.equal(before[k], after[k]) for k in before), "the step changed nothing"
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    with torch.no_grad():
        assert torch.isfinite(task_loss(model(xb), yb))
