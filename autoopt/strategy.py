"""The search strategy: what a study spends its budget on, in order.

Below ``HALVING_BELOW`` training-run equivalents (TRE) of budget, a study starts with successive halving
over the portfolio instead (0): every entry the budget allows trains together, a third of them go on at
each rung, one reaches the end, and no epoch is trained twice (the survivors continue; nothing restarts).
On the corpus's 24 development problems (``benchmarks/simulate.py``, portfolio learned leave-fold-out)
that gave 64% mean regret at 2 TRE against 151% for training entries one by one, and lost to it from
3 TRE on (50% against 40%).

1. **Portfolio.** Configurations chosen on the benchmark corpus's development problems
   (``autoopt/portfolio.json``, made by ``benchmarks/make_portfolio.py``), trained in order at full
   length. Each is good on many problems, and together they cover the kinds of problem where the first
   one is not: the first entry alone is budget 1's answer. Entries train to the end: no pruner by
   default (``pruner=`` sets one; pruning portfolio runs early lost on the corpus).
2. **Learning-rate line search** around the best configuration so far: a third of a decade up and down,
   then on in the direction that improves, while it improves (the learning rate matters more than the
   optimizer on most problems, and the corpus's best rates are spread over three decades).
3. **The rest of the portfolio, then Optuna's TPE** over the full conditional space, warm-started by
   everything the study already trained.
4. Optionally, **re-evaluation** of the best configurations on extra seeds (``reevaluate_top``; off by
   default: on the dev fold, for real on held-out seeds, it raised mean regret at 10 and 20 TRE).

Where the study fuses (``fused=True``, or by default on CUDA), the trials queued together, the
portfolio's entries, a halving race or re-runs of one seed, train in one fused pass (``autoopt.fused``),
each still its own trial; line-search steps and TPE trials, which wait on the one before, train alone.

The recommendation (``recommend.py``) then compares configurations by their loss averaged with their
learning-rate neighbours', which guards longer searches against a lucky single-seed loss.

The budget is in training-run equivalents (TRE): epochs spent over the epochs of one run, and a trial
whose epochs take more than ``COSTLY`` times a bare epoch (one plain pass over the data, measured once
per study) is charged for the extra time. A trial starts only while a whole run fits in what is left,
so the budget is never overrun and no run is cut short by it. Every step is stored in the study, so a
resumed study replays the same decisions from its storage and queues nothing twice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import search
from .config import StudyConfig
from .fused import FusedInterrupted, GroupStop, max_group_size, train_fused
from .objective import VAL_LOSS, Objective
from .portfolio import portfolio_candidates
from .progress import ProgressBar
from .records import Candidate, EpochRecord, Measurement, TrialRecord
from .registry import OptimizerSpec
from .results import trials_table
from .tracking import Tracker
from .training import TrainingInterrupted, TrainingSetup, measure_bare_epoch, train_candidate
from .workers import run_forked

#: Learning-rate steps of the line search: a third of a decade, the corpus grid's spacing.
LR_STEP = 10 ** (1 / 3)
#: Line-search steps at most in one direction (a guard; the budget usually stops it first).
MAX_STEPS = 6
#: Budgets (TRE) below which the portfolio is raced by successive halving instead of run entry by entry.
HALVING_BELOW = 3.0
#: Successive halving keeps the best 1 / HALVING_RATE of its runs at each rung.
HALVING_RATE = 3
#: At most this many portfolio entries train at once in successive halving.
HALVING_MAX = 27
#: At most this many trials in one fused pass (memory may allow fewer: ``fused.max_group_size``). On
#: one CPU thread the speed-up stops growing past 16 and a CNN's grouped convolutions got slower at 64
#: (benchmarks/fused_throughput.py); a GPU keeps gaining.
MAX_FUSED = {"cpu": 16}
MAX_FUSED_OTHER = 64


@dataclass
class Workers:
    """How to run trials in worker processes: they reopen the storage and start their own tracker."""

    n: int
    storage: Any  # a URL or a journal file path: something a forked process can reopen
    new_tracker: Callable[[], Tracker]
    threads: int | None = None  # torch threads per worker; None: an equal share of the cores


def run_strategy(study: Any, specs: list[OptimizerSpec], setup: TrainingSetup, config: StudyConfig,
                 tracker: Tracker, workers: Workers | None = None, fused: bool = False) -> None:
    """Run the whole search on ``study``: portfolio, line search, TPE, re-evaluation.

    ``fused``: trials queued together (the portfolio's entries, a halving race, re-evaluations of one
    seed) train in one fused pass (``autoopt.fused``) instead of one after another; the caller decides
    whether the model allows it (``fused.why_not_fused``)."""
    by_name = {s.name: s for s in specs}
    if search.bare_epoch_seconds(study) is None:
        search.save_bare_epoch_seconds(study, measure_bare_epoch(setup))
    progress = ProgressBar.for_study(config, search.spent(study, config.epochs), config.verbose)
    clock = search.start_clock(study)  # the timeout is the study's total: earlier processes' time counts
    deadline = None if config.timeout is None else time.monotonic() + clock.left(config.timeout)
    runner = _Runner(study, specs, by_name, setup, config, tracker, workers, progress, deadline,
                     fused and workers is None)
    try:
        if not study.trials and config.total_budget is not None and config.total_budget < HALVING_BELOW:
            runner.run_halving()
        runner.run_portfolio(config.refine_after)
        if config.refine_lr:
            _line_search(runner)
        runner.run_portfolio(None)
        runner.run_sampled()
        if config.reevaluate_top and config.seeds > 1:
            _enqueue_reevaluations(study, by_name, config, [config.seed + i for i in range(1, config.seeds)])
            runner.run_queued("reevaluation", reevaluation=True)
        progress.finish()
    finally:
        search.stop_clock(study)
        progress.close()


class _Runner:
    """Runs trials of the study, here or in worker processes, within the trial count, time and budget."""

    def __init__(self, study: Any, specs: list[OptimizerSpec], by_name: dict[str, OptimizerSpec],
                 setup: TrainingSetup, config: StudyConfig, tracker: Tracker, workers: Workers | None,
                 progress: ProgressBar, deadline: float | None, fused: bool = False) -> None:
        self.study, self.specs, self.by_name, self.setup = study, specs, by_name, setup
        self.config, self.tracker, self.workers, self.progress = config, tracker, workers, progress
        self.deadline = deadline
        self.costly_seconds = search.COSTLY * config.epochs * search.bare_epoch_seconds(study)
        self.fused_size = self._fused_size() if fused else 0  # trials one fused pass may hold; 0: none

    def _fused_size(self) -> int:
        """How many trials one fused pass holds: MAX_FUSED, or fewer where memory (or the budget) says so,
        planned for the optimizer with the largest state."""
        cap = MAX_FUSED.get(self.setup.device.type, MAX_FUSED_OTHER)
        params = [p for p in self.setup.template.parameters() if p.requires_grad]
        largest = max(self.specs, key=lambda s: s.predict_state_bytes(params, s.defaults))
        member = (largest, Candidate(largest.name, dict(largest.defaults)))
        return max_group_size(self.setup, [member] * cap, memory_budget=self.config.memory_budget)

    def runs_left(self, reevaluation: bool = False) -> float:
        """Whole trials that fit in the budget, the trial count and the time that are left."""
        left = math.inf
        limit = self.config.search_epochs if not reevaluation else self.config.total_epochs
        if limit is not None:
            left = math.floor((limit - search.spent(self.study, self.config.epochs, self.costly_seconds))
                              / self.config.epochs + 1e-9)
            if not search.completed_trials(self.study) and not reevaluation:
                left = max(left, 1)  # a study always trains one run to the end, however small its budget
        if self.config.n_trials is not None and not reevaluation:
            left = min(left, self.config.n_trials - search.finished_trials(self.study))
        if self.deadline is not None and time.monotonic() >= self.deadline:
            left = 0
        return max(left, 0)

    def run_portfolio(self, at_most: int | None) -> None:
        """Train the portfolio's entries in order until ``at_most`` of them (in all) have been queued.

        Entries are queued only when they are about to run (Optuna runs queued trials first in, first
        out, so a line-search step queued later must not wait behind the whole portfolio); each
        entry's index is stored with its trial, so none is queued twice, on resume or by a worker.
        """
        entries = portfolio_candidates(self.specs)
        if at_most is not None:
            entries = entries[:at_most]
        while True:
            queued = {t.user_attrs.get("portfolio_index") for t in self.study.get_trials(deepcopy=False)}
            todo = [i for i in range(len(entries)) if i not in queued]
            n = int(min(len(todo), self.runs_left()))
            if n <= 0:
                self.run_queued("portfolio")  # entries queued by a run that was stopped
                return
            for i in todo[:n]:
                candidate = entries[i]
                search.enqueue(self.study, candidate, self.by_name[candidate.optimizer], self.config.space,
                               "portfolio", self.config.seed, extra={"portfolio_index": i}, once=f"portfolio:{i}")
            self.run_queued("portfolio")

    def run_halving(self) -> None:
        """Successive halving with continuation over as many portfolio entries as the budget affords.

        The entries train at once in threads; at each rung every running entry waits for the others
        (a ``Rendezvous``), and only the best 1/HALVING_RATE go on. Each entry is still one trial.
        """
        entries = portfolio_candidates(self.specs)[:HALVING_MAX]
        epochs, budget = self.config.epochs, self.config.total_epochs - self.config.reevaluation_cost * self.config.epochs
        n = 1
        while n < len(entries) and halving_plan(n + 1, epochs, HALVING_RATE)[2] <= budget:
            n += 1
        if n < 2:
            return
        sizes, rungs, _ = halving_plan(n, epochs, HALVING_RATE)
        for i, candidate in enumerate(entries[:n]):
            search.enqueue(self.study, candidate, self.by_name[candidate.optimizer], self.config.space, "portfolio",
                           self.config.seed, extra={"portfolio_index": i, "group": True}, once=f"portfolio:{i}")
        rendezvous = Rendezvous(dict(zip(rungs[:-1], sizes[1:])), n)
        if self.fused_size >= n:  # one fused pass; its rungs are decided once an epoch
            train = _group_trainer(self.by_name, self.setup, self.tracker, self.progress,
                                   rendezvous.group_stop(self.config.objective))
            search.run_together(self.study, self.specs, train, self.config.seed, self.config.space, n=n, max_size=n,
                                purposes=frozenset({"portfolio"}), objective=self.config.objective)
            return
        objective = search.make_objective(
            self.specs, _trial_runner(self.by_name, self.setup, self.tracker, self.progress, rendezvous,
                                      self.config.objective),
            self.config.seed, self.config.space, purposes=frozenset({"portfolio"}), objective=self.config.objective)
        search.run(self.study, objective, n_trials=n, timeout=None, n_jobs=n)

    def run_queued(self, purpose: str, reevaluation: bool = False) -> None:
        """Run the queued trials of ``purpose`` in order, while they fit."""
        while True:
            n = min(search.waiting_trials(self.study, purpose), self.runs_left(reevaluation))
            if n <= 0:
                return
            self._run(int(n), frozenset({purpose}), queued=True)

    def run_one(self, candidate: Candidate, purpose: str) -> bool:
        """Train ``candidate`` now if it fits; False when the budget, the count or the time is spent."""
        if self.runs_left() < 1:
            return False
        search.enqueue(self.study, candidate, self.by_name[candidate.optimizer], self.config.space, purpose,
                       self.config.seed, once=f"{purpose}:{candidate.key()}")
        self._run(1, frozenset({purpose}), here=True)
        return True

    def run_sampled(self) -> None:
        """TPE trials until the budget, the count or the time is spent."""
        while True:
            n = self.runs_left()
            if n <= 0:
                return
            # an unbounded study (a timeout only) samples in rounds, so the deadline is checked between them
            self._run(int(min(n, 50)), frozenset({"search"}))

    def _run(self, n: int, purposes: frozenset[str], here: bool = False, queued: bool = False) -> None:
        """Run ``n`` trials of ``purposes``; ``queued``: all of them are queued already, so those of one
        seed can train together (sampled trials are asked for one at a time: each waits for the last)."""
        timeout = None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)
        if self.fused_size > 1 and n > 1 and queued and not here:
            train = _group_trainer(self.by_name, self.setup, self.tracker, self.progress)
            search.run_together(self.study, self.specs, train, self.config.seed, self.config.space, n=n,
                                max_size=self.fused_size, purposes=purposes, objective=self.config.objective,
                                deadline=self.deadline)
            return
        objective = self._objective(self.tracker, self.progress, purposes)
        if self.workers is None or here or n == 1:
            search.run(self.study, objective, n_trials=n, timeout=timeout, n_jobs=1 if here else self.config.n_jobs)
            return
        workers, config, study = self.workers, self.config, self.study

        def work(index: int) -> None:
            child_tracker = workers.new_tracker()
            share = n // workers.n + (index < n % workers.n)
            child = search.create_study(study_name=study.study_name, storage=workers.storage, sampler=config.sampler,
                                        pruner=config.pruner, seed=config.seed + 1 + index, epochs=config.epochs,
                                        objective=config.objective)
            status = "FINISHED"
            try:
                search.run(child, self._objective(child_tracker, ProgressBar(None, enabled=False), purposes),
                           n_trials=share, timeout=timeout, n_jobs=1)
            except KeyboardInterrupt:
                status = "KILLED"
                raise
            finally:
                child_tracker.close(status, end_study=False)

        run_forked(min(workers.n, n), work, threads=workers.threads,
                   on_wait=lambda: self.progress.set_count(search.spent(study, config.epochs)))

    def _objective(self, tracker: Tracker, progress: ProgressBar, purposes: frozenset[str]) -> Any:
        return search.make_objective(self.specs, _trial_runner(self.by_name, self.setup, tracker, progress),
                                     self.config.seed, self.config.space, purposes=purposes,
                                     objective=self.config.objective)


def halving_plan(n: int, epochs: int, rate: int) -> tuple[list[int], list[int], int]:
    """(runs alive at each rung, the rung epochs, epochs in all) of successive halving from ``n`` runs.

    >>> halving_plan(9, 18, 3)
    ([9, 3, 1], [2, 6, 18], 48)
    """
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // rate))
    m = len(sizes)
    rungs = [max(1, round(epochs / rate ** (m - 1 - i))) for i in range(m)]
    rungs[-1] = epochs
    total = sum(size * (rung - (rungs[i - 1] if i else 0)) for i, (size, rung) in enumerate(zip(sizes, rungs)))
    return sizes, rungs, total


class Rendezvous:
    """Where runs trained at once meet at each rung: each waits for the others, then the best go on.

    ``keep`` maps a rung epoch to how many runs continue past it. A run that ends for any reason before
    a rung (diverged, failed, completed) calls ``leave`` so that nobody waits for it.
    """

    def __init__(self, keep: dict[int, int], members: int) -> None:
        self.keep, self.members = keep, members
        self._cond = threading.Condition()
        self._joined = 0  # no decision before every member has started: a late one would miss it
        self._running: set[int] = set()
        self._losses: dict[int, dict[int, float]] = {epoch: {} for epoch in keep}

    def join(self, member: int) -> None:
        with self._cond:
            self._running.add(member)
            self._joined += 1
            self._cond.notify_all()

    def leave(self, member: int) -> None:
        with self._cond:
            self._running.discard(member)
            self._cond.notify_all()

    def should_stop(self, member: int, epoch: int, loss: float) -> bool:
        """At a rung, wait for every running member, then stop unless among the ``keep[epoch]`` best.

        ``loss``: lower is better (the objective's score)."""
        if epoch not in self.keep:
            return False
        with self._cond:
            losses = self._losses[epoch]
            losses[member] = loss if math.isfinite(loss) else math.inf
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._joined >= self.members and self._running <= set(losses))
            best = _best(losses, self.keep[epoch])
            if member not in best:
                self._running.discard(member)
                self._cond.notify_all()
                return True
            return False

    def group_stop(self, objective: Objective) -> GroupStop:
        """The rungs for runs trained in one fused pass, where every member's epoch ends at once: at a
        rung, the members not among the ``keep[epoch]`` best stop (ranked by ``objective``)."""

        def stop(epoch: int, records: dict[int, EpochRecord]) -> set[int]:
            if epoch not in self.keep:
                return set()
            scores = {}
            for member, record in records.items():
                score = objective.score(objective.value(record))
                scores[member] = score if math.isfinite(score) else math.inf
            return set(scores) - set(_best(scores, self.keep[epoch]))

        return stop


def _best(scores: dict[int, float], keep: int) -> list[int]:
    """The ``keep`` members with the lowest scores (ties: the member first in order)."""
    return sorted(scores, key=lambda m: (scores[m], m))[:keep]


def _line_search(runner: _Runner) -> None:
    """Step the best configuration's learning rate by LR_STEP up and down; go on while it improves.

    Replayed from the storage on resume: a step already trained is read back, not trained again.
    """
    tried: set[str] = set()
    while True:
        best = _best_completed(runner)
        if best is None or best.key() in tried:
            return
        tried.add(best.key())
        best_loss = _loss_of(runner, best)
        spec = runner.by_name[best.optimizer]
        low, high = _lr_bounds(spec)
        for direction in (LR_STEP, 1 / LR_STEP):
            lr = best.lr
            for _ in range(MAX_STEPS):
                lr *= direction
                if not low <= lr <= high:
                    break
                step = Candidate(best.optimizer, {**best.params, "lr": lr})  # queued once: see run_one
                loss = _loss_of(runner, step)
                if loss is None and not _tried(runner, step):
                    if not runner.run_one(step, "refine"):
                        return
                    loss = _loss_of(runner, step)
                if loss is None or loss >= best_loss:
                    break
                best_loss = loss


def _lr_bounds(spec: OptimizerSpec) -> tuple[float, float]:
    dim = next(d for d in spec.space if d.name == "lr")
    return dim.low, dim.high


def _records(runner: _Runner) -> list[TrialRecord]:
    return [r for r in search.read_records(runner.study, runner.specs) if r.purpose != "reevaluation"]


def _score(runner: _Runner, measurement: Measurement) -> float:
    """The trial's final objective, lower is better: what the line search compares."""
    objective = runner.config.objective
    return objective.score(objective.final(measurement))


def _best_completed(runner: _Runner) -> Candidate | None:
    done = [r for r in _records(runner) if r.measurement.outcome == "completed"]
    return min(done, key=lambda r: _score(runner, r.measurement)).candidate if done else None


def _tried(runner: _Runner, candidate: Candidate) -> bool:
    return any(r.candidate.key() == candidate.key() for r in _records(runner))


def _loss_of(runner: _Runner, candidate: Candidate) -> float | None:
    """The final objective score of ``candidate`` if it completed in this study (any purpose but
    re-evaluation); lower is better."""
    for r in _records(runner):
        if r.candidate.key() == candidate.key() and r.measurement.outcome == "completed":
            return _score(runner, r.measurement)
    return None


def _trial_runner(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                  progress: ProgressBar, rendezvous: Rendezvous | None = None,
                  objective: Objective = VAL_LOSS) -> search.RunTrial:
    """Train one candidate with the tracker and the progress bar told about it (and the rendezvous of
    the runs it trains beside, in successive halving, which ranks them by ``objective``)."""

    def run_trial(number: int, candidate: Candidate, seed: int, purpose: str,
                  should_stop: Callable[[EpochRecord], bool]) -> Measurement:
        spec = by_name[candidate.optimizer]
        tracker.start_trial(number, candidate, spec.family, seed, purpose)

        def on_epoch(record: EpochRecord) -> bool:
            tracker.log_epoch(number, record)
            stop = should_stop(record)
            if rendezvous is not None and not stop:
                stop = rendezvous.should_stop(number, record.epoch, objective.score(objective.value(record)))
            return stop

        if rendezvous is not None:
            rendezvous.join(number)
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
        finally:
            if rendezvous is not None:
                rendezvous.leave(number)
        record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
        tracker.end_trial(record)
        progress.update(record)
        return measurement

    return run_trial


def _group_trainer(by_name: dict[str, OptimizerSpec], setup: TrainingSetup, tracker: Tracker,
                   progress: ProgressBar, group_stop: GroupStop | None = None) -> search.TrainGroup:
    """Train a group of trials of one seed in one fused pass, with the tracker and the progress bar told
    about each as ``_trial_runner`` tells them about one."""

    def train_group(members: list[search.GroupMember]) -> list[Measurement]:
        specs = [by_name[candidate.optimizer] for _, candidate, _, _, _ in members]

        def record(i: int, measurement: Measurement) -> TrialRecord:
            number, candidate, seed, purpose, _ = members[i]
            return TrialRecord(number, candidate, specs[i].family, seed, purpose, measurement)

        def on_epoch(number: int, should_stop: Callable[[EpochRecord], bool]) -> Callable[[EpochRecord], bool]:
            def callback(epoch: EpochRecord) -> bool:
                tracker.log_epoch(number, epoch)
                return should_stop(epoch)
            return callback

        for (number, candidate, seed, purpose, _), spec in zip(members, specs):
            tracker.start_trial(number, candidate, spec.family, seed, purpose)
        try:
            measurements = train_fused(setup, [(spec, m[1]) for spec, m in zip(specs, members)], members[0][2],
                                       [on_epoch(m[0], m[4]) for m in members], group_stop=group_stop)
        except FusedInterrupted as stop:
            for i, measurement in enumerate(stop.measurements):
                tracker.end_trial(record(i, measurement))
            raise
        except Exception as exc:  # the shared pass itself failed: every member with it
            measurements = [Measurement.failure(exc) for _ in members]
        for i, measurement in enumerate(measurements):
            done = record(i, measurement)
            tracker.end_trial(done)
            progress.update(done)
        return measurements

    return train_group


def _enqueue_reevaluations(study: Any, by_name: dict[str, OptimizerSpec], config: StudyConfig,
                           extra_seeds: list[int]) -> None:
    """Queue the top configurations on the seeds they have not been trained on yet (once)."""
    table = trials_table(search.read_records(study, list(by_name.values())), config.objective)
    done = table[(table["outcome"] == "completed") & (table["purpose"] != "reevaluation")]
    # the best configuration of each of the best optimizers first (near-copies of one configuration at
    # the edge of stability tend to fail together on a new seed), then the next best configurations
    done = done.assign(_score=config.objective.score(done["objective"]))
    ranked = done.sort_values("_score").drop_duplicates("config")
    leaders = ranked.drop_duplicates("optimizer")
    top = pd.concat([leaders, ranked.drop(leaders.index)]).head(config.reevaluate_top)
    seen = set(zip(table["config"], table["seed"]))
    queued = {(t.user_attrs.get("key"), t.user_attrs.get("seed")) for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("purpose") == "reevaluation"}
    for _, row in top.iterrows():
        candidate = Candidate(row["optimizer"], dict(row["params"]))
        for seed in extra_seeds:
            if (row["config"], seed) not in seen and (candidate.key(), seed) not in queued:
                search.enqueue(study, candidate, by_name[row["optimizer"]], config.space, "reevaluation", seed,
                               once=f"reevaluation:{candidate.key()}:{seed}")
