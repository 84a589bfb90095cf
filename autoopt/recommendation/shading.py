"""Shading a race winner whose validation loss turned up: its learning rate one step down.

A study of under 3 runs of budget chooses by a race (``search/race.py``): configurations compared after
an epoch or a few, the winner trained to the end. Early on, the fastest learners lead, and on a model
that overfits its data within the epochs asked (small data, dropout, attention on few examples) the
fastest is the one whose validation loss turns up soonest: the winner's own full run then shows it, its
loss in the last third of training above its lowest before. Such a winner is recommended one
learning-rate step lower (the line search's step, 10^(1/3)); nothing else changes.

On the development fold (``benchmarks/first_answers.py``, mean regret on the grid seed the search did
not see, leave-fold-out, averaged over 4/6/8 folds; paired differences over 33 problems): 1 TRE 41.5%
-> 35.9% (-5.6 +- 2.9 points, 15 problems better, 3 worse), 1.5 TRE 51.3% -> 42.8% (-8.5 +- 5.9),
2 TRE 31.9% -> 27.7% (-4.2 +- 2.1, 12 better, 5 worse), 2.5 TRE 42.2% -> 34.3% (-7.9 +- 4.2). From
3 TRE the portfolio's entries are trained to the end and compared there; shading whatever was chosen
made things worse there (+1 to +7 points at 3 TRE, in a replay not kept), and the rule does not apply
(a winner trained on several seeds, or chosen among full runs, is not a race's).

The recommendation keeps the trained run's measurements (the shaded rate itself was not trained) and
its explanation says so.

>>> shade_lr([1.0, 0.6, 0.5, 0.55, 0.7, 0.9])  # lowest 0.5, the last third's mean 0.8: shade
True
>>> shade_lr([1.0, 0.6, 0.5, 0.45, 0.42, 0.41])
False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .configs import NEIGHBOUR_STEP, lr_of

#: How far the last third's mean validation loss must lie above the lowest before it: 5% on the dev fold
#: (at 1 TRE 10% and 20% helped less, -5.3 and -3.5 points; a rise of the last epoch alone over its
#: minimum caught as many overfitting winners and more noisy curves, 12 problems better and 8 worse).
RISE = 0.05

#: The purpose of a race's trials (``search/strategy.py``).
RACE = "race"


def shade_lr(curve: Sequence[float]) -> bool:
    """Whether a validation curve turned up: the mean of its last third above (1 + RISE) x the lowest
    value of the first two thirds (3 epochs at least, every value finite)."""
    values = [float(v) for v in curve]
    if len(values) < 3 or not all(math.isfinite(v) for v in values):
        return False
    cut = max(1, round(len(values) * 2 / 3))
    tail = values[cut:]
    return sum(tail) / len(tail) > (1 + RISE) * min(values[:cut])


def shaded_params(chosen: pd.Series, trials: pd.DataFrame) -> tuple[dict[str, Any], str] | None:
    """The chosen configuration's params one learning-rate step down, and the explanation's line, when
    it is a race winner trained on one seed, the study's only run to the end, whose curve turned up
    (``shade_lr``); else None."""
    lr = lr_of(chosen["params"])
    if chosen["n_seeds"] != 1 or lr is None:
        return None
    runs = trials[trials["number"].isin(chosen["trial_numbers"])]
    if len(runs) != 1 or runs["purpose"].iloc[0] != RACE or "val_curve" not in runs:
        return None
    if (trials["outcome"] == "completed").sum() != 1:
        return None  # other configurations were trained to the end too: chosen among full runs, not by a race
    curve = list(runs["val_curve"].iloc[0] or [])
    lower = float(f"{lr / NEIGHBOUR_STEP:.6g}")  # 0.001, not 0.0010000000000000002, in the pasted code
    if not shade_lr(curve) or not _within_range(chosen["optimizer"], lower):
        return None
    low = min(range(len(curve)), key=curve.__getitem__)
    line = (f"The race's winner is recommended one learning-rate step lower ({lr:.3g} -> {lower:.3g}): "
            f"its validation loss turned up in the last third of its run (lowest {curve[low]:.4g} at epoch {low + 1}, "
            f"{curve[-1]:.4g} at the end), what a rate too high for this many epochs does, and a race that judges "
            f"after a few epochs favours fast rates. The losses shown are the run at {lr:.3g}; {lower:.3g} "
            "was not trained.")
    return {**chosen["params"], "lr": lower}, line


def _within_range(optimizer: str, lr: float) -> bool:
    """Whether ``lr`` lies in the optimizer's registered learning-rate range (a study could train it)."""
    from ..optimizers.registry import get_spec

    try:
        dim = next(d for d in get_spec(optimizer).space if d.name == "lr")
    except (ValueError, StopIteration):  # an optimizer of the user's own, or one without an lr: leave it
        return False
    return dim.low * (1 - 1e-9) <= lr <= dim.high * (1 + 1e-9)
