"""What a study optimizes: the validation loss (the default), the validation accuracy, or your metric.

``objective=`` in ``tune()`` (and ``objective = "val_accuracy"`` in a study file) names the value that
the search minimizes or maximizes, that pruning and successive halving rank trials by, and that the
recommendation's policy weighs as its "loss" criterion. Training itself is always on the task's loss,
and divergence is still judged on the validation loss.

Every comparison goes through ``Objective.score``: the value where lower is better (the value itself
for "minimize", its negative for "maximize"), so that no ranking needs to know the direction.

>>> Objective(lambda out, y: (out.argmax(-1) == y).float().mean(), direction="maximize", name="acc").score(0.9)
-0.9
>>> check_objective("val_accuracy").direction
'maximize'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .records import EpochRecord, Measurement

#: ``fn(predictions, targets) -> number``: the metric of the whole validation set, given its
#: predictions (the model's outputs, as the loss sees them) and targets, each concatenated over batches.
MetricFn = Callable[["torch.Tensor", "torch.Tensor"], Any]

DIRECTIONS = ("minimize", "maximize")
#: The objectives measured by every trial, by name, and their directions.
BUILT_IN = {"val_loss": "minimize", "val_accuracy": "maximize"}
#: Names a metric of your own cannot take: those of the values every epoch already records.
RESERVED = ("train_loss", "val_loss", "val_accuracy", "epoch_seconds", "elapsed_seconds")


def _recorded(predictions: Any, targets: Any) -> Any:
    raise RuntimeError("this objective was read from a stored study: its values are in the records, "
                       "its function is not; pass the Objective itself to compute it again.")


@dataclass(frozen=True)
class Objective:
    """A metric of the validation set and whether to minimize or maximize it.

    ``fn(predictions, targets)`` is called once per evaluation with the predictions and targets of
    the whole validation set (concatenated along the first dimension, on the training device) and
    returns a number (or a one-element tensor). ``name`` (default: the function's name) is the key it
    is recorded under, in each epoch's metrics and in MLflow.

    >>> import torch
    >>> def f1(out, y):
    ...     pred = out.argmax(-1)
    ...     tp = ((pred == 1) & (y == 1)).sum()
    ...     return 2 * tp / ((pred == 1).sum() + (y == 1).sum()).clamp(min=1)
    >>> Objective(f1, direction="maximize").name
    'f1'
    """

    fn: MetricFn | None
    direction: str = "minimize"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Objective direction={self.direction!r} is not a direction; use 'minimize' or 'maximize'.")
        if self.fn is None:  # one of the values every trial measures
            if self.name not in BUILT_IN:
                raise ValueError(f"Objective(None, name={self.name!r}) names no measured value; give a metric "
                                 f"function, or use one of {list(BUILT_IN)}.")
            if self.direction != BUILT_IN[self.name]:
                raise ValueError(f"objective {self.name!r} can only be {BUILT_IN[self.name]}d, not {self.direction}d.")
            return
        if not callable(self.fn):
            raise TypeError(f"Objective's fn must be callable, fn(predictions, targets) -> number, but got {self.fn!r}.")
        name = self.name if self.name is not None else getattr(self.fn, "__name__", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Objective needs a name for {self.fn!r} (a word such as 'f1', the key its values are "
                             f"recorded under), got {name!r}; pass name=.")
        if name in RESERVED:
            raise ValueError(f"Objective name {name!r} is taken by a value every epoch records ({list(RESERVED)}); "
                             f"for the built-in one pass objective={name!r}, else choose another name.")
        object.__setattr__(self, "name", name)

    @classmethod
    def recorded(cls, name: str, direction: str) -> Objective:
        """The objective of a stored study, read back by name and direction (its values are in the records)."""
        if name in BUILT_IN:
            return cls(None, direction, name)
        return cls(_recorded, direction, name)

    @property
    def metric(self) -> MetricFn | None:
        """The function the training loop evaluates each epoch; None for the built-in objectives."""
        return self.fn if self.name not in BUILT_IN else None

    def score(self, value: Any) -> Any:
        """``value`` where lower is better: itself to minimize, its negative to maximize (floats or Series)."""
        return value if self.direction == "minimize" else -value

    def value(self, record: EpochRecord) -> float:
        """The objective's value after one epoch (NaN where it was not measured)."""
        if self.name == "val_loss":
            return record.val_loss
        if self.name == "val_accuracy":
            return math.nan if record.val_accuracy is None else record.val_accuracy
        return float(record.val_metrics.get(self.name, math.nan))

    def final(self, measurement: Measurement) -> float:
        """The objective's value at the last epoch of a trial (NaN before any epoch)."""
        return self.value(measurement.epochs[-1]) if measurement.epochs else math.nan

    def describe(self) -> str:
        """In words, for explanations: ``'validation accuracy (maximized)'``."""
        words = {"val_loss": "validation loss", "val_accuracy": "validation accuracy"}.get(self.name, self.name)
        return f"{words} ({self.direction}d)"


VAL_LOSS = Objective(None, "minimize", "val_loss")
VAL_ACCURACY = Objective(None, "maximize", "val_accuracy")


def check_objective(objective: Any) -> Objective:
    """The Objective for ``objective=``: "val_loss", "val_accuracy" or an ``Objective``; else ValueError.

    >>> check_objective("val_loss") is VAL_LOSS
    True
    """
    if isinstance(objective, Objective):
        return objective
    accepted = ("'val_loss' (the default), 'val_accuracy', or autoopt.Objective(fn, direction='maximize' or "
                "'minimize', name=...) for a metric fn(predictions, targets) of your own")
    if isinstance(objective, str):
        if objective in BUILT_IN:
            return VAL_LOSS if objective == "val_loss" else VAL_ACCURACY
        raise ValueError(f"unknown objective {objective!r}; use {accepted}.")
    if callable(objective):
        raise TypeError(f"objective={getattr(objective, '__name__', objective)!r} is a function without a direction; "
                        f"wrap it: autoopt.Objective(fn, direction='maximize') (or 'minimize').")
    raise TypeError(f"objective must be {accepted}, but got {objective!r} ({type(objective).__name__}).")
