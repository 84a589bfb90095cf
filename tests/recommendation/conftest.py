"""A trials table built from validation curves, as the recommendation reads it: shared by the tests of
the choice's noise (``test_shrinkage``) and of what a fresh seed is expected to reach (``test_expected_loss``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import pytest


def _table(*rows: tuple[str, float, list[float]]) -> pd.DataFrame:
    """Rows of (optimizer, lr, validation curve), one seed each, trained to the end."""
    return pd.DataFrame([{
        "number": n, "optimizer": opt, "family": opt, "purpose": "search", "seed": 0, "outcome": "completed",
        "config": f"{opt}(lr={lr})", "params": {"lr": lr}, "val_curve": curve, "initial_val_loss": 1.1,
        "final_val_loss": curve[-1], "final_val_accuracy": math.nan, "epochs_to_target": 5.0,
        "seconds_to_target": 1.0, "optimizer_state_bytes": 0, "peak_memory_bytes": 1000,
    } for n, (opt, lr, curve) in enumerate(rows)])


@pytest.fixture
def curves_table() -> Callable[..., pd.DataFrame]:
    """``curves_table(("adam", 1e-3, [1.0, 0.6, 0.4]), ...)``: one seed per row, trained to the end."""
    return _table
