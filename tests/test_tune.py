"""End to end through ``autoopt.tune`` on tiny problems (real Optuna, real training)."""

from __future__ import annotations

import uuid

import numpy as np
import optuna
import pytest
import torch
from conftest import mlp

import autoopt
from autoopt.optimizers import registry
from autoopt.optimizers.registry import resolve_specs
from autoopt.optimizers.spec import LogUniform, OptimizerSpec, dense_state
from autoopt.search.portfolio import portfolio_candidates

FAST = dict(epochs=2, batch_size=32, tracking=False, verbose=False)


def test_tune_recommends_a_buildable_optimizer_and_keeps_the_users_weights(blobs):
    model = mlp(4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = autoopt.tune(model, blobs, optimizers=["adam", "sgd"], n_trials=5, reevaluate_top=1, **FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    rec = report.recommendation
    assert rec.optimizer in ("adam", "sgd") and rec.n_seeds == 2 and rec.val_loss > 0
    assert "Chosen by policy 'default'" in rec.explanation
    optimizer = rec.build(model.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(rec.params["lr"])
    trials = report.trials
    assert {"portfolio", "reevaluation"} <= set(trials["purpose"]) <= {"portfolio", "refine", "search", "reevaluation"}
    assert (trials["purpose"] != "reevaluation").sum() == 5  # the search budget; re-runs come on top
    first = portfolio_candidates(resolve_specs(["adam", "sgd"]))[0]
    assert (trials.iloc[0]["optimizer"], trials.iloc[0]["lr"]) == (first.optimizer, first.lr)  # the portfolio leads
    assert sorted(report.by_optimizer["optimizer"]) == sorted(set(trials.loc[trials.outcome == "completed", "optimizer"]))
    assert trials["optimizer_state_bytes"].ge(0).all() and trials["seconds"].gt(0).all()


@pytest.mark.parametrize("budget", [None, 0.5, 1, 2, 3, 3.5])
def test_any_budget_gives_a_recommendation_within_it(blobs, budget):
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd", "momentum"], budget=budget,
                          **{**FAST, "epochs": 4})
    limit = budget or autoopt.config.DEFAULT_BUDGET
    assert report.recommendation.optimizer in ("adam", "sgd", "momentum")
    if limit >= 2:  # a trial starts only while a whole run fits, so less than one run is left unspent
        assert limit - 1 < report.cost <= limit
    else:  # below two runs: a race whose winner is trained to the end, a quarter run more at most
        assert 1 < report.cost <= max(limit, 1.25) and (report.trials["outcome"] == "completed").sum() == 1
    assert report.trials["epochs"].sum() == report.cost * 4


@pytest.fixture
def huge_sgd(monkeypatch):
    """An SGD whose whole learning-rate range diverges."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_optimizer(OptimizerSpec("huge-sgd", "sgd", torch.optim.SGD, (LogUniform("lr", 1e3, 1e4),),
                                              {"lr": 5e3}, dense_state(0)))


def test_a_diverging_optimizer_is_a_result_and_the_study_survives(regression, huge_sgd):
    report = autoopt.tune(mlp(5, 1), regression, optimizers=["huge-sgd", "adam"], n_trials=4, **FAST)
    diverged = report.trials[report.trials["optimizer"] == "huge-sgd"]
    assert len(diverged) >= 1 and set(diverged["outcome"]) == {"diverged"}
    assert report.recommendation.optimizer == "adam"
    assert "diverged: huge-sgd" in report.recommendation.explanation


def test_memory_budget_skips_what_cannot_fit(blobs):
    model = mlp(4, 3)
    param_bytes = 4 * sum(p.numel() for p in model.parameters())
    report = autoopt.tune(model, blobs, optimizers=["sgd", "adam"], n_trials=2,
                          memory_budget=2 * param_bytes + 100, **FAST)
    skipped = report.trials[report.trials["outcome"] == "infeasible"]
    assert list(skipped["optimizer"]) == ["adam"] and report.recommendation.optimizer == "sgd"


class CountsTraining(torch.nn.Module):
    """Counts forward passes in training mode: bad input must be caught before the first one."""

    def __init__(self, inputs: int = 4, outputs: int = 3) -> None:
        super().__init__()
        self.fc, self.training_calls = torch.nn.Linear(inputs, outputs), 0

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.training_calls += 1
        return self.fc(x)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(n_trials=0), "n_trials must be a positive integer but got 0"),
        (dict(epochs=-1), "epochs must be a positive integer but got -1"),
        (dict(timeout=0), "timeout must be a positive number"),
        (dict(optimizers=["adam", "adamz"]), r"unknown optimizer\(s\) \['adamz'\]"),
        (dict(memory_budget=10), r"memory_budget=10 bytes is below every candidate's need.*sgd"),
        (dict(memory_budget="lots"), "is not a size"),
        (dict(policy="cheapest"), "unknown policy 'cheapest'"),
        (dict(sampler="grid"), "unknown sampler 'grid'"),
    ],
)
def test_bad_settings_are_named_before_any_training(blobs, settings, message):
    model = CountsTraining()
    with pytest.raises(ValueError, match=message):
        autoopt.tune(model, blobs, **{**FAST, **settings})
    assert model.training_calls == 0


def test_an_unknown_setting_lists_the_valid_ones(blobs):
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['trials'\].*'n_trials'"):
        autoopt.tune(mlp(4, 3), blobs, trials=3)


def test_a_model_without_trainable_parameters_is_named(blobs):
    model = mlp(4, 3).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        autoopt.tune(model, blobs, **FAST)


def test_a_model_whose_output_does_not_fit_is_named_before_training(blobs):
    model = CountsTraining(outputs=2)
    with pytest.raises(ValueError, match="3 classes"):
        autoopt.tune(model, blobs, **FAST)
    assert model.training_calls == 0


def test_a_study_resumes_from_its_storage_with_a_total_budget(blobs, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = dict(optimizers=["adam", "sgd"], storage=storage, study_name="resume", reevaluate_top=0, **FAST)
    first = autoopt.tune(mlp(4, 3), blobs, n_trials=3, **common)
    second = autoopt.tune(mlp(4, 3), blobs, n_trials=5, **common)
    assert len(first.trials) == 3 and len(second.trials) == 5
    assert second.trials["number"].tolist()[:3] == first.trials["number"].tolist()
    assert second.trials["final_val_loss"].tolist()[:3] == first.trials["final_val_loss"].tolist()
    rebuilt = autoopt.load_report("resume", storage)
    assert rebuilt.trials["final_val_loss"].tolist() == second.trials["final_val_loss"].tolist()


@pytest.mark.parametrize("parallel", ["processes", "threads"])
def test_parallel_trials_each_land_once(blobs, parallel, tmp_path, monkeypatch):
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the workers' scratch journal goes
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd"], n_trials=6, n_jobs=2,
                          parallel=parallel, reevaluate_top=1, seeds=2, **FAST)
    numbers = report.trials["number"].tolist()
    assert len(numbers) == len(set(numbers)) == 7
    assert (report.trials["purpose"] == "reevaluation").sum() == 1
    assert list((tmp_path / "tmp").glob("autoopt-*")) == []  # the scratch journal is removed; the report keeps a copy
    assert len(report.study.trials) == 7


POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_available() -> bool:
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(POSTGRES).connect():
            return True
    except Exception:
        return False


@pytest.mark.skipif(not _postgres_available(), reason="no PostgreSQL server on 127.0.0.1:5432 (or no psycopg)")
def test_an_rdb_storage_shared_by_workers_holds_every_trial(blobs):
    name = f"autoopt-test-{uuid.uuid4().hex[:8]}"
    common = dict(optimizers=["adam", "sgd"], storage=POSTGRES, study_name=name, reevaluate_top=0, **FAST)
    try:
        autoopt.tune(mlp(4, 3), blobs, n_trials=2, **common)  # one worker
        report = autoopt.tune(mlp(4, 3), blobs, n_trials=4, **common)  # another joins the same study
        assert len(report.trials) == 4
        assert len(optuna.load_study(study_name=name, storage=POSTGRES).trials) == 4
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)


def test_data_intake_and_task_inference_run_on_the_trials_threads(blobs, monkeypatch):
    import importlib

    tune_module = importlib.import_module("autoopt.tune")
    seen = []
    original = tune_module.infer_task

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(tune_module, "infer_task", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd"], n_trials=1, reevaluate_top=0, **FAST)
        assert seen == [1]  # a small model's trials train on one thread; its first forward passes too
        assert torch.get_num_threads() == 2  # and the caller's setting is back
    finally:
        torch.set_num_threads(before)


def test_identical_configurations_on_one_seed_train_once(blobs):
    """A space that caps AdamW's learning rate below both portfolio entries (0.1 and 0.046) made them
    one configuration, trained twice on one seed and reported as "± 0 over 2 seed(s)"."""
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adamw", "sgd"], space={"adamw": {"lr": [1e-4, 1e-2]}},
                          n_trials=4, seeds=1, refine_lr=False, **FAST)
    trained = report.trials[report.trials["number"].notna()]
    pairs = list(zip(trained["config"], trained["seed"]))
    assert len(pairs) == len(set(pairs)), trained[["number", "optimizer", "lr", "purpose", "seed"]]
    assert "± 0 over 2" not in report.recommendation.explanation


def test_every_trial_carries_a_one_line_summary_beside_its_full_record(blobs):
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd"], n_trials=2, **{**FAST, "epochs": 2})
    for trial in report.study.trials:
        summary, full = trial.user_attrs["summary"], trial.user_attrs["measurement"]
        assert summary.startswith(f"{full['outcome']} after {len(full['epochs'])} epochs")
        assert f"{full['epochs'][-1]['val_loss']:.4g}" in summary and "\n" not in summary and len(summary) < 200


def test_a_one_run_study_of_a_model_that_overfits_shades_the_race_winner_a_rate_step_lower():
    """Pure-noise targets: every rate's validation loss rises once the model starts fitting the noise,
    the fastest's soonest. The race's winner, trained to the end, turned up; the recommendation is its
    optimizer one line-search step lower, said in the explanation (``recommendation/shading.py``)."""
    from autoopt.recommendation.shading import shade_lr

    rng = np.random.default_rng(0)
    data = (rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 1))
    report = autoopt.tune(model, data, budget=1, epochs=9, batch_size=16, tracking=False, verbose=False)
    full = report.trials[report.trials["outcome"] == "completed"]
    assert len(full) == 1 and full["purpose"].iloc[0] == "race"  # one run to the end, a race's winner
    winner = full.iloc[0]
    assert shade_lr(winner["val_curve"])
    rec = report.recommendation
    assert rec.optimizer == winner["optimizer"] and rec.trial_numbers == [int(winner["number"])]
    assert rec.params["lr"] == pytest.approx(winner["lr"] / 10 ** (1 / 3), rel=1e-5)
    assert rec.val_loss == pytest.approx(winner["final_val_loss"])  # the trained run's, as said
    assert "one learning-rate step lower" in rec.explanation and "was not trained" in rec.explanation


def test_a_candidate_the_budget_never_reached_is_named_and_a_stored_study_still_names_it(blobs, tmp_path):
    # 3 runs of budget train the portfolio's first three entries (adamw, momentum, adam): sgd is never tried
    storage = f"sqlite:///{tmp_path / 'small.db'}"
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd", "adamw", "momentum"], budget=3,
                          study_name="small", storage=storage, **FAST)
    assert "sgd" not in set(report.trials["optimizer"])
    line = "  not tried: sgd (the budget ran out before them; a larger budget= or n_trials= tries them)"
    assert line in report.recommendation.explanation.splitlines()
    assert line in autoopt.load_report("small", storage).recommendation.explanation.splitlines()
