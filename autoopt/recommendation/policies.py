"""The policies that weigh loss, speed and memory (``policy=``), and how each picks a configuration.

>>> check_policy({"loss": 1, "speed": 0.2})
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

#: The policies by name; a dict of weights over CRITERIA is a policy too.


POLICIES = ("default", "loss", "speed", "memory")

CRITERIA = ("loss", "speed", "memory")

#: How far from the best loss the "speed" and "memory" policies may go to save time or memory.
WIDE_TOLERANCE = 0.05

Policy = str | Mapping[str, float]


def check_policy(policy: Policy) -> None:
    """Raise ValueError for a policy that is neither a known name nor a dict of criterion weights."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; use one of {list(POLICIES)} or a dict of weights over {list(CRITERIA)}.")
        return
    if not isinstance(policy, Mapping) or not policy:
        raise ValueError(f"policy must be one of {list(POLICIES)} or a dict of weights over {list(CRITERIA)}, got {policy!r}.")
    unknown = sorted(set(policy) - set(CRITERIA))
    if unknown or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
                      for w in policy.values()):
        raise ValueError(f"policy weights must be finite non-negative numbers over {list(CRITERIA)}, "
                         f"got {dict(policy)!r}.")
    if not any(w > 0 for w in policy.values()):
        raise ValueError(f"policy weights must include a positive one (all zero weigh nothing), got {dict(policy)!r}.")


def _within(losses: pd.Series, best: float, tolerance: float) -> pd.Series:
    return losses <= best + tolerance * abs(best)


def pick(pool: pd.DataFrame, policy: Policy, tolerance: float) -> pd.Series:
    """The chosen row; "loss" is the objective's score smoothed over learning-rate neighbours
    (``selection``; lower is better, whatever the objective's direction)."""
    pool = pool.assign(score=pool["selection"]) if "selection" in pool else pool
    best = pool["score"].min()
    # convergence speed is counted in epochs to the target, never in seconds: a count is the same on a
    # busy machine, so the same study recommends the same configuration however loaded the machine is
    speed = pool["epochs_to_target"].fillna(math.inf)
    if policy == "loss":
        return pool.loc[pool["score"].idxmin()]
    if policy in ("default", "speed"):
        near = pool[_within(pool["score"], best, tolerance if policy == "default" else max(tolerance, WIDE_TOLERANCE))]
        order = near.assign(_speed=speed[near.index]).sort_values(["_speed", "optimizer_state_bytes", "score"])
        return order.iloc[0]
    if policy == "memory":
        near = pool[_within(pool["score"], best, max(tolerance, WIDE_TOLERANCE))]
        return near.sort_values(["peak_memory_bytes", "score"]).iloc[0]
    weights = dict(policy)  # type: ignore[arg-type]
    score = (
        weights.get("loss", 0.0) * pool["score"] / max(abs(best), 1e-12)
        + weights.get("speed", 0.0) * speed / max(speed.min(), 1e-9)
        + weights.get("memory", 0.0) * pool["peak_memory_bytes"] / max(pool["peak_memory_bytes"].min(), 1)
    )
    return pool.loc[score.idxmin()]
