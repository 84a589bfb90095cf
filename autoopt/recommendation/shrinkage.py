"""Shrinking each configuration's loss toward the study's mean by its own noise (empirical Bayes).

A study that trains many configurations and keeps the lowest final loss rewards luck: one seed's final
validation loss is a draw, and the lowest of many draws is most often one from a configuration whose
loss jumps about, by as much as its own spread, at the edge of stability. Each run measures that
spread itself: how far its validation loss moves from one epoch to the next in the second half of its
run (``curve_noise``, in log units: 0.1 is about +-10%). A configuration's final loss is then read as
its true loss plus that noise, and its estimate is the posterior mean under a normal prior fitted to
the study's own configurations (``shrunk_scores``): a steady run keeps its loss, a jumpy one is pulled
toward the study's mean in proportion to its noise. The learning-rate smoothing (``configs.py``) then
works on these estimates.

Only with at least ``MIN_CONFIGS`` configurations to compare: with fewer, the spread of their true
losses cannot be told from noise (and the lowest of few draws is little biased). On the development
fold (``benchmarks/first_answers.py``, rows "shrunk"; mean regret on the grid seed the search did not
see, leave-fold-out, 33 problems, paired): 7 TRE 18.0% -> 16.7% (-1.3 +- 0.8, 6 problems better, none
worse), 10 TRE 14.6% -> 12.4% (-2.2 +- 1.0, 8 / 1), 20 TRE 10.4% -> 8.0% (-2.4 +- 1.8, 7 / 3; worst
problem 70% -> 40%); 5 TRE unchanged; applied from 2 configurations up it lost at 3 and 4 TRE (+1.2 and
+1.1 points), hence the minimum of 5. The window (the curve's second half) was chosen there among the
last third, half and whole curve.

>>> round(curve_noise([1.0, 0.8, 0.7, 0.7, 0.7, 0.7]), 6)
0.0
>>> [round(v, 3) for v in shrunk_scores([1.0, 1.1, 1.2, 1.3, 0.8], [0.0, 0.0, 0.0, 0.0, 0.5])]
[1.0, 1.1, 1.2, 1.3, 1.064]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The fewest configurations whose losses are shrunk (see the module's doc).
MIN_CONFIGS = 5

#: The part of a run's validation curve whose epoch-to-epoch movement measures its noise.
WINDOW = 0.5

#: The least share of the losses' spread taken as real differences between configurations: without a
#: floor, a study whose runs are all noisy would shrink every estimate to the same mean.
PRIOR_FLOOR = 0.1


def curve_noise(curve: Sequence[float]) -> float | None:
    """The noise of one run's final loss, in log units: the standard deviation of the epoch-to-epoch
    change of the log validation loss over the last ``WINDOW`` of the curve, divided by sqrt(2) (a
    change is the difference of two draws). None for fewer than 3 finite positive values.

    >>> round(curve_noise([2.0, 1.0, 2.0, 1.0, 2.0, 1.0]), 3)  # jumps of x2 either way
    0.462
    """
    values = [float(v) for v in curve]
    if len(values) < 3 or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    n = max(2, round(len(values) * WINDOW))
    steps = np.diff(np.log(values[-n - 1:]))
    return float(np.std(steps) / math.sqrt(2))


def shrunk_scores(scores: Sequence[float], noise_vars: Sequence[float]) -> list[float]:
    """Each score's posterior mean in log space: log scores ~ N(mu, tau^2) across configurations, each
    observed with its own noise variance; mu and tau^2 by moments (tau^2 at least ``PRIOR_FLOOR`` of the
    observed variance). Scores must be positive and finite; fewer than ``MIN_CONFIGS``: unchanged."""
    if len(scores) < MIN_CONFIGS:
        return [float(s) for s in scores]
    y = np.log(np.asarray(scores, dtype=float))
    s2 = np.asarray(noise_vars, dtype=float)
    mu, var = float(y.mean()), float(y.var())
    tau2 = max(var - float(s2.mean()), PRIOR_FLOOR * var, 1e-12)
    return [float(v) for v in np.exp(mu + tau2 / (tau2 + s2) * (y - mu))]


def epoch_change(noise_var: float, n_seeds: int = 1) -> float:
    """The typical relative change of one run's loss from one epoch to the next (0.12: about 12%), from
    the noise variance of a mean over ``n_seeds`` runs (``configs.summarize_configs``'s ``noise_var``);
    what the explanation tells a person.

    >>> round(epoch_change(curve_noise([2.0, 1.0, 2.0, 1.0, 2.0, 1.0]) ** 2), 2)
    0.92
    """
    return math.expm1(math.sqrt(2 * noise_var * max(1, n_seeds)))
