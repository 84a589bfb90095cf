"""autoopt: choose a PyTorch optimizer and its settings by measuring them on your model.

>>> import autoopt
>>> sorted(autoopt.list_optimizers())[:3]
['adadelta', 'adafactor', 'adagrad']
"""

from __future__ import annotations

from .config import StudyConfig
from .data import prepare_data
from .device import select_device
from .muon import MuonWithAdamW
from .recommend import Recommendation, recommend
from .recipes import recipe
from .records import Candidate, EpochRecord, Measurement, TrialRecord
from .registry import (
    LogUniform,
    OptimizerSpec,
    Uniform,
    dense_state,
    get_spec,
    list_optimizers,
    register_optimizer,
)
from .report import Report
from .tune import load_report, tune

__all__ = [
    "Candidate",
    "EpochRecord",
    "LogUniform",
    "Measurement",
    "MuonWithAdamW",
    "OptimizerSpec",
    "Recommendation",
    "Report",
    "StudyConfig",
    "TrialRecord",
    "Uniform",
    "dense_state",
    "get_spec",
    "list_optimizers",
    "load_report",
    "prepare_data",
    "recipe",
    "recommend",
    "register_optimizer",
    "select_device",
    "tune",
]

__version__ = "0.1.0"
