"""Muon for the 2-D weight matrices, AdamW for everything else, behind one torch optimizer.

``torch.optim.Muon`` only accepts 2-D parameters (it orthogonalizes each matrix update), so a real
network needs a second optimizer for its biases, norms and other non-matrix tensors. This class
holds one of each and shares their parameter groups, so an LR scheduler or a user that walks
``param_groups`` sees a single optimizer. The update math is torch's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on 2-D weights, AdamW on the rest.

    >>> model = torch.nn.Linear(4, 2)
    >>> opt = MuonWithAdamW(model.parameters(), lr=0.02, adamw_lr=1e-3)
    >>> model(torch.randn(3, 4)).sum().backward(); opt.step()
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.1,
        adamw_lr: float = 1e-3,
        adamw_betas: tuple[float, float] = (0.9, 0.999),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 0.01,
    ) -> None:
        params = [p for p in params if p.requires_grad]
        matrices = [p for p in params if p.ndim == 2]
        others = [p for p in params if p.ndim != 2]
        self._inner: list[torch.optim.Optimizer] = []
        if matrices:
            self._inner.append(
                torch.optim.Muon(
                    matrices, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
                )
            )
        if others:
            self._inner.append(
                torch.optim.AdamW(
                    others, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps, weight_decay=adamw_weight_decay
                )
            )
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
