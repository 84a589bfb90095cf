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
