"""The noise-aware choice: a configuration's loss shrunk toward the study's mean by its own curve's noise."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoopt.objective import Objective
from autoopt.recommendation.choose import recommend
from autoopt.recommendation.shrinkage import MIN_CONFIGS, curve_noise, epoch_change, shrunk_scores

STEADY = lambda end: [1.0, 0.8, 0.7, end * 1.06, end * 1.03, end]  # noqa: E731
JUMPY = [1.0, 0.5, 0.9, 0.35, 0.95, 0.33]  # the lowest last value, after jumps of 2-3x every epoch


STUDY = [("adam", 0.1, JUMPY), ("adam", 1e-3, STEADY(0.40)), ("sgd", 0.1, STEADY(0.50)),
         ("momentum", 0.01, STEADY(0.55)), ("rmsprop", 1e-3, STEADY(0.60))]


def test_a_jumpy_runs_lowest_last_loss_loses_to_a_steady_run_and_the_explanation_says_why(curves_table):
    rec = recommend(curves_table(*STUDY))
    assert (rec.optimizer, rec.params, rec.val_loss) == ("adam", {"lr": 1e-3}, 0.40)
    passed = next(line for line in rec.explanation.splitlines() if line.startswith("Passed over"))
    assert passed.startswith("Passed over: adam (lr=0.1) has the best single validation loss, 0.33, but its "
                             "validation loss moved about ")
    assert "from one epoch to the next late in its run, so its last value is partly luck" in passed
    assert "shrunk by its noise" in passed and "neighbours trained worse" not in passed


def test_with_fewer_configurations_than_the_minimum_the_lowest_loss_stands_and_says_how_jumpy_it_was(curves_table):
    # the others sit higher over their last epochs too, so the jumpy winner does not give way (steadiness.py)
    others = [("sgd", 0.1, STEADY(0.60)), ("momentum", 0.01, STEADY(0.65)), ("rmsprop", 1e-3, STEADY(0.70))]
    rec = recommend(curves_table(STUDY[0], *others[:MIN_CONFIGS - 2]))
    assert rec.params == {"lr": 0.1}
    # its one seed has no spread over seeds, but its own curve says how far its last value can be trusted
    first = rec.explanation.splitlines()[0]
    assert (f"on one seed (no spread measured; late in the run its loss moved about "
            f"{epoch_change(curve_noise(JUMPY) ** 2):.0%} from one epoch to the next;") in first
    assert epoch_change(curve_noise(JUMPY) ** 2) > 1  # more than doubled or halved, epoch to epoch


def test_only_the_validation_loss_is_shrunk_by_its_curve(curves_table):
    # a metric of the user's that happens to equal the last validation loss: its noise is not the curve's
    trials = curves_table(*STUDY).assign(objective=lambda t: t["final_val_loss"])
    other = Objective(lambda out, y: 0.0, name="mse")
    assert recommend(trials, objective=other).params == {"lr": 0.1}


def test_curve_noise_ignores_a_steady_trend_and_measures_jumps():
    assert curve_noise([1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]) == pytest.approx(0.0, abs=1e-12)
    assert curve_noise(JUMPY) > 0.5
    assert curve_noise([1.0, 0.5]) is None and curve_noise([1.0, math.nan, 0.5, 0.4]) is None


losses = st.lists(st.floats(0.01, 100.0), min_size=MIN_CONFIGS, max_size=12)


@given(losses, st.data())
def test_a_shrunk_loss_lies_between_its_own_and_the_studys_geometric_mean(scores, data):
    noise = data.draw(st.lists(st.floats(0.0, 2.0), min_size=len(scores), max_size=len(scores)))
    mean = math.exp(sum(map(math.log, scores)) / len(scores))
    for own, var, shrunk in zip(scores, noise, shrunk_scores(scores, noise)):
        assert min(own, mean) * (1 - 1e-9) <= shrunk <= max(own, mean) * (1 + 1e-9)
        if var == 0:
            assert shrunk == pytest.approx(own)


def test_a_run_that_learned_nothing_is_not_recommended_but_counts_among_the_studys_losses(curves_table):
    # rmsprop ends above its starting loss (1.1): never the answer, but the fifth configuration
    study = STUDY[:4] + [("rmsprop", 1e-3, [1.0, 0.9, 1.0, 1.1, 1.15, 1.2])]
    rec = recommend(curves_table(*study))
    assert rec.params == {"lr": 1e-3} and rec.optimizer == "adam"
