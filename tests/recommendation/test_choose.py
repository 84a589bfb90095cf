from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from autoopt.recommendation.choose import recommend
from autoopt.recommendation.record import Recommendation

STATE = {"sgd": 0, "momentum": 400, "adam": 800}


def table(*rows: tuple) -> pd.DataFrame:
    """Rows of (optimizer, lr, seed, outcome, final loss, seconds to target)."""
    records = []
    for number, (opt, lr, seed, outcome, loss, seconds) in enumerate(rows):
        records.append({
            "number": number, "optimizer": opt, "family": opt, "purpose": "search", "seed": seed,
            "outcome": outcome, "config": f"{opt}(lr={lr})", "params": {"lr": lr},
            "final_val_loss": loss, "final_val_accuracy": math.nan,
            "epochs_to_target": math.nan if math.isnan(seconds) else seconds * 10,
            "seconds_to_target": seconds, "optimizer_state_bytes": STATE[opt],
            "peak_memory_bytes": 1000 + STATE[opt],
        })
    return pd.DataFrame(records)


def test_default_takes_the_lowest_loss_when_nothing_is_close():
    rec = recommend(table(("adam", 1e-3, 0, "completed", 0.50, 2.0), ("sgd", 0.1, 0, "completed", 0.60, 1.0)))
    assert (rec.optimizer, rec.params, rec.val_loss) == ("adam", {"lr": 1e-3}, 0.50)


def test_default_prefers_the_faster_of_two_within_tolerance():
    rec = recommend(table(("adam", 1e-3, 0, "completed", 0.500, 2.0), ("momentum", 0.1, 0, "completed", 0.504, 1.0)))
    assert rec.optimizer == "momentum"
    assert "adam" in rec.explanation and "-0.8%" in rec.explanation


def test_speed_is_counted_in_epochs_not_in_seconds_that_load_can_move():
    rows = table(("adam", 1e-3, 0, "completed", 0.500, 2.0), ("momentum", 0.1, 0, "completed", 0.502, 1.0))
    rows.loc[0, "epochs_to_target"], rows.loc[1, "epochs_to_target"] = 4, 6  # adam: fewer epochs, more seconds
    assert recommend(rows).optimizer == "adam"
    assert recommend(rows, policy="speed").optimizer == "adam"


def test_default_breaks_a_speed_tie_by_memory():
    rec = recommend(table(("adam", 1e-3, 0, "completed", 0.500, 1.0), ("sgd", 0.1, 0, "completed", 0.503, 1.0)))
    assert rec.optimizer == "sgd"


def test_seeds_are_averaged_and_a_config_that_diverged_on_any_seed_is_never_chosen():
    rec = recommend(table(
        ("adam", 1e-2, 0, "completed", 0.30, 1.0), ("adam", 1e-2, 1, "diverged", math.nan, math.nan),
        ("adam", 1e-3, 0, "completed", 0.40, 1.0), ("adam", 1e-3, 1, "completed", 0.44, 1.0),
    ))
    assert rec.params == {"lr": 1e-3} and rec.n_seeds == 2
    assert rec.val_loss == pytest.approx(0.42) and rec.val_loss_std == pytest.approx(0.02828, rel=1e-3)


def test_a_lucky_single_seed_loses_to_a_reevaluated_config():
    rec = recommend(table(
        ("sgd", 0.1, 0, "completed", 0.20, 1.0),  # never re-run: may be seed luck
        ("adam", 1e-3, 0, "completed", 0.25, 1.0), ("adam", 1e-3, 1, "completed", 0.26, 1.0),
    ))
    assert rec.optimizer == "adam"


def test_a_lowest_loss_between_worse_learning_rate_neighbours_is_passed_over_and_the_explanation_says_why():
    rec = recommend(table(
        ("adam", 0.0464, 0, "completed", 0.093, 1.0),  # the lowest single loss ...
        ("adam", 0.1, 0, "completed", 0.188, 1.0), ("adam", 0.0215, 0, "completed", 0.120, 1.0),  # ... its neighbours
        ("adam", 0.0277, 0, "completed", 0.107, 1.0),  # no neighbour trained
    ))
    assert rec.params == {"lr": 0.0277}
    lines = rec.explanation.splitlines()
    assert lines[2].startswith("Passed over: adam (lr=0.0464) has the best single validation loss, 0.093")
    # 0.093/2 + mean(0.093, 0.188, 0.120)/2, labelled, and the choice's own loss beside its score
    assert "its smoothed score (its own loss averaged with its neighbours', what the policy ranks) is 0.1133, " \
           "the choice's 0.107 (own loss 0.107)" in lines[2]


def test_no_passed_over_line_when_the_lowest_loss_is_chosen():
    rec = recommend(table(("adam", 1e-3, 0, "completed", 0.50, 2.0), ("sgd", 0.1, 0, "completed", 0.60, 1.0)))
    assert "Passed over" not in rec.explanation


def test_pruned_trials_are_not_candidates():
    rec = recommend(table(("sgd", 0.1, 0, "pruned", 0.1, 1.0), ("adam", 1e-3, 0, "completed", 0.5, 1.0)))
    assert rec.optimizer == "adam"


def test_memory_policy_takes_the_smallest_state_within_five_percent():
    rows = (("adam", 1e-3, 0, "completed", 0.50, 1.0), ("sgd", 0.1, 0, "completed", 0.52, 3.0),
            ("momentum", 0.1, 0, "completed", 0.51, 2.0))
    assert recommend(table(*rows), policy="memory").optimizer == "sgd"
    assert recommend(table(*rows), policy="loss").optimizer == "adam"


def test_speed_policy_takes_the_fastest_within_five_percent():
    rows = (("adam", 1e-3, 0, "completed", 0.50, 3.0), ("sgd", 0.1, 0, "completed", 0.52, 1.0),
            ("momentum", 0.1, 0, "completed", 0.60, 0.5))
    assert recommend(table(*rows), policy="speed").optimizer == "sgd"


def test_weights_trade_loss_against_memory():
    rows = (("adam", 1e-3, 0, "completed", 0.50, 1.0), ("sgd", 0.1, 0, "completed", 0.55, 1.0))
    assert recommend(table(*rows), policy={"loss": 1.0}).optimizer == "adam"
    assert recommend(table(*rows), policy={"loss": 1.0, "memory": 1.0}).optimizer == "sgd"


def test_nothing_completed_is_an_error():
    with pytest.raises(RuntimeError, match="no configuration trained cleanly"):
        recommend(table(("sgd", 10.0, 0, "diverged", math.nan, math.nan)))


@pytest.mark.parametrize("policy", ["fastest", {"loss": -1}, {"accuracy": 1}])
def test_unknown_policies_are_named(policy):
    with pytest.raises(ValueError, match="polic"):
        recommend(table(("adam", 1e-3, 0, "completed", 0.5, 1.0)), policy=policy)


def test_the_recommendation_builds_the_torch_optimizer():
    import torch

    rec = recommend(table(("momentum", 0.05, 0, "completed", 0.5, 1.0)))
    rec.params["momentum"] = 0.9
    opt = rec.build(torch.nn.Linear(2, 1).parameters())
    assert type(opt).__name__ == "SGD" and opt.param_groups[0]["lr"] == 0.05


def test_a_configuration_that_ends_above_its_starting_loss_is_recommended_only_when_nothing_learned():
    trials = table(("sgd", 1.0, 0, "completed", 3.68, 1.0), ("sgd", 1.0, 1, "completed", 3.70, 1.0),
                   ("adam", 1e-3, 0, "completed", 2.40, 1.0), ("momentum", 0.1, 0, "completed", 2.35, 1.0))
    trials["initial_val_loss"] = 2.3
    # nothing ended below 2.3 (a model that overfits, say): the least bad is still an answer, flagged
    rec = recommend(trials)
    assert (rec.optimizer, rec.val_loss) == ("momentum", 2.35)
    assert "no run ended below its starting validation loss" in rec.explanation
    trials.loc[2, "final_val_loss"] = 0.9
    rec = recommend(trials)
    assert rec.optimizer == "adam"  # the single-seed one, since nothing re-evaluated learned
    assert "starting validation loss" not in rec.explanation


def test_a_recommended_schedule_and_clipping_come_with_a_line_of_code_each():
    rec = Recommendation("sgd", {"lr": 0.1, "schedule": "linear", "warmup_fraction": 0.1, "clip_norm": 0.5})
    opt = rec.build(torch.nn.Linear(2, 1).parameters())
    assert type(opt) is torch.optim.SGD and rec.clip_norm == 0.5
    scheduler = rec.build_scheduler(opt, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 * (1 - 8 / 9))
    lines = rec.code().splitlines()
    assert lines[0] == "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)"
    assert lines[1].startswith("scheduler = recommendation.build_scheduler(optimizer, total_steps)")
    assert lines[2].startswith("torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)")
    assert Recommendation("sgd", {"lr": 0.1}).code().count("\n") == 0  # nothing to add by default


def _race(curves: dict[tuple[str, float], list[float]], purpose: str = "race") -> pd.DataFrame:
    """A race's trials: the winner (the first) trained to the end, the others cut at the first epoch."""
    rows = table(*[(opt, lr, 0, "completed", curve[-1], 1.0) for (opt, lr), curve in curves.items()])
    rows["purpose"] = purpose
    rows["val_curve"] = list(curves.values())
    rows.loc[1:, "outcome"] = "eliminated"
    return rows


def test_a_race_winner_whose_loss_turned_up_is_recommended_one_rate_step_lower_and_says_so():
    """An overfitting race winner (the dev fold's dropout MLP: the fastest after one epoch, its loss
    rising from epoch 3): the same optimizer one line-search step (10^(1/3)) lower, said in the
    explanation, with the trained run's losses."""
    turned_up = [1.0, 0.70, 0.60, 0.62, 0.75, 0.90]
    rec = recommend(_race({("adam", 1e-2): turned_up, ("sgd", 0.1): [1.1]}))
    assert rec.optimizer == "adam" and rec.params["lr"] == pytest.approx(1e-2 / 10 ** (1 / 3))
    assert rec.val_loss == 0.90 and rec.trial_numbers == [0]
    assert "one learning-rate step lower (0.01 -> 0.00464)" in rec.explanation
    assert "lowest 0.6 at epoch 3" in rec.explanation and "0.00464 was not trained" in rec.explanation
    assert "lr=0.00464" in rec.code()
    # the lower rate overfits later: a fresh seed of it is expected between the run's lowest loss and where
    # it ended, not at the end (its last 3 epochs' mean, 0.7833, would be the higher rate's forecast)
    assert rec.expected_val_loss == pytest.approx((0.60 + (0.62 + 0.75 + 0.90) / 3) / 2)
    assert (f"about {rec.expected_val_loss:.4g} expected on a fresh seed (halfway between its run's lowest loss "
            "and its last 3 epochs' mean: the lower rate overfits later)") in rec.explanation


@pytest.mark.parametrize("case", ["still falling", "not a race", "two seeds", "below the range", "another full run"])
def test_a_winner_is_shaded_only_when_a_race_chose_it_on_one_seed_and_its_loss_turned_up(case):
    curve = [1.0, 0.70, 0.60, 0.62, 0.75, 0.90]
    lr = {"below the range": 1.5e-5}.get(case, 1e-2)  # adam's registered range starts at 1e-5
    rows = _race({("adam", lr): [1.0, 0.7, 0.6, 0.55, 0.52, 0.5] if case == "still falling" else curve,
                  ("sgd", 0.1): [1.1]}, purpose="search" if case == "not a race" else "race")
    if case == "two seeds":
        rows = pd.concat([rows, rows.iloc[[0]].assign(number=2, seed=1)], ignore_index=True)
    if case == "another full run":  # a portfolio entry trained to the end after the race
        rows.loc[1, ["outcome", "purpose", "final_val_loss"]] = ["completed", "portfolio", 1.0]
    rec = recommend(rows)
    assert rec.optimizer == "adam" and rec.params["lr"] == lr and "step lower" not in rec.explanation
