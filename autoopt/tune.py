"""``tune(model, data)``: the whole study, from checked input to a recommendation.

Flow: check the settings and the data (before any training) -> move data and a copy of the model to
the device once -> an Optuna search over (optimizer, its hyperparameters), every trial starting from
the same weights with the same data order -> retrain the best few configurations on extra seeds ->
weigh loss, speed and memory by the policy -> Report.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib import metadata
from typing import Any

import torch
from torch import nn

from . import search
from .config import StudyConfig
from .data import prepare_data
from .device import select_device
from .progress import ProgressBar
from .recommend import format_bytes, recommend
from .records import Candidate, EpochRecord, Measurement, TrialRecord
from .registry import OptimizerSpec, resolve_specs
from .report import Report
from .results import trials_table
from .task import LossFn, infer_task
from .tracking import Tracker, make_tracker
from .training import TrainingInterrupted, TrainingSetup, train_candidate


def tune(
    model: nn.Module,
    data: Any,
    *,
    target: str | None = None,
    val_data: Any = None,
    loss_fn: LossFn | None = None,
    config: StudyConfig | None = None,
    **settings: Any,
) -> Report:
    """Search optimizers and their settings for ``model`` on ``data``; return a Report.

    ``data`` is ``(X, y)`` (numpy or torch), a DataFrame with ``target=``, a torch Dataset or a
    DataLoader; ``val_data`` (same form) is held out from ``data`` when not given. ``settings`` are
    the fields of ``StudyConfig``: ``optimizers``, ``epochs``, ``batch_size``, ``n_trials``,
    ``timeout``, ``policy``, ``memory_budget``, ``seed``, ``storage``, ``study_name``, ``device``,
    ``n_jobs``, ``tracking``, ``verbose`` ... The user's model keeps its weights.

    >>> import torch, autoopt
    >>> X, y = torch.randn(200, 4), torch.randint(0, 2, (200,))
    >>> report = autoopt.tune(torch.nn.Linear(4, 2), (X, y), epochs=2, n_trials=4,
    ...                      optimizers=["adam", "sgd"], tracking=False, verbose=False)
    >>> opt = report.recommendation.build(torch.nn.Linear(4, 2).parameters())
    """
    config = _make_config(config, settings)
    device = select_device(config.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"the model {type(model).__name__} has no trainable parameters (requires_grad=True).")
    split = prepare_data(data, target=target, val_data=val_data, val_fraction=config.val_fraction,
                         seed=config.seed, device=device)
    template = copy.deepcopy(model).to(device)  # the user's model is never touched
    task = infer_task(template, split, loss_fn)
    specs, infeasible = _check_memory(resolve_specs(config.optimizers), trainable, config)
    setup = TrainingSetup(template, split, task, device, config.epochs, config.batch_size, config.seed,
                          config.divergence_factor)

    study_name = config.study_name or f"autoopt-{type(model).__name__.lower()}"
    tracker = make_tracker(config.tracking, config.tracking_uri, config.experiment_name or study_name)
    tracker.start_study(study_name, _study_params(config, split, task.kind, device))
    level = search.quiet_optuna()
    status = "FAILED"
    try:
        study = search.create_study(study_name=study_name, storage=config.storage, sampler=config.sampler,
                                    pruner=config.pruner, seed=config.seed, epochs=config.epochs)
        for record in infeasible:
            tracker.end_trial(record)
        _search(study, specs, setup, config, tracker)
        records = search.read_records(study, specs) + infeasible
        trials = trials_table(records)
        if not (trials["outcome"] == "completed").any():
            errors = trials["error"].dropna()
            raise RuntimeError(
                "no trial completed, so there is nothing to recommend"
                + (f"; the first error was {errors.iloc[0]}" if len(errors) else "")
                + ". Every result is in the study's storage and the tracker."
            )
        recommendation = recommend(trials, config.policy, config.tolerance)
        tracker.log_summary(recommendation, trials)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        search.restore_optuna_verbosity(level)
        tracker.close(status)
    return Report(recommendation, trials, study, config,
                  tracking_uri=getattr(tracker, "tracking_uri", None),
                  parent_run_id=getattr(tracker, "parent_run_id", None))


def _make_config(config: StudyConfig | None, settings: dict[str, Any]) -> StudyConfig:
    valid = StudyConfig.field_names()
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise TypeError(f"tune() got unknown setting(s) {unknown}; valid settings are {valid}.")
    if config is None:
        return StudyConfig(**settings)
    return StudyConfig(**{**{n: getattr(config, n) for n in valid}, **settings})


def _check_memory(
    specs: list[OptimizerSpec], params: list[torch.Tensor], config: StudyConfig
) -> tuple[list[OptimizerSpec], list[TrialRecord]]:
    """Split the candidates into those that fit the memory budget and those skipped as infeasible.

    The need is parameters + gradients + optimizer state, all known from the parameter shapes.
    """
    if config.memory_budget is None:
        return specs, []
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    need = {s.name: 2 * param_bytes + s.predict_state_bytes(params, s.defaults) for s in specs}
    feasible = [s for s in specs if need[s.name] <= config.memory_budget]
    if not feasible:
        smallest = min(specs, key=lambda s: need[s.name])
        raise ValueError(
            f"memory_budget={config.memory_budget} bytes is below every candidate's need; the smallest, "
            f"{smallest.name}, needs {need[smallest.name]} bytes ({format_bytes(need[smallest.name])}: "
            "parameters + gradients + optimizer state). Raise the budget or use a smaller model."
        )
    infeasible = [
        TrialRecord(None, Candidate(s.name, dict(s.defaults)), s.family, config.seed, "skipped",
                    Measurement("infeasible", optimizer_state_bytes=need[s.name] - 2 * param_bytes,
                                peak_memory_bytes=need[s.name],
                                error=f"needs {format_bytes(need[s.name])} > budget {format_bytes(config.memory_budget)}"))
        for s in specs if s not in feasible
    ]
    return feasible, infeasible


def _search(study: Any, specs: list[OptimizerSpec], setup: TrainingSetup, config: StudyConfig,
            tracker: Tracker) -> None:
    """The sampled search, then the re-evaluation of the best configurations on extra seeds."""
    by_name = {s.name: s for s in specs}
    first_run = len(study.trials) == 0
    if first_run and config.enqueue_defaults:
        for spec in specs:
            search.enqueue(study, Candidate(spec.name, dict(spec.defaults)), spec, config.space, "default", config.seed)

    budget = config.trial_budget
    remaining = None if budget is None else max(budget - search.finished_trials(study), 0)
    extra_seeds = [config.seed + i for i in range(1, config.seeds)]
    progress = ProgressBar((remaining or 0) + config.reevaluate_top * len(extra_seeds) if budget else None,
                           config.verbose)

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
            failed = Measurement("failed", error=f"{type(exc).__name__}: {exc}")
            tracker.end_trial(TrialRecord(number, candidate, spec.family, seed, purpose, failed))
            progress.update(TrialRecord(number, candidate, spec.family, seed, purpose, failed))
            raise
        record = TrialRecord(number, candidate, spec.family, seed, purpose, measurement)
        tracker.end_trial(record)
        progress.update(record)
        return measurement

    objective = search.make_objective(specs, run_trial, config.seed, config.space)
    try:
        if remaining is None or remaining > 0:
            search.run(study, objective, n_trials=remaining, timeout=config.timeout, n_jobs=config.n_jobs)
        if extra_seeds and config.reevaluate_top:
            queued = _enqueue_reevaluations(study, by_name, config, extra_seeds)
            search.run(study, objective, n_trials=queued, timeout=None, n_jobs=config.n_jobs)
    finally:
        progress.close()


def _enqueue_reevaluations(study: Any, by_name: dict[str, OptimizerSpec], config: StudyConfig,
                           extra_seeds: list[int]) -> int:
    """Queue the top configurations on the seeds they have not been trained on yet."""
    table = trials_table(search.read_records(study, list(by_name.values())))
    done = table[(table["outcome"] == "completed") & table["purpose"].isin(("search", "default"))]
    top = done.sort_values("final_val_loss").drop_duplicates("config").head(config.reevaluate_top)
    seen = set(zip(table["config"], table["seed"]))
    queued = 0
    for _, row in top.iterrows():
        candidate = Candidate(row["optimizer"], dict(row["params"]))
        for seed in extra_seeds:
            if (row["config"], seed) not in seen:
                search.enqueue(study, candidate, by_name[row["optimizer"]], config.space, "reevaluation", seed)
                queued += 1
    return queued


def _study_params(config: StudyConfig, split: Any, task_kind: str, device: torch.device) -> dict[str, Any]:
    shape = split.describe()
    params = {**config.as_params(), "device": str(device), "task": task_kind,
              "data_n_train": shape["n_train"], "data_n_val": shape["n_val"],
              "data_x_shape": str(shape["x_shape"]), "data_y_shape": str(shape["y_shape"])}
    for package in ("autoopt", "torch", "optuna"):
        try:
            params[f"version_{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            params[f"version_{package}"] = "unknown"
    return params



def load_report(study_name: str, storage: str, *, policy: Any = "default", tolerance: float = 0.01) -> Report:
    """The Report of a stored study, rebuilt from its storage without training anything.

    >>> # report = load_report("digits", "sqlite:///digits.db")
    """
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ValueError(f"no study named {study_name!r} in {storage}; it holds {names}.") from None
    trials = trials_table(search.read_records(study, resolve_specs(None)))
    return Report(recommend(trials, policy, tolerance), trials, study)
