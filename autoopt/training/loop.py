"""The training loop: one candidate, one seed, a budget of epochs, everything measured (``TrainingRun``).

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
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..optimizers.schedules import Schedule, split_params
from ..optimizers.spec import OptimizerSpec, tensors
from ..records import Candidate, EpochRecord, Measurement
from .device import is_out_of_memory, peak_memory_bytes, release_memory, reset_peak_memory, synchronize
from .evaluation import batch_length, evaluate, metric_values, steps_per_epoch
from .setup import TrainingSetup, autocast

OnEpoch = Callable[[EpochRecord], bool]
#: A candidate to train beside others: its optimizer's record and its configuration.
Member = tuple[OptimizerSpec, Candidate]
#: group_stop(epoch, {member index: its record}) -> the members to stop now: asked once an epoch, after
#: every member still training has its record (successive halving's rungs rank the members there).
GroupStop = Callable[[int, dict[int, EpochRecord]], set[int]]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a trial; carries what was measured so far so that it can be recorded."""

    def __init__(self, measurement: Measurement) -> None:
        super().__init__("training interrupted")
        self.measurement = measurement


class GroupInterrupted(KeyboardInterrupt):
    """Ctrl-C while several trials train together; carries every member's measurement so far, in order."""

    def __init__(self, measurements: list[Measurement]) -> None:
        super().__init__("training interrupted")
        self.measurements = measurements


def train_candidate(
    setup: TrainingSetup,
    spec: OptimizerSpec,
    candidate: Candidate,
    seed: int,
    on_epoch: OnEpoch | None = None,
) -> Measurement:
    """Train a fresh model with ``candidate`` for ``setup.epochs`` epochs and measure it.

    Torch's random numbers (dropout masks, random augmentations in the model) are drawn from ``seed``
    on a random state of the run's own: every candidate of a seed draws the same numbers, whatever trained
    before it, and the caller's random state is left as it was.

    >>> # see tests/training/test_loop.py for runnable examples
    """
    run = TrainingRun(setup, spec, candidate, seed, on_epoch)
    run.advance(setup.epochs)
    return run.finish()


class TrainingRun:
    """One candidate's training, advanced epoch by epoch: ``advance(epoch)`` trains up to that epoch,
    ``finish()`` measures the memory and returns the measurement.

    Advanced in pieces, with other runs trained in between (a race's rungs, ``interleaved.py``), it
    trains exactly what one run straight through trains: its weights, optimizer state, data order and
    torch random state are its own. Divergence, out-of-memory and ``on_epoch`` asking to stop end it
    (``done``); Ctrl-C raises ``TrainingInterrupted`` with the measurement so far.
    """

    def __init__(self, setup: TrainingSetup, spec: OptimizerSpec, candidate: Candidate, seed: int,
                 on_epoch: OnEpoch | None = None) -> None:
        self.setup, self.spec, self.on_epoch = setup, spec, on_epoch
        self.measurement = Measurement(outcome="completed")
        self.done = False
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._rng_devices = [setup.device.index or 0] if setup.device.type == "cuda" else []
        with self._guard(), torch.random.fork_rng(devices=self._rng_devices):
            torch.manual_seed(seed)
            self._start(candidate, seed)
            self._rng = self._rng_state()

    def _start(self, candidate: Candidate, seed: int) -> None:
        setup, device = self.setup, self.setup.device
        self.model = setup.fresh_model(seed).to(device)
        self.model.train()
        self.params = self.spec.parameters_of(self.model)  # tensors, or groups (Muon: hidden matrices, the rest)
        optimizer_params, settings = split_params(candidate.params)
        self.optimizer = self.spec.build(self.params, optimizer_params)
        self.schedule = None
        if settings.schedule != "constant" or settings.warmup_fraction > 0:
            total = setup.epochs * steps_per_epoch(setup.split.train, setup.batch_size)
            self.schedule = Schedule(self.optimizer, settings, total)
        self.clip_norm = settings.clip_norm
        self.scaler = torch.amp.GradScaler(device.type) if setup.precision == "fp16" else None
        reset_peak_memory(device)
        if self.spec.train_eval_modes:
            self.optimizer.eval()
        self.initial_loss, _ = evaluate(self.model, setup.split.val, setup.task, setup.precision)
        self.measurement.initial_val_loss = self.initial_loss
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0

    def _rng_state(self) -> list[torch.Tensor]:
        return [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in self._rng_devices)]

    def advance(self, until_epoch: int) -> bool:
        """Train epochs until ``until_epoch`` (at most the setup's); False once the run has ended."""
        with self._guard(), torch.random.fork_rng(devices=self._rng_devices):
            torch.set_rng_state(self._rng[0])
            for device, state in zip(self._rng_devices, self._rng[1:]):
                torch.cuda.set_rng_state(state, device)
            while not self.done and self.epoch < min(until_epoch, self.setup.epochs):
                self._epoch()
            self._rng = self._rng_state()
        return not self.done

    def stop(self, outcome: str = "pruned") -> None:
        """End the run here, before its last epoch (``pruned``: a race did not keep it)."""
        if not self.done:
            self.measurement.outcome = outcome if self.epoch < self.setup.epochs else "completed"
            self.done = True

    def finish(self) -> Measurement:
        """The measurement, with the memory the run held; the model and the optimizer are let go."""
        if self.model is not None and self.optimizer is not None:
            _measure_memory(self.measurement, self.model, self.optimizer, self.setup.device)
        self.done = True
        self.model = self.optimizer = None
        return self.measurement

    def _epoch(self) -> None:
        setup, device, model, optimizer = self.setup, self.setup.device, self.model, self.optimizer
        modes, scaler, m = self.spec.train_eval_modes, self.scaler, self.measurement
        self.epoch += 1
        synchronize(device)
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        count = 0
        if modes:
            optimizer.train()
        for xb, yb in setup.split.train.batches(setup.batch_size, self.generator):
            n = batch_length(xb, yb)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, setup.precision):
                loss, _ = setup.task.batch_loss(model, xb, yb)
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
            if self.clip_norm is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(tensors(self.params), self.clip_norm)
            if self.schedule is not None:
                self.schedule.before_step()
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            total += loss.detach().float() * n  # no .item(): a per-step sync would stall CUDA
            count += n
            m.steps += 1
        train_loss = float(total) / max(count, 1)
        synchronize(device)
        seconds = time.perf_counter() - start
        elapsed = (m.epochs[-1].elapsed_seconds if m.epochs else 0.0) + seconds
        if modes:
            optimizer.eval()
        collected: list[tuple[Any, Any]] | None = [] if setup.metrics else None
        val_loss, val_accuracy = evaluate(model, setup.split.val, setup.task, setup.precision, collected)
        record = EpochRecord(self.epoch, train_loss, val_loss, val_accuracy, seconds, elapsed,
                             metric_values(setup.metrics, collected or []))
        m.epochs.append(record)
        m.seconds = elapsed
        stop = self.on_epoch(record) if self.on_epoch is not None else False
        if _diverged(record, self.initial_loss, setup.divergence_factor):
            m.outcome = "diverged"
            self.done = True
        elif stop:
            self.stop()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Ctrl-C and out-of-memory as outcomes of the run, not as the end of the study."""
        try:
            yield
        except KeyboardInterrupt:
            self.measurement.outcome = "interrupted"
            self.done = True
            raise TrainingInterrupted(self.measurement) from None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            self.measurement.outcome = "oom"
            self.measurement.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            self.done = True
            self.model = self.optimizer = None
            release_memory(self.setup.device)


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
