"""What a Report says about the choice: its table names the configurations the explanation names, and
where the study is stored the answer is too (optuna-dashboard reads the study's user attributes)."""

from __future__ import annotations

import math

import optuna
from conftest import mlp

import autoopt
from autoopt.recommendation.choose import recommend
from autoopt.recommendation.table import trials_table
from autoopt.records import Candidate, EpochRecord, Measurement, TrialRecord
from autoopt.report import Report
from autoopt.study.stored import RECOMMENDATION_ATTR


def _trial(number, optimizer, lr, curve, seed=0, outcome="completed"):
    epochs = [EpochRecord(i + 1, v, v, 0.5, 0.1, 0.1 * (i + 1)) for i, v in enumerate(curve)]
    return TrialRecord(number, Candidate(optimizer, {"lr": lr}), optimizer, seed, "search",
                       Measurement(outcome, epochs, steps=10, seconds=0.3, optimizer_state_bytes=8, peak_memory_bytes=9))


def test_the_table_names_what_the_explanation_names_the_choice_marked():
    """adamw's lowest single run (0.20, seed 0) has a mean of 0.30 over two seeds: the explanation
    names adamw's other configuration (0.25, one seed), and so does the table."""
    trials = trials_table([
        _trial(0, "adam", 1e-3, [1.0, 0.5, 0.1]), _trial(1, "adam", 1e-3, [1.0, 0.5, 0.12], seed=1),
        _trial(2, "adamw", 1e-2, [1.0, 0.5, 0.2]), _trial(3, "adamw", 1e-2, [1.0, 0.5, 0.4], seed=1),
        _trial(4, "adamw", 3e-3, [1.0, 0.5, 0.25]), _trial(5, "sgd", 0.1, [1.0, 2.0], outcome="diverged"),
    ])
    report = Report(recommend(trials), trials, study=None)
    table = report.table().set_index("optimizer")
    assert list(table.index) == ["adam", "adamw", "sgd"]
    assert table.loc["adam", ""] == "★" and table.loc["adam", "seeds"] == 2 and table.loc["adam", "val_loss"] == "0.11"
    assert table.loc["adamw", "lr"] == "0.003" and table.loc["adamw", "lrs_tried"] == 2
    assert "adamw      0.25 " in report.recommendation.explanation  # the same configuration
    assert table.loc["sgd", "status"] == "diverged"
    assert report.mlflow_link is None and "MLflow" not in str(report)  # nothing recorded


def test_a_stored_study_holds_the_recommendation_where_optuna_dashboard_shows_it(blobs, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam"], n_trials=3, seeds=1, epochs=2,
                          storage=storage, study_name="shown", tracking=False, verbose=False)
    attrs = optuna.load_study(study_name="shown", storage=storage).user_attrs
    number = min(report.recommendation.trial_numbers)
    assert attrs[RECOMMENDATION_ATTR] == f"trial {number}: {report.recommendation.explanation}"
    assert math.isfinite(report.recommendation.val_loss)
