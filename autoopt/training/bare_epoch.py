"""The wall-time unit: seconds of one bare training epoch of the study's model on its data.

>>> # seconds = measure_bare_epoch(setup)   # a TrainingSetup, see loop.py
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .device import synchronize
from .evaluation import evaluate
from .setup import TrainingSetup

#: Batches trained, untimed, before a bare epoch is timed: a process's first steps pay once for lazy
#: initialization (the autograd engine, the allocator, kernel selection) that no trial's epochs pay;
#: in a fresh process a cold first epoch was measured at 1.3-3x a warm one on the corpus's problems.
BARE_WARMUP_BATCHES = 3
#: Bare epochs timed; the unit is the fastest of them, since a core shared with other work only adds time
#: to an epoch, and one stall in a single timed epoch of 5-100 ms would set the unit for the whole study.
BARE_EPOCHS = 2


def measure_bare_epoch(setup: TrainingSetup, *, epochs: int = BARE_EPOCHS,
                       warmup_batches: int = BARE_WARMUP_BATCHES) -> float:
    """Seconds of one bare training epoch: forward, backward and a no-op SGD step over every batch,
    then one validation pass (what a plain training loop does each epoch).

    The unit a study's wall time is counted in (wall-TRE = wall seconds / (epochs x this)), and what a
    costly optimizer's epochs are compared with. A few batches are trained untimed first (warm-up),
    then ``epochs`` epochs are timed and the fastest is the answer. The model is a fresh copy; nothing
    is kept. Torch's global random state ends as one plain epoch leaves it (a model with dropout draws
    from it, and the trials that follow must draw the same numbers): the warm-up and every timed
    epoch after the first run on a forked random state.
    """
    device = setup.device
    model = setup.fresh_model(setup.seed).to(device)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    rng_devices = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    if warmup_batches > 0:
        with torch.random.fork_rng(devices=rng_devices):
            _bare_epoch(setup, model, optimizer, max_batches=warmup_batches)
    best = _bare_epoch(setup, model, optimizer)  # draws what the single bare epoch always drew
    for _ in range(epochs - 1):
        with torch.random.fork_rng(devices=rng_devices):
            best = min(best, _bare_epoch(setup, model, optimizer))
    return max(best, 1e-9)


def _bare_epoch(setup: TrainingSetup, model: nn.Module, optimizer: torch.optim.Optimizer,
                max_batches: int | None = None) -> float:
    """Seconds of one bare epoch (or its first ``max_batches`` batches) and its validation pass."""
    device = setup.device
    generator = torch.Generator().manual_seed(setup.seed)
    synchronize(device)
    start = time.perf_counter()
    for i, (xb, yb) in enumerate(setup.split.train.batches(setup.batch_size, generator)):
        if max_batches is not None and i >= max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        setup.task.batch_loss(model, xb, yb)[0].backward()
        optimizer.step()
    evaluate(model, setup.split.val, setup.task)
    synchronize(device)
    return time.perf_counter() - start
