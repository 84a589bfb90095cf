"""A study's settings as one frozen, validated record, shared by ``tune()`` and study files.

Validation happens here, when the record is made, so that a bad value is an error that names it
before any data is touched or any model trained. (Over the package's 350-line guide: one field's check
each, a few lines apiece, in one place so that ``tune()`` and study files refuse the same values alike.)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .objective import Objective, check_objective
from .optimizers.registry import resolve_specs
from .optimizers.space import apply_space
from .recommendation.policies import Policy, check_policy

#: Optuna samplers and pruners a study can name (or give an instance of Optuna's classes); the search
#: space of sampled trials: every dimension of each optimizer, or its learning rate only.
SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "successive_halving", "percentile", "hyperband", "median")
SPACES = ("full", "lr")

#: A storage string that names a journal file (Optuna's file storage that several processes share):
#: ``journal:study.log`` or ``journal:///abs/path/study.log``.
JOURNAL_PREFIX = "journal:"

#: Below this many parameters a model trains on one CPU thread: intra-op parallelism gains nothing on
#: such small tensors, and on shared cores it was measured 3-9x slower (digits MLP, CNN, deep tanh net).
SMALL_MODEL = 1_000_000

#: Training-run equivalents a study spends when neither n_trials, timeout nor budget is given: the
#: search-efficiency benchmark's target cost (benchmarks/search_efficiency.py).
DEFAULT_BUDGET = 5.0

#: Seeds are used as ``seed + i`` for extra seeds and workers; numpy's generators take at most 2**32 - 1.
MAX_SEED = 2**31 - 1
#: Settings that are True or False, never a string or a number.
BOOLEANS = ("refine_lr", "tracking", "verbose")
#: The URI schemes MLflow 3 has tracking stores for (besides plain folder paths).
TRACKING_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql",
                    "mysql", "mssql")
#: What a tracking_uri error suggests: stores MLflow 3 opens as they are.
TRACKING_EXAMPLES = "a database such as 'sqlite:///mlflow.db' or a server such as 'http://127.0.0.1:5000'"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(value: int | float | str | None) -> int | None:
    """Bytes from a number or a string such as ``"512MB"`` or ``"2 GiB"``.

    >>> parse_bytes("2 GiB")
    2147483648
    """
    if value is None:
        return None
    accepted = "give bytes (a positive number) or a string like '512MB' or '2GiB'"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"memory_budget must be a size but got {value!r} ({type(value).__name__}); {accepted}.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"memory_budget={value!r} is not a size; {accepted}.")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", value)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"memory_budget={value!r} is not a size; {accepted}.")
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
    # what the search minimizes or maximizes and the policy weighs as "loss": "val_loss", "val_accuracy"
    # (classification), or autoopt.Objective(fn, direction=..., name=...) for a metric of your own
    objective: str | Objective = "val_loss"
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
    # portfolio entries trained before the learning-rate line search starts; None: 8, or where a budget of
    # 5 to 9 runs would leave the line search nothing, so many that its last 2 runs go to it
    refine_after: int | None = None
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
        # numpy's numbers are numbers (epochs=np.int64(3), tolerance=np.float32(0.01)): Python's from here on
        for f in fields(self):
            object.__setattr__(self, f.name, _plain_number(getattr(self, f.name)))
        # Types first, each with the setting's name: a bool is not a number, "false" is not False.
        object.__setattr__(self, "optimizers", _optimizer_names(self.optimizers))
        object.__setattr__(self, "memory_budget", parse_bytes(self.memory_budget))
        object.__setattr__(self, "objective", check_objective(self.objective))
        for name in ("epochs", "batch_size", "n_jobs", "seeds"):
            _positive_int(name, getattr(self, name))
        for name in ("n_trials", "threads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name in BOOLEANS:
            _boolean(name, getattr(self, name))
        if self.timeout is not None:
            _finite_number("timeout", self.timeout, "a positive number of seconds", lambda v: v > 0)
        if self.budget is not None:
            _finite_number("budget", self.budget, "a positive number of training-run equivalents", lambda v: v > 0)
        _integer("reevaluate_top", self.reevaluate_top, "0 or a positive integer", lambda v: v >= 0)
        _integer("seed", self.seed, f"an integer in [0, {MAX_SEED}]", lambda v: 0 <= v <= MAX_SEED)
        _finite_number("tolerance", self.tolerance, "in [0, 1) (a fraction of the best loss)", lambda v: 0 <= v < 1)
        _finite_number("val_fraction", self.val_fraction, "between 0 and 1", lambda v: 0 < v < 1)
        _finite_number("divergence_factor", self.divergence_factor, "a finite number above 1", lambda v: v > 1)
        if self.refine_after is not None:
            _positive_int("refine_after", self.refine_after)
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f"memory_budget must be positive but got {self.memory_budget!r}.")
        _choice("sampler", self.sampler, SAMPLERS, "optuna.samplers.BaseSampler")
        _choice("pruner", self.pruner, PRUNERS, "optuna.pruners.BasePruner")
        if isinstance(self.space, str):
            _one_of("space", self.space, SPACES)
        elif isinstance(self.space, Mapping):
            apply_space(resolve_specs(self.optimizers), self.space)  # checked against the registry now
        elif not isinstance(self.space, str):
            raise ValueError(f"space must be one of {list(SPACES)} or a dict of ranges per optimizer, e.g. "
                             f"{{'adam': {{'lr': [1e-4, 1e-1]}}}}, but got {self.space!r}.")
        if self.task is not None:
            _one_of("task", self.task, ("classification", "regression"))
        _one_of("precision", self.precision, ("fp32", "bf16", "fp16"))
        _one_of("parallel", self.parallel, ("processes", "threads"))
        if self.fused is not None and not isinstance(self.fused, bool):
            raise ValueError(f"fused must be True, False or None (fuse where it applies) but got {self.fused!r}.")
        if self.fused and self.n_jobs != 1:
            raise ValueError(f"fused=True trains candidates together in one process, so it needs n_jobs=1 (got "
                             f"n_jobs={self.n_jobs}); pass fused=None to fuse where it applies, or n_jobs=1.")
        for name in ("study_name", "experiment_name", "device"):
            _optional_text(name, getattr(self, name))
        object.__setattr__(self, "storage", check_storage(self.storage))
        check_tracking_uri(self.tracking_uri)
        if self.tracking and self.tracking_uri is None and os.environ.get("MLFLOW_TRACKING_URI"):
            check_tracking_uri(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")  # before any file is made
        check_policy(self.policy)
        if self.total_budget is not None and self.total_budget <= self.reevaluation_cost:
            raise ValueError(
                f"budget={self.total_budget} training runs cannot cover re-evaluating the top {self.reevaluate_top} "
                f"on {self.seeds - 1} extra seed(s) ({self.reevaluation_cost} runs) and leave room to search; "
                "raise the budget or lower reevaluate_top / seeds."
            )

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
        out["objective"] = self.objective.name  # type: ignore[union-attr]
        out["objective_direction"] = self.objective.direction  # type: ignore[union-attr]
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _plain_number(value: Any) -> Any:
    """A numpy scalar (``np.int64(3)``, ``np.float32(0.1)``, ``np.True_``) as Python's int, float or bool;
    anything else as it is. Checked by its type's module, so that numpy is not imported here."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and value.dtype.kind in "biuf":
        return value.item()
    return value


def _positive_int(name: str, value: Any) -> None:
    _integer(name, value, "a positive integer", lambda v: v > 0)


def _integer(name: str, value: Any, what: str, ok: Callable[[int], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {what} but got {value!r} ({type(value).__name__}).")
    if not ok(value):
        raise ValueError(f"{name} must be {what} but got {value!r}.")


def _finite_number(name: str, value: Any, what: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number ({what}) but got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be {what} but got {value!r}.")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        hint = f" (write {value.strip().lower() == 'true'} without quotes)" if isinstance(value, str) \
            and value.strip().lower() in ("true", "false") else ""
        raise TypeError(f"{name} must be True or False but got {value!r} ({type(value).__name__}){hint}.")


def _optional_text(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string but got {value!r} ({type(value).__name__}).")
    if not value.strip():
        raise ValueError(f"{name} must not be empty (leave it out for the default) but got {value!r}.")


def _one_of(name: str, value: Any, options: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(options)} but got {value!r} ({type(value).__name__}).")
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; use one of {list(options)}.")


def _choice(name: str, value: Any, options: tuple[str, ...], base: str) -> None:
    """A name from ``options`` or an instance of the Optuna class ``base`` (checked without importing it)."""
    module, _, cls = base.rpartition(".")
    if not isinstance(value, str):
        import importlib

        if isinstance(value, getattr(importlib.import_module(module), cls)):
            return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(options)} or an {base} but got {value!r} "
                        f"({type(value).__name__}).")
    _one_of(name, value, options)


def _optimizer_names(value: Any) -> tuple[str, ...] | None:
    """None, one name or a list of names, every one registered, none twice."""
    if value is None:
        return None
    names = [value] if isinstance(value, (str, type)) else value
    if isinstance(names, (list, tuple)) and any(isinstance(n, type) for n in names):
        resolve_specs(list(names))  # a torch optimizer class: the error says which registry name to write
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"optimizers must be an optimizer name or a list of names (strings) but got {value!r} "
                        f"({type(value).__name__}); see autoopt.list_optimizers().")
    if not names:
        raise ValueError("optimizers is an empty list; name at least one optimizer, or leave it out for all of them.")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"optimizers names {twice} more than once; name each optimizer once.")
    try:
        resolve_specs(list(names))  # unknown names: one error listing the valid ones
    except ValueError as exc:
        raise ValueError(f"optimizers: {exc}") from None
    return tuple(names)


def check_storage(storage: Any) -> Any:
    """A storage URL Optuna can open, ``journal:PATH`` (a journal file), a path or an Optuna storage.

    Checked without connecting: the URL must parse and its database driver must be importable.

    >>> check_storage("sqlite:///study.db")
    'sqlite:///study.db'
    """
    if storage is None:
        return None
    if isinstance(storage, os.PathLike):
        return Path(storage)
    if not isinstance(storage, str):
        import optuna

        if isinstance(storage, optuna.storages.BaseStorage):
            return storage
        raise TypeError(f"storage must be a database URL (e.g. 'sqlite:///study.db'), 'journal:PATH' or an "
                        f"optuna storage but got {storage!r} ({type(storage).__name__}).")
    if storage.startswith(JOURNAL_PREFIX):
        if not journal_file(storage):
            raise ValueError(f"storage={storage!r} names no file; write 'journal:path/to/study.log'.")
        return storage
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if re.fullmatch(r"sqlite(\+\w+)?://(/(:memory:)?)?(\?.*)?", storage.strip()):
        raise ValueError(f"storage={storage!r} is an in-memory SQLite database, which lives in one connection: "
                         "the study's other connections (its heartbeat, a resume) would not see it. Leave storage "
                         "out to keep the study in memory, or give a file, e.g. 'sqlite:///study.db'.")

    accepted = "a database URL such as 'sqlite:///study.db' or 'postgresql://user@host/db', or 'journal:PATH'"
    try:
        url = make_url(storage)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ValueError(f"storage={storage!r} is not a storage URL ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0]}); give {accepted}.") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(f"storage={storage!r} needs the database driver {exc.name!r}, which is not installed; "
                         f"install it (for PostgreSQL: pip install 'psycopg[binary]').") from None
    return storage


def check_tracking_uri(uri: Any, name: str = "tracking_uri") -> None:
    """A tracking URI MLflow 3 opens: one of TRACKING_SCHEMES (checked without MLflow); a folder (its file
    store) only where MLFLOW_ALLOW_FILE_STORE=true lets MLflow open one."""
    if uri is None:
        return
    if not isinstance(uri, str):
        raise TypeError(f"{name} must be a string but got {uri!r} ({type(uri).__name__}).")
    if not uri.strip():
        raise ValueError(f"{name} must not be empty (leave it out for MLflow's default).")
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", uri)
    scheme = "file" if match is None or len(match.group(1)) == 1 else match.group(1).lower().split("+", 1)[0]
    if scheme not in TRACKING_SCHEMES:
        raise ValueError(f"{name}={uri!r} has the scheme {match.group(1)!r}, which MLflow has no store "
                         f"for; use {TRACKING_EXAMPLES}, or one of {', '.join(s + ':' for s in TRACKING_SCHEMES)}.")
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("1", "true"):
        raise ValueError(f"{name}={uri!r} is a folder (MLflow's file store), which MLflow 3 refuses unless "
                         f"MLFLOW_ALLOW_FILE_STORE=true is set; use {TRACKING_EXAMPLES}.")


def journal_file(storage: str) -> str:
    """The file of a ``journal:PATH`` (or ``journal:///abs/path``) storage.

    >>> journal_file("journal:///tmp/s.log"), journal_file("journal:s.log")
    ('/tmp/s.log', 's.log')
    """
    rest = storage[len(JOURNAL_PREFIX):]
    return rest[2:] if rest.startswith("//") else rest
