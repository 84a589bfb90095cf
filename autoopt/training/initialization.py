"""Whether a model's weights are still its layers' default initialization, and another seed's draw of it.

A study retrains configurations on other seeds (re-evaluation, confirmation). For a model trained from
scratch another seed means other initial weights and another data order; for a pretrained model
(fine-tuning) re-drawing the weights would throw away what pretraining learned, so another seed means
another data order (and other dropout draws) from the same weights. Which one a model is, is read from
its weights: each layer's matrices against a fresh draw of the same layer (``reset_parameters``): a
spread within a quarter of it and no value beyond its range is a default initialization; anything else
(pretrained weights, a fresh head drawn by hand, an initialization of the user's) is kept.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
>>> looks_freshly_initialized(model)
True
>>> with torch.no_grad():
...     _ = model[0].weight.mul_(3)   # as training moves weights away from their draw
>>> looks_freshly_initialized(model)
False
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: How far a layer's spread may be from a fresh draw's and still be a default initialization.
SPREAD_TOLERANCE = 1.25


def _reset(module: nn.Module) -> bool:
    """Re-draw ``module``'s own parameters as its constructor does; False where it has no way to."""
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset) and isinstance(module, nn.MultiheadAttention):
        reset = module._reset_parameters  # torch names it privately; it is the constructor's draw
    if not callable(reset):
        return False
    reset()
    return True


def looks_freshly_initialized(model: nn.Module) -> bool:
    """Whether every resettable layer's matrices look like a fresh draw of that layer (see the module doc)."""
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        for module in model.modules():
            own = {n: p for n, p in module.named_parameters(recurse=False) if p.ndim >= 2}
            if not own:
                continue
            fresh = copy.deepcopy(module)
            if not _reset(fresh):
                continue
            drawn = dict(fresh.named_parameters(recurse=False))
            for name, p in own.items():
                current, reference = p.detach().float(), drawn[name].detach().float()
                spread, expected = float(current.std()), float(reference.std())
                if expected == 0:
                    continue
                if not 1 / SPREAD_TOLERANCE <= spread / expected <= SPREAD_TOLERANCE:
                    return False
                if float(current.abs().max()) > 1.05 * float(reference.abs().max()) + 1e-12:
                    return False
        return True
    finally:
        torch.random.set_rng_state(torch_state)


def reinitialized_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The state of ``model`` with every layer that can be re-drawn drawn again under ``seed``."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            _reset(module)
    return copy.deepcopy(fresh.state_dict())
