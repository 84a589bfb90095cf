"""What ``tune()`` returns: the recommendation, the measured trials, and views of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from .objective import VAL_LOSS, Objective
from .recommendation.record import Recommendation, format_bytes
from .recommendation.table import best_per_optimizer

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure


def _status(row: pd.Series) -> str:
    """How far a trial got, in words: 'pruned at epoch 2', 'diverged', 'infeasible' ..."""
    if row["outcome"] == "pruned":
        return f"pruned at epoch {int(row['epochs'])}"
    return str(row["outcome"])


@dataclass
class Report:
    """The result of a study.

    ``recommendation`` is the choice; ``trials`` has one row per trial with every measurement;
    ``by_optimizer`` the best completed row of each optimizer; ``study`` the Optuna study itself.
    """

    recommendation: Recommendation
    trials: pd.DataFrame
    study: optuna.Study
    config: Any = None
    epochs_spent: float = 0.0  # every training epoch of the study, re-runs included
    tracking_uri: str | None = None  # where MLflow recorded the study, if it did
    parent_run_id: str | None = None
    wall_seconds: float = float("nan")  # the study's wall time in this call, from start to recommendation
    stored_objective: Objective | None = None  # a stored study's objective (load_report), when no config says it

    @property
    def objective(self) -> Objective:
        """What the study minimized or maximized (``StudyConfig.objective``; the validation loss by default)."""
        objective = getattr(self.config, "objective", None) or self.stored_objective
        return objective if isinstance(objective, Objective) else VAL_LOSS

    @property
    def cost(self) -> float:
        """What the study cost in training-run equivalents (epoch-TRE: epochs spent / epochs of one run):
        what its budget counts. Time is not counted, so that a study decides the same on a busy machine."""
        epochs = getattr(self.config, "epochs", None)
        return self.epochs_spent / epochs if epochs else float("nan")

    @property
    def by_optimizer(self) -> pd.DataFrame:
        return best_per_optimizer(self.trials, self.objective)

    def table(self) -> pd.DataFrame:
        """One row per candidate optimizer, formatted for a person: its best completed configuration (by
        the objective, shown beside the loss when it is another), or, for one that never completed a
        run, how far it got (screened, pruned, diverged ...)."""
        objective = self.objective
        shown = {} if objective.name == VAL_LOSS.name else {objective.name: "-"}  # its column, beside the loss
        rows = []
        for optimizer, group in self.trials.groupby("optimizer", sort=False):
            done = group[(group["outcome"] == "completed") & group["objective"].notna()]
            if len(done):
                best = done.loc[objective.score(done["objective"]).idxmin()]
                status, loss, order = "completed", best["final_val_loss"], objective.score(best["objective"])
                if shown:
                    shown = {objective.name: f"{best['objective']:.4g}"}
            else:
                trained = group[group["best_val_loss"].notna()]
                best = trained.loc[trained["best_val_loss"].idxmin()] if len(trained) else group.iloc[0]
                status = _status(best)
                loss = order = best["best_val_loss"]  # the unfinished ones: by how far their loss got
                shown = {k: "-" for k in shown}
            rows.append({
                "optimizer": optimizer, "status": status, "lr": f"{best['lr']:.3g}", **shown,
                "val_loss": f"{loss:.4g}" if pd.notna(loss) else "-",
                "epochs_to_target": best["epochs_to_target"],
                "seconds_to_target": round(best["seconds_to_target"], 2),
                "state": format_bytes(best["optimizer_state_bytes"]),
                "_order": (status != "completed", order if pd.notna(order) else float("inf")),
            })
        table = pd.DataFrame(rows)
        if table.empty:
            return table
        return table.sort_values("_order", key=lambda col: col.map(lambda v: v)).drop(columns="_order").reset_index(drop=True)

    def plot_curves(self) -> Figure:
        """Validation-loss curves of the best trial of each optimizer."""
        from .tracking.plots import plot_curves

        return plot_curves(self.trials)

    def plot_lr_sensitivity(self) -> Figure:
        """Final validation loss against learning rate, one series per optimizer."""
        from .tracking.plots import plot_lr_sensitivity

        return plot_lr_sensitivity(self.trials)

    def plot_tradeoff(self) -> Figure:
        """Loss against time to target and against memory: what the recommendation weighed."""
        from .tracking.plots import plot_tradeoff

        return plot_tradeoff(self.trials, self.recommendation)

    def __str__(self) -> str:
        return f"{self.recommendation.explanation}\n\n{self.table().to_string(index=False)}"
