"""Learning-rate range test: a short exponential sweep that centres each optimizer's search range.

As in Lightning's LR finder: start from the study's initial weights, raise the learning rate
exponentially every step, smooth the training loss, drop non-finite values, and stop once the
smoothed loss passes 4x its best. Range tests are known to miss the best rate of a full training run
by 3-30x on some models (autoencoders, deep tanh nets), so autoopt never trusts the suggestion alone:
it only narrows the range the search samples from, keeping it wide around the suggestion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .registry import LogUniform, OptimizerSpec
from .training import TrainingSetup

SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected
STOP_FACTOR = 4.0  # stop once the smoothed loss exceeds this multiple of its best
BELOW = 300.0  # the narrowed range starts this far below the loss minimum's learning rate
ABOVE = 1.0  # ... and ends this far above it: past the minimum, training diverges


@dataclass
class RangeTest:
    """The sweep of one optimizer: learning rates tried and the smoothed loss at each."""

    optimizer: str
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    steps: int = 0  # training steps taken (the cost)

    @property
    def lr_at_minimum(self) -> float | None:
        finite = [(loss, lr) for lr, loss in zip(self.lrs, self.losses) if math.isfinite(loss)]
        return min(finite)[1] if finite else None

    def suggestion(self) -> float | None:
        """A learning rate for a full training run: a decade below the loss minimum's."""
        lr = self.lr_at_minimum
        return None if lr is None else lr / 10.0

    def narrowed(self, spec: OptimizerSpec) -> OptimizerSpec:
        """``spec`` with its lr range cut to [minimum/BELOW, minimum*ABOVE] and its lr default moved."""
        lr = self.lr_at_minimum
        dim = next(d for d in spec.space if d.name == "lr")
        if lr is None:
            return spec
        low, high = max(dim.low, lr / BELOW), min(dim.high, lr * ABOVE)
        if high <= low * 10:  # the minimum sits at an edge of the range: keep a decade to search
            low, high = (high / 10, high) if high <= dim.low * 10 else (low, low * 10)
        space = tuple(LogUniform("lr", low, high) if d.name == "lr" else d for d in spec.space)
        default = min(max(self.suggestion(), low), high)
        return replace(spec, space=space, defaults={**spec.defaults, "lr": default})


def run_range_test(setup: TrainingSetup, spec: OptimizerSpec, seed: int, steps: int) -> RangeTest:
    """Sweep the learning rate of ``spec`` across its search range in ``steps`` training steps."""
    dim = next(d for d in spec.space if d.name == "lr")
    model = setup.fresh_model(seed).to(setup.device)
    model.train()
    optimizer = spec.build([p for p in model.parameters() if p.requires_grad], spec.defaults)
    # every group (Muon's AdamW part too) is scaled by the same factor relative to its default
    base = [group["lr"] / spec.defaults["lr"] for group in optimizer.param_groups]
    result = RangeTest(spec.name)
    generator = torch.Generator().manual_seed(seed)
    ratio = (dim.high / dim.low) ** (1.0 / max(steps - 1, 1))
    smoothed, best = 0.0, math.inf
    batches = iter(())
    for step in range(steps):
        lr = dim.low * ratio**step
        for group, scale in zip(optimizer.param_groups, base):
            group["lr"] = lr * scale
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(setup.split.train.batches(setup.batch_size, generator))
            xb, yb = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss, _ = setup.task.batch_loss(model, xb, yb)
        loss.backward()
        optimizer.step()
        result.steps += 1
        value = loss.item()  # one sync per step is fine for a sweep of at most 100 steps
        if not math.isfinite(value):
            break
        smoothed = SMOOTHING * smoothed + (1 - SMOOTHING) * value
        corrected = smoothed / (1 - SMOOTHING ** (step + 1))
        result.lrs.append(lr)
        result.losses.append(corrected)
        best = min(best, corrected)
        if corrected > STOP_FACTOR * best:
            break
    return result
