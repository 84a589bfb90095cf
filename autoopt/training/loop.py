"""The training loop: one candidate, one seed, a budget of epochs, everything measured.

It imports neither Optuna nor MLflow: the caller passes ``on_epoch``, which sees each epoch's
record and answers whether to stop (pruning). Divergence and out-of-memory end a trial as an
outcome, never an exception; an interrupt ends it with the partial measurement attached.

Besides the optimizer, a configuration may set a learning-rate schedule, its warm-up and a gradient
clipping norm (``autoopt.optimizers.schedules``); the study may set a mixed precision (``precision="bf16"`` or
``"fp16"``, autocast, with a gradient scaler for fp16). An optimizer with train/eval modes
(Schedule-Free) is switched to train() for training and eval() for evaluation. With none of these,
a step is what it always was: zero_grad, the loss of the batch, backward, step.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..objective import MetricFn
from ..optimizers.schedules import Schedule, split_params
from ..optimizers.spec import OptimizerSpec, tensors
from ..records import Candidate, EpochRecord, Measurement
from .batches import VAL_CHUNK, LoaderPart, Part, Split
from .device import is_out_of_memory, peak_memory_bytes, release_memory, reset_peak_memory, synchronize
from .task import Task

PRECISIONS = ("fp32", "bf16", "fp16")

OnEpoch = Callable[[EpochRecord], bool]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a trial; carries what was measured so far so that it can be recorded."""

    def __init__(self, measurement: Measurement) -> None:
        super().__init__("training interrupted")
        self.measurement = measurement


@dataclass
class TrainingSetup:
    """What every trial of a study shares: the starting model, the data, the task and the budget."""

    template: nn.Module  # the user's model, copied to the device, with the study's initial weights
    split: Split
    task: Task
    device: torch.device
    epochs: int
    batch_size: int
    seed: int  # the search's seed: other seeds re-initialize the weights
    divergence_factor: float = 4.0  # val loss above this multiple of the initial loss = diverged
    precision: str = "fp32"  # "bf16" / "fp16": forward and loss under autocast (fp16: CUDA, a grad scaler)
    metrics: dict[str, MetricFn] = field(default_factory=dict)  # name -> fn(predictions, targets), each epoch
    _initial_states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        check_precision(self.precision, self.device)

    def fresh_model(self, seed: int) -> nn.Module:
        """A new copy of the model with the initial weights of ``seed``.

        The search's seed gives the user's own weights, so every candidate starts from them; another
        seed re-initializes every layer that can, under that seed, the same way for every candidate.
        """
        model = copy.deepcopy(self.template)
        if seed != self.seed:
            model.load_state_dict(self._initial_state(seed))
        return model

    def _initial_state(self, seed: int) -> dict[str, torch.Tensor]:
        with self._lock:  # torch's global RNG is shared by threads: draw each seed's weights once
            if seed not in self._initial_states:
                model = copy.deepcopy(self.template)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    for module in model.modules():
                        reset = getattr(module, "reset_parameters", None)
                        if callable(reset):
                            reset()
                self._initial_states[seed] = copy.deepcopy(model.state_dict())
            return self._initial_states[seed]


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ValueError for a precision that is unknown or that ``device`` cannot train in."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {list(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device (autocast with a gradient scaler) but the device "
                         f"is {device}; use 'bf16' or 'fp32' there.")


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context of ``precision`` on ``device``; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def batch_length(inputs: Any, target: Any) -> int:
    """Samples in a batch: the target's length, else that of the first tensor among the inputs."""
    if isinstance(target, torch.Tensor):
        return len(target)
    if isinstance(inputs, torch.Tensor):
        return len(inputs)
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else ()
    for value in values:
        n = batch_length(value, None)
        if n:
            return n
    return 0


def steps_per_epoch(part: Part, batch_size: int) -> int:
    """Optimizer steps in one pass over ``part``."""
    if isinstance(part, LoaderPart):
        return len(part.loader)
    return -(-len(part) // batch_size)


def evaluate(model: nn.Module, part: Part, task: Task, precision: str = "fp32",
             collect: list[tuple[Any, Any]] | None = None) -> tuple[float, float | None]:
    """Mean loss and accuracy (None unless classification) of ``model`` on ``part``; the predictions and
    targets of each batch are appended to ``collect`` when given (for ``metric_values``)."""
    model.eval()
    total = torch.zeros((), device=next(model.parameters()).device)
    correct = torch.zeros((), device=total.device)
    count = 0
    has_accuracy = True
    with torch.no_grad():
        for xb, yb in part.batches(VAL_CHUNK, None):
            n = batch_length(xb, yb)
            with autocast(total.device, precision):
                loss, output = task.batch_loss(model, xb, yb)
            total += loss.detach().float() * n
            if collect is not None:
                collect.append((output, yb))
            hits = task.correct(output, yb)
            if hits is None:
                has_accuracy = False
            else:
                correct += hits
            count += n
    model.train()
    loss = float(total) / max(count, 1)  # one device sync per evaluation
    return loss, (float(correct) / max(count, 1) if has_accuracy else None)


def train_candidate(
    setup: TrainingSetup,
    spec: OptimizerSpec,
    candidate: Candidate,
    seed: int,
    on_epoch: OnEpoch | None = None,
) -> Measurement:
    """Train a fresh model with ``candidate`` for ``setup.epochs`` epochs and measure it.

    Torch's random numbers (dropout masks, random augmentations in the model) are drawn from ``seed``
    on a forked random state: every candidate of a seed draws the same numbers, whatever trained
    before it, and the caller's random state is left as it was.

    >>> # see tests/training/test_loop.py for runnable examples
    """
    rng_devices = [setup.device.index or 0] if setup.device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        return _train(setup, spec, candidate, seed, on_epoch)


def _train(setup: TrainingSetup, spec: OptimizerSpec, candidate: Candidate, seed: int,
           on_epoch: OnEpoch | None) -> Measurement:
    device = setup.device
    measurement = Measurement(outcome="completed")
    model = optimizer = None
    try:
        model = setup.fresh_model(seed).to(device)
        model.train()
        params = spec.parameters_of(model)  # tensors, or groups (Muon: hidden matrices and the rest)
        optimizer_params, settings = split_params(candidate.params)
        optimizer = spec.build(params, optimizer_params)
        modes = spec.train_eval_modes
        schedule = None
        if settings.schedule != "constant" or settings.warmup_fraction > 0:
            schedule = Schedule(optimizer, settings, setup.epochs * steps_per_epoch(setup.split.train,
                                                                                    setup.batch_size))
        clip_norm = settings.clip_norm
        precision = setup.precision
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        reset_peak_memory(device)
        if modes:
            optimizer.eval()
        initial_loss, _ = evaluate(model, setup.split.val, setup.task, precision)
        measurement.initial_val_loss = initial_loss
        generator = torch.Generator().manual_seed(seed)
        elapsed = 0.0
        for epoch in range(1, setup.epochs + 1):
            synchronize(device)
            start = time.perf_counter()
            total = torch.zeros((), device=device)
            count = 0
            if modes:
                optimizer.train()
            for xb, yb in setup.split.train.batches(setup.batch_size, generator):
                n = batch_length(xb, yb)
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, precision):
                    loss, _ = setup.task.batch_loss(model, xb, yb)
                if scaler is None:
                    loss.backward()
                else:
                    scaler.scale(loss).backward()
                if clip_norm is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(tensors(params), clip_norm)
                if schedule is not None:
                    schedule.before_step()
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                total += loss.detach().float() * n  # no .item(): a per-step sync would stall CUDA
                count += n
                measurement.steps += 1
            train_loss = float(total) / max(count, 1)
            synchronize(device)
            seconds = time.perf_counter() - start
            elapsed += seconds
            if modes:
                optimizer.eval()
            collected: list[tuple[Any, Any]] | None = [] if setup.metrics else None
            val_loss, val_accuracy = evaluate(model, setup.split.val, setup.task, precision, collected)
            record = EpochRecord(epoch, train_loss, val_loss, val_accuracy, seconds, elapsed,
                                 metric_values(setup.metrics, collected or []))
            measurement.epochs.append(record)
            measurement.seconds = elapsed
            stop = on_epoch(record) if on_epoch is not None else False
            if _diverged(record, initial_loss, setup.divergence_factor):
                measurement.outcome = "diverged"
                break
            if stop:
                measurement.outcome = "pruned" if epoch < setup.epochs else "completed"
                break
        _measure_memory(measurement, model, optimizer, device)
    except KeyboardInterrupt:
        measurement.outcome = "interrupted"
        raise TrainingInterrupted(measurement) from None
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        measurement.outcome = "oom"
        measurement.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        model = optimizer = None
        release_memory(device)
    return measurement


def metric_values(metrics: dict[str, MetricFn], batches: list[tuple[Any, Any]]) -> dict[str, float]:
    """Each metric of the predictions and targets of ``batches``, concatenated: ``{name: value}``.

    >>> metric_values({"mae": lambda p, y: (p - y).abs().mean()}, [(torch.ones(2), torch.zeros(2))])
    {'mae': 1.0}
    """
    if not metrics:
        return {}
    if any(not isinstance(p, torch.Tensor) or not isinstance(y, torch.Tensor) for p, y in batches):
        raise ValueError("a metric objective needs the model's predictions and tensor targets, but this task "
                         "gives none (step_fn=, or targets that are not tensors); use objective='val_loss'.")
    predictions = torch.cat([p.detach().float() for p, _ in batches])
    targets = torch.cat([y for _, y in batches])
    out = {}
    for name, fn in metrics.items():
        value = fn(predictions, targets)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"the objective {name!r} returned a tensor of shape {tuple(value.shape)}; "
                                 "it must return one number (a scalar or a one-element tensor).")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"the objective {name!r} returned {value!r} ({type(value).__name__}); "
                             "it must return one number.")
        out[name] = float(value)
    return out


def _diverged(record: EpochRecord, initial_loss: float, factor: float) -> bool:
    if not (math.isfinite(record.train_loss) and math.isfinite(record.val_loss)):
        return True
    return record.val_loss > factor * max(initial_loss, 1e-12)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state tensors, counted exactly."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def _measure_memory(measurement: Measurement, model: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device) -> None:
    measurement.optimizer_state_bytes = optimizer_state_bytes(optimizer)
    peak = peak_memory_bytes(device)
    if peak is None:  # CPU/MPS: what training holds beyond activations: params + grads + state
        params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        peak = 2 * params + measurement.optimizer_state_bytes
    measurement.peak_memory_bytes = peak
