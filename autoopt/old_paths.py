"""The import paths autoopt had before its modules were grouped into folders, kept working.

Until version 0.1, autoopt was one flat folder: ``autoopt.registry``, ``autoopt.muon``,
``autoopt.storage`` ... A program written against those paths (``from autoopt.muon import
MuonWithAdamW``, ``autoopt.storage.enqueue_once``) still runs: importing an old path gives the module
that holds its names now (or, for a module whose names were shared out among several, a module holding
all of them) and a ``DeprecationWarning`` naming the new path. Three old modules are not offered:
``autoopt.training``, ``autoopt.search`` and ``autoopt.tracking`` are folders now, with other modules
inside (the training loop is ``autoopt.training.loop``, the Optuna glue ``autoopt.study``, the
tracker protocol ``autoopt.tracking.tracker``).

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DeprecationWarning)
...     from autoopt.muon import MuonWithAdamW
>>> MuonWithAdamW.__module__
'autoopt.optimizers.muon'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

#: old module -> the modules that hold its names now, the first its main home
MOVED: dict[str, tuple[str, ...]] = {
    "artifacts": ("tracking.study_files",),
    "data": ("training.intake", "training.batches"),
    "device": ("training.device",),
    "fused": ("training.fused.loop", "training.fused.eligibility", "training.fused.sizing"),
    "fused_model": ("training.fused.stacked_model", "training.fused.eligibility"),
    "fused_rnn": ("training.fused.unrolled_rnn",),
    "mlflow_calls": ("tracking.mlflow.calls",),
    "mlflow_recorder": ("tracking.mlflow.recorder",),
    "mlflow_runs": ("tracking.mlflow.runs",),
    "mlflow_sync": ("cli.sync",),
    "mlflow_tracker": ("tracking.mlflow.tracker",),
    "mlflow_writer": ("tracking.mlflow.transport",),
    "muon": ("optimizers.muon",),
    "plots": ("tracking.plots",),
    "portfolio": ("search.portfolio",),
    "progress": ("tracking.progress",),
    "recipes": ("cli.recipes",),
    "recommend": ("recommendation.choose", "recommendation.record", "recommendation.policies",
                  "recommendation.configs", "recommendation.explain"),
    "registry": ("optimizers.registry", "optimizers.spec", "optimizers.space"),
    "results": ("recommendation.table",),
    "schedules": ("optimizers.schedules",),
    "starter": ("cli.starter",),
    "storage": ("study.storage", "config"),
    "strategy": ("search.strategy", "search.runner", "search.race", "search.line_search"),
    "studyfile": ("cli.studyfile",),
    "task": ("training.task",),
    "workers": ("study.workers",),
}


class OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``autoopt.<old module>`` and loads it as what now holds its names."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.partition(".")
        if package != __package__ or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a plain module; exec_module puts what the old path names in its place

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__.partition(".")[2]
        homes = [importlib.import_module(f"{__package__}.{home}") for home in MOVED[old]]
        warnings.warn(f"{module.__name__} is now {homes[0].__name__}; the old path will be removed in a later "
                      "version.", DeprecationWarning, stacklevel=2)
        if len(homes) == 1:
            sys.modules[module.__name__] = homes[0]  # the import system hands out what sys.modules holds
            return
        for home in reversed(homes):  # the main home's names win
            module.__dict__.update({k: v for k, v in vars(home).items() if not k.startswith("__")})
        module.__doc__ = f"The names of the old {module.__name__}, now in " + ", ".join(h.__name__ for h in homes)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``autoopt/__init__.py`` does it on import)."""
    if not any(isinstance(f, OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(OldPathFinder())
