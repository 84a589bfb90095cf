"""The search strategy: what a study spends its training on, in order.

1. Optionally, a learning-rate range test per optimizer narrows its learning-rate range.
2. Each optimizer's known-good defaults are tried first (enqueued), so every family is measured once.
3. The sampled search (TPE with a multi-fidelity pruner) runs until its trial count, its timeout or
   its share of the budget (in training-run equivalents) is spent.
4. The best few configurations are retrained on extra seeds, so a lucky seed cannot win and a
   configuration that diverges on a seed it was not searched with is caught.

Every step records its cost where a resumed study finds it: trials in Optuna's storage, range tests
in the study's user attributes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import search
from .config import StudyConfig
from .lr_range import RangeTest, run_range_test
from .progress import ProgressBar
from .records import Candidate, EpochRecord, Measurement, TrialRecord
from .registry import OptimizerSpec
from .results import trials_table
from .tracking import Tracker
from .training import TrainingInterrupted, TrainingSetup, train_candidate
from .workers import run_forked

#: Range-test length: one epoch of steps, within these bounds.
RANGE_TEST_STEPS = (30, 100)
#: An optimizer whose screening gain is below this fraction of the best gain is clearly dominated.
ELIMINATE_BELOW = 0.25


@dataclass
class Workers:
    """How to run trials in worker processes: they reopen the storage and start their own tracker."""

    n: int
    storage: Any  # a URL or a journal file path: something a forked process can reopen
    new_tracker: Callable[[], Tracker]
    threads: int | None = None  # torch threads per worker; None: an equal share of the cores


def run_strategy(study: Any, specs: list[OptimizerSpec], setup: TrainingSetup, config: StudyConfig,
                 tracker: Tracker, workers: Workers | None = None) -> float:
    """Run the whole search on ``study``; returns the epochs spent on range tests."""
    if config.lr_range_test:
        specs = _narrow_by_range_tests(study, specs, setup, config)
    by_name = {s.name: s for s in specs}
    if len(study.trials) == 0 and config.enqueue_defaults:
        for spec in specs:
            search.enqueue(study, Candidate(spec.name, dict(spec.defaults)), spec, config.space, "screen", config.seed)

    extra_seeds = [config.seed + i for i in range(1, config.seeds)]
    progress = ProgressBar(
        None if config.trial_budget is None else config.trial_budget + config.reevaluation_cost, config.verbose)
    screen_epochs = config.screen_epochs or max(1, config.epochs // 10)
    finished_before = search.finished_trials(study, purposes=search.PURPOSES)

    def phase(n_trials: int | None, timeout: float | None = None, eliminated: frozenset[str] = frozenset(),
              limit: float | None = None, purposes: frozenset[str] = frozenset(search.PURPOSES)) -> None:
        """Run up to ``n_trials`` trials here, or shared among the worker processes."""

        def objective(tracker_: Tracker, progress_: ProgressBar) -> Any:
            return search.make_objective(specs, _trial_runner(by_name, setup, tracker_, progress_), config.seed,
                                         config.space, screen_epochs=screen_epochs, eliminated=eliminated,
                                         epoch_limit=limit, purposes=purposes)

        if workers is None:
            search.run(study, objective(tracker, progress), n_trials=n_trials, timeout=timeout,
                       n_jobs=config.n_jobs, epoch_limit=limit)
            return

        def work(index: int) -> None:
            child_tracker = workers.new_tracker()
            share = None if n_trials is None else n_trials // workers.n + (index < n_trials % workers.n)
            child = search.create_study(study_name=study.study_name, storage=workers.storage,
                                        sampler=config.sampler, pruner=config.pruner,
                                        seed=config.seed + 1 + index, epochs=config.epochs)
            status = "FINISHED"
            try:
                search.run(child, objective(child_tracker, ProgressBar(None, enabled=False)), n_trials=share,
                           timeout=timeout, n_jobs=1, epoch_limit=limit)
            except KeyboardInterrupt:
                status = "KILLED"
                raise
            finally:
                child_tracker.close(status, end_study=False)

        run_forked(workers.n, work, on_wait=lambda: progress.set_count(
            search.finished_trials(study, purposes=search.PURPOSES) - finished_before), threads=workers.threads)

    try:
        limit = config.search_epochs
        phase(search.waiting_trials(study, "screen"), purposes=frozenset({"screen"}))
        eliminated = _dominated(study, specs, screen_epochs) if config.eliminate else frozenset()
        trial_budget = config.trial_budget
        remaining = None if trial_budget is None else max(trial_budget - search.finished_trials(study), 0)
        if not search.completed_trials(study):
            remaining = _enqueue_promotions(study, specs, by_name, config, screen_epochs, remaining)
        if remaining is None and config.timeout is None:
            remaining = 200  # the epoch budget stops the study; this only bounds a pathological loop
        if limit is None or search.spent(study) < limit:
            phase(remaining, config.timeout, eliminated, limit)
        if extra_seeds and config.reevaluate_top:
            leftover = search.waiting_trials(study)  # queued search trials the budget left unrun
            queued = _enqueue_reevaluations(study, by_name, config, extra_seeds)
            phase(leftover + queued, eliminated=eliminated, purposes=frozenset({"reevaluation"}))
    finally:
        progress.close()
    return search.range_test_epochs(study)


def _enqueue_promotions(study: Any, specs: list[OptimizerSpec], by_name: dict[str, OptimizerSpec],
                        config: StudyConfig, screen_epochs: int, remaining: int | None) -> int | None:
    """Queue the best screened configuration for a full run (finished even past the budget, so at
    least one trial completes), then the learning rates half a decade either side of the two best
    screened optimizers': the lr matters more than the optimizer on most problems, and the samplers
    rarely land that close within a few runs' budget. Returns the trial budget left for the search."""
    screened = _ranked_screens(study, specs, screen_epochs)
    if not screened:
        return remaining
    best = screened[0]
    search.enqueue(study, best, by_name[best.optimizer], config.space, "search", config.seed, finish=True)
    remaining = None if remaining is None else max(remaining, 1)
    neighbors = [(c, f) for c in screened[:2] for f in (10**0.5, 10**-0.5)] if config.refine_lr else []
    if remaining is not None:
        neighbors = neighbors[:max(remaining - 1, 0)]
    for candidate, factor in neighbors:
        neighbor = Candidate(candidate.optimizer, {**candidate.params, "lr": candidate.lr * factor})
        search.enqueue(study, neighbor, by_name[candidate.optimizer], config.space, "search", config.seed)
    return remaining


def _screen_losses(study: Any, specs: list[OptimizerSpec], screen_epochs: int) -> list[tuple[float, float, Candidate]]:
    """(initial loss, loss at the screening epoch, candidate) of every screening run that trained cleanly."""
    out = []
    for record in search.read_records(study, specs):
        m = record.measurement
        if record.purpose == "screen" and len(m.epochs) >= screen_epochs and m.outcome != "diverged":
            out.append((m.initial_val_loss, m.epochs[screen_epochs - 1].val_loss, record.candidate))
    return out


def _ranked_screens(study: Any, specs: list[OptimizerSpec], screen_epochs: int) -> list[Candidate]:
    """Screened candidates, best loss at the screening epoch first."""
    return [c for _, _, c in sorted(_screen_losses(study, specs, screen_epochs), key=lambda item: item[1])]


def _dominated(study: Any, specs: list[OptimizerSpec], screen_epochs: int) -> frozenset[str]:
    """Optimizers whose screening run improved the loss by less than ELIMINATE_BELOW of the best one.

    Only optimizers that trained cleanly in screening are judged; one that diverged at its default
    learning rate says nothing yet about its other rates.
    """
    improvement = {c.optimizer: initial - loss for initial, loss, c in _screen_losses(study, specs, screen_epochs)}
    if len(improvement) < 2 or max(improvement.values()) <= 0:
        return frozenset()
    best = max(improvement.values())
    return frozenset(name for name, gain in improvement.items() if gain < ELIMINATE_BELOW * best)


def _trial_runner(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                  progress: ProgressBar) -> search.RunTrial:
    """Train one candidate with the tracker and the progress bar told about it."""

    def run_trial(number: int, candidate: Candidate, seed: int, purpose: str,
                  should_stop: Callable[[EpochRecord], bool]) -> Measurement:
        spec = by_name[candidate.optimizer]
        tracker.start_trial(number, candidate, spec.family, seed, purpose)

        def on_epoch(record: EpochRecord) -> bool:
            tracker.log_epoch(number, record)
            return should_stop(record)

        try:
            measurement = train_candidate(setup, spec, candidate, seed, on_epoch)
        except TrainingInterrupted as exc:
            tracker.end_trial(TrialRecord(number, candidate, spec.family, seed, purpose, exc.measurement))
            raise
        except Exception as exc:
            measurement = Measurement.failure(exc)
            record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
            tracker.end_trial(record)
            progress.update(record)
            raise
        record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
        tracker.end_trial(record)
        progress.update(record)
        return measurement

    return run_trial


def _narrow_by_range_tests(study: Any, specs: list[OptimizerSpec], setup: TrainingSetup,
                           config: StudyConfig) -> list[OptimizerSpec]:
    """Each spec with its lr range narrowed by a range test (run once, stored with the study)."""
    stored = search.load_range_tests(study)
    if stored is None:
        steps_per_epoch = max(1, -(-len(setup.split.train) // setup.batch_size))
        steps = min(max(steps_per_epoch, RANGE_TEST_STEPS[0]), RANGE_TEST_STEPS[1])
        tests = {s.name: run_range_test(setup, s, config.seed, steps) for s in specs}
        stored = {name: {"lrs": t.lrs, "losses": t.losses, "steps": t.steps} for name, t in tests.items()}
        search.save_range_tests(study, stored, sum(t.steps for t in tests.values()) / steps_per_epoch)
    narrowed = []
    for spec in specs:
        entry = stored.get(spec.name)
        test = RangeTest(spec.name, entry["lrs"], entry["losses"], entry["steps"]) if entry else None
        narrowed.append(test.narrowed(spec) if test else spec)
    return narrowed


def _enqueue_reevaluations(study: Any, by_name: dict[str, OptimizerSpec], config: StudyConfig,
                           extra_seeds: list[int]) -> int:
    """Queue the top configurations on the seeds they have not been trained on yet."""
    table = trials_table(search.read_records(study, list(by_name.values())))
    done = table[(table["outcome"] == "completed") & (table["purpose"] == "search")]
    # the best configuration of each of the best optimizers first (near-copies of one configuration at
    # the edge of stability tend to fail together on a new seed), then the next best configurations,
    # so that a study where one optimizer alone completed still uses its re-evaluation budget
    ranked = done.sort_values("final_val_loss").drop_duplicates("config")
    leaders = ranked.drop_duplicates("optimizer")
    top = pd.concat([leaders, ranked.drop(leaders.index)]).head(config.reevaluate_top)
    seen = set(zip(table["config"], table["seed"]))
    affordable = math.inf  # re-runs that fit in what is left of the budget (a promoted run may overrun)
    if config.total_budget is not None:
        affordable = (config.total_budget * config.epochs - search.spent(study)) // config.epochs
    queued = 0
    for _, row in top.iterrows():
        candidate = Candidate(row["optimizer"], dict(row["params"]))
        for seed in extra_seeds:
            if (row["config"], seed) not in seen and queued < affordable:
                search.enqueue(study, candidate, by_name[row["optimizer"]], config.space, "reevaluation", seed)
                queued += 1
    return queued
