"""Fused trials inside a study: trials queued together train in one pass, each still one Optuna trial."""

from __future__ import annotations

import pytest
from conftest import mlp
from torch import nn

import autoopt
from autoopt.search.race import race_plan
from autoopt.study.trials import GROUP_SIZE_ATTR
from autoopt.training.fused import eligibility as fused_eligibility

FAST = dict(batch_size=32, tracking=False, verbose=False)


def together(report) -> dict[int, int]:
    """Trial number -> how many trials it trained with (absent: alone)."""
    return {t.number: t.user_attrs[GROUP_SIZE_ATTR] for t in report.study.trials if GROUP_SIZE_ATTR in t.user_attrs}


def same_trials(fused, alone) -> None:
    columns = ["number", "purpose", "optimizer", "outcome", "epochs"]
    assert fused.trials[columns].to_dict("records") == alone.trials[columns].to_dict("records")
    assert list(fused.trials["lr"]) == pytest.approx(list(alone.trials["lr"]), rel=1e-12)
    assert list(fused.trials["final_val_loss"]) == pytest.approx(list(alone.trials["final_val_loss"]), rel=1e-4)


def test_the_portfolio_entries_queued_together_train_in_one_pass_as_they_would_one_by_one(blobs):
    common = dict(optimizers=["adam", "momentum", "sgd"], epochs=3, budget=3, **FAST)
    fused = autoopt.tune(mlp(4, 3), blobs, fused=True, **common)
    alone = autoopt.tune(mlp(4, 3), blobs, fused=False, **common)
    assert len(fused.trials) == 3 and set(fused.trials["purpose"]) == {"portfolio"}
    assert together(fused) == {0: 3, 1: 3, 2: 3} and together(alone) == {}
    assert [t.state.name for t in fused.study.trials] == ["COMPLETE"] * 3  # each one trial with its own value
    assert [t.value for t in fused.study.trials] == list(fused.trials["final_val_loss"])
    same_trials(fused, alone)
    assert fused.recommendation.optimizer == alone.recommendation.optimizer
    assert fused.cost == alone.cost == 3


def test_a_small_budget_races_the_portfolio_in_one_fused_pass_with_the_same_rungs(blobs):
    common = dict(epochs=9, budget=2.5, **FAST)
    fused = autoopt.tune(mlp(4, 3), blobs, fused=True, **common)
    alone = autoopt.tune(mlp(4, 3), blobs, fused=False, **common)
    n = len(fused.trials)
    sizes, rungs, _ = race_plan(n, 9, rate=3)
    assert together(fused) == {i: n for i in range(n)}
    assert sorted(fused.trials["epochs"].value_counts().items()) == sorted(
        (rung, alive - after) for rung, alive, after in zip(rungs, sizes, [*sizes[1:], 0]))
    same_trials(fused, alone)


def test_by_default_a_study_on_the_cpu_trains_one_by_one(blobs):
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "momentum", "sgd"], epochs=2, budget=3, **FAST)
    assert len(report.trials) == 3 and together(report) == {}


def test_where_fusing_is_the_default_a_model_that_cannot_be_fused_trains_one_by_one_and_says_why(
        blobs, capsys, monkeypatch):
    monkeypatch.setattr(fused_eligibility, "DEFAULT_DEVICES", frozenset({"cpu"}))  # as on a GPU
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    report = autoopt.tune(model, blobs, optimizers=["adam", "sgd"], epochs=1, budget=2, batch_size=32,
                          tracking=False, verbose=True)
    assert together(report) == {}
    lines = [line for line in capsys.readouterr().err.splitlines() if "not fused" in line]
    assert len(lines) == 1 and "random" in lines[0]


def test_fused_true_where_fusing_cannot_apply_is_an_error_before_training(blobs):
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"fused=True, but .* random"):
        autoopt.tune(model, blobs, optimizers=["adam", "sgd"], epochs=1, budget=2, fused=True, **FAST)


def test_fused_true_with_worker_processes_is_an_error_naming_both():
    from autoopt.config import StudyConfig

    with pytest.raises(ValueError, match=r"fused=True .* n_jobs=1 \(got n_jobs=2\)"):
        StudyConfig(fused=True, n_jobs=2)


def test_a_search_space_with_training_settings_cannot_be_fused(blobs):
    with pytest.raises(ValueError, match=r"fused=True, but .* training settings \(schedule\)"):
        autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd"], epochs=2, budget=2, fused=True,
                     space={"*": {"schedule": ["constant", "cosine"]}}, **FAST)
