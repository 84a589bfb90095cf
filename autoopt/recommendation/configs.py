"""Configurations summarized from the trials table: seeds averaged, and each one's score smoothed with
its learning-rate neighbours' (see ``choose.py`` for why).

>>> t = pd.DataFrame({"optimizer": ["sgd"] * 3, "params": [{"lr": 0.1}, {"lr": 0.215}, {"lr": 0.464}],
...                   "score": [1.0, 0.8, 1.2], "ok": [True, True, True]})
>>> [round(v, 3) for v in smoothed_scores(t)]
[0.95, 0.9, 1.1]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..objective import VAL_LOSS, Objective
from .expected_loss import expected_final_loss
from .shrinkage import curve_noise, shrunk_scores

#: Outcomes that rule a configuration out: it went wrong on a seed.


BAD_OUTCOMES = ("diverged", "oom", "failed")


def summarize_configs(trials: pd.DataFrame, objective: Objective = VAL_LOSS) -> pd.DataFrame:
    """One row per configuration: its seeds averaged; ``clean`` is False if any seed went wrong, ``learned``
    False if any seed ended no lower than it started; ``ok`` (what may be recommended) is both, or
    ``clean`` alone where no configuration learned.

    ``expected_val_loss`` is what a fresh seed is expected to end at (``expected_loss.py``: the mean of
    its runs' last epochs). ``score`` is the mean final objective where lower is better: what the
    policies weigh as loss; ``noise_var`` the variance of that mean's log from its runs' own curves
    (``shrinkage.curve_noise``); ``estimate`` the score shrunk by that noise (``shrinkage.py``; the
    score itself for another objective), and ``selection``, what the policies rank by, the estimate
    smoothed with its learning-rate neighbours'.
    """
    runs = trials[trials["outcome"].isin(("completed",) + BAD_OUTCOMES)]
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for config, group in runs.groupby("config", sort=False):
        good = group[group["outcome"] == "completed"]
        losses = good["final_val_loss"].to_numpy(dtype=float)
        values = (good["objective"] if "objective" in good else good["final_val_loss"]).to_numpy(dtype=float)
        # a run that ends no better than it started learned nothing, whatever the other runs did
        start = good["initial_val_loss"] if "initial_val_loss" in good else pd.Series(math.nan, index=good.index)
        learned = bool((start.isna() | (good["final_val_loss"] < start)).all())  # NaN: start unknown
        if objective.name != VAL_LOSS.name:
            learned = True  # the objective judges, not the loss (a loss that rises while accuracy does is common)
        rows.append({
            "config": config,
            "optimizer": group["optimizer"].iloc[0],
            "family": group["family"].iloc[0],
            "params": group["params"].iloc[0],
            "n_seeds": len(group),
            "clean": bool(len(good) == len(group) and np.isfinite(losses).all() and np.isfinite(values).all()),
            "learned": learned,
            "val_loss": float(losses.mean()) if len(losses) else math.nan,
            "val_loss_std": float(losses.std(ddof=1)) if len(losses) > 1 else math.nan,
            "expected_val_loss": expected_final_loss(good["val_curve"]) if "val_curve" in good else math.nan,
            "objective": float(values.mean()) if len(values) else math.nan,
            "objective_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "score": float(objective.score(values.mean())) if len(values) else math.nan,
            "noise_var": _noise_of_mean(good["val_curve"]) if "val_curve" in good else math.nan,
            "val_accuracy": float(good["final_val_accuracy"].mean()) if len(good) else math.nan,
            "epochs_to_target": float(good["epochs_to_target"].mean()) if len(good) else math.nan,
            "seconds_to_target": float(good["seconds_to_target"].mean()) if len(good) else math.nan,
            "optimizer_state_bytes": int(group["optimizer_state_bytes"].max()),
            "peak_memory_bytes": int(group["peak_memory_bytes"].max()),
            "trial_numbers": [int(n) for n in group["number"].dropna()],
        })
    table = pd.DataFrame(rows)
    table["ok"] = table["clean"] & table["learned"]
    if not table["ok"].any():
        # Every clean run ended above its starting loss (a model that overfits small data within the
        # epochs asked, or rates too high for pretrained weights): the least bad of them is still an
        # answer, which the explanation flags (``choose.recommend``), rather than no answer at all.
        table["ok"] = table["clean"]
    shrink = objective.name == VAL_LOSS.name  # the curves measure the validation loss's noise only
    table["estimate"] = _shrunk(table) if shrink else table["score"]
    table["selection"] = smoothed_scores(table.assign(score=table["estimate"]))
    return table


def _noise_of_mean(curves: pd.Series) -> float:
    """The noise variance (log units) of a mean over these runs' final losses; NaN where a curve has none."""
    noises = [curve_noise(list(c) if c is not None else []) for c in curves]
    if not noises or any(n is None for n in noises):
        return math.nan
    return float(np.mean(np.square(noises))) / len(noises)


def _shrunk(table: pd.DataFrame) -> pd.Series:
    """``score``, shrunk by its noise where both are known. Every configuration that trained cleanly
    counts, one that never got below its starting loss too: it is not recommended, but it is part of
    the spread of losses this model shows (the prior)."""
    out = table["score"].astype(float).copy()
    eligible = table["clean"] & np.isfinite(out) & (out > 0) & np.isfinite(table["noise_var"].astype(float))
    out[eligible] = shrunk_scores(list(out[eligible]), list(table.loc[eligible, "noise_var"]))
    return out


#: A learning-rate neighbour: the same configuration at a rate this factor up or down (the line
#: search's step, ``search.line_search.LR_STEP``), within ``NEIGHBOUR_SLACK``.
NEIGHBOUR_STEP = 10 ** (1 / 3)

NEIGHBOUR_SLACK = 1.1

#: Weight of the neighbourhood's mean against the configuration's own score (chosen on the dev fold).
NEIGHBOUR_WEIGHT = 0.5


def smoothed_scores(configs: pd.DataFrame) -> pd.Series:
    """Each configuration's score averaged with its learning-rate neighbours' (see the module's doc).

    A neighbour that diverged, failed or never learned counts as 3x worse than the configuration itself:
    a rate just below one that blows up is a risky recommendation.

    >>> t = pd.DataFrame({"optimizer": ["sgd"] * 3, "params": [{"lr": 0.1}, {"lr": 0.215}, {"lr": 0.464}],
    ...                   "score": [1.0, 0.8, 1.2], "ok": [True, True, True]})
    >>> [round(v, 3) for v in smoothed_scores(t)]
    [0.95, 0.9, 1.1]
    """
    if configs.empty:
        return pd.Series(dtype=float)
    rows = [(lr_of(row["params"]), _lineage(row), float(row["score"]), bool(row["ok"])) for _, row in configs.iterrows()]
    lineages: dict[tuple, list[tuple[float, float, bool]]] = {}
    for lr, lineage, score, ok in rows:
        if lr is not None:
            lineages.setdefault(lineage, []).append((lr, score, ok))
    out = []
    for lr, lineage, own, _ in rows:
        values = [own]
        if lr is not None and math.isfinite(own):
            for target in (lr * NEIGHBOUR_STEP, lr / NEIGHBOUR_STEP):
                near = [(abs(math.log(other / target)), score, ok) for other, score, ok in lineages[lineage]
                        if _near(other, target)]
                if near:
                    _, score, ok = min(near)
                    values.append(score if ok and math.isfinite(score) else own + 2 * abs(own))
        out.append((1 - NEIGHBOUR_WEIGHT) * own + NEIGHBOUR_WEIGHT * float(np.mean(values)))
    return pd.Series(out, index=configs.index, dtype=float)


def has_rate_neighbour(configs: pd.DataFrame, row: pd.Series) -> bool:
    """Whether the study trained ``row``'s configuration a learning-rate step up or down (whatever became
    of that run): the neighbourhood ``smoothed_scores`` reads."""
    lr = lr_of(row["params"])
    if lr is None:
        return False
    lineage = _lineage(row)
    for _, other in configs.iterrows():
        other_lr = lr_of(other["params"])
        if other_lr is None or _lineage(other) != lineage:
            continue
        if _near(other_lr, lr * NEIGHBOUR_STEP) or _near(other_lr, lr / NEIGHBOUR_STEP):
            return True
    return False


def _near(lr: float, target: float) -> bool:
    """Whether ``lr`` is the rate ``target`` (a neighbour's), within ``NEIGHBOUR_SLACK``."""
    return abs(math.log(lr / target)) <= math.log(NEIGHBOUR_SLACK)


def lr_of(params: dict[str, Any]) -> float | None:
    """The configuration's learning rate, or None where it has none (or not a positive number)."""
    lr = params.get("lr")
    return float(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 else None


def _lineage(row: pd.Series) -> tuple:
    """What a configuration shares with its learning-rate neighbours: the optimizer and every other setting."""
    return row["optimizer"], tuple(sorted((k, repr(v)) for k, v in row["params"].items() if k != "lr"))
