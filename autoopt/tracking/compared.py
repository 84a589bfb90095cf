"""Which run stands for each optimizer wherever a person compares them: the charts, the printed table
and MLflow's comparison (the ``autoopt.best_of_optimizer`` tag).

The chosen optimizer is represented by the recommended configuration's run, never by another of its
runs with a lower single loss (the learning-rate smoothing may pass that one over, and a chart that drew
it would show a run that is not the answer). Every other optimizer is represented by the configuration
the explanation names (``recommendation.explain.best_of_each_optimizer``: its lowest mean over seeds
among those that trained cleanly), and an optimizer with no such configuration by its best run as far as
it got (pruned, diverged). A configuration trained on several seeds is drawn by its first run.

>>> from autoopt.recommendation.table import trials_table
>>> compared_trials(trials_table([]), None).empty
True
"""

from __future__ import annotations

import pandas as pd

from ..objective import VAL_LOSS, Objective
from ..recommendation.configs import summarize_configs
from ..recommendation.explain import best_of_each_optimizer
from ..recommendation.record import Recommendation
from ..recommendation.table import best_trained_per_optimizer

__all__ = ["compared_trials"]


def _objective(trials: pd.DataFrame, rec: Recommendation | None) -> Objective:
    if rec is not None:
        return Objective.recorded(rec.objective, rec.objective_direction)
    if trials.attrs.get("objective_direction") == "maximize":
        return Objective.recorded("objective", "maximize")
    return VAL_LOSS


def compared_trials(trials: pd.DataFrame, rec: Recommendation | None) -> pd.DataFrame:
    """One row of ``trials`` per optimizer that trained, the choice first (column ``recommended``),
    then the others that trained cleanly by score, then those that did not by how low their loss got."""
    fallback = best_trained_per_optimizer(trials)
    if fallback.empty:
        return fallback.assign(recommended=pd.Series(dtype=bool))
    configs = summarize_configs(trials, _objective(trials, rec))
    best = best_of_each_optimizer(configs, rec)
    by_number = trials.dropna(subset=["number"]).set_index(trials["number"].dropna().astype(int))
    rows, seen = [], set()
    for _, config in best.iterrows():
        numbers = [n for n in sorted(config["trial_numbers"]) if n in by_number.index]
        if not numbers:
            continue
        row = by_number.loc[numbers[0]].copy()
        row["recommended"] = rec is not None and bool(set(config["trial_numbers"]) & set(rec.trial_numbers))
        rows.append(row)
        seen.add(config["optimizer"])
    for _, row in fallback[~fallback["optimizer"].isin(seen)].iterrows():
        rows.append(row.copy())
        rows[-1]["recommended"] = False
    table = pd.DataFrame(rows).reset_index(drop=True)
    table["recommended"] = table["recommended"].astype(bool)
    return table
