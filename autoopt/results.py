"""The results table: one row per trial with every measurement, and the best row per optimizer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .records import TrialRecord

#: A trial has converged once its validation loss is within this fraction of the study's best loss.
TARGET_TOLERANCE = 0.02

COLUMNS = [
    "number", "optimizer", "family", "purpose", "seed", "outcome", "config", "lr", "params",
    "initial_val_loss", "final_val_loss", "best_val_loss", "final_val_accuracy", "epochs", "steps", "seconds",
    "epochs_to_target", "seconds_to_target", "optimizer_state_bytes", "peak_memory_bytes",
    "val_curve", "error",
]


def target_loss(best_loss: float, tolerance: float = TARGET_TOLERANCE) -> float:
    """The loss a trial must reach to count as converged: ``tolerance`` above the best one."""
    return best_loss + tolerance * abs(best_loss)


def trials_table(records: Sequence[TrialRecord]) -> pd.DataFrame:
    """A DataFrame of every trial; ``df.attrs['target_loss']`` holds the convergence target.

    >>> trials_table([]).empty
    True
    """
    finals = [r.measurement.final_val_loss for r in records if r.measurement.outcome == "completed"]
    finals = [v for v in finals if math.isfinite(v)]
    target = target_loss(min(finals)) if finals else math.nan
    rows = []
    for r in records:
        m = r.measurement
        epochs_to_target, seconds_to_target = m.to_target(target) if finals else (math.nan, math.nan)
        rows.append({
            "number": r.number,
            "optimizer": r.candidate.optimizer,
            "family": r.family,
            "purpose": r.purpose,
            "seed": r.seed,
            "outcome": m.outcome,
            "config": r.candidate.key(),
            "lr": r.candidate.params.get("lr", math.nan),
            "params": dict(r.candidate.params),
            "initial_val_loss": m.initial_val_loss,
            "final_val_loss": m.final_val_loss,
            "best_val_loss": m.best_val_loss,
            "final_val_accuracy": m.final_val_accuracy if m.final_val_accuracy is not None else math.nan,
            "epochs": len(m.epochs),
            "steps": m.steps,
            "seconds": m.seconds,
            "epochs_to_target": epochs_to_target,
            "seconds_to_target": seconds_to_target,
            "optimizer_state_bytes": m.optimizer_state_bytes,
            "peak_memory_bytes": m.peak_memory_bytes,
            "val_curve": m.val_losses,
            "error": m.error,
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not table.empty:
        table = table.sort_values("number", na_position="first", kind="stable").reset_index(drop=True)
    table.attrs["target_loss"] = target
    return table


def best_per_optimizer(trials: pd.DataFrame) -> pd.DataFrame:
    """The completed trial with the lowest final validation loss for each optimizer, best first."""
    done = trials[(trials["outcome"] == "completed") & trials["final_val_loss"].notna()]
    if done.empty:
        return done.copy()
    best = done.loc[done.groupby("optimizer")["final_val_loss"].idxmin()]
    return best.sort_values("final_val_loss").reset_index(drop=True)


def best_trained_per_optimizer(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial of every optimizer that trained, best first: its completed trial with the lowest
    final validation loss or, for an optimizer none of whose trials completed, its trial with the
    lowest validation loss at any epoch (a pruned or diverged one, as far as it got).

    This is what "the best run of each optimizer" means in the charts and the MLflow tags, so that an
    optimizer the pruner stopped early is compared too instead of vanishing.
    """
    trained = trials[trials["number"].notna() & (trials["epochs"] > 0) & trials["best_val_loss"].notna()]
    rows = []
    for _, group in trained.groupby("optimizer", sort=False):
        done = group[(group["outcome"] == "completed") & group["final_val_loss"].notna()]
        rows.append(done.loc[done["final_val_loss"].idxmin()] if len(done)
                    else group.loc[group["best_val_loss"].idxmin()])
    if not rows:
        return trained.iloc[0:0].copy()
    best = pd.DataFrame(rows)
    order = best["final_val_loss"].where(best["outcome"] == "completed", best["best_val_loss"])
    best = best.assign(_completed=best["outcome"] != "completed", _loss=order)
    return best.sort_values(["_completed", "_loss"]).drop(columns=["_completed", "_loss"]).reset_index(drop=True)
