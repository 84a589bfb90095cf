"""What ``tune()`` returns: the recommendation, the measured trials, and views of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from .objective import VAL_LOSS, Objective
from .recommendation.configs import summarize_configs
from .recommendation.explain import best_of_each_optimizer, learning_rates_tried
from .recommendation.record import Recommendation, format_bytes
from .recommendation.table import best_per_optimizer

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure


def _rate(lr: object) -> str:
    return f"{lr:.3g}" if isinstance(lr, (int, float)) and not isinstance(lr, bool) else "-"


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
    tracking_unsent: int = 0  # MLflow calls this run could not make (the storage holds them: autoopt sync)
    _mlflow_link: str | None = field(default=None, init=False, repr=False, compare=False)

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
        """One row per candidate optimizer, formatted for a person, naming the configurations the
        explanation names: the recommendation (marked ★), then the best configuration of every other
        optimizer (its lowest mean over seeds among those that trained cleanly), then, for one that
        never trained cleanly, its best run as far as it got (screened, pruned, diverged ...).
        ``val_loss`` is a mean over ``seeds``; ``lrs_tried`` counts the learning rates of the optimizer
        that trained. The objective's column stands beside the loss when it is another."""
        objective = self.objective
        trials = self.trials
        extra = objective.name != VAL_LOSS.name
        best = best_of_each_optimizer(summarize_configs(trials, objective), self.recommendation)
        rows = []
        for _, config in best.iterrows():
            chosen = config["optimizer"] == self.recommendation.optimizer
            rows.append({
                "": "★" if chosen else "", "optimizer": config["optimizer"], "status": "completed",
                "lr": _rate(config["params"].get("lr")), "lrs_tried": learning_rates_tried(trials, config["optimizer"]),
                "seeds": int(config["n_seeds"]),
                **({objective.name: f"{config['objective']:.4g}"} if extra else {}),
                "val_loss": f"{config['val_loss']:.4g}",
                "epochs_to_target": config["epochs_to_target"],
                "seconds_to_target": round(config["seconds_to_target"], 2),
                "state": format_bytes(config["optimizer_state_bytes"]),
            })
        for optimizer, group in trials[~trials["optimizer"].isin(set(best["optimizer"]) if len(best) else set())] \
                .groupby("optimizer", sort=False):
            trained = group[group["best_val_loss"].notna()]
            run = trained.loc[trained["best_val_loss"].idxmin()] if len(trained) else group.iloc[0]
            status = _status(run) + (", ruled out" if run["outcome"] == "completed" else "")
            rows.append({
                "": "", "optimizer": optimizer, "status": status, "lr": _rate(run["lr"]),
                "lrs_tried": learning_rates_tried(trials, optimizer), "seeds": int(len(group)),
                **({objective.name: "-"} if extra else {}),
                "val_loss": f"{run['best_val_loss']:.4g}" if pd.notna(run["best_val_loss"]) else "-",
                "epochs_to_target": float("nan"), "seconds_to_target": float("nan"),
                "state": format_bytes(run["optimizer_state_bytes"]),
            })
        return pd.DataFrame(rows)

    @property
    def mlflow_link(self) -> str | None:
        """The link that opens this study's comparison chart in the MLflow UI (None without tracking, or
        when the tracking store does not answer): the recommended run beside the best of each other
        optimizer. For a local store, it is where ``autoopt ui`` serves the UI."""
        if not (self.tracking_uri and self.parent_run_id):
            return None
        if self._mlflow_link is None:
            from .tracking.mlflow.links import link_of_study

            self._mlflow_link = link_of_study(self.tracking_uri, self.parent_run_id) or ""
        return self._mlflow_link or None

    def plot_curves(self) -> Figure:
        """Validation-loss curves of the best trial of each optimizer."""
        from .tracking.plots import plot_curves

        return plot_curves(self.trials, self.recommendation)

    def plot_lr_sensitivity(self) -> Figure:
        """Final validation loss against learning rate, one series per optimizer."""
        from .tracking.plots import plot_lr_sensitivity

        return plot_lr_sensitivity(self.trials, self.recommendation)

    def plot_tradeoff(self) -> Figure:
        """Loss against time to target and against memory: what the recommendation weighed."""
        from .tracking.plots import plot_tradeoff

        return plot_tradeoff(self.trials, self.recommendation)

    def __str__(self) -> str:
        text = f"{self.recommendation.explanation}\n\n{self.table().to_string(index=False)}"
        link = self.mlflow_link
        return text + (f"\n\nMLflow, the comparison chart: {link}" if link else "")


def load_report(study_name: str, storage: str, *, policy: Any = "default", tolerance: float = 0.01) -> Report:
    """The Report of a stored study, rebuilt from its storage without training anything (nor importing
    torch, MLflow or matplotlib: ``autoopt show`` answers in about a second).

    >>> # report = load_report("digits", "sqlite:///digits.db")
    """
    import optuna

    from .optimizers.registry import resolve_specs
    from .recommendation.choose import recommend
    from .recommendation.table import trials_table
    from .study import stored
    from .study.storage import open_storage

    opened = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        raise ValueError(f"no study named {study_name!r} in {storage}; it holds {names}.") from None
    objective = stored.load_objective(study)
    trials = trials_table(stored.read_records(study, resolve_specs(None)), objective, stored.load_candidates(study))
    tracking_uri, parent_run_id = stored.load_tracking(study)
    recommendation = recommend(trials, policy, tolerance, objective)
    describe_groups(recommendation, stored.load_muon_groups(study))
    return Report(recommendation, trials, study, tracking_uri=tracking_uri,
                  parent_run_id=parent_run_id, stored_objective=objective)


def describe_groups(rec: Any, groups: dict[str, Any] | None) -> None:
    """What a Muon recommendation's code needs from the study (``muon_groups_of``): the hidden matrices it
    was trained on, by name, and the dtype of its Newton-Schulz iteration, said in the explanation too."""
    if rec.optimizer != "muon" or not groups:
        return
    rec.muon_parameters, rec.ns_dtype = list(groups["muon_parameters"]), groups["ns_dtype"]
    why = {"cuda": "as torch's Muon does on CUDA", "fast": "this device's bfloat16 matmul is as fast as float32's",
           "slow": "this device has no fast bfloat16 matmul, which torch's Muon always uses"}[groups["why"]]
    rec.explanation += (f"\nMuon optimized {len(rec.muon_parameters)} hidden matrices (AdamW the embeddings, the "
                        f"output layer, biases and norms); its Newton-Schulz iteration ran in {rec.ns_dtype} ({why}).")
