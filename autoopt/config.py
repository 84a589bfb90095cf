"""A study's settings as one frozen, validated record, shared by ``tune()`` and study files.

Validation happens here, when the record is made, so that a bad value is an error that names it
before any data is touched or any model trained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .recommend import Policy, check_policy
from .registry import apply_space, resolve_specs
from .search import PRUNERS, SAMPLERS, SPACES

#: Below this many parameters a model trains on one CPU thread: intra-op parallelism gains nothing on
#: such small tensors, and on shared cores it was measured 3-9x slower (digits MLP, CNN, deep tanh net).
SMALL_MODEL = 1_000_000

#: Training-run equivalents a study spends when neither n_trials, timeout nor budget is given: the
#: search-efficiency benchmark's target cost (benchmarks/search_efficiency.py).
DEFAULT_BUDGET = 5.0

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(value: int | float | str | None) -> int | None:
    """Bytes from a number or a string such as ``"512MB"`` or ``"2 GiB"``.

    >>> parse_bytes("2 GiB")
    2147483648
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"memory_budget={value!r} is not a size; give bytes (an int) or a string like '512MB' or '2GiB'.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of a study except the model and the data (see ``tune`` for their meaning)."""

    optimizers: tuple[str, ...] | None = None  # None: every registered optimizer
    epochs: int = 10  # training budget of one trial
    batch_size: int = 64
    n_trials: int | None = None  # search trials (re-evaluations come on top)
    timeout: float | None = None  # seconds for the search
    budget: float | None = None  # training-run equivalents (all epochs spent / epochs), re-runs included;
    # with none of n_trials, timeout and budget given, the budget is DEFAULT_BUDGET
    policy: Policy = "default"
    tolerance: float = 0.01  # "as good as the best" for the default policy
    memory_budget: int | None = None  # bytes for params + grads + optimizer state
    reevaluate_top: int = 0  # configurations (the best of as many optimizers) retrained on extra seeds
    seeds: int = 2  # seeds each of those is trained on in all (the search's seed included)
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "none"  # an Optuna pruner for sampled trials; pruning portfolio runs lost on the corpus
    # "full": every dimension of each optimizer's space; "lr": learning rate only; or the user's own
    # ranges per optimizer and dimension, e.g. {"adam": {"lr": [1e-4, 1e-1]}, "*": {"schedule": [...]}}
    space: str | Mapping[str, Mapping[str, Any]] = "full"
    refine_after: int = 8  # portfolio entries trained before the learning-rate line search starts
    refine_lr: bool = True  # line search on the learning rate around the best configuration so far
    n_jobs: int = 1  # trials at once
    parallel: str = "processes"  # n_jobs > 1: forked worker processes sharing the storage, or "threads"
    val_fraction: float = 0.2
    divergence_factor: float = 4.0
    storage: str | None = None
    study_name: str | None = None
    device: str | None = None
    threads: int | None = None  # torch CPU threads per trial; None: 1 for models under SMALL_MODEL parameters
    fused: bool | None = None  # train candidates of one seed in one pass (autoopt.fused); None: fuse where it applies
    tracking: bool = True
    tracking_uri: str | None = None
    experiment_name: str | None = None
    verbose: bool = True
    task: str | None = None  # "classification" or "regression"; None: inferred from the targets and the model
    precision: str = "fp32"  # "bf16" (autocast) or "fp16" (autocast + gradient scaler, CUDA only)

    def __post_init__(self) -> None:
        if self.optimizers is not None:
            names = [self.optimizers] if isinstance(self.optimizers, (str, type)) else list(self.optimizers)
            resolve_specs(names)  # unknown names: one error listing the valid ones
            object.__setattr__(self, "optimizers", tuple(names))
        object.__setattr__(self, "memory_budget", parse_bytes(self.memory_budget))
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("n_jobs", self.n_jobs)
        _positive_int("seeds", self.seeds)
        if self.n_trials is not None:
            _positive_int("n_trials", self.n_trials)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds but got {self.timeout!r}.")
        if self.budget is not None and not (isinstance(self.budget, (int, float)) and self.budget > 0):
            raise ValueError(f"budget must be a positive number of training-run equivalents but got {self.budget!r}.")
        if self.total_budget is not None:
            if self.total_budget <= self.reevaluation_cost:
                raise ValueError(
                    f"budget={self.total_budget} training runs cannot cover re-evaluating the top {self.reevaluate_top} "
                    f"on {self.seeds - 1} extra seed(s) ({self.reevaluation_cost} runs) and leave room to search; "
                    "raise the budget or lower reevaluate_top / seeds."
                )
        if isinstance(self.refine_after, bool) or not isinstance(self.refine_after, int) or self.refine_after < 1:
            raise ValueError(f"refine_after must be a positive integer (portfolio entries) but got {self.refine_after!r}.")
        if not isinstance(self.reevaluate_top, int) or self.reevaluate_top < 0:
            raise ValueError(f"reevaluate_top must be 0 or a positive integer but got {self.reevaluate_top!r}.")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1) (a fraction of the best loss) but got {self.tolerance!r}.")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1 but got {self.val_fraction!r}.")
        if not self.divergence_factor > 1:
            raise ValueError(f"divergence_factor must be above 1 but got {self.divergence_factor!r}.")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f"memory_budget must be positive but got {self.memory_budget!r}.")
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("pruner", self.pruner, PRUNERS)
        _one_of("space", self.space, SPACES)
        if isinstance(self.space, Mapping):
            apply_space(resolve_specs(self.optimizers), self.space)  # checked against the registry now
        elif not isinstance(self.space, str):
            raise ValueError(f"space must be one of {list(SPACES)} or a dict of ranges per optimizer, e.g. "
                             f"{{'adam': {{'lr': [1e-4, 1e-1]}}}}, but got {self.space!r}.")
        _one_of("task", self.task, ("classification", "regression"))
        _one_of("precision", self.precision, ("fp32", "bf16", "fp16"))
        _one_of("parallel", self.parallel, ("processes", "threads"))
        if self.fused is not None and not isinstance(self.fused, bool):
            raise ValueError(f"fused must be True, False or None (fuse where it applies) but got {self.fused!r}.")
        check_policy(self.policy)

    @property
    def trial_budget(self) -> int | None:
        """Search trials to run (None: until the budget or the timeout stops the search)."""
        return self.n_trials

    @property
    def total_budget(self) -> float | None:
        """The budget in training-run equivalents: given, or DEFAULT_BUDGET when nothing else bounds the study."""
        if self.budget is None and self.n_trials is None and self.timeout is None:
            return DEFAULT_BUDGET
        return self.budget

    @property
    def reevaluation_cost(self) -> int:
        """Training runs the re-evaluation of the top configurations takes, at most."""
        return self.reevaluate_top * (self.seeds - 1)

    @property
    def total_epochs(self) -> float | None:
        """Epochs the whole study may spend, re-evaluation included, when a budget is set."""
        return None if self.total_budget is None else self.total_budget * self.epochs

    @property
    def search_epochs(self) -> float | None:
        """Epochs the search may spend before the re-evaluation, when a budget is set."""
        if self.total_budget is None:
            return None
        return (self.total_budget - self.reevaluation_cost) * self.epochs

    def as_params(self) -> dict[str, Any]:
        """Flat values for logging (MLflow params)."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        out["optimizers"] = ",".join(self.optimizers) if self.optimizers else "all"
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer but got {value!r}.")


def _one_of(name: str, value: Any, options: tuple[str, ...]) -> None:
    if isinstance(value, str) and value not in options:
        raise ValueError(f"unknown {name} {value!r}; use one of {list(options)}.")
