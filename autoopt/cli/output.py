"""How the ``autoopt`` command speaks: exit codes, one-line errors on stderr, notes to a stream."""

from __future__ import annotations

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
