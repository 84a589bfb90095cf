"""``autoopt show`` and ``autoopt sync``: a stored study's recommendation, and its MLflow record made
whole from its storage; nothing is trained.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .output import EXIT_OK, print_mlflow_link, print_report

#: The study user attribute where ``autoopt run`` notes a run that finished: the settings it ran with and
#: the study's trial count then. The same command on the same study finds it and prints the stored result
#: without loading the recipe, torch or MLflow; ``show`` prints the MLflow link it holds.
FINISHED_KEY = "autoopt:finished_run"


def show_command(args: argparse.Namespace, argv: list[str]) -> int:
    from ..report import load_report

    name, storage = stored_study(args, "run the study first, or pass --storage")

    report = load_report(name, storage)
    print_report(report, name, storage, sys.stdout)
    if report.tracking_uri:
        marker = report.study.user_attrs.get(FINISHED_KEY)
        if marker is not None:  # the link the finished run noted: asking MLflow would import it (seconds)
            report._mlflow_link = marker.get("link") or ""
        print_mlflow_link(report, None, sys.stdout)
    return EXIT_OK


def stored_study(args: argparse.Namespace, hint: str) -> tuple[str, str]:
    """(study name, storage) from ``STUDY`` (a name or a study file) and ``--storage``; a sqlite file
    that does not exist is an error that ends with ``hint``."""
    from .studyfile import default_storage, load_study_file

    name, storage = args.study, args.storage
    if name.endswith(".toml"):
        config = load_study_file(name).resolve()
        name, storage = config.study_name, storage or config.storage
    storage = storage or default_storage(name)
    path = sqlite_path(storage)
    if path is not None and not path.exists():
        raise ValueError(f"no study database {path} here; {hint}.")
    return name, storage


def sqlite_path(storage: str) -> Path | None:
    """The file of a ``sqlite:///`` storage URL, None for anything else (or an in-memory database)."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix) or storage[len(prefix):] in ("", ":memory:"):
        return None
    return Path(storage[len(prefix):].split("?", 1)[0])


def sync_command(args: argparse.Namespace, argv: list[str]) -> int:
    from .sync import sync_study

    name, storage = stored_study(args, "pass --storage")
    result = sync_study(name, storage, tracking_uri=args.tracking_uri)
    print(f"Study '{name}' in {result.tracking_uri}, parent run {result.parent_run_id}: "
          f"{result.trained_trials} trained trial(s); {result.created} run(s) written, "
          f"{result.rewritten} rewritten, the rest already there.")
    return EXIT_OK
