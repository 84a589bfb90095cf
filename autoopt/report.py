"""What ``tune()`` returns: the recommendation, the measured trials, and views of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from .recommend import Recommendation, format_bytes
from .results import best_per_optimizer

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure


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
    epochs_spent: float = 0.0  # every training epoch of the study: trials, re-runs and range tests
    tracking_uri: str | None = None  # where MLflow recorded the study, if it did
    parent_run_id: str | None = None

    @property
    def cost(self) -> float:
        """What the study cost in training-run equivalents (epochs spent / epochs of one run)."""
        epochs = getattr(self.config, "epochs", None)
        return self.epochs_spent / epochs if epochs else float("nan")

    @property
    def by_optimizer(self) -> pd.DataFrame:
        return best_per_optimizer(self.trials)

    def table(self) -> pd.DataFrame:
        """The best configuration of each optimizer, formatted for a person."""
        best = self.by_optimizer
        return pd.DataFrame({
            "optimizer": best["optimizer"],
            "lr": best["lr"].map(lambda v: f"{v:.3g}"),
            "val_loss": best["final_val_loss"].map(lambda v: f"{v:.4g}"),
            "epochs_to_target": best["epochs_to_target"],
            "seconds_to_target": best["seconds_to_target"].round(2),
            "state": best["optimizer_state_bytes"].map(format_bytes),
        })

    def plot_curves(self) -> Figure:
        """Validation-loss curves of the best trial of each optimizer."""
        from .plots import plot_curves

        return plot_curves(self.trials)

    def plot_lr_sensitivity(self) -> Figure:
        """Final validation loss against learning rate, one series per optimizer."""
        from .plots import plot_lr_sensitivity

        return plot_lr_sensitivity(self.trials)

    def plot_tradeoff(self) -> Figure:
        """Loss against time to target and against memory: what the recommendation weighed."""
        from .plots import plot_tradeoff

        return plot_tradeoff(self.trials, self.recommendation)

    def __str__(self) -> str:
        return f"{self.recommendation.explanation}\n\n{self.table().to_string(index=False)}"
