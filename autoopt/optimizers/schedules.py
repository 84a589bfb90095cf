"""Training settings that belong to a configuration but not to the torch optimizer: the
learning-rate schedule, its warm-up, and gradient clipping by norm.

They travel in a Candidate's params beside the optimizer's own (``{"lr": 1e-3, "schedule":
"cosine", "warmup_fraction": 0.05, "clip_norm": 1.0}``); the training loop takes them out
(``split_params``) and the registry never passes them to the optimizer. Without them training is
what it always was: a constant learning rate and no clipping.

Schedules multiply each parameter group's learning rate by ``factor(step)`` before step ``step``
(0-based) of ``total`` steps:

- ``"constant"``: 1 (after the warm-up, if any);
- ``"cosine"``: linear warm-up over ``warmup_fraction`` of the steps, then a cosine decay to 0;
- ``"linear"``: the same warm-up, then a linear decay to 0.

>>> factor("cosine", 0, 10, warmup_fraction=0.2), factor("cosine", 2, 10, 0.2), factor("linear", 6, 10, 0.2)
(0.5, 1.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("constant", "cosine", "linear")
#: Candidate params that the training loop handles, never given to the optimizer.
TRAINING_KEYS = ("schedule", "warmup_fraction", "clip_norm")


@dataclass(frozen=True)
class TrainingSettings:
    """How a configuration trains besides its optimizer; the defaults change nothing."""

    schedule: str = "constant"
    warmup_fraction: float = 0.0  # of all training steps, before the schedule's decay
    clip_norm: float | None = None  # the gradients' total 2-norm is clipped to this; None: no clipping

    def __post_init__(self) -> None:
        check_training_params({"schedule": self.schedule, "warmup_fraction": self.warmup_fraction,
                               "clip_norm": self.clip_norm})

    @property
    def is_default(self) -> bool:
        return self == TrainingSettings()

    def factor(self, step: int, total: int) -> float:
        return factor(self.schedule, step, total, self.warmup_fraction)


def check_training_params(params: Mapping[str, Any]) -> None:
    """Raise ValueError naming a bad schedule, warm-up fraction or clipping norm."""
    schedule = params.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {list(SCHEDULES)}.")
    warmup = params.get("warmup_fraction", 0.0)
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1) (a fraction of the training steps) but got {warmup!r}.")
    clip = params.get("clip_norm")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
        raise ValueError(f"clip_norm must be a positive number (or None for no clipping) but got {clip!r}.")


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], TrainingSettings]:
    """(the optimizer's keyword values, the training settings) of a Candidate's params.

    >>> split_params({"lr": 0.1, "clip_norm": 1.0})
    ({'lr': 0.1}, TrainingSettings(schedule='constant', warmup_fraction=0.0, clip_norm=1.0))
    """
    optimizer = {k: v for k, v in params.items() if k not in TRAINING_KEYS}
    training = {k: params[k] for k in TRAINING_KEYS if k in params}
    if training.get("clip_norm") is not None:
        training["clip_norm"] = float(training["clip_norm"])
    return optimizer, TrainingSettings(**training)


def factor(schedule: str, step: int, total: int, warmup_fraction: float = 0.0) -> float:
    """The learning-rate multiplier before step ``step`` (0-based) of ``total``."""
    warmup = int(round(warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown schedule {schedule!r}; use one of {list(SCHEDULES)}.")


class Schedule:
    """Sets every parameter group's lr to its base value times the schedule's factor, step by step.

    The training loop's own (it works on any optimizer with ``param_groups``, MuonWithAdamW's
    included); ``build_scheduler`` gives users the same schedule as a torch LambdaLR.
    """

    def __init__(self, optimizer: Any, settings: TrainingSettings, total_steps: int) -> None:
        self.optimizer, self.settings, self.total = optimizer, settings, max(total_steps, 1)
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0

    def before_step(self) -> None:
        f = self.settings.factor(self.step_count, self.total)
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * f
        self.step_count += 1


def build_scheduler(optimizer: Any, settings: TrainingSettings, total_steps: int) -> Any:
    """The schedule as ``torch.optim.lr_scheduler.LambdaLR``: call ``scheduler.step()`` after each
    ``optimizer.step()``, ``total_steps`` times in all."""
    import torch

    total = max(int(total_steps), 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: settings.factor(step, total))
