"""The optimizer registry: one frozen record per optimizer, with its search space and state size.

Record fields decide which arguments apply (no ``if name == ...`` chains elsewhere). Unlike timm's
factory, an argument the optimizer does not take is an error, never silently dropped.

>>> spec = get_spec("adam")
>>> spec.defaults["lr"]
0.001
>>> opt = spec.build(torch.nn.Linear(3, 1).parameters(), {"lr": 1e-2})
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch

from .muon import MuonWithAdamW


@dataclass(frozen=True)
class LogUniform:
    """A positive value searched on a log scale (learning rates, eps, weight decay)."""

    name: str
    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    """A value searched on a linear scale (momentum, betas, alpha)."""

    name: str
    low: float
    high: float


Dimension = Union[LogUniform, Uniform]

StateBytes = Callable[[Sequence[torch.Tensor], Mapping[str, Any]], int]


def _scalar_bytes() -> int:
    # torch keeps "step" (and NAdam's mu_product) as 0-d tensors of the default float dtype
    return 8 if torch.get_default_dtype() == torch.float64 else 4


def dense_state(buffers: int, scalars: int = 0) -> StateBytes:
    """State of ``buffers`` parameter-sized tensors and ``scalars`` 0-d tensors per parameter."""

    def state_bytes(params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
        return sum(buffers * p.numel() * p.element_size() + scalars * _scalar_bytes() for p in params)

    return state_bytes


def _sgd_state(params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
    # torch's SGD keeps no state at all without momentum
    return dense_state(1)(params, hparams) if hparams.get("momentum", 0.0) else 0


def _rmsprop_state(params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
    buffers = 1 + bool(hparams.get("momentum", 0.0)) + bool(hparams.get("centered", False))
    return dense_state(buffers, 1)(params, hparams)


def _adam_state(params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
    return dense_state(3 if hparams.get("amsgrad", False) else 2, 1)(params, hparams)


def _adafactor_state(params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
    # factored second moment: one row and one column vector per matrix, a full vector otherwise
    total = 0
    for p in params:
        if p.ndim >= 2:
            rows = math.prod(p.shape[:-1])
            cols = math.prod(p.shape[:-2]) * p.shape[-1]
            total += (rows + cols) * p.element_size()
        else:
            total += p.numel() * p.element_size()
        total += _scalar_bytes()
    return total


def _muon_state(params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
    matrices = [p for p in params if p.ndim == 2]
    others = [p for p in params if p.ndim != 2]
    return dense_state(1)(matrices, hparams) + dense_state(2, 1)(others, hparams)


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything autoopt knows about one optimizer.

    ``space`` lists what the search tunes; ``defaults`` are known-good values for every searched
    dimension (torch's own defaults unless torch has none that work); ``fixed`` are constant keyword
    arguments (e.g. ``nesterov=True``). ``state_bytes`` predicts the optimizer state exactly.
    """

    name: str
    family: str
    optimizer_class: type[torch.optim.Optimizer]
    space: tuple[Dimension, ...]
    defaults: Mapping[str, float]
    state_bytes: StateBytes
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        names = {d.name for d in self.space}
        if "lr" not in names:
            raise ValueError(f"optimizer {self.name!r}: the search space must contain 'lr'.")
        missing = names - set(self.defaults)
        if missing:
            raise ValueError(f"optimizer {self.name!r}: no default for {sorted(missing)}.")
        self.check_arguments({**self.defaults, **self.fixed})

    @property
    def accepted_arguments(self) -> list[str]:
        signature = inspect.signature(self.optimizer_class.__init__)
        return [n for n in signature.parameters if n not in ("self", "params")]

    def check_arguments(self, hparams: Mapping[str, Any]) -> None:
        """Raise ValueError naming any argument the optimizer class does not take."""
        accepted = set(self.accepted_arguments)
        unknown = sorted(set(_to_kwargs(hparams)) - accepted)
        if unknown:
            raise ValueError(
                f"optimizer {self.name!r} ({self.optimizer_class.__name__}) does not accept "
                f"{unknown}; it accepts {sorted(accepted)}."
            )

    def kwargs(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor keyword arguments: fixed values, then the given ones (betas assembled)."""
        merged = {**self.fixed, **hparams}
        self.check_arguments(merged)
        return _to_kwargs(merged)

    def build(self, params: Iterable[torch.Tensor], hparams: Mapping[str, Any]) -> torch.optim.Optimizer:
        """The configured torch optimizer over ``params``."""
        return self.optimizer_class(params, **self.kwargs(hparams))

    def predict_state_bytes(self, params: Sequence[torch.Tensor], hparams: Mapping[str, Any]) -> int:
        return self.state_bytes(list(params), {**self.fixed, **hparams})


def _to_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Search dimensions are scalars; torch wants ``betas=(beta1, beta2)``."""
    out = {k: v for k, v in hparams.items() if k not in ("beta1", "beta2")}
    if "beta1" in hparams or "beta2" in hparams:
        out["betas"] = (hparams.get("beta1", 0.9), hparams.get("beta2", 0.999))
    return out


_REGISTRY: dict[str, OptimizerSpec] = {}


def register_optimizer(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add an optimizer (yours or torch's) so that ``tune(optimizers=[...])`` can use it.

    >>> register_optimizer(OptimizerSpec(
    ...     name="my-asgd", family="sgd", optimizer_class=torch.optim.ASGD,
    ...     space=(LogUniform("lr", 1e-4, 1.0),), defaults={"lr": 1e-2},
    ...     state_bytes=dense_state(1, 3)), replace=True).name
    'my-asgd'
    """
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"an optimizer named {spec.name!r} is already registered; pass replace=True.")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> OptimizerSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {sorted(_REGISTRY)}.") from None


def list_optimizers() -> list[str]:
    """Names of every registered optimizer, in registration order."""
    return list(_REGISTRY)


def resolve_specs(names: Iterable[str] | None) -> list[OptimizerSpec]:
    """The specs for ``names`` (all registered ones for None); unknown names are one error."""
    if names is None:
        return list(_REGISTRY.values())
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(f"optimizers is empty; give at least one of {sorted(_REGISTRY)}.")
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {unknown}; valid names are {sorted(_REGISTRY)}.")
    return [_REGISTRY[n] for n in dict.fromkeys(names)]


# --- the shipped optimizers, grouped by family ------------------------------------------------------

_LR_SGD = LogUniform("lr", 1e-4, 1.0)
_MOMENTUM = Uniform("momentum", 0.8, 0.99)
_BETA1 = Uniform("beta1", 0.8, 0.95)
_BETA2 = Uniform("beta2", 0.99, 0.9999)
_EPS = LogUniform("eps", 1e-10, 1e-6)
_LR_ADAM = LogUniform("lr", 1e-5, 1.0)  # the corpus has problems whose best Adam-family rate is 0.1-0.2
_ADAM_DEFAULTS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

for _spec in [
    # SGD family: one momentum buffer per parameter at most
    OptimizerSpec("sgd", "sgd", torch.optim.SGD, (_LR_SGD,), {"lr": 1e-2}, _sgd_state,
                  description="plain stochastic gradient descent"),
    OptimizerSpec("momentum", "sgd", torch.optim.SGD, (_LR_SGD, _MOMENTUM), {"lr": 1e-2, "momentum": 0.9},
                  _sgd_state, description="SGD with heavy-ball momentum"),
    OptimizerSpec("nesterov", "sgd", torch.optim.SGD, (_LR_SGD, _MOMENTUM), {"lr": 1e-2, "momentum": 0.9},
                  _sgd_state, fixed={"nesterov": True}, description="SGD with Nesterov momentum"),
    # per-coordinate step sizes from squared-gradient statistics
    OptimizerSpec("adagrad", "adaptive", torch.optim.Adagrad, (LogUniform("lr", 1e-4, 1.0),), {"lr": 1e-2},
                  dense_state(1, 1), description="AdaGrad: accumulated squared gradients"),
    OptimizerSpec("rmsprop", "adaptive", torch.optim.RMSprop,
                  (LogUniform("lr", 1e-5, 1e-1), Uniform("alpha", 0.9, 0.999)), {"lr": 1e-3, "alpha": 0.99},
                  _rmsprop_state, description="RMSprop: running average of squared gradients"),
    OptimizerSpec("adadelta", "adaptive", torch.optim.Adadelta,
                  (LogUniform("lr", 1e-2, 100.0), Uniform("rho", 0.8, 0.99)), {"lr": 1.0, "rho": 0.9},
                  dense_state(2, 1), description="Adadelta: unit-corrected RMSprop"),
    OptimizerSpec("adafactor", "adaptive", torch.optim.Adafactor, (LogUniform("lr", 1e-4, 1e-1),),
                  {"lr": 1e-2}, _adafactor_state, description="Adafactor: factored second moments, sublinear memory"),
    # Adam family: first and second moments
    OptimizerSpec("adam", "adam", torch.optim.Adam, (_LR_ADAM, _BETA1, _BETA2, _EPS), _ADAM_DEFAULTS,
                  _adam_state, description="Adam (Kingma & Ba, 2015)"),
    OptimizerSpec("adamw", "adam", torch.optim.AdamW,
                  (_LR_ADAM, _BETA1, _BETA2, _EPS, LogUniform("weight_decay", 1e-5, 1e-1)),
                  {**_ADAM_DEFAULTS, "weight_decay": 1e-2}, _adam_state,
                  description="Adam with decoupled weight decay (Loshchilov & Hutter)"),
    OptimizerSpec("nadam", "adam", torch.optim.NAdam, (_LR_ADAM, _BETA1, _BETA2, _EPS),
                  {**_ADAM_DEFAULTS, "lr": 2e-3}, dense_state(2, 2), description="Adam with Nesterov momentum"),
    OptimizerSpec("radam", "adam", torch.optim.RAdam, (_LR_ADAM, _BETA1, _BETA2, _EPS), _ADAM_DEFAULTS,
                  dense_state(2, 1), description="Rectified Adam: variance-corrected warm-up"),
    OptimizerSpec("adamax", "adam", torch.optim.Adamax, (_LR_ADAM, _BETA1, _BETA2, _EPS),
                  {**_ADAM_DEFAULTS, "lr": 2e-3}, dense_state(2, 1), description="Adam with an infinity norm"),
    # Muon: orthogonalized momentum for matrices
    OptimizerSpec("muon", "muon", MuonWithAdamW,
                  (LogUniform("lr", 1e-3, 0.3), Uniform("momentum", 0.85, 0.98), LogUniform("adamw_lr", 1e-4, 1e-2)),
                  {"lr": 0.02, "momentum": 0.95, "adamw_lr": 1e-3}, _muon_state,
                  description="Muon on 2-D weights, AdamW on the rest"),
]:
    register_optimizer(_spec)
