"""Backfill: make a study's MLflow record match its Optuna storage (``autoopt sync STUDY``).

The storage holds every trial's full measurement, so anything MLflow missed (the server went away
mid-study, a run was half written) can be written later, with the training's own start and end
times. It is the tracker's end-of-study reconciliation run on its own: idempotent, so a second sync
writes nothing (no run, metric, tag or file, and the parent run's end time stays), and the next
``tune()`` of the same study does the same automatically. Run it once the study's processes have
ended: it takes every half-written run as abandoned and rewrites it (a study's own summaries leave a
run another process may still finish alone).

>>> # sync_study("digits", "sqlite:///digits.db")  # -> SyncResult(created=13, rewritten=2, ...)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..optimizers.registry import resolve_specs
from ..study import stored
from ..study.storage import dead_trials

__all__ = ["SyncResult", "sync_study"]


@dataclass(frozen=True)
class SyncResult:
    """What a sync wrote: runs ``created`` (missing before), ``rewritten`` (half written before)."""

    study_name: str
    tracking_uri: str
    parent_run_id: str
    created: int
    rewritten: int
    trained_trials: int


def sync_study(study_name: str, storage: str, *, tracking_uri: str | None = None, timeout: float = 120.0) -> SyncResult:
    """Write every trial of the stored study that MLflow is missing, and refresh the summary.

    ``tracking_uri`` defaults to the store the study was recorded in (kept in the storage).
    """
    from ..recommendation.choose import recommend
    from ..recommendation.table import trials_table
    from ..tracking.mlflow.tracker import MlflowTracker
    from ..tracking.mlflow.transport import wait_for_background
    from ..tune import trial_times

    study = _load(study_name, storage)
    recorded_uri, parent_run_id = stored.load_tracking(study)
    records = stored.read_records(study, resolve_specs(None))
    objective = stored.load_objective(study)  # an accuracy study is recommended by its accuracy here too
    trials = trials_table(records, objective, stored.load_candidates(study))
    rec = recommend(trials, objective=objective) if (trials["outcome"] == "completed").any() else None
    tracker = MlflowTracker(tracking_uri=tracking_uri or recorded_uri, storage=storage)
    tracker.start_study(study_name, {}, parent_run_id=parent_run_id, reopen=False)  # an ended run stays ended
    if tracker.parent_run_id != parent_run_id:  # recorded nowhere, or in a store that lost it: now here
        stored.save_tracking(study, tracker.tracking_uri, tracker.parent_run_id)
    times = trial_times(study)
    tracker.log_summary(rec, trials, records, times, dead_trials(study), settled=True)
    # a parent left running (its process lost the server) ends when the study's last trial did, not now;
    # one that ended keeps its status and end time: a sync writes only what is missing
    tracker.close("FINISHED", end_study=tracker.parent_status == "RUNNING",
                  end_ms=max((end for _, end in times.values()), default=None))
    wait_for_background(timeout)  # the charts too: a sync is done when everything is there
    synced = tracker.synced
    return SyncResult(study_name, tracker.tracking_uri, tracker.parent_run_id, synced.get("created", 0),
                      synced.get("rewritten", 0), int((trials["epochs"] > 0).sum()))


def _load(study_name: str, storage: str):
    import optuna

    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ValueError(f"no study named {study_name!r} in {storage}; it holds {names}.") from None
