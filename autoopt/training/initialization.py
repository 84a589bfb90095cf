"""What a model's weights are before training: still its layers' default initialization, another seed's
draw of it, or already trained.

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

Whether weights are *trained* (fine-tuning) is another question, since a hand-drawn initialization is
not fresh either: ``looks_trained`` reads it from the spectrum. A matrix of independent draws (any
scale, any distribution a layer's initializer uses) has its largest singular value at the random-matrix
edge, spread x (sqrt(rows) + sqrt(cols)); training grows a few directions far past that edge (the
"spikes" of trained networks' spectra, Martin and Mahoney 2021). On the benchmark corpus the largest
ratio of any from-scratch model's matrix is 1.05 and the smallest largest ratio of a pretrained body
1.27 (2,000 random draws of the shapes used: at most 1.10).

>>> looks_trained(model)
False
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: How far a layer's spread may be from a fresh draw's and still be a default initialization.
SPREAD_TOLERANCE = 1.25
#: A matrix whose largest singular value passes the random-matrix edge by this factor has been trained.
SPIKE_THRESHOLD = 1.2
#: Layers whose matrices are read for spikes: the ones training shapes, not embeddings (a small table's
#: rows are few and often structured) or parameters of the user's own (a positional encoding drawn as
#: sinusoids is structured by design).
_LEARNED_MAPS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.RNNBase, nn.MultiheadAttention)
#: Matrices smaller than this on either side are left out: their edge is too loose an estimate.
_MIN_SIDE = 8


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


def spectral_spike(matrix: torch.Tensor, iterations: int = 40) -> float:
    """The largest singular value of ``matrix`` (reshaped to rows x the rest, centred) over the
    random-matrix edge ``spread x (sqrt(rows) + sqrt(cols))``: about 1 or below for independent draws.

    Power iteration from a fixed start (deterministic, and cheap on a large layer); it can only
    under-estimate the largest singular value, so it errs towards "not trained".

    >>> round(spectral_spike(torch.eye(16)), 2)   # the identity's singular values are all equal: no spike
    0.52
    """
    w = matrix.detach().reshape(matrix.shape[0], -1).float()
    w = w - w.mean()
    rows, cols = w.shape
    spread = float(w.std())
    if spread == 0.0:
        return 0.0
    v = torch.ones(cols, dtype=w.dtype, device=w.device) / cols ** 0.5
    v = v + 0.01 * torch.arange(cols, dtype=w.dtype, device=w.device) / cols  # off any exact symmetry
    sigma = 0.0
    for _ in range(iterations):
        u = w @ v
        sigma = float(u.norm())
        if sigma == 0.0:
            return 0.0
        v = w.T @ (u / sigma)
        v = v / v.norm()
    return round(sigma / (spread * (rows ** 0.5 + cols ** 0.5)), 6)


def looks_trained(model: nn.Module, at_most: int = 16) -> bool:
    """Whether any learned layer's matrix has a spectral spike (see the module doc): the weights are
    pretrained, and a fine-tuning study should start from rates that keep what they learned.

    Reads the first ``at_most`` eligible matrices in the model's order: training leaves spikes in most
    of a network's matrices, and a model of hundreds of large layers is read in a bounded time.
    """
    matrices = (p for module in model.modules() if isinstance(module, _LEARNED_MAPS)
                for p in module.parameters(recurse=False)
                if p.ndim >= 2 and p.requires_grad and not p.is_meta and min(p.shape[0], p[0].numel()) >= _MIN_SIDE)
    return any(spectral_spike(p) >= SPIKE_THRESHOLD for _, p in zip(range(at_most), matrices))


def reinitialized_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The state of ``model`` with every layer that can be re-drawn drawn again under ``seed``."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            _reset(module)
    return copy.deepcopy(fresh.state_dict())
