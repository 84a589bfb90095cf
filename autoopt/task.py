"""What the model is asked to do: the task, its loss, and a check that the model's output fits.

Classification (integer or categorical targets) gets cross-entropy, or BCE-with-logits when the
model has a single output for two classes; regression (float targets) gets mean squared error.
``loss_fn=`` overrides the choice. The check runs one forward pass before any training, so a model
that cannot fit its targets is an error up front, not a crash in trial 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import Split

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Task:
    """The kind of problem and the loss every candidate is trained and judged on."""

    kind: str  # "multiclass", "binary", "regression" or "custom"
    loss_fn: LossFn

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Number of correct predictions in a batch (a 0-d tensor); None when accuracy has no meaning."""
        if self.kind == "multiclass":
            return (output.argmax(dim=-1) == target).sum()
        if self.kind == "binary":
            return ((output.reshape(-1) > 0).long() == target).sum()
        return None


def _binary_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output.reshape(-1), target.float())


def _multiclass_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def _mse_flat(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output.reshape(target.shape), target)


def infer_task(model: nn.Module, split: Split, loss_fn: LossFn | None = None) -> Task:
    """The task and loss for ``model`` on ``split``; raises ValueError if the output cannot fit.

    >>> from autoopt.data import prepare_data
    >>> import numpy as np
    >>> split = prepare_data((np.random.rand(20, 3), np.arange(20) % 3))
    >>> infer_task(nn.Linear(3, 3), split).kind
    'multiclass'
    """
    xb, yb = split.first_batch(8)
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            output = model(xb)
        model.train(was_training)
    except Exception as exc:  # the user's forward pass: any failure is theirs to see, named
        raise ValueError(
            f"the model could not run on a batch of the data (x of shape {tuple(xb.shape)}, dtype {xb.dtype}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"the model must return a tensor of predictions but returned {type(output).__name__}.")

    if loss_fn is not None:
        task = Task("custom", loss_fn)
    elif split.classification:
        task = _classification_task(output, split.n_classes or 0)
    else:
        task = _regression_task(output, yb)
    _check_loss(task, output, yb)
    return task


def _classification_task(output: torch.Tensor, n_classes: int) -> Task:
    width = output.shape[-1] if output.ndim == 2 else None
    if width == 1 and n_classes <= 2:
        return Task("binary", _binary_loss)
    if width is not None and width >= max(n_classes, 2):
        return Task("multiclass", _multiclass_loss)
    raise ValueError(
        f"the model outputs shape {tuple(output.shape[1:])} per sample but the targets are class ids with "
        f"{n_classes} classes (0..{n_classes - 1}); give the model {n_classes} outputs"
        + (" (or 1 output for binary)" if n_classes <= 2 else "")
        + ", or pass loss_fn=."
    )


def _regression_task(output: torch.Tensor, target: torch.Tensor) -> Task:
    if output.shape == target.shape:
        return Task("regression", _mse)
    if output.numel() == target.numel() and output.shape[0] == target.shape[0]:
        return Task("regression", _mse_flat)  # e.g. outputs (N, 1) for targets (N,)
    raise ValueError(
        f"the model outputs shape {tuple(output.shape[1:])} per sample but the float targets have shape "
        f"{tuple(target.shape[1:])}; make them match (regression), use integer class ids (classification), "
        "or pass loss_fn=."
    )


def _check_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> None:
    try:
        loss = task.loss_fn(output, target)
    except Exception as exc:
        raise ValueError(f"the loss could not be computed on a batch: {type(exc).__name__}: {exc}") from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor (use reduction='mean').")
    if not math.isfinite(float(loss)):
        raise ValueError(f"the loss of the initial model is {float(loss)} on a batch; check the data and the loss.")
