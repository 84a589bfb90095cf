"""Muon on a network's hidden matrices, AdamW on the rest, behind one torch optimizer.

Muon (Jordan et al., 2024) orthogonalizes each matrix's momentum update with a few Newton-Schulz
iterations. Its authors intend it for the *hidden* weight matrices only: "embeddings, classifier
heads, and scalar or vector parameters should be optimized using AdamW" (the reference
implementation's README). This class takes parameter groups in the reference implementation's form
(``MuonWithAuxAdam``): groups flagged ``use_muon=True`` go to Muon, the others to AdamW; given a plain
list of tensors instead, it puts every 2-D tensor on Muon (torch's documented example).
``autoopt.optimizers.param_roles.muon_groups(model)`` makes the groups the authors intend.

The update is torch's ``torch.optim.Muon`` (its Newton-Schulz coefficients, nesterov momentum, learning
rate adjustment and decoupled weight decay), with two differences, both from the reference
implementation: the iteration runs in ``ns_dtype`` (torch always uses bfloat16, which is 20-50x slower
than float32 on CPUs without native bfloat16 matmul: 6.8 ms against 0.35 ms for one 64x64 update on
this project's AVX2 CPU), and a convolution kernel is orthogonalized as a (out_channels, rest) matrix.
With bfloat16 on 2-D tensors it is torch's step exactly (``tests/optimizers/test_muon.py``).

This file imports only torch: copy it to use the class without autoopt.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterable
from typing import Any

import torch

# torch.optim.Muon's defaults (torch/optim/_muon.py), the reference implementation's quintic iteration
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def orthogonalize(update: torch.Tensor, dtype: torch.dtype, steps: int = NS_STEPS,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS, eps: float = NS_EPS) -> torch.Tensor:
    """torch's ``_zeropower_via_newtonschulz`` with the dtype as a parameter, for a 2-D ``update``."""
    a, b, c = coefficients
    x = update.to(dtype)
    if update.size(0) > update.size(1):
        x = x.T
    x = x.div(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    if update.size(0) > update.size(1):
        x = x.T
    return x


@functools.lru_cache(maxsize=None)
def newton_schulz_dtype(device_type: str) -> torch.dtype:
    """The dtype Newton-Schulz runs in on this device, chosen once per process: bfloat16 on CUDA (as
    torch's Muon) and on CPUs that run bfloat16 matmul natively (torch's own test of the CPU, the
    instruction set, not a timing: a CPU without it is 20-50x slower in bfloat16, one with it about as
    fast as in float32), float32 elsewhere. ``AUTOOPT_NEWTON_SCHULZ_DTYPE=float32`` (or ``bfloat16``)
    in the environment sets it for every device: the same numbers on every CPU (the benchmarks' grids).
    """
    pinned = os.environ.get("AUTOOPT_NEWTON_SCHULZ_DTYPE")
    if pinned:
        if pinned not in ("float32", "bfloat16"):
            raise ValueError(f"AUTOOPT_NEWTON_SCHULZ_DTYPE={pinned!r}: use 'float32' or 'bfloat16'")
        return getattr(torch, pinned)
    if device_type == "cuda":
        return torch.bfloat16
    if device_type != "cpu":
        return torch.float32
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the check: time one matmul, on one thread
        native = _bfloat16_matmul_is_fast()
    return torch.bfloat16 if native else torch.float32


def _bfloat16_matmul_is_fast() -> bool:
    """bfloat16 matmul within 1.5x float32's on one thread (a 20x gap either way: load cannot flip it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several threads on busy cores stall on wake-ups, float32 as much as bfloat16
    try:
        x32 = torch.randn(96, 96)
        x16 = x32.bfloat16()
        timings = {}
        for name, x in (("bf16", x16), ("fp32", x32), ("bf16", x16), ("fp32", x32)):
            start = time.perf_counter()
            for _ in range(5):
                x @ x
            timings[name] = min(timings.get(name, math.inf), time.perf_counter() - start)
        return timings["bf16"] <= 1.5 * timings["fp32"]
    finally:
        torch.set_num_threads(threads)


class Muon(torch.optim.Optimizer):
    """``torch.optim.Muon``'s update for matrices and convolution kernels, Newton-Schulz in ``ns_dtype``
    (None: ``newton_schulz_dtype`` of the parameters' device)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True, ns_dtype: torch.dtype | None = None) -> None:
        params = list(params)
        flat = [p for p in params if not isinstance(p, dict)]
        bad = [tuple(p.shape) for p in flat if p.ndim < 2]
        if bad:
            raise ValueError(f"Muon orthogonalizes matrices; these parameters are not: {bad}. Give vectors and "
                             "scalars to AdamW (MuonWithAdamW does).")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                  "nesterov": nesterov})
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                matrix = update.reshape(len(update), -1)  # a conv kernel as (out_channels, in x kernel)
                dtype = self.ns_dtype or newton_schulz_dtype(p.device.type)
                update = orthogonalize(matrix, dtype).view_as(p)
                # torch's "original" adjustment: sqrt(max(1, rows / cols)) of the (flattened) matrix
                adjusted_lr = lr * math.sqrt(max(1.0, matrix.size(0) / matrix.size(1)))
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-adjusted_lr)
        return loss


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the groups flagged ``use_muon`` (or on every 2-D tensor of a plain list), AdamW on the rest.

    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
    ...                             torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> hidden = [model[2].weight]
    >>> opt = MuonWithAdamW([{"params": hidden, "use_muon": True},
    ...                      {"params": [p for p in model.parameters() if p is not model[2].weight],
    ...                       "use_muon": False}], lr=0.02, adamw_lr=1e-3)
    >>> model(torch.randn(3, 4)).sum().backward(); opt.step()
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.1,
        adamw_lr: float = 1e-3,
        adamw_betas: tuple[float, float] = (0.9, 0.999),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 0.01,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        given = list(params)
        if given and all(isinstance(g, dict) for g in given):
            muon = [p for g in given if g.get("use_muon") for p in g["params"] if p.requires_grad]
            others = [p for g in given if not g.get("use_muon") for p in g["params"] if p.requires_grad]
        else:
            tensors = [p for p in given if p.requires_grad]
            muon = [p for p in tensors if p.ndim == 2]
            others = [p for p in tensors if p.ndim != 2]
        self._inner: list[torch.optim.Optimizer] = []
        if muon:
            self._inner.append(Muon(muon, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                    ns_dtype=ns_dtype))
        if others:
            self._inner.append(torch.optim.AdamW(others, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                                                 weight_decay=adamw_weight_decay))
        if not self._inner:
            raise ValueError("MuonWithAdamW got no trainable parameters.")
        # The outer optimizer's groups are the inner ones' dicts: a change to one is a change to both.
        super().__init__([g for opt in self._inner for g in opt.param_groups], defaults={})

    # Optimizer.__init__ assigns self.state; the real state lives in the inner optimizers.
    @property
    def state(self) -> dict[torch.Tensor, Any]:  # type: ignore[override]
        merged: dict[torch.Tensor, Any] = {}
        for opt in getattr(self, "_inner", []):
            merged.update(opt.state)
        return merged

    @state.setter
    def state(self, value: dict[torch.Tensor, Any]) -> None:
        for opt in getattr(self, "_inner", []):
            owned = {p for g in opt.param_groups for p in g["params"]}
            for param, entry in value.items():
                if param in owned:
                    opt.state[param] = entry

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._inner:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self._inner:
            opt.zero_grad(set_to_none=set_to_none)
