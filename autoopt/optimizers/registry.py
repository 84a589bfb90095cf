"""The optimizer registry: one frozen record per optimizer, by name (the shipped ones, then the user's).

>>> import torch
>>> spec = get_spec("adam")
>>> spec.defaults["lr"]
0.001
>>> opt = spec.build(torch.nn.Linear(3, 1).parameters(), {"lr": 1e-2})
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from typing import Any

from .builtin import shipped_specs
from .spec import OptimizerSpec

_REGISTRY: dict[str, OptimizerSpec] = {}


def register_optimizer(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add an optimizer (yours or torch's) so that ``tune(optimizers=[...])`` can use it.

    >>> import torch
    >>> from autoopt.optimizers.spec import LogUniform, OptimizerSpec, dense_state
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
    if isinstance(names, (str, type)):
        names = [names]  # type: ignore[list-item]
    names = list(names)
    if not names:
        raise ValueError(f"optimizers is empty; give at least one of {sorted(_REGISTRY)}.")
    classes = [n for n in names if not isinstance(n, str)]
    if classes:
        raise ValueError(_not_a_name(classes[0]))
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        close = {n: difflib.get_close_matches(n, list(_REGISTRY), n=1) for n in unknown}
        hints = "".join(f" (did you mean {c[0]!r} for {n!r}?)" for n, c in close.items() if c)
        raise ValueError(f"unknown optimizer(s) {unknown}{hints}; valid names are {sorted(_REGISTRY)}.")
    return [_REGISTRY[n] for n in dict.fromkeys(names)]


def _not_a_name(value: Any) -> str:
    """What to write instead of an optimizer class (or anything else that is not a registry name)."""
    shown = getattr(value, "__qualname__", None) or repr(value)
    names = [s.name for s in _REGISTRY.values() if s.optimizer_class is value]
    if names:
        return (f"optimizers takes registry names, not classes: for {shown} write optimizers={names!r} "
                "(see autoopt.list_optimizers()).")
    torch = sys.modules.get("torch")  # a torch class was passed: torch is imported already
    if isinstance(value, type) and torch is not None and issubclass(value, torch.optim.Optimizer):
        return (f"optimizers takes registry names, and {shown} is not registered: register it first with "
                "autoopt.register_optimizer(autoopt.OptimizerSpec(name=..., optimizer_class="
                f"{value.__name__}, space=..., defaults=..., state_bytes=...)), then name it.")
    return f"optimizers takes registry names (strings) but got {shown}; valid names are {sorted(_REGISTRY)}."


for _spec in shipped_specs():
    register_optimizer(_spec)
