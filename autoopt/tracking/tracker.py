"""What a study tells its tracker, and how the tracker is chosen.

The search calls these methods; only ``autoopt.tracking.mlflow`` talks to MLflow. ``NullTracker``
is used when tracking is off. Calls may come from several threads at once (``n_jobs > 1``), so a
tracker keys everything by trial number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..records import Candidate, EpochRecord, TrialRecord

if TYPE_CHECKING:
    import pandas as pd

    from ..recommendation.record import Recommendation


class Tracker(Protocol):
    def start_study(self, study_name: str, config: dict[str, Any], parent_run_id: str | None = None) -> None:
        """Open the study's parent run (``parent_run_id``: the one the storage names, on resume or in
        a worker) and record its configuration."""

    def start_trial(self, number: int, candidate: Candidate, family: str, seed: int, purpose: str) -> None:
        """Open the child run of trial ``number``."""

    def log_epoch(self, number: int, record: EpochRecord) -> None:
        """Per-epoch metrics of a running trial (one batched call per epoch, never per step)."""

    def end_trial(self, record: TrialRecord) -> None:
        """Close the trial's child run with its summary and outcome (opens one if none is open)."""

    def log_summary(self, recommendation: Recommendation | None, trials: pd.DataFrame,
                    records: Sequence[TrialRecord] = (), times: Mapping[int, tuple[int, int]] | None = None,
                    killed: Sequence[int] = ()) -> None:
        """Make the record match ``records`` (every trial in the storage; ``times``: trial number ->
        (start, end) in ms; ``killed``: trials whose process died, whose runs end as KILLED) and put
        the recommendation, the table and the plots on the parent run."""

    def close(self, status: str = "FINISHED", end_study: bool = True) -> None:
        """Flush; end the parent run with FINISHED, FAILED or KILLED unless ``end_study`` is False
        (a worker process leaves the study's run to the process that started the study)."""


class NullTracker:
    """Records nothing: ``tune(..., tracking=False)``."""

    def start_study(self, study_name: str, config: dict[str, Any], parent_run_id: str | None = None) -> None:
        pass

    def start_trial(self, number: int, candidate: Candidate, family: str, seed: int, purpose: str) -> None:
        pass

    def log_epoch(self, number: int, record: EpochRecord) -> None:
        pass

    def end_trial(self, record: TrialRecord) -> None:
        pass

    def log_summary(self, recommendation: Recommendation | None, trials: pd.DataFrame,
                    records: Sequence[TrialRecord] = (), times: Mapping[int, tuple[int, int]] | None = None,
                    killed: Sequence[int] = ()) -> None:
        pass

    def close(self, status: str = "FINISHED", end_study: bool = True) -> None:
        pass


def make_tracker(tracking: bool, tracking_uri: str | None = None, experiment_name: str | None = None,
                 storage: Any = None) -> Tracker:
    """The MLflow tracker, or a NullTracker when ``tracking`` is False; ``storage`` is the study's, which
    a warning that MLflow missed something names in the command that writes it later."""
    if not tracking:
        return NullTracker()
    from .mlflow.tracker import MlflowTracker  # imported only when used: MLflow is slow to import

    return MlflowTracker(tracking_uri=tracking_uri, experiment_name=experiment_name, storage=storage)
