"""``autoopt run`` (a study file: search, recommend, report; again to resume) and ``autoopt worker``
(one more process on a study that other machines share).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from typing import Any

from .output import EXIT_INTERRUPTED, EXIT_OK, error, print_mlflow_link, print_report, say
from .recipes import load_recipe, recipe_defaults
from .stored import FINISHED_KEY, sqlite_path

#: Settings that do not change what a study trains or recommends: where it runs and what it prints.
_NOT_DECIDING = ("device", "verbose")


def run_command(args: argparse.Namespace, argv: list[str]) -> int:
    from .studyfile import load_study_file

    study = load_study_file(args.study_file)
    flags = dict(n_trials=args.trials, timeout=args.timeout, budget=args.budget, epochs=args.epochs,
                 storage=args.storage, study_name=args.study_name, tracking_uri=args.tracking_uri, device=args.device,
                 tracking=False if args.no_tracking else None, verbose=False if args.quiet else None)
    if _print_if_finished(study, flags, None if args.quiet else sys.stderr):
        return EXIT_OK
    from ..training.device import select_device
    from ..tune import tune  # looked up when called, so that a test can stand in for it
    recipe = load_recipe(study.recipe, study.base_dir)
    config = study.resolve(recipe, **flags)
    select_device(config.device)  # a bad --device is a usage error before anything is built
    model, data = recipe.make(seed=config.seed)  # before any output, so that its error is the only line
    notes = None if args.quiet else sys.stderr
    done = _finished_trials(config.storage, config.study_name)
    say(notes, f"study '{config.study_name}' in {config.storage}"
                + (f": resuming, {done} search trial(s) already done" if done else ""))
    say(notes, f"  recipe {recipe.name}: {recipe.description or recipe.source}")
    say(notes, f"  {_plan(config)}")
    # Optuna logs each failed trial with its traceback, Ctrl-C included. Here a failure is recorded with
    # its error in the study and named in the report, and Ctrl-C gets its own line: spare the terminal.
    optimize_log = logging.getLogger("optuna.study._optimize")
    level = optimize_log.level
    if not args.debug:
        optimize_log.setLevel(logging.ERROR)
    try:
        report = tune(model, data, config=config)
    except KeyboardInterrupt:
        kept = _finished_trials(config.storage, config.study_name)
        error(f"interrupted; {kept} finished search trial(s) are kept in {config.storage}. "
               f"Resume with: {shlex.join(['autoopt', *argv])}", kind="")
        return EXIT_INTERRUPTED
    finally:
        optimize_log.setLevel(level)

    _print_result(report, config)
    if not report.tracking_unsent:  # MLflow missed something: the next run writes it, so it must run
        _note_finished(report, _settings_key(config, study.recipe))
    return EXIT_OK


def _note_finished(report: Any, settings: str) -> None:
    """Note in the storage that a run with ``settings`` finished the study as it now is."""
    note = {"settings": settings, "trials": len(report.study.get_trials(deepcopy=False)),
            "link": report.mlflow_link or ""}
    try:
        report.study.set_user_attr(FINISHED_KEY, note)
    except Exception as exc:  # only a shortcut for the next run is lost: say so, the result stands
        print(f"autoopt: note: could not note the finished run in the storage ({type(exc).__name__}: {exc}); "
              "the next run of this study rereads it in full.", file=sys.stderr)


def _print_result(report: Any, config: Any) -> None:
    out = sys.stdout
    print_report(report, config.study_name, config.storage, out)
    if not config.tracking:
        print("MLflow: not recorded (tracking off).", file=out)
    elif report.tracking_uri:
        print_mlflow_link(report, config.tracking_uri, out)
    print("Run the same command again to resume the study (raise --trials or --budget to search longer).", file=out)


def _settings_key(config: Any, recipe_ref: str) -> str:
    """What decides what a run of the study trains and recommends, as one string to compare."""
    params = {k: v for k, v in config.as_params().items() if k not in _NOT_DECIDING}
    params["recipe"] = recipe_ref
    if config.tracking and config.tracking_uri is None:
        params["MLFLOW_TRACKING_URI"] = os.environ.get("MLFLOW_TRACKING_URI")
    return json.dumps(params, sort_keys=True, default=str)


def _print_if_finished(study: Any, flags: dict[str, Any], notes: Any) -> bool:
    """Print the result of a study that a run with the same settings finished, and nothing has changed
    since (no trial added, none running or queued), read from the storage: the recipe is not loaded
    and nothing is trained, so neither torch nor MLflow is imported. False when it may have work left."""
    recipe = recipe_defaults(study.recipe, study.base_dir)  # EPOCHS and BATCH_SIZE, read from the source
    if recipe is None:
        return False
    config = study.resolve(recipe, **flags)
    path = sqlite_path(config.storage) if isinstance(config.storage, str) else None
    if not isinstance(config.storage, str) or (path is not None and not path.exists()):
        return False
    try:
        import optuna
        from optuna.trial import TrialState

        from ..study.storage import open_storage

        stored = optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage))
        trials = stored.get_trials(deepcopy=False)
    except Exception:  # no such study, or a storage that the full run will report properly
        return False
    marker = stored.user_attrs.get(FINISHED_KEY)
    if not isinstance(marker, dict) or marker.get("settings") != _settings_key(config, study.recipe) \
            or marker.get("trials") != len(trials) \
            or any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
        return False
    from ..report import load_report

    report = load_report(config.study_name, config.storage, policy=config.policy, tolerance=config.tolerance)
    report._mlflow_link = marker.get("link") or ""
    say(notes, f"study '{config.study_name}' in {config.storage}: finished with these settings, nothing to train; "
               "its result, from the storage:")
    _print_result(report, config)
    return True


def _plan(config: Any) -> str:
    """What the run will do, in one line."""
    names = ", ".join(config.optimizers) if config.optimizers else "every registered optimizer"
    limits = []
    if config.trial_budget is not None:
        limits.append(f"{config.trial_budget} search trials in all")
    if config.timeout is not None:
        limits.append(f"at most {config.timeout:g} s")
    if config.total_budget is not None:
        limits.append(f"a budget of {config.total_budget:g} training runs")
    plan = f"{names}; {' or '.join(limits)}; {config.epochs} epochs of batch {config.batch_size} per trial"
    if config.reevaluate_top and config.seeds > 1:
        plan += f"; then the top {config.reevaluate_top} on {config.seeds - 1} more seed(s)"
    return plan


def _finished_trials(storage: str, study_name: str) -> int:
    """Search trials already in the storage (0 when there is no such study yet)."""
    path = sqlite_path(storage)
    if path is not None and not path.exists():
        return 0  # do not let a look create the database file
    try:
        import optuna

        from ..study.budget import finished_trials
        from ..study.storage import open_storage

        return finished_trials(optuna.load_study(study_name=study_name, storage=open_storage(storage)))
    except Exception:  # no such study yet, or an unreachable storage that tune() will report properly
        return 0


def add_worker_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    worker = commands.add_parser(
        "worker", parents=[common], help="join a study from this machine (a shared storage)",
        description="Train trials of the study defined in STUDY_FILE in a storage that other machines share "
                    "(PostgreSQL: postgresql://user@host/db). Start one per machine (or several); the budget "
                    "is the study's total, however many workers join. Trains nothing once it is spent.")
    worker.add_argument("study_file", metavar="STUDY_FILE", help="the same study file on every machine")
    worker.add_argument("--storage", help="the shared Optuna storage URL (default: the file's storage)")
    worker.add_argument("--tracking-uri", help="MLflow tracking URI (default: the file's, else MLflow's default)")
    worker.add_argument("--no-tracking", action="store_true", help="do not record in MLflow")
    worker.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best one here)")
    worker.set_defaults(handler=worker_command)


def worker_command(args: argparse.Namespace, argv: list[str]) -> int:
    """One more process on a shared study: the study's own run, without the report."""
    from ..training.device import select_device
    from ..tune import tune
    from .studyfile import load_study_file

    study = load_study_file(args.study_file)
    storage = args.storage or study.settings.storage
    if storage is None:
        raise ValueError("worker needs a storage every worker can reach: pass --storage "
                         "postgresql://user@host/db (or set storage in the study file).")
    recipe = load_recipe(study.recipe, study.base_dir)
    config = study.resolve(recipe, storage=storage, tracking_uri=args.tracking_uri, device=args.device,
                           tracking=False if args.no_tracking else None, verbose=False)
    select_device(config.device)
    model, data = recipe.make(seed=config.seed)
    before = _finished_trials(config.storage, config.study_name)
    print(f"worker: joined study '{config.study_name}' in {config.storage} ({before} search trial(s) done)",
          file=sys.stderr)
    try:
        report = tune(model, data, config=config)
    except KeyboardInterrupt:
        error("worker interrupted; its finished trials are in the storage.", kind="")
        return EXIT_INTERRUPTED
    after = _finished_trials(config.storage, config.study_name)
    print(f"worker: study '{config.study_name}' has {after} search trial(s) done; recommended "
          f"{report.recommendation.optimizer} (see: autoopt show {shlex.quote(args.study_file)} --storage ...)")
    return EXIT_OK
