"""The search strategy: successive halving at small budgets, the portfolio, the line search, resume."""

from __future__ import annotations

import math

import pytest
from conftest import mlp, trained_mlp

import autoopt
from autoopt.objective import VAL_LOSS
from autoopt.optimizers.registry import get_spec, resolve_specs
from autoopt.records import EpochRecord
from autoopt.search.line_search import LR_STEP
from autoopt.search.portfolio import load_portfolio, portfolio_candidates
from autoopt.search.race import Rendezvous, race_plan

FAST = dict(batch_size=32, tracking=False, verbose=False)


@pytest.mark.parametrize("n,epochs", [(2, 5), (9, 18), (13, 9), (27, 40)])
def test_a_race_plan_keeps_a_third_and_ends_with_one_full_run(n, epochs):
    sizes, rungs, total = race_plan(n, epochs, rate=3)
    assert sizes[0] == n and sizes[-1] == 1 and rungs[-1] == epochs
    assert all(a > b for a, b in zip(sizes, sizes[1:])) and all(a < b for a, b in zip(rungs, rungs[1:]))
    assert total == sum(s * (r - p) for s, r, p in zip(sizes, rungs, [0, *rungs]))


def test_at_a_rung_only_the_best_go_on_and_elsewhere_nobody_stops():
    stop = Rendezvous({1: 1}).group_stop(VAL_LOSS)
    records = {i: EpochRecord(1, 0.0, loss, None, 0.1, 0.1) for i, loss in {0: 0.5, 1: 0.2, 2: math.nan}.items()}
    assert stop(1, records) == {0, 2}  # a member whose loss is not a number is last
    assert stop(2, records) == set()


def test_a_small_budget_races_the_portfolio_by_successive_halving(blobs):
    report = autoopt.tune(mlp(4, 3), blobs, epochs=9, budget=2.5, **FAST)
    trials = report.trials
    assert set(trials["purpose"]) == {"race"} and report.cost <= 2.5
    assert (trials["outcome"] == "completed").sum() == 1
    n = len(trials)
    sizes, rungs, total = race_plan(n, 9, rate=3)
    assert total <= 2.5 * 9 < race_plan(n + 1, 9, rate=3)[2]  # as many entries as the budget affords
    assert sorted(trials["epochs"].value_counts().items()) == sorted(
        (rung, alive - after) for rung, alive, after in zip(rungs, sizes, [*sizes[1:], 0]))
    first = portfolio_candidates(resolve_specs(None))[: n]
    assert list(zip(trials["optimizer"], trials["lr"])) == [(c.optimizer, c.lr) for c in first]


@pytest.mark.parametrize("budget,room,rate", [(1, 1.25, 3), (1.5, 1.5, 2)])
def test_a_budget_under_two_runs_races_from_one_epoch_within_its_room(blobs, budget, room, rate):
    """One run spends at most a quarter run more; from 1.5 runs the best half go on at each rung."""
    report = autoopt.tune(mlp(4, 3), blobs, epochs=9, budget=budget, **FAST)
    trials = report.trials
    n = len(trials)
    sizes, rungs, total = race_plan(n, 9, first_rung=1, rate=rate)
    assert rungs[0] == 1 and n > 1 and set(trials["purpose"]) == {"race"}
    assert total <= room * 9 < race_plan(n + 1, 9, first_rung=1, rate=rate)[2]
    assert report.cost == pytest.approx(total / 9) and (trials["outcome"] == "completed").sum() == 1
    assert "look already trained" not in report.recommendation.explanation  # a fresh model races the general list
    assert sorted(trials["epochs"].value_counts().items()) == sorted(
        (rung, alive - after) for rung, alive, after in zip(rungs, sizes, [*sizes[1:], 0]) if alive > after)


def test_a_pretrained_model_races_the_list_learned_on_fine_tuning_problems_below_two_runs(blobs):
    model = trained_mlp(blobs)  # pretrained: its matrices have spectral spikes (training/initialization.py)
    specs = resolve_specs(None)
    fine_tuning = portfolio_candidates(specs, "pretrained_entries")
    assert fine_tuning[:3] != portfolio_candidates(specs)[:3]
    report = autoopt.tune(model, blobs, epochs=9, budget=1, **FAST)
    raced = list(zip(report.trials["optimizer"], report.trials["lr"]))
    assert len(raced) > 1 and raced == [(c.optimizer, c.lr) for c in fine_tuning[:len(raced)]]
    assert {t.user_attrs["race_list"] for t in report.study.trials} == {"pretrained_entries"}
    assert "weights look already trained" in report.recommendation.explanation
    report = autoopt.tune(model, blobs, epochs=9, budget=2.5, **FAST)  # halving: the general list
    raced = list(zip(report.trials["optimizer"], report.trials["lr"]))
    assert raced == [(c.optimizer, c.lr) for c in portfolio_candidates(specs)[:len(raced)]]


def test_a_larger_budget_walks_the_learning_rate_of_the_best_entry(blobs):
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "momentum"], epochs=3, budget=6, refine_after=2, **FAST)
    trials = report.trials
    assert list(trials["purpose"][:2]) == ["portfolio", "portfolio"] and "refine" in set(trials["purpose"])
    portfolio = trials[trials["purpose"] == "portfolio"].iloc[:2]
    best = portfolio.loc[portfolio["final_val_loss"].idxmin()]
    step = trials[trials["purpose"] == "refine"].iloc[0]
    assert step["optimizer"] == best["optimizer"]
    assert math.isclose(step["lr"], best["lr"] * LR_STEP, rel_tol=1e-9)  # a third of a decade up first
    assert report.cost <= 6


def test_a_budget_of_five_to_nine_runs_keeps_its_last_two_for_the_line_search(blobs):
    report = autoopt.tune(mlp(4, 3), blobs, epochs=3, budget=5, **FAST)
    purposes = list(report.trials["purpose"])
    assert purposes[:3] == ["portfolio"] * 3 and set(purposes[3:]) == {"refine"} and len(purposes) == 5
    best = report.trials.iloc[:3].loc[report.trials.iloc[:3]["final_val_loss"].idxmin()]
    assert report.trials.iloc[3]["optimizer"] == best["optimizer"]  # the steps walk the best entry's rate
    assert set(autoopt.tune(mlp(4, 3), blobs, epochs=3, budget=4, **FAST).trials["purpose"]) == {"portfolio"}


def test_re_running_a_finished_study_trains_nothing(blobs, tmp_path):
    common = dict(epochs=3, budget=4, storage=f"sqlite:///{tmp_path}/s.db", study_name="again", **FAST)
    first = autoopt.tune(mlp(4, 3), blobs, **common)
    second = autoopt.tune(mlp(4, 3), blobs, **common)
    assert len(second.trials) == len(first.trials) and second.cost == first.cost


def test_the_shipped_portfolio_is_made_by_its_script_and_fits_the_registry():
    portfolio = load_portfolio()
    assert portfolio["made_by"] == "benchmarks/make_portfolio.py"
    assert portfolio["corpus"]["fold"] == "development" and portfolio["entries"]
    for entry in portfolio["entries"]:
        dim = next(d for d in get_spec(entry["optimizer"]).space if d.name == "lr")
        assert dim.low <= entry["lr"] <= dim.high * (1 + 1e-9)


def test_candidates_the_portfolio_does_not_name_come_last_at_their_defaults():
    specs = resolve_specs(["sgd", "adam", "adadelta"])
    candidates = portfolio_candidates(specs)
    named = [e["optimizer"] for e in load_portfolio()["entries"] if e["optimizer"] in {"sgd", "adam", "adadelta"}]
    assert [c.optimizer for c in candidates[: len(named)]] == named
    rest = candidates[len(named):]
    assert all(c.params == get_spec(c.optimizer).defaults for c in rest)
    assert {c.optimizer for c in candidates} == {"sgd", "adam", "adadelta"}
