"""``tune(model, data)``: the whole study, from checked input to a recommendation.

Flow: check the settings and the data (before any training) -> move data and a copy of the model to
the device once -> an Optuna search over (optimizer, its hyperparameters), every trial starting from
the same weights with the same data order -> retrain the best few configurations on extra seeds ->
weigh loss, speed and memory by the policy -> Report.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import SMALL_MODEL, StudyConfig
from .input_checks import check_arguments, check_memory, check_objective_measurable, make_config
from .optimizers.registry import resolve_specs
from .optimizers.space import apply_space
from .optimizers.spec import OptimizerSpec
from .recommendation.choose import recommend
from .recommendation.table import trials_table
from .report import Report, describe_groups, load_report  # load_report: autoopt.tune.load_report too
from .search.runner import Workers
from .search.strategy import run_strategy
from .study import stored
from .study.budget import save_trial_budget
from .study.storage import dead_trials, recover_stale_trials, storage_lock
from .study.workers import can_fork, journal_path
from .tracking.tracker import Tracker, make_tracker
from .training.device import select_device
from .training.fused import eligibility as fused_eligibility
from .training.intake import prepare_data
from .training.setup import TrainingSetup
from .training.task import LossFn, OutputFn, StepFn, check_device, infer_task


def tune(
    model: nn.Module,
    data: Any,
    *,
    target: str | None = None,
    val_data: Any = None,
    loss_fn: LossFn | None = None,
    output_fn: OutputFn | None = None,
    step_fn: StepFn | None = None,
    config: StudyConfig | None = None,
    **settings: Any,
) -> Report:
    """Search optimizers and their settings for ``model`` on ``data``; return a Report.

    ``data`` is ``(X, y)`` (numpy or torch), a DataFrame with ``target=``, a torch Dataset or a
    DataLoader; ``val_data`` (same form) is held out from ``data`` when not given. ``settings`` are
    the fields of ``StudyConfig``: ``optimizers``, ``epochs``, ``batch_size``, ``n_trials``,
    ``timeout``, ``policy``, ``memory_budget``, ``seed``, ``storage``, ``study_name``, ``device``,
    ``n_jobs``, ``tracking``, ``verbose``, ``space``, ``task``, ``precision`` ... The user's model keeps
    its weights.

    What the model returns may be a tensor, a tuple (first element), a dict or an object with
    ``logits`` / ``loss`` (a model that returns its own loss is trained on it); ``output_fn=`` picks
    the prediction from anything else. DataLoader batches may be tuples (target last) or dicts
    (``labels`` the target, or ``target=`` its key; the rest keyword inputs). ``step_fn(model,
    batch) -> loss`` computes the loss of a batch of any other shape.

    >>> import torch, autoopt
    >>> X, y = torch.randn(200, 4), torch.randint(0, 2, (200,))
    >>> report = autoopt.tune(torch.nn.Linear(4, 2), (X, y), epochs=2, n_trials=4,
    ...                      optimizers=["adam", "sgd"], tracking=False, verbose=False)
    >>> opt = report.recommendation.build(torch.nn.Linear(4, 2).parameters())
    """
    started = time.perf_counter()
    if isinstance(settings.get("optimizers"), type):
        settings["optimizers"] = [settings["optimizers"]]  # named by StudyConfig's error: a class, not a name
    config = make_config(config, settings)
    check_arguments(model, target, loss_fn, output_fn=output_fn, step_fn=step_fn)
    device = select_device(config.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"the model {type(model).__name__} has no trainable parameters (requires_grad=True).")
    check_device(model)
    threads = config.threads or (1 if device.type == "cpu" and sum(p.numel() for p in trainable) < SMALL_MODEL
                                 else None)
    # from here on, the threads trials train with: data intake and task inference run the model too, and
    # two torch threads on two shared cores stalled the first forward passes of a small LSTM by 0.7 s each
    with torch_threads(threads):
        split = prepare_data(data, target=target, val_data=val_data, val_fraction=config.val_fraction,
                             seed=config.seed, device=device, raw_batches=step_fn is not None)
        template = copy.deepcopy(model).to(device)  # the user's model is never touched
        task = infer_task(template, split, loss_fn, output_fn=output_fn, step_fn=step_fn, task=config.task)
        if task.note and config.verbose:
            print(f"autoopt: note: {task.note}", file=sys.stderr)
        check_objective_measurable(config.objective, task, template, split)  # type: ignore[arg-type]
        candidates = resolve_specs(config.optimizers)
        if isinstance(config.space, Mapping):
            candidates = apply_space(candidates, config.space)
        specs, infeasible = check_memory(candidates, model, config)
        metric = config.objective.metric  # type: ignore[union-attr]
        setup = TrainingSetup(template, split, task, device, config.epochs, config.batch_size, config.seed,
                              config.divergence_factor, precision=config.precision,
                              metrics={config.objective.name: metric} if metric else {})  # type: ignore[union-attr]

        study_name = config.study_name or default_study_name(model)
        # a named study has its own experiment; unnamed ones (one per call) share one per model class
        experiment = config.experiment_name or config.study_name or f"autoopt-{type(model).__name__.lower()}"
        tracker = make_tracker(config.tracking, config.tracking_uri, experiment, storage=config.storage)
        study_params = _study_params(config, split, task.kind, device)
        level = stored.quiet_optuna()
        status = "FAILED"
        workers = None
        try:
            # the study first (no training): a resumed one names its MLflow parent run, which the tracker reopens
            study = stored.create_study(study_name=study_name, storage=config.storage, sampler=config.sampler,
                                        pruner=config.pruner, seed=config.seed, epochs=config.epochs,
                                        objective=config.objective)
            stored.save_candidates(study, [s.name for s in candidates])
            # once per study, whichever process gets here first: the others find its parent run in the storage
            with storage_lock(study, "mlflow-parent"):
                tracker.start_study(study_name, study_params, parent_run_id=stored.load_tracking(study)[1])
                stored.save_tracking(study, getattr(tracker, "tracking_uri", None), getattr(tracker, "parent_run_id", None))
            workers = _workers(config, study_name, study_params, threads, lambda: getattr(tracker, "parent_run_id", None))
            if workers is not None and workers.storage is not config.storage:  # a journal file the workers share
                study = stored.create_study(study_name=study_name, storage=workers.storage, sampler=config.sampler,
                                            pruner=config.pruner, seed=config.seed, epochs=config.epochs,
                                            objective=config.objective)
            recover_stale_trials(study)  # trials of a killed process: failed, and queued again once
            save_trial_budget(study, config.trial_budget)  # a total for every process on this study
            stored.save_tracking(study, getattr(tracker, "tracking_uri", None), getattr(tracker, "parent_run_id", None))
            for record in infeasible:
                tracker.end_trial(record)
            # after the store answered (an unreachable one is the first error), before any training
            fused = _decide_fusing(config, setup, specs, workers is None and config.n_jobs == 1)
            run_strategy(study, specs, setup, config, tracker, workers, fused=fused)
            records = stored.read_records(study, specs) + infeasible
            trials = trials_table(records, config.objective, stored.load_candidates(study))  # type: ignore[arg-type]
            times = trial_times(study) if config.tracking else {}
            killed = dead_trials(study) if config.tracking else []
            if not (trials["outcome"] == "completed").any():
                tracker.log_summary(None, trials, records, times, killed)
                errors = trials["error"].dropna()
                raise RuntimeError(
                    "no trial completed, so there is nothing to recommend"
                    + (f"; the first error was {errors.iloc[0]}" if len(errors) else "")
                    + "." + _where_results_are(config)
                )
            recommendation = recommend(trials, config.policy, config.tolerance, config.objective)  # type: ignore[arg-type]
            groups = muon_groups_of(template, device) if recommendation.optimizer == "muon" else None
            stored.save_muon_groups(study, groups)
            describe_groups(recommendation, groups)
            stored.save_recommendation(study, recommendation)
            tracker.log_summary(recommendation, trials, records, times, killed)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            stored.restore_optuna_verbosity(level)
            tracker.close(status)
            if workers is not None and config.storage is None:  # the workers' scratch journal: no leftovers
                if status == "FINISHED":
                    study = stored.in_memory_copy(study)
                shutil.rmtree(Path(workers.storage).parent, ignore_errors=True)
        return Report(recommendation, trials, study, config,
                      epochs_spent=float(trials["epochs"].sum()),
                      tracking_uri=getattr(tracker, "tracking_uri", None),
                      parent_run_id=getattr(tracker, "parent_run_id", None),
                      tracking_unsent=getattr(tracker, "unsent", 0),
                      wall_seconds=time.perf_counter() - started)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch's CPU threads set to ``n`` (unchanged for None) for the block, restored after it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _decide_fusing(config: StudyConfig, setup: TrainingSetup, specs: list[OptimizerSpec], in_process: bool) -> bool:
    """Whether trials queued together train in one fused pass; ``fused=True`` where it cannot is an error
    here, before any training, and the automatic choice says in one line why it does not fuse."""
    if config.fused is False or not in_process:
        return False
    if config.fused is None and setup.device.type not in fused_eligibility.DEFAULT_DEVICES:
        return False  # measured no faster there (training.fused.eligibility.DEFAULT_DEVICES)
    problem = fused_eligibility.why_not_fused(setup, specs)
    if problem is None:
        return True
    if config.fused:
        raise ValueError(f"fused=True, but this study cannot train its candidates in one fused pass: {problem}. "
                         "Pass fused=None (fuse where it applies) or fused=False.")
    if config.verbose:
        print(f"autoopt: note: trials train one at a time, not fused: {problem}", file=sys.stderr)
    return False


def _where_results_are(config: StudyConfig) -> str:
    """Where a failed study's trials can be read, if anywhere."""
    places = []
    if config.storage is not None:
        places.append("the study's storage")
    if config.tracking:
        places.append("the tracker")
    return f" Every trial is recorded in {' and '.join(places)}." if places else ""


def default_study_name(model: nn.Module) -> str:
    """A new study per call: ``autoopt-linear-20261201-213501-4f2a`` (model class, local time, and a
    random suffix so that two calls in the same second differ)."""
    return f"autoopt-{type(model).__name__.lower()}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def trial_times(study: Any) -> dict[int, tuple[int, int]]:
    """Trial number -> (start, end) in ms since the epoch, from the storage: the training's own times,
    for MLflow runs written after the fact (a backfill)."""
    out = {}
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is not None and t.datetime_complete is not None:
            out[t.number] = (int(t.datetime_start.timestamp() * 1000), int(t.datetime_complete.timestamp() * 1000))
    return out


def _workers(config: StudyConfig, study_name: str, params: dict[str, Any], threads: int | None,
             parent_run_id: Any = lambda: None) -> Workers | None:
    """Worker processes for n_jobs > 1, where the storage can be reopened by a forked process."""
    if config.n_jobs == 1 or config.parallel != "processes" or not can_fork():
        return None
    if config.storage is not None and not isinstance(config.storage, str):
        return None  # a storage object cannot be reopened in another process: threads it is

    def new_tracker() -> Tracker:
        tracker = make_tracker(config.tracking, config.tracking_uri, config.experiment_name or study_name)
        tracker.start_study(study_name, params, parent_run_id=parent_run_id())
        return tracker

    return Workers(config.n_jobs, config.storage or journal_path(), new_tracker, threads)


def _study_params(config: StudyConfig, split: Any, task_kind: str, device: torch.device) -> dict[str, Any]:
    shape = split.describe()
    params = {**config.as_params(), "device": str(device), "task": task_kind,
              "data_n_train": shape["n_train"], "data_n_val": shape["n_val"],
              "data_x_shape": str(shape["x_shape"]), "data_y_shape": str(shape["y_shape"])}
    for package in ("autoopt", "torch", "optuna"):
        params[f"version_{package}"] = package_version(package)
    return params


@functools.lru_cache(maxsize=None)
def package_version(package: str) -> str:
    """An installed package's version, or "unknown"; read once per process (importlib.metadata parses
    the package's METADATA file on every call: 5-15 ms a study for three packages)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def muon_groups_of(model: nn.Module, device: torch.device) -> dict[str, Any]:
    """Muon's split of ``model`` (the names of its hidden matrices) and its Newton-Schulz dtype on
    ``device``: stored with the study, so that a stored study's report prints the same code."""
    from .optimizers.muon import newton_schulz_dtype
    from .optimizers.param_roles import muon_parameter_names

    dtype = newton_schulz_dtype(device.type)
    why = "cuda" if device.type == "cuda" else "fast" if dtype == torch.bfloat16 else "slow"
    return {"muon_parameters": muon_parameter_names(model), "ns_dtype": str(dtype).removeprefix("torch."), "why": why}
