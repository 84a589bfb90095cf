"""The recommendation in words: what was chosen, by which rule, and how every other optimizer did.
"""

from __future__ import annotations

import math

import pandas as pd

from ..objective import VAL_LOSS, Objective
from .configs import BAD_OUTCOMES
from .policies import WIDE_TOLERANCE
from .record import Recommendation, format_bytes, format_params


def _speed_text(epochs: float, seconds: float) -> str:
    if not math.isfinite(epochs):
        return "never reached the target"
    return f"target in {epochs:.0f} epochs / {seconds:.2f} s"


_REASONS = {
    "default": "the lowest mean validation loss, then the fastest to converge among configurations within {tol:.0%} of it, then the least memory",
    "loss": "the lowest mean validation loss",
    "speed": "the fastest to converge among configurations within {wide:.0%} of the best loss",
    "memory": "the least memory among configurations within {wide:.0%} of the best loss",
}


def _reason(policy: str, objective: Objective) -> str:
    """The policy's rule in words, with the objective in place of "validation loss" where it is another."""
    reason = _REASONS.get(policy, "the lowest weighted score ({policy})")
    if objective.name == VAL_LOSS.name:
        return reason
    return (reason.replace("the lowest mean validation loss", f"the best mean {objective.describe()}")
            .replace("the best loss", f"the best {objective.name}")
            .replace("the lowest weighted score (", f"the lowest weighted score, {objective.name} as loss ("))


def passed_over(pool: pd.DataFrame, chosen: pd.Series, objective: Objective = VAL_LOSS) -> str:
    """A line naming the configuration with the best unsmoothed loss when the learning-rate smoothing
    ranked it below ``chosen`` (else ""): a user comparing runs sees that lower loss and asks why.

    >>> t = pd.DataFrame({"optimizer": ["adam"] * 2, "params": [{"lr": 0.05}, {"lr": 0.03}],
    ...                   "score": [0.09, 0.10], "selection": [0.11, 0.10], "val_loss": [0.09, 0.10]})
    >>> passed_over(t, t.iloc[1]).split(":")[0]
    'Passed over'
    """
    if pool.empty or "selection" not in pool:
        return ""
    lowest = pool.loc[pool["score"].idxmin()]
    if lowest.name == chosen.name or not lowest["selection"] > chosen["selection"]:
        return ""
    by_loss = objective.name == VAL_LOSS.name
    what, value = ("validation loss", lowest["val_loss"]) if by_loss else (objective.name, lowest["objective"])
    numbers = (f": averaged with theirs it scores {lowest['selection']:.4g}, the choice {chosen['selection']:.4g}"
               if by_loss else "")
    return (f"Passed over: {lowest['optimizer']} ({format_params(lowest['params'])}) has the best single {what}, "
            f"{value:.4g}, but its learning-rate neighbours trained worse{numbers} (a low loss between worse "
            "neighbours is often a lucky seed).")


def explain(rec: Recommendation, configs: pd.DataFrame, trials: pd.DataFrame, tolerance: float,
            objective: Objective = VAL_LOSS) -> str:
    """A few lines comparing the choice with the best configuration of every other optimizer."""
    reason = _reason(rec.policy, objective).format(tol=tolerance, wide=max(tolerance, WIDE_TOLERANCE),
                                                   policy=rec.policy)
    spread = f" ± {rec.val_loss_std:.4g}" if math.isfinite(rec.val_loss_std) else ""
    accuracy = f", accuracy {rec.val_accuracy:.1%}" if math.isfinite(rec.val_accuracy) else ""
    by_loss = objective.name == VAL_LOSS.name
    if not by_loss:  # the objective first, then the loss
        std = f" ± {rec.objective_std:.4g}" if math.isfinite(rec.objective_std) else ""
        accuracy = "" if objective.name == "val_accuracy" else accuracy
        spread = f"{spread}, {objective.name} {rec.objective_value:.4g}{std}"
    lines = [
        f"{rec.optimizer} ({format_params(rec.params)}): validation loss {rec.val_loss:.4g}{spread} "
        f"over {rec.n_seeds} seed(s){accuracy}; {_speed_text(rec.epochs_to_target, rec.seconds_to_target)}; "
        f"optimizer state {format_bytes(rec.optimizer_state_bytes)}.",
        f"Chosen by policy '{rec.policy}': {reason}.",
    ]
    ok = configs[configs["ok"]]
    others = ok[ok["optimizer"] != rec.optimizer]
    if not others.empty:
        lines.append("Best of each other optimizer" + ("" if by_loss else f" (by {objective.name})") + ":")
        chosen = rec.val_loss if by_loss else rec.objective_value
        for _, row in others.loc[others.groupby("optimizer")["score"].idxmin()].sort_values("score").iterrows():
            value = row["val_loss"] if by_loss else row["objective"]
            delta = (value - chosen) / max(abs(chosen), 1e-12)
            lines.append(
                f"  {row['optimizer']:<10} {value:.4g} ({delta:+.1%}), "
                f"{_speed_text(row['epochs_to_target'], row['seconds_to_target'])}, "
                f"state {format_bytes(row['optimizer_state_bytes'])} (lr={row['params'].get('lr', math.nan):.3g})"
            )
    trained = set(ok["optimizer"])
    bad = trials[trials["outcome"].isin(BAD_OUTCOMES + ("infeasible",))]
    for outcome, group in bad.groupby("outcome"):
        names = sorted(set(group["optimizer"]) - (trained if outcome != "infeasible" else set()))
        if names:
            lines.append(f"  {outcome}: {', '.join(names)} (no configuration of theirs trained cleanly)")
    return "\n".join(lines)
