"""A model measured on a part of the data: its mean loss and accuracy (``evaluate``), a metric of the
user's own over the predictions (``metric_values``), and what a batch and an epoch hold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..objective import MetricFn
from .batches import VAL_CHUNK, LoaderPart, Part
from .setup import autocast
from .task import Task


def batch_length(inputs: Any, target: Any) -> int:
    """Samples in a batch: the target's length, else that of the first tensor among the inputs."""
    if isinstance(target, torch.Tensor):
        return len(target)
    if isinstance(inputs, torch.Tensor):
        return len(inputs)
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else ()
    for value in values:
        n = batch_length(value, None)
        if n:
            return n
    return 0


def steps_per_epoch(part: Part, batch_size: int) -> int:
    """Optimizer steps in one pass over ``part``."""
    if isinstance(part, LoaderPart):
        return len(part.loader)
    return -(-len(part) // batch_size)


def evaluate(model: nn.Module, part: Part, task: Task, precision: str = "fp32",
             collect: list[tuple[Any, Any]] | None = None) -> tuple[float, float | None]:
    """Mean loss and accuracy (None unless classification) of ``model`` on ``part``; the predictions and
    targets of each batch are appended to ``collect`` when given (for ``metric_values``)."""
    model.eval()
    total = torch.zeros((), device=next(model.parameters()).device)
    correct = torch.zeros((), device=total.device)
    count = 0
    has_accuracy = True
    with torch.no_grad():
        for xb, yb in part.batches(VAL_CHUNK, None):
            n = batch_length(xb, yb)
            with autocast(total.device, precision):
                loss, output = task.batch_loss(model, xb, yb)
            total += loss.detach().float() * n
            if collect is not None:
                collect.append((output, yb))
            hits = task.correct(output, yb)
            if hits is None:
                has_accuracy = False
            else:
                correct += hits
            count += n
    model.train()
    loss = float(total) / max(count, 1)  # one device sync per evaluation
    return loss, (float(correct) / max(count, 1) if has_accuracy else None)


def metric_values(metrics: dict[str, MetricFn], batches: list[tuple[Any, Any]]) -> dict[str, float]:
    """Each metric of the predictions and targets of ``batches``, concatenated: ``{name: value}``.

    >>> metric_values({"mae": lambda p, y: (p - y).abs().mean()}, [(torch.ones(2), torch.zeros(2))])
    {'mae': 1.0}
    """
    if not metrics:
        return {}
    if any(not isinstance(p, torch.Tensor) or not isinstance(y, torch.Tensor) for p, y in batches):
        raise ValueError("a metric objective needs the model's predictions and tensor targets, but this task "
                         "gives none (step_fn=, or targets that are not tensors); use objective='val_loss'.")
    predictions = torch.cat([p.detach().float() for p, _ in batches])
    targets = torch.cat([y for _, y in batches])
    out = {}
    for name, fn in metrics.items():
        value = fn(predictions, targets)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"the objective {name!r} returned a tensor of shape {tuple(value.shape)}; "
                                 "it must return one number (a scalar or a one-element tensor).")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"the objective {name!r} returned {value!r} ({type(value).__name__}); "
                             "it must return one number.")
        out[name] = float(value)
    return out
