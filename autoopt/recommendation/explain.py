"""The recommendation in words: what was chosen, on how much evidence, by which rule, and how every other
optimizer did.

Every number is labelled (its own loss, the smoothed score the policy ranked, the seeds behind it), the
target is defined where it is first used, and a gap to the choice reads sensibly whatever its size:
``+7.0%`` near the choice, ``15x`` far from it, an absolute difference where the choice's loss is near 0.
"""

from __future__ import annotations

import math

import pandas as pd

from ..objective import VAL_LOSS, Objective
from .configs import BAD_OUTCOMES
from .expected_loss import TAIL_EPOCHS
from .policies import WIDE_TOLERANCE
from .record import Recommendation, format_bytes, format_params
from .shrinkage import epoch_change
from .table import TARGET_TOLERANCE

#: Above this ratio to the choice a gap is written as a factor ("15x"), above RATIO_LIMIT as an
#: absolute difference: "+183087936.5%" says only that the choice's loss is near 0.
FACTOR_FROM = 10.0
RATIO_LIMIT = 1000.0


def format_gap(value: float, chosen: float) -> str:
    """How far ``value`` is from the choice's ``chosen``, in the form a person reads at a glance.

    >>> format_gap(0.1146, 0.1071), format_gap(1.664, 0.1071), format_gap(0.18, 1e-9)
    ('+7.0%', '15.5x', '+0.18 (the choice is near 0)')
    """
    if not (math.isfinite(value) and math.isfinite(chosen)):
        return "n/a"
    if chosen != 0 and value / chosen > 0:  # same sign: a ratio means something
        ratio = value / chosen
        if ratio < FACTOR_FROM and 1 / ratio < FACTOR_FROM:
            return f"{ratio - 1:+.1%}"
        if max(ratio, 1 / ratio) < RATIO_LIMIT:
            return f"{ratio:.3g}x"
    return f"{value - chosen:+.3g} (the choice is near 0)"


def _speed_text(epochs: float, seconds: float) -> str:
    if not math.isfinite(epochs):
        return "never reached the target"
    return f"reached the target in {epochs:.0f} epochs / {seconds:.2f} s"


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


def _seeds_text(n_seeds: int, noise_var: float = math.nan) -> str:
    """The evidence behind a number: "(mean ± std over 2 seeds)", or that one seed has no spread, and
    how much that one run's loss still moved from epoch to epoch late in training (its own noise)."""
    if n_seeds >= 2:
        return f" (mean ± std over {n_seeds} seeds)"
    moves = (f"; late in the run its loss moved about {epoch_change(noise_var):.0%} from one epoch to the next"
             if math.isfinite(noise_var) else "")
    return f" on one seed (no spread measured{moves}; reevaluate_top= retrains the best on more seeds)"


def _expected_text(rec: Recommendation, shaded: bool = False) -> str:
    """What a fresh seed is expected to end at (``expected_loss.py``), where it was measured."""
    expected = rec.expected_val_loss
    if not math.isfinite(expected):
        return ""
    how = (f"halfway between its run's lowest loss and its last {TAIL_EPOCHS} epochs' mean: the lower rate "
           "overfits later" if shaded else f"the mean of its last {TAIL_EPOCHS} epochs")
    return f", about {expected:.4g} expected on a fresh seed ({how})"


def passed_over(pool: pd.DataFrame, chosen: pd.Series, objective: Objective = VAL_LOSS) -> str:
    """A line naming the configuration with the best unsmoothed loss when the choice's rule ranked it
    below ``chosen`` (else ""): a user comparing runs sees that lower loss and asks why. The reasons
    are named (a jumpy curve, ``estimate``; worse learning-rate neighbours, ``selection``), and both
    of its numbers and both of the choice's are labelled: own loss, and the score ranked.

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
    estimate = float(lowest.get("estimate", lowest["score"]))
    jumpy = estimate > lowest["score"] * (1 + 1e-9)
    neighbours = lowest["selection"] > estimate * (1 + 1e-9)
    reasons = []
    if jumpy:
        moves = epoch_change(float(lowest["noise_var"]), int(lowest["n_seeds"]))
        reasons.append(f"its validation loss moved about {moves:.0%} from one epoch to the next late in its run, "
                       f"so its last value is partly luck (estimated {estimate:.4g} from the study's runs)")
    if neighbours or not jumpy:
        reasons.append("its learning-rate neighbours trained worse")
    numbers = (f": its smoothed score (its own loss{', shrunk by its noise,' if jumpy else ''} averaged with "
               f"its neighbours', what the policy ranks) is {lowest['selection']:.4g}, the choice's "
               f"{chosen['selection']:.4g} (own loss {chosen['val_loss']:.4g})" if by_loss else "")
    luck = "A jumpy run's low last loss" if jumpy else "A low loss between worse neighbours"
    return (f"Passed over: {lowest['optimizer']} ({format_params(lowest['params'])}) has the best single {what}, "
            f"{value:.4g}, but {' and '.join(reasons)}{numbers}. {luck} is often a lucky seed.")


def best_of_each_optimizer(configs: pd.DataFrame, rec: Recommendation | None) -> pd.DataFrame:
    """One configuration per optimizer with one that trained cleanly: the recommended one for the chosen
    optimizer, the lowest mean score for every other; the choice first, then by score. This is what
    "the best of each optimizer" means everywhere a person reads it: the explanation, the printed table,
    the charts and MLflow's comparison.
    """
    if configs.empty or "ok" not in configs:
        return configs.iloc[0:0]
    ok = configs[configs["ok"]]
    if ok.empty:
        return ok
    best = ok.loc[ok.groupby("optimizer")["score"].idxmin()]
    if rec is not None:
        mine = ok[ok["trial_numbers"].map(lambda ns: bool(set(ns) & set(rec.trial_numbers)))]
        if len(mine):
            best = pd.concat([mine.iloc[[0]], best[best["optimizer"] != rec.optimizer]])
    chosen = best["optimizer"].eq(rec.optimizer) if rec is not None else pd.Series(False, index=best.index)
    best = best.assign(_first=~chosen).sort_values(["_first", "score"], kind="stable")
    return best.drop(columns="_first")


def learning_rates_tried(trials: pd.DataFrame, optimizer: str) -> int:
    """How many learning rates of ``optimizer`` trained at all (any outcome but never-trained ones)."""
    if "params" not in trials:
        return 0
    mine = trials[trials["optimizer"] == optimizer]
    if "epochs" in mine:
        mine = mine[mine["epochs"] > 0]
    else:
        mine = mine[mine["outcome"].isin(("completed", "pruned") + BAD_OUTCOMES)]
    rates = {round(math.log10(lr), 6) for lr in mine["params"].map(lambda p: p.get("lr"))
             if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0}
    return len(rates)


def _tried_text(n: int) -> str:
    return "1 learning rate tried" if n == 1 else f"best of {n} learning rates tried"


def target_text(trials: pd.DataFrame, objective: Objective = VAL_LOSS) -> str:
    """What "the target" is, in one sentence, with its value where the study measured one."""
    value, what = "", f"a {objective.name}"
    if objective.name == VAL_LOSS.name:
        target = trials.attrs.get("target_loss", math.nan)
        value = f" (here {target:.4g})" if isinstance(target, float) and math.isfinite(target) else ""
        what = "a validation loss"
    return (f"Target: {what} within {TARGET_TOLERANCE:.0%} of the best final one of any run{value}; "
            "\"reached the target\" counts the epochs and training seconds until a run first got there.")


def explain(rec: Recommendation, configs: pd.DataFrame, trials: pd.DataFrame, tolerance: float,
            objective: Objective = VAL_LOSS, noise_var: float = math.nan, shaded: bool = False) -> str:
    """A few lines comparing the choice with the best configuration of every other optimizer;
    ``noise_var``: the choice's own noise (``configs``' column), told where it has one seed; ``shaded``:
    the recommendation is a rate step below the run it reports (``shading.py``)."""
    reason = _reason(rec.policy, objective).format(tol=tolerance, wide=max(tolerance, WIDE_TOLERANCE),
                                                   policy=rec.policy)
    spread = f" ± {rec.val_loss_std:.4g}" if math.isfinite(rec.val_loss_std) and rec.n_seeds >= 2 else ""
    accuracy = f", accuracy {rec.val_accuracy:.1%}" if math.isfinite(rec.val_accuracy) else ""
    by_loss = objective.name == VAL_LOSS.name
    if not by_loss:  # the objective first, then the loss
        std = f" ± {rec.objective_std:.4g}" if math.isfinite(rec.objective_std) and rec.n_seeds >= 2 else ""
        accuracy = "" if objective.name == "val_accuracy" else accuracy
        spread = f"{spread}, {objective.name} {rec.objective_value:.4g}{std}"
    lines = [
        f"{rec.optimizer} ({format_params(rec.params)}): validation loss {rec.val_loss:.4g}{spread}"
        f"{_seeds_text(rec.n_seeds, noise_var)}{_expected_text(rec, shaded)}{accuracy}; "
        f"{_speed_text(rec.epochs_to_target, rec.seconds_to_target)}; "
        f"optimizer state {format_bytes(rec.optimizer_state_bytes)}.",
        f"Chosen by policy '{rec.policy}': {reason}.",
    ]
    best = best_of_each_optimizer(configs, rec)
    others = best[best["optimizer"] != rec.optimizer]
    if not others.empty:
        lines.append("Best of each other optimizer" + ("" if by_loss else f" (by {objective.name})")
                     + " (mean over its seeds; gap to the choice):")
        chosen = rec.val_loss if by_loss else rec.objective_value
        for _, row in others.iterrows():
            value = row["val_loss"] if by_loss else row["objective"]
            seeds = int(row["n_seeds"]) if "n_seeds" in row else 1
            lines.append(
                f"  {row['optimizer']:<10} {value:.4g} ({format_gap(value, chosen)}), "
                f"{_speed_text(row['epochs_to_target'], row['seconds_to_target'])}, "
                f"state {format_bytes(row['optimizer_state_bytes'])} (lr={row['params'].get('lr', math.nan):.3g}; "
                f"{_tried_text(learning_rates_tried(trials, row['optimizer']))}"
                + (f", {seeds} seeds" if seeds > 1 else "") + ")"
            )
    ok = configs[configs["ok"]] if "ok" in configs else configs
    trained = set(ok["optimizer"]) if "optimizer" in ok else set()
    bad = trials[trials["outcome"].isin(BAD_OUTCOMES + ("infeasible",))]
    for outcome, group in bad.groupby("outcome"):
        names = sorted(set(group["optimizer"]) - (trained if outcome != "infeasible" else set()))
        if names:
            lines.append(f"  {outcome}: {', '.join(names)} (no configuration of theirs trained cleanly)")
    tried = set(trials["optimizer"]) if "optimizer" in trials else set()
    untried = [name for name in trials.attrs.get("candidates", ()) if name not in tried]
    if untried:
        lines.append(f"  not tried: {', '.join(untried)} (the budget ran out before them; a larger budget= "
                     "or n_trials= tries them)")
    if "pretrained_entries" in trials.attrs.get("race_lists", ()):
        lines.append("The model's weights look already trained (fine-tuning): the race started from the "
                     "configurations learned on fine-tuning problems (portfolio.json, pretrained_entries), "
                     "not the general list, whose first learning rates destroy pretrained weights.")
    lines.append(target_text(trials, objective))
    return "\n".join(lines)
