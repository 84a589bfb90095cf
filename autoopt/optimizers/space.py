"""A user's search space: each optimizer's ranges, choices and fixed values changed by ``space=``.

The ranges are checked against the registry, each error naming the optimizer and the dimension.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .schedules import TRAINING_KEYS, check_training_params
from .spec import Categorical, LogUniform, OptimizerSpec, Uniform


def with_space(spec: OptimizerSpec, overrides: Mapping[str, Any]) -> OptimizerSpec:
    """``spec`` with its search space changed by ``overrides``, one entry per dimension:

    - ``[low, high]``: the dimension's range (log scale where the registry's is, or for a new
      ``clip_norm``), the default moved inside it;
    - a list of other length, or of strings: a choice (``"schedule": ["constant", "cosine"]``);
    - a single value: fixed at that value, not searched (not for ``lr``).

    Dimensions may be the optimizer's own or the training settings (schedule, warmup_fraction,
    clip_norm). Every error names the optimizer, the dimension and what is accepted.

    >>> from autoopt.optimizers.registry import get_spec
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
