"""A progress bar over a study that shows the best result so far (tqdm, as Optuna itself uses).

``ProgressBar.for_study`` counts what the budget is counted in, training epochs: its total is the
study's budget (``budget`` x ``epochs``, or the trial count x ``epochs`` when only ``n_trials``
bounds it), it starts at what a resumed study has already spent, and ``finish()`` fills it when the
study is done early (pruned trials spend less than a full run). ``ProgressBar(total, enabled)``
counts trials, one per ``update``.

>>> from autoopt.config import StudyConfig
>>> bar = ProgressBar.for_study(StudyConfig(epochs=4, budget=3.0), spent=0, enabled=False)
>>> bar.total, bar.unit
(12, 'epoch')
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any, TextIO

from tqdm.auto import tqdm

from ..objective import VAL_LOSS, Objective
from ..records import TrialRecord


class ProgressBar:
    """``update(record)`` after each trial; silent when ``enabled`` is False."""

    def __init__(self, total: float | None, enabled: bool, description: str = "trials", *, unit: str = "trial",
                 initial: float = 0, file: TextIO | None = None, objective: Objective = VAL_LOSS) -> None:
        if unit not in ("trial", "epoch"):
            raise ValueError(f"unit must be 'trial' or 'epoch' but got {unit!r}.")
        self.total, self.unit = total, unit
        initial = _whole(initial)  # "10/170 epochs", not "10.0/170": spent epochs come back as floats
        self._n = min(initial, total) if total is not None else initial  # counted here: a disabled tqdm counts nothing
        self._bar = tqdm(total=total, initial=self._n, desc=description, unit=unit, disable=not enabled,
                         dynamic_ncols=True, file=file)
        self._best = math.inf  # the best score (lower is better) of ``objective``
        self.objective = objective
        self._lock = threading.Lock()
        self._shown_before = None
        if enabled:  # a warning while the bar is drawn (a lost MLflow server) gets a line of its own
            self._shown_before = warnings.showwarning
            warnings.showwarning = self._show_warning

    def _show_warning(self, *args: Any, **kwargs: Any) -> None:
        """Clear the bar, print the warning as Python would, draw the bar again below it."""
        with tqdm.external_write_mode(file=self._bar.fp):
            self._shown_before(*args, **kwargs)  # type: ignore[misc]

    @classmethod
    def for_study(cls, config: Any, spent: float, enabled: bool) -> ProgressBar:
        """A bar in epochs whose total is the study's budget and which starts at ``spent`` epochs."""
        if config.total_budget is not None:
            total: float | None = config.total_budget * config.epochs
        elif config.trial_budget is not None:
            total = float((config.trial_budget + config.reevaluation_cost) * config.epochs)
        else:
            total = None  # a timeout alone: no total to show
        if total is not None and float(total).is_integer():
            total = int(total)  # "15/15 epochs", not "15.0/15.0"
        objective = config.objective if isinstance(config.objective, Objective) else VAL_LOSS
        return cls(total, enabled, "epochs", unit="epoch", initial=spent, objective=objective)

    @property
    def n(self) -> float:
        """What the bar shows as done."""
        return self._n

    def update(self, record: TrialRecord) -> None:
        with self._lock:
            m = record.measurement
            score = self.objective.score(self.objective.final(m)) if m.outcome == "completed" else math.nan
            if score < self._best:
                self._best = score
                self._bar.set_postfix_str(f"best {record.candidate.optimizer} lr={record.candidate.lr:.3g} "
                                          f"{self.objective.name}={self.objective.final(m):.4g}", refresh=False)
            step = len(m.epochs) if self.unit == "epoch" else 1
            if self.total is not None:  # a run finished past the budget does not run the bar past its total
                step = max(min(step, self.total - self._n), 0)
            self._n += step
            self._bar.update(step)

    def set_count(self, n: float) -> None:
        """Trials (or epochs, for a bar in epochs) finished elsewhere (worker processes), read back
        from the storage."""
        with self._lock:
            n = _whole(min(n, self.total) if self.total is not None else n)
            if n != self._n:
                self._n = self._bar.n = n
                self._bar.refresh()

    def finish(self) -> None:
        """The study is done: the bar shows its whole total, whatever pruning saved."""
        if self.total is not None:
            self.set_count(self.total)

    def close(self) -> None:
        if self._shown_before is not None and warnings.showwarning == self._show_warning:
            warnings.showwarning = self._shown_before
        self._shown_before = None
        self._bar.close()


def _whole(n: float) -> float:
    """``n`` as an int when it is whole, so that tqdm shows "10", not "10.0"."""
    return int(n) if float(n).is_integer() else n
