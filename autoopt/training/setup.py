"""``TrainingSetup``: what every trial of a study shares (the starting model, the data, the task, the
budget of epochs, the precision), and the precision's autocast.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..objective import MetricFn
from .batches import Split
from .initialization import looks_freshly_initialized, reinitialized_state
from .task import Task

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainingSetup:
    """What every trial of a study shares: the starting model, the data, the task and the budget."""

    template: nn.Module  # the user's model, copied to the device, with the study's initial weights
    split: Split
    task: Task
    device: torch.device
    epochs: int
    batch_size: int
    seed: int  # the search's seed: other seeds draw other weights where the model is freshly initialized
    divergence_factor: float = 4.0  # val loss above this multiple of the initial loss = diverged
    precision: str = "fp32"  # "bf16" / "fp16": forward and loss under autocast (fp16: CUDA, a grad scaler)
    metrics: dict[str, MetricFn] = field(default_factory=dict)  # name -> fn(predictions, targets), each epoch
    _initial_states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        check_precision(self.precision, self.device)

    @functools.cached_property
    def redraws_weights(self) -> bool:
        """Whether another seed draws other initial weights: only where the user's model is still its
        layers' default initialization (``initialization.looks_freshly_initialized``), never for
        pretrained weights, which another seed keeps (it changes the data order and random draws)."""
        return looks_freshly_initialized(self.template)

    def fresh_model(self, seed: int) -> nn.Module:
        """A new copy of the model with the initial weights of ``seed``.

        The search's seed gives the user's own weights, so every candidate starts from them; another
        seed re-draws every layer that can be, under that seed, the same way for every candidate, where
        the model is freshly initialized (``redraws_weights``), and keeps the user's weights otherwise.
        """
        model = copy.deepcopy(self.template)
        if seed != self.seed and self.redraws_weights:
            model.load_state_dict(self._initial_state(seed))
        return model

    def _initial_state(self, seed: int) -> dict[str, torch.Tensor]:
        with self._lock:  # torch's global RNG is shared by threads: draw each seed's weights once
            if seed not in self._initial_states:
                self._initial_states[seed] = reinitialized_state(self.template, seed)
            return self._initial_states[seed]


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ValueError for a precision that is unknown or that ``device`` cannot train in."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {list(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device (autocast with a gradient scaler) but the device "
                         f"is {device}; use 'bf16' or 'fp32' there.")


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context of ``precision`` on ``device``; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
