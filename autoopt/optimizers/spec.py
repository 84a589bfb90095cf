"""What autoopt knows about one optimizer: ``OptimizerSpec``, its search dimensions and state-size rules.

Record fields decide which arguments apply (no ``if name == ...`` chains elsewhere). Unlike timm's
factory, an argument the optimizer does not take is an error, never silently dropped. A record may
name its optimizer class by path (``"torch.optim:Adam"``), imported when first used, so that listing
the registry (``autoopt optimizers``) does not import torch.

>>> dense_state(2, 1)([ParameterShape((3, 4))], {})
100
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from .schedules import TRAINING_KEYS, check_training_params

if TYPE_CHECKING:
    import torch


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


@dataclass(frozen=True)
class Categorical:
    """A choice among values (e.g. the learning-rate schedule: ``Categorical("schedule", ("constant", "cosine"))``)."""

    name: str
    choices: tuple[Any, ...]


Dimension = Union[LogUniform, Uniform, Categorical]

#: Tensors, or parameter groups (dicts whose ``params`` are tensors), as a torch optimizer takes them.
Parameters = Sequence[Any]
#: A state-size rule: (parameters, hyperparameters) -> bytes. It may be given ``ParameterShape``
#: stand-ins instead of tensors (to list the registry without torch), so it should use only their
#: ``numel()``, ``element_size()``, ``ndim`` and ``shape``; ``tensors(params)`` flattens groups.
StateBytes = Callable[[Parameters, Mapping[str, Any]], int]


def default_float_bytes() -> int:
    """Bytes of torch's default float dtype: 4, or 8 after ``torch.set_default_dtype(torch.float64)``.

    Read without importing torch: if torch is not imported, nothing can have changed its default.
    """
    torch = sys.modules.get("torch")
    return 8 if torch is not None and torch.get_default_dtype() == torch.float64 else 4


def scalar_bytes() -> int:
    # torch keeps "step" (and NAdam's mu_product) as 0-d tensors of the default float dtype
    return default_float_bytes()


@dataclass(frozen=True)
class ParameterShape:
    """A parameter's shape and element size, all a state-size rule needs: a tensor stand-in.

    >>> dense_state(2, 1)([ParameterShape((3, 4))], {})
    100
    """

    shape: tuple[int, ...]
    itemsize: int = 4

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def element_size(self) -> int:
        return self.itemsize


class _ClassField:
    """``OptimizerSpec.optimizer_class``: a class, or its path ``"module:QualName"`` imported when first read.

    A record given a path checks its arguments against the class then (``__post_init__`` does it at
    once for a class), so the registry can be listed without importing the optimizers' packages.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, spec: Any, owner: type | None = None) -> Any:
        if spec is None:
            raise AttributeError("optimizer_class has no default")  # a required dataclass field
        value = spec.__dict__[self.slot]
        if isinstance(value, str):
            module, _, qualname = value.partition(":")
            try:
                value = importlib.import_module(module)
                for part in qualname.split("."):
                    value = getattr(value, part)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"optimizer {spec.name!r}: its class {spec.__dict__[self.slot]!r} cannot be "
                                 f"imported ({type(exc).__name__}: {exc}); give a class or 'module:QualName'.") from None
            spec.__dict__[self.slot] = value
            spec._check_defaults()
        return value

    def __set__(self, spec: Any, value: Any) -> None:
        if isinstance(value, str) and (":" not in value or not all(value.partition(":")[::2])):
            raise ValueError(f"optimizer_class {value!r} is not a class path; write 'module:QualName', "
                             "e.g. 'torch.optim:SGD', or give the class itself.")
        spec.__dict__[self.slot] = value


def dense_state(buffers: int, scalars: int = 0) -> StateBytes:
    """State of ``buffers`` parameter-sized tensors and ``scalars`` 0-d tensors per parameter."""

    def state_bytes(params: Parameters, hparams: Mapping[str, Any]) -> int:
        return sum(buffers * p.numel() * p.element_size() + scalars * scalar_bytes() for p in tensors(params))

    return state_bytes


def tensors(params: Parameters) -> list[torch.Tensor]:
    """The tensors of a list of tensors or of parameter groups (dicts with ``params``), in order."""
    out: list[Any] = []
    for item in params:
        out.extend(item["params"] if isinstance(item, Mapping) else [item])
    return out


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything autoopt knows about one optimizer.

    ``space`` lists what the search tunes; ``defaults`` are known-good values for every searched
    dimension (torch's own defaults unless torch has none that work); ``fixed`` are constant keyword
    arguments (e.g. ``nesterov=True``). ``state_bytes`` predicts the optimizer state exactly.
    """

    name: str
    family: str
    #: the torch optimizer class, or its path "module:QualName" (imported when first read)
    optimizer_class: type[torch.optim.Optimizer] | str = _ClassField()  # type: ignore[assignment]
    space: tuple[Dimension, ...]
    defaults: Mapping[str, float]
    state_bytes: StateBytes
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: the optimizer has train() / eval() modes (Schedule-Free): the loop calls them around training
    #: and evaluation, and the weights it is evaluated with are those of eval()
    train_eval_modes: bool = False
    #: groups(model, tensors by name) -> the parameter groups the optimizer is built over, where its
    #: authors intend parts of a model for different updates (Muon: hidden matrices and the rest); None:
    #: the plain list of trainable parameters
    groups: Callable[[Any, Mapping[str, Any] | None], list[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        names = {d.name for d in self.space}
        if "lr" not in names:
            raise ValueError(f"optimizer {self.name!r}: the search space must contain 'lr'.")
        missing = names - set(self.defaults)
        if missing:
            raise ValueError(f"optimizer {self.name!r}: no default for {sorted(missing)}.")
        check_training_params({**self.defaults, **self.fixed})
        if not isinstance(self.__dict__["_optimizer_class"], str):
            self._check_defaults()  # a class path: checked when it is imported

    def _check_defaults(self) -> None:
        self.check_arguments({**self.defaults, **self.fixed})

    @property
    def accepted_arguments(self) -> list[str]:
        signature = inspect.signature(self.optimizer_class.__init__)
        return [n for n in signature.parameters if n not in ("self", "params")]

    def check_arguments(self, hparams: Mapping[str, Any]) -> None:
        """Raise ValueError naming any argument the optimizer class does not take.

        The training settings (``schedule``, ``warmup_fraction``, ``clip_norm``) are the training
        loop's, accepted with every optimizer and never passed to it.
        """
        accepted = set(self.accepted_arguments)
        unknown = sorted(set(_to_kwargs(hparams)) - accepted)
        if unknown:
            raise ValueError(
                f"optimizer {self.name!r} ({self.optimizer_class.__name__}) does not accept "
                f"{unknown}; it accepts {sorted(accepted)} (and the training settings {list(TRAINING_KEYS)})."
            )

    def kwargs(self, hparams: Mapping[str, Any], *, check: bool = True) -> dict[str, Any]:
        """Constructor keyword arguments: fixed values, then the given ones (betas assembled); ``check``
        against the class's signature (which imports the class)."""
        merged = {**self.fixed, **hparams}
        if check:
            self.check_arguments(merged)
        return _to_kwargs(merged)

    def class_path(self) -> tuple[str, str]:
        """(module, qualified name) of the optimizer class, without importing it when it was given by path.

        >>> from autoopt.optimizers.registry import get_spec
        >>> get_spec("adam").class_path()[1]
        'Adam'
        """
        value = self.__dict__["_optimizer_class"]
        if isinstance(value, str):
            module, _, qualname = value.partition(":")
            return module, qualname
        return value.__module__, value.__qualname__

    def build(self, params: Iterable[Any], hparams: Mapping[str, Any]) -> torch.optim.Optimizer:
        """The configured torch optimizer over ``params``: tensors, or groups (``parameters_of``)."""
        return self.optimizer_class(params, **self.kwargs(hparams))

    def parameters_of(self, model: Any, params: Mapping[str, torch.Tensor] | None = None) -> list[Any]:
        """What the optimizer is built over for ``model``: its trainable parameters, or their groups.

        ``params``: the tensors to use, by the model's parameter names (a fused pass's own copies).
        """
        if self.groups is not None:
            return self.groups(model, params)
        named = dict(model.named_parameters()) if params is None else dict(params)
        return [p for p in named.values() if p.requires_grad]

    def predict_state_bytes(self, params: Parameters, hparams: Mapping[str, Any]) -> int:
        """The optimizer state's bytes over ``params`` (tensors or groups), exactly."""
        return self.state_bytes(list(params), {**self.fixed, **hparams})


def _to_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Search dimensions are scalars; torch wants ``betas=(beta1, beta2)``; training settings are not
    the optimizer's."""
    out = {k: v for k, v in hparams.items() if k not in ("beta1", "beta2") and k not in TRAINING_KEYS}
    if "beta1" in hparams or "beta2" in hparams:
        out["betas"] = (hparams.get("beta1", 0.9), hparams.get("beta2", 0.999))
    return out
