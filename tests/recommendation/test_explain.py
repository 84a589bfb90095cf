"""The explanation's words: every number labelled, the evidence (seeds, learning rates tried) stated,
the target defined, and gaps that read sensibly at any size (issues 20 and 22)."""

from __future__ import annotations

import math

import pandas as pd

from autoopt.recommendation.choose import recommend
from autoopt.recommendation.explain import format_gap, learning_rates_tried

STATE = {"sgd": 0, "momentum": 400, "adam": 800, "adamw": 800}


def table(*rows: tuple, target: float = math.nan) -> pd.DataFrame:
    """Rows of (optimizer, lr, seed, outcome, final loss, seconds to target)."""
    records = []
    for number, (opt, lr, seed, outcome, loss, seconds) in enumerate(rows):
        records.append({
            "number": number, "optimizer": opt, "family": opt, "purpose": "search", "seed": seed,
            "outcome": outcome, "config": f"{opt}(lr={lr})", "params": {"lr": lr}, "lr": lr, "epochs": 10,
            "final_val_loss": loss, "final_val_accuracy": math.nan,
            "epochs_to_target": math.nan if math.isnan(seconds) else seconds * 10,
            "seconds_to_target": seconds, "optimizer_state_bytes": STATE[opt], "peak_memory_bytes": 1000 + STATE[opt],
        })
    frame = pd.DataFrame(records)
    frame.attrs["target_loss"] = target
    return frame


def test_one_seed_says_so_and_several_give_mean_and_spread():
    one = recommend(table(("adam", 1e-3, 0, "completed", 0.50, 2.0), ("sgd", 0.1, 0, "completed", 0.60, 1.0)))
    first = one.explanation.splitlines()[0]
    assert "validation loss 0.5 on one seed (no spread measured" in first and "±" not in first
    two = recommend(table(("adam", 1e-3, 0, "completed", 0.40, 1.0), ("adam", 1e-3, 1, "completed", 0.44, 1.0),
                          ("sgd", 0.1, 0, "completed", 0.60, 1.0)))
    assert "validation loss 0.42 ± 0.02828 (mean ± std over 2 seeds)" in two.explanation.splitlines()[0]


def test_each_other_optimizer_says_how_many_learning_rates_were_tried():
    rec = recommend(table(("adam", 1e-3, 0, "completed", 0.05, 1.0),
                          ("sgd", 0.1, 0, "completed", 0.64, math.nan),
                          ("momentum", 0.1, 0, "completed", 0.30, math.nan),
                          ("momentum", 0.01, 0, "completed", 0.35, math.nan),
                          ("momentum", 1.0, 0, "diverged", math.nan, math.nan)))
    lines = {line.split()[0]: line for line in rec.explanation.splitlines() if line.startswith("  ")}
    assert "(lr=0.1; 1 learning rate tried)" in lines["sgd"]  # "+1180%" after one run at one rate reads as such
    assert "(lr=0.1; best of 3 learning rates tried)" in lines["momentum"]  # the diverged rate was tried too
    assert "(12.8x)" in lines["sgd"] and "(+500.0%)" in lines["momentum"]  # 10x and more: a factor


def test_gaps_read_sensibly_near_the_choice_far_from_it_and_when_it_is_near_zero():
    assert format_gap(0.504, 0.5) == "+0.8%" and format_gap(0.496, 0.5) == "-0.8%"
    assert format_gap(1.664, 0.1071) == "15.5x"
    assert format_gap(0.183, 1e-9) == "+0.183 (the choice is near 0)"  # not "+18300000000.0%"
    assert format_gap(0.2, 0.0) == "+0.2 (the choice is near 0)" and format_gap(math.nan, 1.0) == "n/a"
    rec = recommend(table(("adam", 1e-3, 0, "completed", 1e-9, 1.0), ("sgd", 0.1, 0, "completed", 0.183, 1.0)))
    assert "0.183 (+0.183 (the choice is near 0))" in rec.explanation and "%" not in rec.explanation.split("\n")[2]


def test_the_target_is_defined_with_its_value():
    rec = recommend(table(("adam", 1e-3, 0, "completed", 0.5, 2.0), ("sgd", 0.1, 0, "completed", 0.6, 1.0),
                          target=0.51))
    last = rec.explanation.splitlines()[-1]
    assert last.startswith("Target: a validation loss within 2% of the best final one of any run (here 0.51)")
    assert "reached the target in 20 epochs / 2.00 s" in rec.explanation


def test_learning_rates_tried_counts_rates_that_trained():
    t = table(("adam", 1e-3, 0, "completed", 0.5, 1.0), ("adam", 1e-3, 1, "completed", 0.5, 1.0),
              ("adam", 1e-2, 0, "pruned", 0.7, 1.0))
    assert learning_rates_tried(t, "adam") == 2 and learning_rates_tried(t, "sgd") == 0
