"""The optimizer registry: one frozen record per optimizer, with its search space and state size.

Record fields decide which arguments apply (no ``if name == ...`` chains elsewhere). Unlike timm's
factory, an argument the optimizer does not take is an error, never silently dropped.

The shipped records name their optimizer class by path (``"torch.optim:Adam"``), imported when first
used, so that listing the registry (``autoopt optimizers``: names, families, spaces, state sizes)
does not import torch.

>>> import torch
>>> spec = get_spec("adam")
>>> spec.defaults["lr"]
0.001
>>> opt = spec.build(torch.nn.Linear(3, 1).parameters(), {"lr": 1e-2})
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
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

#: A state-size rule: (parameters, hyperparameters) -> bytes. It may be given ``ParameterShape``
#: stand-ins instead of tensors (to list the registry without torch), so it should use only their
#: ``numel()``, ``element_size()``, ``ndim`` and ``shape``.
StateBytes = Callable[[Sequence["torch.Tensor"], Mapping[str, Any]], int]


def default_float_bytes() -> int:
    """Bytes of torch's default float dtype: 4, or 8 after ``torch.set_default_dtype(torch.float64)``.

    Read without importing torch: if torch is not imported, nothing can have changed its default.
    """
    torch = sys.modules.get("torch")
    return 8 if torch is not None and torch.get_default_dtype() == torch.float64 else 4


def _scalar_bytes() -> int:
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
    """Search dimensions are scalars; torch wants ``betas=(beta1, beta2)``; training settings are not
    the optimizer's."""
    out = {k: v for k, v in hparams.items() if k not in ("beta1", "beta2") and k not in TRAINING_KEYS}
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


def with_space(spec: OptimizerSpec, overrides: Mapping[str, Any]) -> OptimizerSpec:
    """``spec`` with its search space changed by ``overrides``, one entry per dimension:

    - ``[low, high]``: the dimension's range (log scale where the registry's is, or for a new
      ``clip_norm``), the default moved inside it;
    - a list of other length, or of strings: a choice (``"schedule": ["constant", "cosine"]``);
    - a single value: fixed at that value, not searched (not for ``lr``).

    Dimensions may be the optimizer's own or the training settings (schedule, warmup_fraction,
    clip_norm). Every error names the optimizer, the dimension and what is accepted.

    >>> with_space(get_spec("adam"), {"lr": [1e-4, 1e-1]}).space[0]
    LogUniform(name='lr', low=0.0001, high=0.1)
    """
    space = {d.name: d for d in spec.space}
    defaults = dict(spec.defaults)
    accepted = sorted(set(space) | (set(spec.accepted_arguments) - {"betas"}) | {"beta1", "beta2"} | set(TRAINING_KEYS))
    for name, value in overrides.items():
        where = f"space for {spec.name!r}: {name!r}"
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            raise ValueError(f"{where} is not a dimension of {spec.name}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                             f"it has {accepted}.")
        old = space.get(name)
        if isinstance(value, (list, tuple)):
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            if len(value) == 2 and numeric and not isinstance(old, Categorical):
                low, high = float(value[0]), float(value[1])
                log = isinstance(old, LogUniform) or (old is None and name in ("lr", "clip_norm", "eps", "weight_decay"))
                if not low < high or (log and low <= 0):
                    raise ValueError(f"{where} range {list(value)} must be [low, high] with low < high"
                                     + (" and low > 0 (a log scale)" if log else "") + ".")
                space[name] = (LogUniform if log else Uniform)(name, low, high)
                current = defaults.get(name)
                defaults[name] = (min(max(float(current), low), high) if isinstance(current, (int, float))
                                  else (math.sqrt(low * high) if log else (low + high) / 2))
            elif value:
                choices = tuple(value)
                space[name] = Categorical(name, choices)
                current = defaults.get(name, "constant" if name == "schedule" else None)
                defaults[name] = current if current in choices else choices[0]
            else:
                raise ValueError(f"{where} is an empty list; give [low, high], a list of choices or one value.")
        else:
            if name == "lr":
                raise ValueError(f"{where} cannot be fixed: the learning rate is always searched; give [low, high].")
            space.pop(name, None)
            defaults[name] = value
    if "clip_norm" in defaults and defaults["clip_norm"] is not None:
        defaults["clip_norm"] = float(defaults["clip_norm"])
    changed = OptimizerSpec(spec.name, spec.family, spec.optimizer_class, tuple(space.values()), defaults,
                            spec.state_bytes, spec.fixed, spec.description, spec.train_eval_modes)
    for dim in changed.space:
        if isinstance(dim, Categorical) and dim.name in TRAINING_KEYS:
            for choice in dim.choices:
                try:
                    check_training_params({dim.name: choice})
                except ValueError as exc:
                    raise ValueError(f"space for {spec.name!r}: {exc}") from None
    return changed


def apply_space(specs: Sequence[OptimizerSpec], space: Mapping[str, Mapping[str, Any]]) -> list[OptimizerSpec]:
    """Every spec with the user's search-space overrides: ``space[name]``, after ``space["*"]``
    (for every optimizer); a name that is not among ``specs`` is an error."""
    names = {s.name for s in specs}
    unknown = sorted(set(space) - names - {"*"})
    if unknown:
        raise ValueError(f"space names optimizer(s) {unknown} that are not candidates; the candidates are "
                         f"{sorted(names)} (or '*' for all of them).")
    for name, value in space.items():
        if not isinstance(value, Mapping):
            raise ValueError(f"space[{name!r}] must be a table of dimensions, e.g. {{'lr': [1e-4, 1e-1]}}, "
                             f"but got {value!r}.")
    return [with_space(s, {**space.get("*", {}), **space.get(s.name, {})}) if ("*" in space or s.name in space)
            else s for s in specs]


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
    OptimizerSpec("sgd", "sgd", "torch.optim:SGD", (_LR_SGD,), {"lr": 1e-2}, _sgd_state,
                  description="plain stochastic gradient descent"),
    OptimizerSpec("momentum", "sgd", "torch.optim:SGD", (_LR_SGD, _MOMENTUM), {"lr": 1e-2, "momentum": 0.9},
                  _sgd_state, description="SGD with heavy-ball momentum"),
    OptimizerSpec("nesterov", "sgd", "torch.optim:SGD", (_LR_SGD, _MOMENTUM), {"lr": 1e-2, "momentum": 0.9},
                  _sgd_state, fixed={"nesterov": True}, description="SGD with Nesterov momentum"),
    # per-coordinate step sizes from squared-gradient statistics
    OptimizerSpec("adagrad", "adaptive", "torch.optim:Adagrad", (LogUniform("lr", 1e-4, 1.0),), {"lr": 1e-2},
                  dense_state(1, 1), description="AdaGrad: accumulated squared gradients"),
    OptimizerSpec("rmsprop", "adaptive", "torch.optim:RMSprop",
                  (LogUniform("lr", 1e-5, 1e-1), Uniform("alpha", 0.9, 0.999)), {"lr": 1e-3, "alpha": 0.99},
                  _rmsprop_state, description="RMSprop: running average of squared gradients"),
    OptimizerSpec("adadelta", "adaptive", "torch.optim:Adadelta",
                  (LogUniform("lr", 1e-2, 100.0), Uniform("rho", 0.8, 0.99)), {"lr": 1.0, "rho": 0.9},
                  dense_state(2, 1), description="Adadelta: unit-corrected RMSprop"),
    OptimizerSpec("adafactor", "adaptive", "torch.optim:Adafactor", (LogUniform("lr", 1e-4, 1e-1),),
                  {"lr": 1e-2}, _adafactor_state, description="Adafactor: factored second moments, sublinear memory"),
    # Adam family: first and second moments
    OptimizerSpec("adam", "adam", "torch.optim:Adam", (_LR_ADAM, _BETA1, _BETA2, _EPS), _ADAM_DEFAULTS,
                  _adam_state, description="Adam (Kingma & Ba, 2015)"),
    OptimizerSpec("adamw", "adam", "torch.optim:AdamW",
                  (_LR_ADAM, _BETA1, _BETA2, _EPS, LogUniform("weight_decay", 1e-5, 1e-1)),
                  {**_ADAM_DEFAULTS, "weight_decay": 1e-2}, _adam_state,
                  description="Adam with decoupled weight decay (Loshchilov & Hutter)"),
    OptimizerSpec("nadam", "adam", "torch.optim:NAdam", (_LR_ADAM, _BETA1, _BETA2, _EPS),
                  {**_ADAM_DEFAULTS, "lr": 2e-3}, dense_state(2, 2), description="Adam with Nesterov momentum"),
    OptimizerSpec("radam", "adam", "torch.optim:RAdam", (_LR_ADAM, _BETA1, _BETA2, _EPS), _ADAM_DEFAULTS,
                  dense_state(2, 1), description="Rectified Adam: variance-corrected warm-up"),
    OptimizerSpec("adamax", "adam", "torch.optim:Adamax", (_LR_ADAM, _BETA1, _BETA2, _EPS),
                  {**_ADAM_DEFAULTS, "lr": 2e-3}, dense_state(2, 1), description="Adam with an infinity norm"),
    # Muon: orthogonalized momentum for matrices
    OptimizerSpec("muon", "muon", "autoopt.muon:MuonWithAdamW",
                  (LogUniform("lr", 1e-3, 0.3), Uniform("momentum", 0.85, 0.98), LogUniform("adamw_lr", 1e-4, 1e-2)),
                  {"lr": 0.02, "momentum": 0.95, "adamw_lr": 1e-3}, _muon_state,
                  description="Muon on 2-D weights, AdamW on the rest"),
]:
    register_optimizer(_spec)


# --- learning-rate-free optimizers, from their maintained packages (pip install "autoopt[lrfree]") ----

def _lr_free_specs() -> list[OptimizerSpec]:
    """Schedule-Free AdamW and Prodigy, where their packages are installed (found, not imported)."""
    specs = []
    if importlib.util.find_spec("schedulefree") is not None:
        # state: z (the iterate the averages are taken around) and exp_avg_sq; the step is a group value
        specs.append(OptimizerSpec(
            "schedulefree_adamw", "lr-free", "schedulefree:AdamWScheduleFree",
            (LogUniform("lr", 1e-4, 1e-1), Uniform("beta1", 0.8, 0.95)), {"lr": 2.5e-3, "beta1": 0.9},
            dense_state(2), train_eval_modes=True,
            description="Schedule-Free AdamW (Defazio et al., 2024): no decay schedule needed"))
    if importlib.util.find_spec("prodigyopt") is not None:
        # state: exp_avg, exp_avg_sq, s and p0 (flattened copies, slice_p=1); the step is a Python int.
        # lr is a multiplier of the step size Prodigy estimates (1.0 by its authors' advice).
        specs.append(OptimizerSpec(
            "prodigy", "lr-free", "prodigyopt:Prodigy", (LogUniform("lr", 0.1, 10.0),), {"lr": 1.0}, dense_state(4),
            description="Prodigy (Mishchenko & Defazio, 2024): Adam with an estimated step size"))
    return specs


for _spec in _lr_free_specs():
    register_optimizer(_spec)
