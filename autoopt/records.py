"""Plain records passed between the search, the training loop, the tracker and the recommender.

They are dataclasses on purpose: no module that builds one needs to know who reads it, and each
turns into a JSON-able dict (``to_dict``) so that Optuna's storage can keep every measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

#: Every way a trial can end. ``completed`` and ``pruned`` trials trained normally; the rest did not
#: (``eliminated``: its optimizer was dropped as clearly dominated; ``cancelled``: it was still queued
#: when its phase's budget ran out; neither was trained).
OUTCOMES = ("completed", "pruned", "diverged", "oom", "infeasible", "eliminated", "cancelled", "failed",
            "interrupted")


@dataclass(frozen=True)
class Candidate:
    """One optimizer configuration to try: a registry name and the keyword values for it.

    >>> Candidate("adam", {"lr": 1e-3}).lr
    0.001
    """

    optimizer: str
    params: dict[str, Any]

    @property
    def lr(self) -> float:
        return float(self.params["lr"])

    def key(self) -> str:
        """A stable text key: equal for equal configurations (used to group re-evaluations)."""
        items = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"{self.optimizer}({items})"


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@dataclass
class EpochRecord:
    """What one epoch of training produced; handed to the per-epoch callback."""

    epoch: int  # 1-based: epoch 1 is the first pass over the data
    train_loss: float
    val_loss: float
    val_accuracy: float | None
    epoch_seconds: float  # training time of this epoch (validation excluded), CUDA synchronized
    elapsed_seconds: float  # training time since the trial started
    #: the values of a metric of your own on the validation set, by name (``autoopt.Objective``)
    val_metrics: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        out = {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "epoch_seconds": self.epoch_seconds,
            "elapsed_seconds": self.elapsed_seconds,
        }
        if self.val_accuracy is not None:
            out["val_accuracy"] = self.val_accuracy
        out.update(self.val_metrics)
        return out


@dataclass
class Measurement:
    """Everything measured while training one candidate on one seed."""

    outcome: str  # one of OUTCOMES
    epochs: list[EpochRecord] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0  # training wall time (validation excluded)
    optimizer_state_bytes: int = 0  # measured from the optimizer's state tensors
    peak_memory_bytes: int = 0  # CUDA: max_memory_allocated; CPU: params + grads + state
    error: str | None = None  # exception type and message for failed / oom trials
    initial_val_loss: float = math.nan  # validation loss of the starting weights (divergence reference)

    @property
    def val_losses(self) -> list[float]:
        return [e.val_loss for e in self.epochs]

    @property
    def final_val_loss(self) -> float:
        return self.epochs[-1].val_loss if self.epochs else math.nan

    @property
    def best_val_loss(self) -> float:
        finite = [v for v in self.val_losses if math.isfinite(v)]
        return min(finite) if finite else math.nan

    @property
    def final_val_accuracy(self) -> float | None:
        return self.epochs[-1].val_accuracy if self.epochs else None

    def to_target(self, target: float) -> tuple[float, float]:
        """(epochs, training seconds) until the validation loss first reached ``target``; NaN if never."""
        for record in self.epochs:
            if record.val_loss <= target:
                return float(record.epoch), record.elapsed_seconds
        return math.nan, math.nan

    def summary(self) -> str:
        """One short line of what the full record (``to_dict``) holds, for pages that show attributes
        as they are (optuna-dashboard's trial page).

        >>> Measurement("completed", [EpochRecord(1, 0.9, 0.8, 0.7, 0.5, 0.6), EpochRecord(2, 0.5, 0.4, 0.9, 1.0, 1.2)],
        ...             seconds=1.0, optimizer_state_bytes=2048).summary()
        'completed after 2 epochs: val_loss 0.8 -> 0.4 (best 0.4), val_accuracy 0.9, 1.0 s training, state 2.0 kB'
        """
        losses = [f"{v:.4g}" for v in self.val_losses]
        parts = [f"{self.outcome} after {len(self.epochs)} epoch{'s' if len(self.epochs) != 1 else ''}"]
        if losses:
            parts[0] += f": val_loss {losses[0]} -> {losses[-1]}" if len(losses) > 1 else f": val_loss {losses[0]}"
            parts[0] += f" (best {self.best_val_loss:.4g})" if math.isfinite(self.best_val_loss) else ""
        if self.final_val_accuracy is not None:
            parts.append(f"val_accuracy {self.final_val_accuracy:.3g}")
        if self.epochs:
            parts.append(f"{self.seconds:.1f} s training")
            parts.append(f"state {self.optimizer_state_bytes / 1000:.1f} kB")
        if self.error:
            parts.append(self.error[:120])
        return ", ".join(parts)

    @classmethod
    def failure(cls, exc: BaseException) -> Measurement:
        """A trial that raised: its exception type and message, nothing measured."""
        return cls("failed", error=f"{type(exc).__name__}: {exc}")

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives, built directly (asdict deep-copies every value recursively: 0.6 ms
        # against 0.13 ms for a trial of 20 epochs); every value is a number, a string or None
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["epochs"] = [{f.name: getattr(e, f.name) for f in fields(e)} for e in self.epochs]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        data["epochs"] = [EpochRecord(**e) for e in data.get("epochs", [])]
        return cls(**data)


@dataclass
class TrialRecord:
    """One finished trial as the tracker and the results table see it."""

    number: int | None  # Optuna's trial number; None for candidates skipped before the search
    candidate: Candidate
    family: str
    seed: int
    purpose: str  # "search" (sampled), "screen" (defaults at low fidelity), "reevaluation" or "skipped"
    measurement: Measurement
    race_list: str | None = None  # a race member's portfolio list ("entries", "pretrained_entries")
