"""``Recommendation``: the chosen optimizer and its settings, what was measured for them, and why;
applied in one line (``rec.build(model)``) or pasted as code (``rec.code()``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch and the registry are imported where used: the MLflow recorder process
    import torch  # unpickles recommendations and draws charts without them (180 MB, 1 s less)


@dataclass
class Recommendation:
    """The chosen optimizer and settings, what was measured for them, and why.

    >>> import torch
    >>> rec = Recommendation(optimizer="sgd", params={"lr": 0.1})
    >>> rec.build(torch.nn.Linear(2, 1).parameters()).__class__.__name__
    'SGD'
    """

    optimizer: str
    params: dict[str, Any]
    family: str = ""
    val_loss: float = math.nan  # mean final validation loss over the seeds it was trained on
    val_loss_std: float = math.nan
    #: what a fresh seed is expected to end at: the mean of its runs' last 3 epochs' validation losses
    #: (``recommendation/expected_loss.py``), a steadier forecast than the last epoch's ``val_loss``
    expected_val_loss: float = math.nan
    n_seeds: int = 0
    val_accuracy: float = math.nan
    epochs_to_target: float = math.nan
    seconds_to_target: float = math.nan
    optimizer_state_bytes: int = 0
    peak_memory_bytes: int = 0
    objective: str = "val_loss"  # what was optimized: "val_loss", "val_accuracy" or your metric's name
    objective_direction: str = "minimize"
    objective_value: float = math.nan  # its mean final value over the seeds (val_loss's is val_loss)
    objective_std: float = math.nan
    policy: str = "default"
    explanation: str = ""
    trial_numbers: list[int] = field(default_factory=list)
    #: Muon: the names of the parameters it optimized (the hidden matrices; the rest were on AdamW), and
    #: the dtype its Newton-Schulz iteration ran in on the study's device
    muon_parameters: list[str] | None = None
    ns_dtype: str | None = None

    def build(self, model: torch.nn.Module | Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """The recommended torch optimizer for ``model`` (or over a list of its parameters):
        ``optimizer = rec.build(model)``.

        Given the model, an optimizer whose authors intend parts of a network for different updates gets
        them as it did in the study (Muon: the hidden matrices; AdamW the embeddings, the output layer
        and the vectors); given bare parameters, Muon takes every matrix.
        """
        import torch

        from ..optimizers.registry import get_spec

        spec = get_spec(self.optimizer)
        params = spec.parameters_of(model) if isinstance(model, torch.nn.Module) else model
        return spec.build(params, self.params)

    @property
    def training_settings(self) -> Any:
        """The recommended schedule, warm-up and clipping norm (``autoopt.optimizers.schedules.TrainingSettings``)."""
        from ..optimizers.schedules import split_params

        return split_params(self.params)[1]

    @property
    def clip_norm(self) -> float | None:
        """The gradient clipping norm to use (``torch.nn.utils.clip_grad_norm_``), None for no clipping."""
        return self.training_settings.clip_norm

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """The recommended schedule over ``total_steps`` optimizer steps, as a torch LambdaLR (a constant
        one when none was recommended): call ``scheduler.step()`` after each ``optimizer.step()``.

        >>> import torch
        >>> rec = Recommendation("sgd", {"lr": 0.1, "schedule": "cosine"})
        >>> opt = rec.build(torch.nn.Linear(2, 1).parameters())
        >>> rec.build_scheduler(opt, 100).__class__.__name__
        'LambdaLR'
        """
        from ..optimizers.schedules import build_scheduler

        return build_scheduler(optimizer, self.training_settings, total_steps)

    def constructor(self) -> str:
        """The optimizer as a Python call, e.g. ``torch.optim.Adam(model.parameters(), lr=0.001)``;
        an optimizer built over parameter groups (Muon) takes ``groups``, which ``code()`` defines.
        Written from the class's path, without importing it (nor torch): a stored study prints at once."""
        import sys

        from ..optimizers.registry import get_spec

        spec = get_spec(self.optimizer)
        module, qualname = spec.class_path()
        optim = sys.modules.get("torch.optim")  # a class given as a class: torch is imported already
        if module == "torch.optim" or (optim is not None and getattr(optim, qualname, None) is spec.optimizer_class):
            name = f"torch.optim.{qualname}"
        else:
            name = qualname if spec.groups is not None else f"{module}.{qualname}"
        checked = not isinstance(spec.__dict__["_optimizer_class"], str)  # its arguments were checked in the search
        kwargs = ", ".join(f"{k}={_literal(v)}" for k, v in spec.kwargs(self.params, check=checked).items())
        if self.ns_dtype is not None:
            kwargs += f", ns_dtype=torch.{self.ns_dtype}"
        return f"{name}({'groups' if spec.groups is not None else 'model.parameters()'}, {kwargs})"

    def code(self) -> str:
        """The recommendation as lines of Python: the optimizer (for Muon, its import and parameter
        groups first), then its schedule and clipping if any."""
        lines = self._group_lines() + [f"optimizer = {self.constructor()}"]
        settings = self.training_settings
        if settings.schedule != "constant" or settings.warmup_fraction > 0:
            lines.append(f"scheduler = recommendation.build_scheduler(optimizer, total_steps)  # {settings.schedule}"
                         f", warm-up {settings.warmup_fraction:.0%}; scheduler.step() after each optimizer.step()")
        if settings.clip_norm is not None:
            lines.append(f"torch.nn.utils.clip_grad_norm_(model.parameters(), {settings.clip_norm:.4g})"
                         "  # after loss.backward(), before optimizer.step()")
        return "\n".join(lines)

    def _group_lines(self) -> list[str]:
        """For an optimizer built over groups (Muon): its import (a file of its own, torch only, to copy
        where autoopt is not installed) and the groups it was trained with, by parameter name."""
        from ..optimizers.registry import get_spec

        spec = get_spec(self.optimizer)
        if spec.groups is None:
            return []
        module, qualname = spec.class_path()
        lines = [f"from {module} import {qualname}  # one file that imports only torch: copy it "
                 "to drop the dependency"]
        if self.muon_parameters is None:  # a stored study's report: the split is made from the model again
            return lines + ["from autoopt.optimizers.param_roles import muon_groups",
                            "groups = muon_groups(model)  # Muon on the hidden matrices, AdamW on the rest"]
        return lines + [
            f"hidden = {_name_set(self.muon_parameters)}  # Muon; embeddings, the output layer, biases and norms: AdamW",
            'groups = [{"params": [p for n, p in model.named_parameters() if n in hidden], "use_muon": True},',
            '          {"params": [p for n, p in model.named_parameters() if n not in hidden], "use_muon": False}]',
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return self.explanation or f"{self.optimizer} {self.params}"


def _name_set(names: list[str]) -> str:
    """A set literal of ``names`` in their order (a set's own repr changes order from run to run)."""
    return "{" + ", ".join(repr(n) for n in names) + "}" if names else "set()"


def _literal(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
