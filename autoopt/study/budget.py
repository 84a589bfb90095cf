"""What a study has spent, for every process that runs it: trials and epochs counted from the storage,
the total trial budget (``n_trials``) and the study's clock (``timeout``).

>>> # spent(study, epochs=10) -> epochs charged so far; finished_trials(study) -> search trials ended
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

#: Why a trial ran, for the trials that count against the search's budget (re-evaluations come on top).

SEARCH_PURPOSES = ("race", "portfolio", "refine", "search")

#: The study user attribute holding its total search-trial budget (n_trials), for every process.
TRIAL_BUDGET_ATTR = "autoopt:n_trials"


def save_trial_budget(study: optuna.Study, n_trials: int | None) -> None:
    """Store the study's total n_trials in the storage, where every process's ``run`` reads it."""
    if n_trials is not None and study.user_attrs.get(TRIAL_BUDGET_ATTR) != n_trials:
        study.set_user_attr(TRIAL_BUDGET_ATTR, n_trials)


def stop_at_study_total(total: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback: stop this process once the study (all processes) has ``total`` search trials.

    It looks after each counted trial of this process, so each other process can finish at most the
    one trial it is running: the study ends with at most total + processes - 1 search trials.
    """

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        outcome = trial.user_attrs.get("measurement", {}).get("outcome")
        counted = trial.user_attrs.get("purpose", "search") in SEARCH_PURPOSES and outcome not in (
            None, "interrupted", "cancelled")
        if counted and finished_trials(study) >= total:
            study.stop()

    return callback


#: The study user attribute holding the seconds its search has run, all processes together.
SEARCH_SECONDS_ATTR = "autoopt:search_seconds"

_CLOCKS: dict[str, StudyClock] = {}


class StudyClock:
    """The study's search time, a total like n_trials: what earlier processes stored, plus this one's.

    ``timeout`` is the study's, whoever runs it: a resume gets what is left of it. Processes that run
    at once overlap, so the stored value is the largest any of them reached (four workers started
    together with timeout=60 stop after about 60 s). Saved after each trial (``run``), so a process
    killed mid-study loses at most its trial in flight from the count.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.before = float(study.user_attrs.get(SEARCH_SECONDS_ATTR, 0.0))
        self.started = time.monotonic()

    def left(self, timeout: float) -> float:
        """Seconds of ``timeout`` left to this process."""
        return max(timeout - self.before, 0.0)

    def save(self, study: optuna.Study, *_: Any) -> None:
        seconds = self.before + time.monotonic() - self.started
        if seconds > float(study.user_attrs.get(SEARCH_SECONDS_ATTR, 0.0)):
            study.set_user_attr(SEARCH_SECONDS_ATTR, seconds)


def start_clock(study: optuna.Study) -> StudyClock:
    """Start this process's share of the study's search time; ``run`` saves it after each trial."""
    clock = _CLOCKS[study.study_name] = StudyClock(study)
    return clock


def save_clock(study: optuna.Study, *_: Any) -> None:
    """Store this process's share of the study's search time (an Optuna callback too), if it keeps one."""
    clock = _CLOCKS.get(study.study_name)
    if clock is not None:
        clock.save(study)


def stop_clock(study: optuna.Study) -> None:
    clock = _CLOCKS.pop(study.study_name, None)
    if clock is not None:
        clock.save(study)


def spent(study: optuna.Study, epochs: int) -> float:
    """Epochs charged so far: every ended trial's epochs (``epochs`` is one run's, for the callers' TRE).

    Epochs, not seconds: a study's decisions (what fits in the budget) are counts, so the same study
    trains the same trials on a busy machine as on a quiet one.
    """
    return float(sum(len(t.user_attrs["measurement"].get("epochs", []))
                     for t in study.get_trials(deepcopy=False) if "measurement" in t.user_attrs))


def completed_trials(study: optuna.Study) -> int:
    """Trials that trained for their whole budget (diverged ones report COMPLETE with a penalty)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if t.user_attrs.get("measurement", {}).get("outcome") == "completed")


def waiting_trials(study: optuna.Study, purpose: str | None = None) -> int:
    """Enqueued trials (of ``purpose``, or any) not started yet."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
               if purpose is None or t.user_attrs.get("purpose") == purpose)


def finished_trials(study: optuna.Study, purposes: Sequence[str] = SEARCH_PURPOSES) -> int:
    """Trials of these purposes that ended (interrupted ones excepted): the budget already spent."""
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if "measurement" not in t.user_attrs:
            continue  # its process died mid-trial: re-run by recover_stale_trials, not a spent trial
        outcome = t.user_attrs["measurement"].get("outcome")
        if t.user_attrs.get("purpose", "search") in purposes and outcome not in ("interrupted", "cancelled"):
            count += 1
    return count
