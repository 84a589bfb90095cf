"""An erratic one-seed winner with no learning-rate neighbour gives way to a configuration that sits
lower over its last epochs (``recommendation/steadiness.py``)."""

from __future__ import annotations


from hypothesis import given
from hypothesis import strategies as st

from autoopt.recommendation.choose import recommend
from autoopt.recommendation.configs import NEIGHBOUR_STEP
from autoopt.recommendation.steadiness import RATIO, is_erratic

DIP = [0.62, 0.58, 0.60, 0.24]  # the lowest last loss, after epochs near 0.6: the last 3 epochs' mean is 0.473
SETTLED = [0.60, 0.36, 0.29, 0.284, 0.28]  # ends higher, but level: its last 3 epochs' mean is 0.285


def test_an_erratic_winner_gives_way_to_one_that_sits_lower_and_the_explanation_says_why(curves_table):
    rec = recommend(curves_table(("adam", 0.1, DIP), ("momentum", 0.002, SETTLED), ("adamw", 0.01, [0.6, 0.4, 0.36, 0.34])))
    assert (rec.optimizer, rec.params) == ("momentum", {"lr": 0.002})
    assert rec.val_loss == 0.28 and round(rec.expected_val_loss, 4) == 0.2847
    line = rec.explanation.splitlines()[1]
    assert line.startswith("adam (lr=0.1) ended lower, 0.24, but on a dip: its last epochs averaged 0.4733, and no "
                           "rate beside it was trained")
    assert line.endswith("momentum (lr=0.002) sits lower over its last epochs (0.2847) and is recommended instead.")
    assert "least bad" not in rec.explanation  # every run learned: the normal path


def test_the_next_in_order_whose_last_epochs_sit_lower_is_taken_not_merely_the_next(curves_table):
    # adamw ends second-lowest, but its last epochs sit at 0.487, above the dip's 0.473: it is skipped
    rec = recommend(curves_table(("adam", 0.1, DIP), ("adamw", 0.01, [0.6, 0.6, 0.6, 0.26]),
                                 ("momentum", 0.002, SETTLED)))
    assert rec.optimizer == "momentum"


def test_a_winner_whose_rate_neighbour_was_trained_is_left_to_the_neighbour_smoothing(curves_table):
    table = curves_table(("adam", 0.1, DIP), ("adam", 0.1 / NEIGHBOUR_STEP, [0.6, 0.4, 0.32, 0.3]),
                         ("momentum", 0.002, SETTLED))
    rec = recommend(table)
    assert "on a dip" not in rec.explanation
    assert (rec.optimizer, rec.params) == ("adam", {"lr": 0.1})


def test_a_dip_with_nothing_lower_over_its_last_epochs_stands(curves_table):
    rec = recommend(curves_table(("adam", 0.1, DIP), ("momentum", 0.002, [0.6, 0.56, 0.54, 0.52])))
    assert rec.optimizer == "adam" and "on a dip" not in rec.explanation


def test_a_curve_that_swung_up_and_down_is_erratic_one_that_only_fell_is_not():
    assert is_erratic(DIP)
    # a spike and its recovery: its last 3 epochs' mean 2.35 against 1.16
    assert is_erratic([4.18, 4.0, 2.0, 1.53, 2.44, 4.17, 1.73, 1.16])
    assert not is_erratic([0.62, 0.38, 0.28, 0.24])
    # a short run falling steeply (the last 3 epochs' mean 4.5x its last loss), and a cosine schedule's
    # late drop: each only fell, and ends where it fell to
    assert not is_erratic([1.0, 0.35, 0.107])
    assert not is_erratic([1.0, 0.61, 0.6, 0.59, 0.3, 0.12])
    assert not is_erratic([]) and not is_erratic([1.0, float("nan"), 0.5])


@given(st.lists(st.floats(0.01, 100.0), min_size=4, max_size=20))
def test_erratic_means_a_tail_over_ratio_times_the_last_and_a_rise_within_it(curve):
    tail = sum(curve[-3:]) / 3
    rose = any(b > a for a, b in zip(curve[-4:], curve[-3:]))
    assert is_erratic(curve) == (rose and tail > RATIO * curve[-1])


def test_a_short_run_still_falling_steeply_keeps_its_place(curves_table):
    """Three epochs, each a third of the one before: the last 3 epochs' mean is far above the last loss
    only because the run is short and still falling."""
    rec = recommend(curves_table(("adam", 0.03, [1.0, 0.35, 0.107]), ("sgd", 0.1, [1.0, 0.5, 0.3])))
    assert rec.params == {"lr": 0.03} and "on a dip" not in rec.explanation
