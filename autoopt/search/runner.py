"""The state every stage of a study's strategy shares, and how it runs trials within the budget.

A ``StudyRunner`` holds the study, its candidates, the training setup and the tracker; it knows how
many whole runs the budget, the trial count and the time still allow (``runs_left``) and runs trials
here, in worker processes or fused (``run_queued``, ``run_one``, ``run_sampled``). The stages
(``race.py``, ``portfolio.py``, ``line_search.py``, ``reevaluation.py``) decide *what* to train.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import StudyConfig
from ..optimizers.spec import OptimizerSpec
from ..records import Candidate
from ..study import budget, trials
from ..study.stored import create_study
from ..study.workers import run_forked
from ..tracking.progress import ProgressBar
from ..tracking.tracker import Tracker
from ..training.fused.sizing import max_group_size
from ..training.setup import TrainingSetup
from .trial_runners import group_trainer, trial_runner

#: At most this many trials in one fused pass (memory may allow fewer: ``fused.sizing.max_group_size``).
#: On one CPU thread the speed-up stops growing past 16 and a CNN's grouped convolutions got slower at
#: 64 (benchmarks/fused_throughput.py); a GPU keeps gaining.
MAX_FUSED = {"cpu": 16}
MAX_FUSED_OTHER = 64


@dataclass
class Workers:
    """How to run trials in worker processes: they reopen the storage and start their own tracker."""

    n: int
    storage: Any  # a URL or a journal file path: something a forked process can reopen
    new_tracker: Callable[[], Tracker]
    threads: int | None = None  # torch threads per worker; None: an equal share of the cores


class StudyRunner:
    """Runs trials of the study, here or in worker processes, within the trial count, time and budget."""

    def __init__(self, study: Any, specs: list[OptimizerSpec], setup: TrainingSetup, config: StudyConfig,
                 tracker: Tracker, workers: Workers | None, progress: ProgressBar, deadline: float | None,
                 fused: bool = False) -> None:
        self.study, self.specs, self.setup, self.config = study, specs, setup, config
        self.by_name = {s.name: s for s in specs}
        self.tracker, self.workers, self.progress, self.deadline = tracker, workers, progress, deadline
        self.fused_size = self._fused_size() if fused else 0  # trials one fused pass may hold; 0: none

    def _fused_size(self) -> int:
        """How many trials one fused pass holds: MAX_FUSED, or fewer where memory (or the budget) says so,
        planned for the optimizer with the largest state."""
        cap = MAX_FUSED.get(self.setup.device.type, MAX_FUSED_OTHER)
        model = self.setup.template
        largest = max(self.specs, key=lambda s: s.predict_state_bytes(s.parameters_of(model), s.defaults))
        member = (largest, Candidate(largest.name, dict(largest.defaults)))
        return max_group_size(self.setup, [member] * cap, memory_budget=self.config.memory_budget)

    def runs_left(self, reevaluation: bool = False) -> float:
        """Whole trials that fit in the budget, the trial count and the time that are left."""
        left = math.inf
        limit = self.config.search_epochs if not reevaluation else self.config.total_epochs
        if limit is not None:
            left = math.floor((limit - budget.spent(self.study, self.config.epochs))
                              / self.config.epochs + 1e-9)
            if not budget.completed_trials(self.study) and not reevaluation:
                left = max(left, 1)  # a study always trains one run to the end, however small its budget
        if self.config.n_trials is not None and not reevaluation:
            left = min(left, self.config.n_trials - budget.finished_trials(self.study))
        if self.deadline is not None and time.monotonic() >= self.deadline:
            left = 0
        return max(left, 0)

    def within_space(self, candidate: Candidate) -> Candidate:
        """``candidate`` brought into the study's search space, as its trial will train it."""
        return trials.within_space(candidate, self.by_name[candidate.optimizer], self.config.space)

    def enqueue(self, candidate: Candidate, purpose: str, seed: int | None = None, *,
                extra: dict[str, Any] | None = None, once: str | None = None) -> bool:
        """Queue ``candidate`` for ``purpose`` on ``seed`` (the study's by default): see ``trials.enqueue``."""
        return trials.enqueue(self.study, candidate, self.by_name[candidate.optimizer], self.config.space, purpose,
                              self.config.seed if seed is None else seed, extra=extra, once=once)

    def run_queued(self, purpose: str | None, reevaluation: bool = False) -> None:
        """Run the queued trials of ``purpose`` (None: any) in order, while they fit."""
        while True:
            n = min(budget.waiting_trials(self.study, purpose), self.runs_left(reevaluation))
            if n <= 0:
                return
            self._run(int(n), queued=True)

    def run_one(self, candidate: Candidate, purpose: str) -> bool:
        """Train ``candidate`` now if it fits; False when the budget, the count or the time is spent."""
        if self.runs_left() < 1:
            return False
        self.enqueue(candidate, purpose, once=f"{purpose}:{candidate.key()}")
        self._run(1, here=True)
        return True

    def run_sampled(self) -> None:
        """TPE trials until the budget, the count or the time is spent."""
        while True:
            n = self.runs_left()
            if n <= 0:
                return
            # an unbounded study (a timeout only) samples in rounds, so the deadline is checked between them
            self._run(int(min(n, 50)))

    def _run(self, n: int, here: bool = False, queued: bool = False) -> None:
        """Run ``n`` trials, queued ones first; ``queued``: all of them are queued already, so those of one
        seed can train together (sampled trials are asked for one at a time: each waits for the last),
        and none is sampled in their place once the queue is empty."""
        timeout = None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)
        if self.fused_size > 1 and n > 1 and queued and not here:
            train = group_trainer(self.by_name, self.setup, self.tracker, self.progress)
            trials.run_together(self.study, self.specs, train, self.config.seed, self.config.space, n=n,
                                max_size=self.fused_size, objective=self.config.objective,
                                deadline=self.deadline)
            return
        objective = self._objective(self.tracker, self.progress)
        if self.workers is None or here or n == 1:
            trials.run(self.study, objective, n_trials=n, timeout=timeout, n_jobs=1 if here else self.config.n_jobs,
                       queued=queued)
            return
        workers, config, study = self.workers, self.config, self.study

        def work(index: int) -> None:
            child_tracker = workers.new_tracker()
            share = n // workers.n + (index < n % workers.n)
            child = create_study(study_name=study.study_name, storage=workers.storage, sampler=config.sampler,
                                 pruner=config.pruner, seed=config.seed + 1 + index, epochs=config.epochs,
                                 objective=config.objective)
            status = "FINISHED"
            try:
                trials.run(child, self._objective(child_tracker, ProgressBar(None, enabled=False)),
                           n_trials=share, timeout=timeout, n_jobs=1, queued=queued)
            except KeyboardInterrupt:
                status = "KILLED"
                raise
            finally:
                child_tracker.close(status, end_study=False)

        run_forked(min(workers.n, n), work, threads=workers.threads,
                   on_wait=lambda: self.progress.set_count(budget.spent(study, config.epochs)))

    def _objective(self, tracker: Tracker, progress: ProgressBar) -> Any:
        return trials.make_objective(self.specs, trial_runner(self.by_name, self.setup, tracker, progress),
                                     self.config.seed, self.config.space,
                                     objective=self.config.objective)
