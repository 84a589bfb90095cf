"""What a recommendation says a fresh seed will reach: the mean of its runs' last epochs, not the last one."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoopt.recommendation.choose import recommend
from autoopt.recommendation.expected_loss import TAIL_EPOCHS, expected_final_loss

STEADY = [1.0, 0.8, 0.7, 0.53, 0.515, 0.5]
DIPPED = [1.0, 0.6, 0.45, 0.50, 0.48, 0.30]  # a last epoch that dipped below where the curve sat


def test_the_report_gives_the_last_epochs_mean_beside_the_last_epochs_loss(curves_table):
    rec = recommend(curves_table(("adam", 1e-3, DIPPED), ("sgd", 0.1, STEADY)))
    assert rec.val_loss == 0.30  # what the run ended at: the choice's rules and the comparisons use it
    assert rec.expected_val_loss == pytest.approx((0.50 + 0.48 + 0.30) / 3)
    first = rec.explanation.splitlines()[0]
    assert f", about {rec.expected_val_loss:.4g} expected on a fresh seed (the mean of its last 3 epochs)" in first


def test_over_several_seeds_it_is_the_mean_of_each_seeds_tail(curves_table):
    second = [1.0, 0.7, 0.5, 0.42, 0.40, 0.38]
    trials = pd.concat([curves_table(("adam", 1e-3, DIPPED)), curves_table(("adam", 1e-3, second)).assign(number=1, seed=1)],
                       ignore_index=True)
    rec = recommend(trials)
    assert rec.n_seeds == 2
    assert rec.expected_val_loss == pytest.approx(((0.50 + 0.48 + 0.30) + (0.42 + 0.40 + 0.38)) / 6)


def test_a_run_shorter_than_the_tail_uses_what_it_has_and_a_non_finite_one_gives_none():
    assert expected_final_loss([[0.8, 0.6]]) == pytest.approx(0.7)
    assert math.isnan(expected_final_loss([[1.0, 0.5, math.nan]]))
    assert math.isnan(expected_final_loss([[]])) and math.isnan(expected_final_loss([]))


def test_without_curves_there_is_no_expectation_and_the_explanation_claims_none(curves_table):
    rec = recommend(curves_table(("adam", 1e-3, DIPPED), ("sgd", 0.1, STEADY)).drop(columns="val_curve"))
    assert rec.val_loss == 0.30 and math.isnan(rec.expected_val_loss)
    assert "expected on a fresh seed" not in rec.explanation


@given(st.lists(st.lists(st.floats(1e-4, 1e4), min_size=1, max_size=12), min_size=1, max_size=4))
def test_the_expectation_lies_within_the_runs_last_epochs(curves):
    tails = [v for c in curves for v in c[-TAIL_EPOCHS:]]
    assert min(tails) * (1 - 1e-9) <= expected_final_loss(curves) <= max(tails) * (1 + 1e-9)
