"""The files that describe a finished study: recommendation.json, trials.csv and three charts.

The tracker attaches them to the study's MLflow run; they are plain files, so anything else that
wants them (a CI job, a notebook) can write them with the same function.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from ..recommendation.record import Recommendation


def jsonable(value: Any) -> Any:
    """NaN and infinities become None: the file stays strict JSON that any reader accepts.

    >>> jsonable({"loss": float("nan"), "curve": [1.0, float("inf")]})
    {'loss': None, 'curve': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return [jsonable(v) for v in value]
    return value


#: What a person opening trials.csv looks for first, on the left of the screen; the long columns
#: (params, the curve, an error) come last.
CSV_FIRST = ("optimizer", "lr", "outcome", "final_val_loss", "best_val_loss", "epochs", "seed", "number", "purpose")
CSV_LAST = ("config", "params", "val_curve", "error", "run_id")


def csv_columns(table: pd.DataFrame) -> list[str]:
    """The trials table's columns in the order trials.csv has them (every column, none twice).

    >>> csv_columns(pd.DataFrame(columns=["number", "params", "optimizer", "lr", "seconds"]))
    ['optimizer', 'lr', 'number', 'seconds', 'params']
    """
    first = [c for c in CSV_FIRST if c in table]
    last = [c for c in CSV_LAST if c in table]
    return first + [c for c in table if c not in first and c not in last] + last


def write_study_files(folder: Path, rec: Recommendation | None, trials: pd.DataFrame,
                      run_ids: Mapping[int, str] | None = None) -> None:
    """Write recommendation.json (when there is one), trials.csv and the PNG charts into ``folder``.

    ``run_ids`` (trial number -> MLflow run id) puts the recommended runs' ids in the JSON and a
    ``run_id`` column in the table, so that each row leads to its run.
    """
    write_study_tables(folder, rec, trials, run_ids)
    draw_study_charts(folder, rec, trials)


def write_study_tables(folder: Path, rec: Recommendation | None, trials: pd.DataFrame,
                       run_ids: Mapping[int, str] | None = None) -> None:
    """recommendation.json and trials.csv: everything the charts are drawn from, so that the two files
    say whether the charts drawn before are still right (``files_digest``)."""
    run_ids = run_ids or {}
    if rec is not None:
        data = {**rec.to_dict(), "run_ids": [run_ids[n] for n in rec.trial_numbers if n in run_ids],
                "target_val_loss": trials.attrs.get("target_loss")}
        (folder / "recommendation.json").write_text(json.dumps(jsonable(data), indent=2))
    table = trials.copy()
    table["run_id"] = [run_ids.get(int(n)) if pd.notna(n) else None for n in table["number"]]
    for column in ("params", "val_curve"):  # JSON in a cell, so the CSV reads back into Python
        table[column] = table[column].map(lambda v: json.dumps(jsonable(v)))
    table[csv_columns(table)].to_csv(folder / "trials.csv", index=False)


def draw_study_charts(folder: Path, rec: Recommendation | None, trials: pd.DataFrame) -> None:
    """The three PNG charts (matplotlib is imported only here)."""
    from . import plots

    figures = {"val_loss_curves.png": lambda: plots.plot_curves(trials, rec),
               "lr_sensitivity.png": lambda: plots.plot_lr_sensitivity(trials, rec),
               "tradeoff.png": lambda: plots.plot_tradeoff(trials, rec)}
    for name, draw in figures.items():
        try:
            draw().savefig(folder / name, dpi=100)
        except Exception as exc:  # a chart is not worth losing the JSON and the table for
            warnings.warn(f"could not draw {name}: {type(exc).__name__}: {exc}", stacklevel=2)


def files_digest(folder: Path) -> str:
    """A digest of the files in ``folder`` (names and contents): equal digests, the same files."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]
