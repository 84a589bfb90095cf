"""objective=: what the search minimizes or maximizes, prunes and halves by, and the policy weighs as loss."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch.nn import functional as F

import autoopt
from autoopt import Objective
from autoopt.objective import VAL_ACCURACY, VAL_LOSS, check_objective
from autoopt.optimizers.registry import resolve_specs
from autoopt.recommendation.configs import summarize_configs
from autoopt.study.stored import read_records

QUICK = dict(epochs=3, tracking=False, verbose=False, refine_lr=False)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def cross_entropy(predictions, targets):
    return F.cross_entropy(predictions, targets)


# --- the record ---------------------------------------------------------------------------------------

def test_the_built_in_objectives_and_their_directions():
    assert check_objective("val_loss") is VAL_LOSS and VAL_LOSS.direction == "minimize"
    assert check_objective("val_accuracy") is VAL_ACCURACY and VAL_ACCURACY.direction == "maximize"
    assert VAL_ACCURACY.score(0.9) == -0.9 and VAL_LOSS.score(0.9) == 0.9  # lower is better, in one place
    assert Objective(cross_entropy, direction="maximize").name == "cross_entropy"


@pytest.mark.parametrize("value, error, message", [
    ("accuracy", ValueError, r"unknown objective 'accuracy'; use 'val_loss' \(the default\), 'val_accuracy', or "
                             r"autoopt.Objective\(fn, direction="),
    (cross_entropy, TypeError, r"objective='cross_entropy' is a function without a direction; wrap it: "
                               r"autoopt.Objective\(fn, direction='maximize'\)"),
    (3, TypeError, r"objective must be 'val_loss' .* but got 3 \(int\)"),
])
def test_a_bad_objective_names_the_value_and_what_is_accepted(value, error, message):
    with pytest.raises(error, match=message):
        check_objective(value)
    with pytest.raises(error, match=message):
        autoopt.StudyConfig(objective=value)


def test_a_bad_objective_record_says_what_is_wrong():
    with pytest.raises(ValueError, match=r"direction='max' is not a direction; use 'minimize' or 'maximize'"):
        Objective(cross_entropy, direction="max")
    with pytest.raises(ValueError, match=r"needs a name for .*lambda.*pass name="):
        Objective(lambda p, t: 0.0, direction="maximize")
    with pytest.raises(ValueError, match=r"name 'val_loss' is taken .* pass objective='val_loss'"):
        Objective(cross_entropy, name="val_loss")
    with pytest.raises(ValueError, match=r"'val_accuracy' can only be maximized"):
        Objective(None, direction="minimize", name="val_accuracy")


# --- the search ---------------------------------------------------------------------------------------

def test_val_accuracy_is_maximized_reported_and_recommended_by(blobs):
    report = autoopt.tune(_model(), blobs, objective="val_accuracy", n_trials=5, policy="loss",
                          optimizers=["sgd", "adam"], **QUICK)
    assert report.study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = report.trials
    done = trials[trials["outcome"] == "completed"]
    assert (done["objective"] == done["final_val_accuracy"]).all()
    values = {t.number: t.value for t in report.study.trials if t.value is not None}
    assert all(math.isclose(values[n], a) for n, a in zip(done["number"], done["objective"]))
    configs = summarize_configs(trials, VAL_ACCURACY)
    best = configs[configs["ok"]].sort_values("val_accuracy", ascending=False).iloc[0]
    rec = report.recommendation
    assert rec.trial_numbers == best["trial_numbers"] and rec.objective == "val_accuracy"
    assert rec.objective_value == pytest.approx(best["val_accuracy"])
    assert "the best mean validation accuracy (maximized)" in rec.explanation
    assert "val_accuracy" in report.table().columns


def test_a_maximized_metric_of_your_own_picks_its_highest_value_not_the_lowest_loss(blobs):
    # maximizing the cross-entropy itself: the choice must be the trained configuration with the highest
    # loss, the opposite of what a loss-minimizing search picks
    objective = Objective(cross_entropy, direction="maximize", name="ce")
    report = autoopt.tune(_model(), blobs, objective=objective, n_trials=5, policy="loss",
                          optimizers=["sgd", "adam"], **QUICK)
    assert report.study.direction == optuna.study.StudyDirection.MAXIMIZE
    records = read_records(report.study, resolve_specs(["sgd", "adam"]))
    assert all("ce" in e.val_metrics for r in records for e in r.measurement.epochs)
    done = report.trials[report.trials["outcome"] == "completed"]
    # the metric on the whole validation set is the mean validation loss, up to float sums
    assert done["objective"].to_numpy() == pytest.approx(done["final_val_loss"].to_numpy(), rel=1e-4)
    configs = summarize_configs(report.trials, objective)
    ok = configs[configs["ok"]]
    assert len(ok) > 1
    assert report.recommendation.trial_numbers == ok.loc[ok["objective"].idxmax(), "trial_numbers"]
    assert report.recommendation.trial_numbers != ok.loc[ok["val_loss"].idxmin(), "trial_numbers"]
    assert "the best mean ce (maximized)" in report.recommendation.explanation
    # "the best run of each optimizer" (the charts, the MLflow tags) follows the objective too
    from autoopt.recommendation.table import best_trained_per_optimizer

    best = best_trained_per_optimizer(report.trials).set_index("optimizer")["number"]
    for optimizer, group in done.groupby("optimizer"):
        assert best[optimizer] == group.loc[group["objective"].idxmax(), "number"]


def test_successive_halving_keeps_the_runs_with_the_best_objective(blobs):
    # budget < 3 runs: the portfolio races by successive halving; maximizing the loss keeps the worst runs
    objective = Objective(cross_entropy, direction="maximize", name="ce")
    report = autoopt.tune(_model(), blobs, objective=objective, budget=2, **QUICK)
    records = [r for r in read_records(report.study, resolve_specs(None)) if r.purpose == "race"]
    at_rung = {r.number: r.measurement.epochs[0].val_metrics["ce"] for r in records
               if r.measurement.epochs and math.isfinite(r.measurement.epochs[0].val_loss)}
    assert len(at_rung) > 1
    survivors = [r.number for r in records if len(r.measurement.epochs) > 1]
    assert survivors and set(survivors) == {max(at_rung, key=at_rung.get)}


def test_divergence_is_still_a_result_under_another_objective():
    # a diverged trial reports a value worse than any trained one, in the objective's direction
    from autoopt.records import EpochRecord, Measurement
    from autoopt.study.stored import create_study
    from autoopt.study.trials import make_objective

    def run_trial(number, candidate, seed, purpose, should_stop):
        return Measurement("diverged", [EpochRecord(1, math.inf, math.inf, 0.9, 0.1, 0.1)], initial_val_loss=1.0)

    study = create_study(study_name=None, storage=None, sampler="random", pruner="none", seed=0, epochs=1,
                         objective=VAL_ACCURACY)
    study.optimize(make_objective(resolve_specs(["sgd"]), run_trial, 0, "full", objective=VAL_ACCURACY),
                   n_trials=1)
    assert study.trials[0].value == -1e12 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.trials[0].user_attrs["measurement"]["outcome"] == "diverged"


# --- errors before training ----------------------------------------------------------------------------

def test_val_accuracy_on_a_regression_task_is_an_error_before_training(regression):
    with pytest.raises(ValueError, match=r"objective='val_accuracy' needs a classification task, where accuracy is "
                                         r"measured, but this task is regression .*use objective='val_loss'"):
        autoopt.tune(torch.nn.Linear(5, 1), regression, objective="val_accuracy", **QUICK)


def test_a_metric_that_fails_or_returns_no_number_is_an_error_before_training(blobs):
    def broken(predictions, targets):
        raise KeyError("oops")

    with pytest.raises(ValueError, match=r"objective 'broken' could not be computed on a batch .*KeyError"):
        autoopt.tune(_model(), blobs, objective=Objective(broken), **QUICK)
    with pytest.raises(ValueError, match=r"objective 'vector' returned a tensor of shape \(8, 3\)"):
        autoopt.tune(_model(), blobs, objective=Objective(lambda p, t: p, name="vector"), **QUICK)


def test_a_stored_study_resumes_only_with_its_own_objective(blobs):
    settings = dict(QUICK, storage="sqlite:///objective.db", study_name="obj", n_trials=1, optimizers=["adam"])
    autoopt.tune(_model(), blobs, **settings)
    with pytest.raises(ValueError, match=r"study 'obj' was made to minimize 'val_loss', not to maximize "
                                         r"'val_accuracy'; run it with objective='val_loss'"):
        autoopt.tune(_model(), blobs, objective="val_accuracy", **settings)


def test_a_stored_study_is_shown_by_its_objective(blobs):
    settings = dict(QUICK, storage="sqlite:///shown.db", study_name="shown", n_trials=3, optimizers=["sgd", "adam"])
    report = autoopt.tune(_model(), blobs, objective="val_accuracy", policy="loss", **settings)
    shown = autoopt.load_report("shown", "sqlite:///shown.db", policy="loss")
    assert shown.objective.name == "val_accuracy"
    assert shown.recommendation.trial_numbers == report.recommendation.trial_numbers


def test_sync_tags_the_runs_its_own_objective_recommends(blobs):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from autoopt.cli.sync import sync_study

    # maximizing the cross-entropy: the recommended runs are the opposite of a loss search's
    objective = Objective(cross_entropy, direction="maximize", name="ce")
    uri = "sqlite:///mlflow.db"
    report = autoopt.tune(_model(), blobs, objective=objective, n_trials=4, policy="loss", optimizers=["sgd", "adam"],
                          storage="sqlite:///ce.db", study_name="ce", **{**QUICK, "tracking": True},
                          tracking_uri=uri)
    client = MlflowClient(uri)
    for run in client.search_runs([client.get_experiment_by_name("ce").experiment_id]):
        if run.data.tags.get("autoopt.recommended"):
            client.delete_tag(run.info.run_id, "autoopt.recommended")  # what sync must put back
    sync_study("ce", "sqlite:///ce.db")
    tagged = {int(r.data.tags["autoopt.trial"]) for r in client.search_runs(
        [client.get_experiment_by_name("ce").experiment_id], "tags.`autoopt.recommended` = 'true'")}
    assert tagged == set(report.recommendation.trial_numbers)
