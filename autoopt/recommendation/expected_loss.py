"""What a fresh seed of a configuration is expected to end at: the level its runs' validation loss sat
at over their last few epochs, not the last epoch's value alone.

A run's last validation loss is one draw of a curve that still moves from epoch to epoch (5-30% on
small problems), and the one the study chose is the lowest of such draws. The mean of the last
``TAIL_EPOCHS`` epochs is a steadier reading of where the curve ended, and a better forecast of what
the user gets when they train the recommendation again on another seed. On the development fold
(``benchmarks/first_answers.py``'s studies replayed, 33 problems, leave-fold-out at 4, 6 and 8 folds;
``benchmarks/expected_loss.py``), what autoopt reports (this, and for a race winner shaded a rate
step lower ``expected_at_lower_rate``) lay within 25% of the other grid seed's final loss in 86% of
studies against 77% for the last epoch's loss, +4 to +11 points at every budget from 1 to 20 TRE. From
5 TRE up, where the lowest of several losses is chosen, the last epoch's loss was 4-5% optimistic on
average and the mean of the last 3 within 1%. The last 3 epochs were chosen there among the last 1-5,
their median, and the last 10-30% of the run.

>>> round(expected_final_loss([[1.0, 0.5, 0.32, 0.28, 0.30]]), 4)
0.3
>>> round(expected_final_loss([[1.0, 0.5, 0.32, 0.28, 0.30], [0.9, 0.4, 0.36, 0.34, 0.32]]), 4)
0.32
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: The last epochs whose validation losses are averaged (chosen on the development fold, above).
TAIL_EPOCHS = 3


def expected_final_loss(curves: Iterable[Sequence[float] | None]) -> float:
    """The mean over runs of each run's mean validation loss over its last ``TAIL_EPOCHS`` epochs (all
    of them where it has fewer); NaN where a run has no finite loss among them (a diverged run has no
    expectation to give)."""
    tails = []
    for curve in curves:
        values = [float(v) for v in (curve if curve is not None else [])][-TAIL_EPOCHS:]
        if not values or not all(math.isfinite(v) for v in values):
            return math.nan
        tails.append(sum(values) / len(values))
    return sum(tails) / len(tails) if tails else math.nan


def expected_at_lower_rate(curve: Sequence[float] | None) -> float:
    """What a fresh seed is expected to reach a learning-rate step below the run whose ``curve`` this
    is (a race winner shaded a step lower, ``shading.py``: that rate was not trained): halfway between
    the lowest loss the run reached and its last epochs' mean. The lower rate overfits later, so it
    ends between the two; on the development fold's shaded studies this lay within 25% of the lower
    rate's final loss on another seed in 84% of them, against 76% for the last epochs' mean, which
    was 13% too high on average (``benchmarks/expected_loss.py``).

    >>> round(expected_at_lower_rate([1.0, 0.6, 0.5, 0.55, 0.7, 0.9]), 4)
    0.6083
    """
    tail = expected_final_loss([curve])
    values = [float(v) for v in (curve if curve is not None else [])]
    return (min(values) + tail) / 2 if math.isfinite(tail) else math.nan
