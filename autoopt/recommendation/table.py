"""The results table: one row per trial with every measurement, and the best row per optimizer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..objective import VAL_LOSS, Objective
from ..records import Measurement, TrialRecord

#: A trial has converged once its objective (validation loss) is within this fraction of the study's best.
TARGET_TOLERANCE = 0.02

COLUMNS = [
    "number", "optimizer", "family", "purpose", "seed", "outcome", "config", "lr", "params",
    "initial_val_loss", "final_val_loss", "best_val_loss", "final_val_accuracy", "objective", "epochs", "steps",
    "seconds",
    "epochs_to_target", "seconds_to_target", "optimizer_state_bytes", "peak_memory_bytes",
    "val_curve", "error",
]


def target_loss(best_loss: float, tolerance: float = TARGET_TOLERANCE) -> float:
    """The loss a trial must reach to count as converged: ``tolerance`` above the best one."""
    return best_loss + tolerance * abs(best_loss)


def _to_target(m: Measurement, objective: Objective, target: float) -> tuple[float, float]:
    """(epochs, training seconds) until the objective's score first reached ``target``; NaN if never."""
    for record in m.epochs:
        if objective.score(objective.value(record)) <= target:
            return float(record.epoch), record.elapsed_seconds
    return math.nan, math.nan


def trials_table(records: Sequence[TrialRecord], objective: Objective = VAL_LOSS,
                 candidates: Sequence[str] = ()) -> pd.DataFrame:
    """A DataFrame of every trial; ``objective`` is its final value of the study's objective.

    Convergence is reaching ``target_loss`` of the best final objective (``df.attrs['target']``, in
    the objective's units); ``df.attrs['target_loss']`` is the same target on the validation loss;
    ``df.attrs['race_lists']`` names the portfolio lists the study's race started from;
    ``df.attrs['candidates']`` the study's candidate optimizers (``candidates``), tried or not.

    >>> trials_table([]).empty
    True
    """
    done = [r.measurement for r in records if r.measurement.outcome == "completed"]
    losses = [v for v in (m.final_val_loss for m in done) if math.isfinite(v)]
    scores = [v for v in (objective.score(objective.final(m)) for m in done) if math.isfinite(v)]
    target = target_loss(min(scores)) if scores else math.nan  # in score units: lower is better
    rows = []
    for r in records:
        m = r.measurement
        epochs_to_target, seconds_to_target = _to_target(m, objective, target) if scores else (math.nan, math.nan)
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
            "objective": objective.final(m),
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
    table.attrs["target_loss"] = target_loss(min(losses)) if losses else math.nan
    table.attrs["target"] = objective.score(target)
    table.attrs["objective_direction"] = objective.direction  # how best_trained_per_optimizer ranks
    table.attrs["race_lists"] = sorted({r.race_list for r in records if r.race_list})
    table.attrs["candidates"] = list(candidates)
    return table


def best_per_optimizer(trials: pd.DataFrame, objective: Objective = VAL_LOSS) -> pd.DataFrame:
    """The completed trial with the best final objective (validation loss) for each optimizer, best first."""
    done = trials[(trials["outcome"] == "completed") & trials["objective"].notna()]
    if done.empty:
        return done.copy()
    done = done.assign(_score=objective.score(done["objective"]))
    best = done.loc[done.groupby("optimizer")["_score"].idxmin()]
    return best.sort_values("_score").drop(columns="_score").reset_index(drop=True)


def best_trained_per_optimizer(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial of every optimizer that trained, best first: its completed trial with the best
    final objective (the lowest validation loss unless the study optimized another objective:
    ``trials.attrs["objective_direction"]``) or, for an optimizer none of whose trials completed, its
    trial with the lowest validation loss at any epoch (a pruned or diverged one, as far as it got).

    This is what "the best run of each optimizer" means in the charts and the MLflow tags, so that an
    optimizer the pruner stopped early is compared too instead of vanishing.
    """
    sign = -1.0 if trials.attrs.get("objective_direction") == "maximize" else 1.0
    trained = trials[trials["number"].notna() & (trials["epochs"] > 0) & trials["best_val_loss"].notna()]
    trained = trained.assign(_score=sign * trained["objective"].astype(float))
    rows = []
    for _, group in trained.groupby("optimizer", sort=False):
        done = group[(group["outcome"] == "completed") & group["_score"].notna()]
        rows.append(done.loc[done["_score"].idxmin()] if len(done)
                    else group.loc[group["best_val_loss"].idxmin()])
    if not rows:
        return trained.iloc[0:0].drop(columns="_score").copy()
    best = pd.DataFrame(rows)
    # completed first, by their objective; then the others by how low their loss got
    order = best["_score"].where(best["outcome"] == "completed", best["best_val_loss"])
    best = best.drop(columns="_score")
    best = best.assign(_completed=best["outcome"] != "completed", _loss=order)
    return best.sort_values(["_completed", "_loss"]).drop(columns=["_completed", "_loss"]).reset_index(drop=True)
