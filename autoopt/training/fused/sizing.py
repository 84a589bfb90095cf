"""How many candidates one fused pass can hold: parameters, gradients, optimizer state and activations
against the device's free memory and the study's memory budget (``max_group_size``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ...optimizers.spec import OptimizerSpec, Parameters, tensors
from ...records import Candidate
from ..setup import TrainingSetup
from .stacked_model import activation_bytes

#: Share of the machine's available RAM a fused group may plan to use on CPU (the rest is left to
#: the data, the process and the other programs on the machine).
CPU_MEMORY_SHARE = 0.5

#: Share of the CUDA device's free memory a fused group may plan to use (allocator slack, kernels' workspace).
CUDA_MEMORY_SHARE = 0.8


def param_bytes(params: Parameters) -> int:
    return sum(p.numel() * p.element_size() for p in tensors(params))


def member_bytes(params: Parameters, spec: OptimizerSpec, hparams) -> int:
    """Parameters + gradients + predicted optimizer state of one member."""
    return 2 * param_bytes(params) + spec.predict_state_bytes(params, hparams)


def max_group_size(setup: TrainingSetup, members: Sequence[tuple[OptimizerSpec, Candidate]], *,
                   memory_budget: int | None = None) -> int:
    """How many of ``members`` (a prefix, in order) one fused pass can hold in memory.

    Each member needs its parameters, gradients and predicted optimizer state
    (``spec.predict_state_bytes``) and its activations (measured by saved-tensor hooks on one
    training batch); the group must fit the device (CUDA: a share of free memory; CPU: a share of
    available RAM) and, counting parameters, gradients and state as ``memory_budget`` does for one
    trial, the budget. At least 1 for a non-empty ``members``: whether one candidate fits is the
    caller's check, made before any training.

    >>> from autoopt.records import Candidate
    >>> from autoopt.training.intake import prepare_data
    >>> from autoopt.training.task import infer_task
    >>> from autoopt.optimizers.registry import get_spec
    >>> split = prepare_data((torch.randn(64, 3), torch.randn(64, 1)))
    >>> model = torch.nn.Linear(3, 1)
    >>> setup = TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 2, 16, 0)
    >>> # 4 weights: 16 B of parameters, 16 B of gradients, 40 B of Adam state per member
    >>> max_group_size(setup, [(get_spec("adam"), Candidate("adam", {"lr": 1e-3}))] * 8, memory_budget=200)
    2
    """
    members = list(members)
    if not members:
        return 0
    xb, yb = next(iter(setup.split.train.batches(setup.batch_size, None)))
    activations = activation_bytes(setup.template, xb, yb, setup.task.loss_fn)
    device_room = _device_room(setup.device)
    trained = device = 0
    size = 0
    for spec, candidate in members:
        need = member_bytes(spec.parameters_of(setup.template), spec, candidate.params)
        trained += need
        device += need + activations
        if size and (device > device_room or (memory_budget is not None and trained > memory_budget)):
            break
        size += 1
    return size


def _device_room(device: torch.device) -> int:
    """Bytes a fused group may plan to use on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_SHARE)
    if device.type == "mps":
        return int((torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()) * CUDA_MEMORY_SHARE)
    return int(_available_ram() * CPU_MEMORY_SHARE)


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**31  # no way to ask: plan for 2 GiB
