"""autoopt: choose a PyTorch optimizer and its settings by measuring them on your model.

>>> import autoopt
>>> sorted(autoopt.list_optimizers())[:3]
['adadelta', 'adafactor', 'adagrad']

The public names are imported when first used (PEP 562), so that ``import autoopt`` and the
``autoopt`` command start without importing torch, Optuna or MLflow until something needs them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from . import old_paths

#: public name -> the module that defines it
_EXPORTS = {
    "StudyConfig": "config",
    "prepare_data": "training.intake",
    "select_device": "training.device",
    "MuonWithAdamW": "optimizers.muon",
    "Objective": "objective",
    "Recommendation": "recommendation.record",
    "recipe": "cli.recipes",
    "recommend": "recommendation.choose",
    "Candidate": "records",
    "EpochRecord": "records",
    "Measurement": "records",
    "TrialRecord": "records",
    "LogUniform": "optimizers.spec",
    "OptimizerSpec": "optimizers.spec",
    "Uniform": "optimizers.spec",
    "dense_state": "optimizers.spec",
    "get_spec": "optimizers.registry",
    "list_optimizers": "optimizers.registry",
    "register_optimizer": "optimizers.registry",
    "Report": "report",
    "load_report": "report",
    "tune": "tune",
}

__all__ = sorted(_EXPORTS)

__version__ = "0.1.0"

old_paths.install()  # ``autoopt.registry``, ``autoopt.muon`` ... from before the folders keep working

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .config import StudyConfig
    from .training.intake import prepare_data
    from .training.device import select_device
    from .optimizers.muon import MuonWithAdamW
    from .objective import Objective
    from .recommendation.choose import recommend
    from .recommendation.record import Recommendation
    from .records import Candidate, EpochRecord, Measurement, TrialRecord
    from .optimizers.registry import get_spec, list_optimizers, register_optimizer
    from .optimizers.spec import LogUniform, OptimizerSpec, Uniform, dense_state
    from .report import Report, load_report
    from .tune import tune


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _Package(types.ModuleType):
    """Keeps ``autoopt.tune`` and ``autoopt.recommend`` the functions once their modules are imported.

    Importing a submodule sets it as an attribute of its package; for the two public functions that
    share a module's name (``autoopt/tune.py``, and the old path ``autoopt.recommend``), the function is
    kept instead, as an eager import would have done.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
