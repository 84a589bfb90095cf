"""How the ``autoopt`` command speaks: exit codes, one-line errors on stderr, notes to a stream."""

from __future__ import annotations

import shlex
import sys
from typing import Any, TextIO

#: 0 success, 1 a failure at run time, 2 bad usage or a bad study file / recipe, 130 Ctrl-C.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def error(message: str, kind: str = "error: ") -> None:
    """One line on stderr, ``autoopt: error: ...``, whatever the message holds."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"autoopt: {kind}{line}", file=sys.stderr)


def say(stream: TextIO | None, message: str) -> None:
    if stream is not None:
        print(message, file=stream)


def print_report(report: Any, study_name: str, storage: str, out: TextIO) -> None:
    from ..records import OUTCOMES

    print("Best configuration of each optimizer (★ the recommendation; val_loss is the mean over its seeds):",
          file=out)
    print(report.table().to_string(index=False), file=out)
    print(file=out)
    print("Recommendation:", file=out)
    print(report.recommendation.explanation, file=out)
    print("In code:", file=out)
    print("\n".join("    " + line for line in report.recommendation.code().splitlines()), file=out)
    print(file=out)
    counts = report.trials["outcome"].value_counts()
    outcomes = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if o in counts)
    print(f"Study '{study_name}': {len(report.trials)} trials ({outcomes}) in {storage}.", file=out)


def print_mlflow_link(report: Any, given_uri: str | None, out: Any) -> None:
    """Where the study is recorded, how to open the UI, and the link that opens its comparison chart:
    the recommended run beside the best of each other optimizer."""
    uri = report.tracking_uri
    if uri.startswith(("http:", "https:")):
        print(f"MLflow: parent run {report.parent_run_id} in {uri}.", file=out)
        opened = ""
    else:
        flag = f" --tracking-uri {shlex.quote(uri)}" if given_uri else ""
        print(f"MLflow: parent run {report.parent_run_id} in {uri}. See it with: autoopt ui{flag}", file=out)
        opened = ", once `autoopt ui` runs"
    link = report.mlflow_link
    if link:
        print(f"The answer at a glance (the comparison chart){opened}:\n  {link}", file=out)
