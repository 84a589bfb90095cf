"""The study's parent run description (Markdown, shown by the MLflow UI on the run's page): a link to
the comparison chart first, then the recommendation's explanation, then its runs and the run shown for
each optimizer, each a link, and what the words mean.

Pure: the recorder and ``autoopt sync`` write it from the same records.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from ...records import TrialRecord
from ..marks import CHOICE_MARK as STAR
from . import links, runs

if TYPE_CHECKING:
    from ...recommendation.record import Recommendation

__all__ = ["describe_choice", "describe_study"]

#: How the recommended run's own description starts (so that a later summary knows it wrote it).
CHOICE_NOTE_START = f"**{STAR} The recommended configuration**"

TERMS = ("**Terms.** *Own loss*: a run's final validation loss; a configuration's is the mean over the seeds "
         "it was trained on (± their standard deviation from 2 seeds on). *Smoothed score*: a configuration's "
         "own loss averaged with its learning-rate neighbours' (the same configuration a line-search step "
         "up and down, where trained): what the policy ranks. *Target*: a validation loss within 2% of the "
         "best final one of any run; a run reached it at the first epoch at or below it.")


def _link(name: str, experiment_id: str, run_id: str | None) -> str:
    if not run_id:
        return f"`{name}` (not recorded)"
    return f"[{name}]({links.run_path(experiment_id, run_id)})"


def _loss(row: pd.Series) -> float:
    return float(row["final_val_loss"] if row["outcome"] == "completed" else row["best_val_loss"])


def _rates_tried(trials: pd.DataFrame, optimizer: str) -> int:
    mine = trials[(trials["optimizer"] == optimizer) & (trials["epochs"] > 0)]
    lr = pd.to_numeric(mine["lr"], errors="coerce")
    return int(lr[lr.map(lambda v: math.isfinite(v) and v > 0)].nunique())


def describe_choice(rec: Recommendation | None, experiment_id: str, parent_run_id: str) -> str:
    """The description of the run that stands for the recommendation: why, and where the rest is."""
    if rec is None:
        return ""
    study = links.run_path(experiment_id, parent_run_id)
    chart = links.comparison_path(experiment_id, parent_run_id)
    return (f"{CHOICE_NOTE_START} of this study. [The study's run]({study}) has the whole record (the run "
            f"shown for each optimizer, what was never trained); [the comparison chart]({chart}) draws this run "
            "beside the best of each other optimizer.\n\n" + rec.explanation)


def describe_study(rec: Recommendation | None, shown: pd.DataFrame, trials: pd.DataFrame,
                   records: list[TrialRecord], run_ids: dict[int, str], experiment_id: str,
                   parent_run_id: str) -> str:
    """The description, from the recommendation, the runs shown for each optimizer
    (``compared.compared_trials``), the trials and their run ids."""
    names = {r.number: runs.run_name(r.number, r.candidate.optimizer, r.seed, r.purpose, r.measurement.outcome,
                                     len(r.measurement.epochs)) for r in records if runs.trained(r)}
    chosen = {int(n) for n in shown.loc[shown["recommended"], "number"].dropna()} if len(shown) else set()
    for n in chosen:
        if n in names:
            names[n] = runs.chosen_name(names[n])
    seeds = {r.number: r.seed for r in records}
    chart = links.comparison_path(experiment_id, parent_run_id)
    lines = [f"**[Open the comparison chart]({chart})**: the validation loss of the recommended run ({STAR}) "
             "beside the best run of each other optimizer, on a log axis.", ""]
    lines += (rec.explanation if rec is not None else "No recommendation: no trial completed.").splitlines()
    if rec is not None:
        lines += ["", f"**Recommended runs** (tag `{runs.RECOMMENDED_TAG} = \"true\"`; the configuration's numbers "
                  "are over these): " + ", ".join(
                      f"{_link(names.get(n, f't{n:03d}'), experiment_id, run_ids.get(n))} (seed {seeds.get(n, '?')})"
                      for n in rec.trial_numbers)]
    if len(shown):
        lines += ["", f"**The run shown for each optimizer** (tag `{runs.BEST_TAG} = \"true\"`; the comparison "
                  "chart draws these):"]
        for _, row in shown.iterrows():
            n = int(row["number"])
            tried = _rates_tried(trials, row["optimizer"])
            rates = "1 learning rate tried" if tried == 1 else f"{tried} learning rates tried"
            note = (f"the recommended configuration; {rates}" if row["recommended"]
                    else f"its best; {rates}" if tried == 1 else f"its best of {rates}")
            mark = f"{STAR} " if row["recommended"] else ""
            lines.append(f"- {mark}{row['optimizer']}: {_link(names.get(n, f't{n:03d}'), experiment_id, run_ids.get(n))}, "
                         f"{row['outcome']}, own loss {_loss(row):.4g}, lr {row['lr']:.3g}, {int(row['epochs'])} epochs "
                         f"({note})")
    skipped = runs.not_trained_lines(records)
    if skipped:
        lines += ["", "**Not trained** (no run):"] + [f"- {line}" for line in skipped]
    lines += ["", TERMS]
    return "\n".join(lines)
