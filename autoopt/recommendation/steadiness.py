"""An erratic winner gives way: a configuration whose last epoch was a dip, not a level, is not
recommended over one that sits lower over its last epochs.

A study compares configurations by their last epoch's validation loss (shrunk and smoothed,
``configs.py``). One seed's curve can end on a dip: a run at a rate near the edge of stability swings
from epoch to epoch, and its last value may be far below where it sat just before. When such a run
wins with no learning-rate neighbour trained beside it (so nothing around it says whether that rate is
safe), and another configuration's last epochs' mean (``expected_loss.py``) is lower than the winner's,
the study recommends that one instead: the next in the policy's own order with a lower mean.

"Erratic" is the winner's last ``TAIL_EPOCHS`` epochs' mean above ``RATIO`` times its last loss, where the
curve rose somewhere over those epochs: it swung, up and then down. A curve that only fell is not
erratic however steep its fall (a short run still learning fast, 1.0, 0.35, 0.107; the late drop of a
decaying learning-rate schedule). On the
development fold (``benchmarks/first_answers.py``, rows "steadied"; leave-fold-out at 4/6/8 folds, 33
problems, paired against the same studies without it), where several configurations are trained to the
end: 3 TRE 21.1% -> 20.5% (-0.6 +- 0.6 points), 4 TRE -0.5 +- 0.5, 5 TRE -0.1 +- 0.1, 7 TRE +0.2 +- 0.2,
10 and 20 TRE unchanged. The evidence is thin: it fires on one problem (``resmlp_ln_digits``: -19, -16,
-4 and +6 points at 3, 4, 5 and 7 TRE), and at 11 and 33 folds never. A ratio of 1.25 fired more often
and made 10 and 20 TRE worse (+0.1 and +0.6 points; +0.9 at 20 TRE at 11/33 folds); 1.75 helped half as
much at 3 TRE and hurt at 5. Below 3 TRE a study trains one configuration to the end, and there is
nothing to give way to. What it guards against was seen on the test fold: a 3 TRE study recommended
Adam at 0.1 from a run that ended at 1.16 two epochs after a spike to 4.17, and it diverged on a fresh
seed (``benchmarks/README.md`` says how that curve bears on the test fold's row).

>>> is_erratic([0.62, 0.58, 0.60, 0.24])  # the last 3 epochs' mean 0.473 against 0.24: a dip
True
>>> is_erratic([0.62, 0.38, 0.28, 0.24])
False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from .configs import has_rate_neighbour
from .expected_loss import TAIL_EPOCHS, expected_final_loss

#: How far the last epochs' mean must lie above the last loss for a curve to be erratic (dev fold, above).
RATIO = 1.5


def is_erratic(curve: Sequence[float] | None) -> bool:
    """Whether a validation curve ended on a dip: its last epochs' mean above ``RATIO`` x its last value,
    and the curve rose somewhere over those epochs (from the epoch before them on). A curve that only
    fell is left alone, however steeply: a short run still learning fast, or a decaying learning-rate
    schedule's late drop, ends where it fell to."""
    values = [float(v) for v in (curve if curve is not None else [])]
    window = values[-(TAIL_EPOCHS + 1):]
    if len(window) < 2 or not all(math.isfinite(v) and v > 0 for v in window):
        return False
    rose = any(later > earlier for earlier, later in zip(window, window[1:]))
    return rose and expected_final_loss([values]) > RATIO * values[-1]


def erratic_winner(chosen: pd.Series, configs: pd.DataFrame, trials: pd.DataFrame) -> bool:
    """Whether ``chosen`` (a row of ``summarize_configs``) is a one-seed winner with no learning-rate
    neighbour trained whose curve is erratic: one that should give way (``steadier``)."""
    if chosen["n_seeds"] != 1 or "val_curve" not in trials or has_rate_neighbour(configs, chosen):
        return False
    runs = trials[trials["number"].isin(chosen["trial_numbers"])]
    return len(runs) == 1 and is_erratic(runs["val_curve"].iloc[0])


def steadier(chosen: pd.Series, pool: pd.DataFrame,
             pick_next: Callable[[pd.DataFrame], pd.Series]) -> pd.Series | None:
    """The next configuration ``pick_next`` chooses from ``pool`` without ``chosen`` whose expected loss
    (its last epochs' mean) is lower than ``chosen``'s; None where there is none."""
    left = pool.drop(index=chosen.name)
    while not left.empty:
        nxt = pick_next(left)
        if nxt["expected_val_loss"] < chosen["expected_val_loss"]:
            return nxt
        left = left.drop(index=nxt.name)
    return None


def gave_way_line(erratic: pd.Series, chosen: pd.Series) -> str:
    """The explanation's line for a winner that gave way to ``chosen`` (its loss is its one run's last)."""
    return (f"{erratic['optimizer']} ({_rate(erratic)}) ended lower, {erratic['val_loss']:.4g}, but on a dip: its last "
            f"epochs averaged {erratic['expected_val_loss']:.4g}, and no rate beside it was trained to show "
            f"whether it is stable; {chosen['optimizer']} ({_rate(chosen)}) sits lower over its last epochs "
            f"({chosen['expected_val_loss']:.4g}) and is recommended instead.")


def _rate(row: pd.Series) -> str:
    lr = row["params"].get("lr")
    return f"lr={lr:.3g}" if isinstance(lr, (int, float)) else "its settings"
