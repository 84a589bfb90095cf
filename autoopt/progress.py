"""A progress bar over trials that shows the best result so far (tqdm, as Optuna itself uses)."""

from __future__ import annotations

import math
import threading

from tqdm.auto import tqdm

from .records import TrialRecord


class ProgressBar:
    """``update(record)`` after each trial; silent when ``enabled`` is False."""

    def __init__(self, total: int | None, enabled: bool, description: str = "trials") -> None:
        self._bar = tqdm(total=total, desc=description, unit="trial", disable=not enabled, dynamic_ncols=True)
        self._best = math.inf
        self._lock = threading.Lock()

    def update(self, record: TrialRecord) -> None:
        with self._lock:
            m = record.measurement
            if m.outcome == "completed" and m.final_val_loss < self._best:
                self._best = m.final_val_loss
                self._bar.set_postfix_str(f"best {record.candidate.optimizer} lr={record.candidate.lr:.3g} "
                                          f"val_loss={self._best:.4g}", refresh=False)
            self._bar.update(1)

    @property
    def count(self) -> int:
        return int(self._bar.n)

    def set_count(self, n: int) -> None:
        """Trials finished elsewhere (worker processes), read back from the storage."""
        with self._lock:
            if n != self._bar.n:
                self._bar.n = n
                self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
