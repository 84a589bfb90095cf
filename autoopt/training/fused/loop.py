"""The fused training loop: K candidates of one seed trained in one pass, each measured as if alone.

Beside ``training.loop.train_candidate``, with the same semantics per member: every member starts from
``setup.fresh_model(seed)``'s weights and sees the same batches in the same order; the forward and
backward run once for all K (``stacked_model.StackedModel``); each member is stepped by its own torch
optimizer, built by ``spec.build`` over its own parameters, so different optimizer classes and
settings mix in one pass. Divergence, pruning and out-of-memory end one member: its rows leave the
stack and the others go on. Like the sequential loop it imports neither Optuna nor MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

import torch
from torch import nn

from ...optimizers.spec import OptimizerSpec
from ...records import Candidate, EpochRecord, Measurement
from ..device import is_out_of_memory, peak_memory_bytes, release_memory, reset_peak_memory, synchronize
from ..loop import (GroupInterrupted, GroupStop, Member, OnEpoch, TrainingInterrupted, _diverged, optimizer_state_bytes,
                    train_candidate)
from ..setup import TrainingSetup
from .eligibility import has_accuracy, member_problem, unsupported_setup
from .sizing import member_bytes, param_bytes
from .stacked_model import StackedModel


#: The torch implementation each optimizer class is stepped with in a fused pass, where torch has a
#: faster one than the default for-loop on CPU: the same update rule in fewer kernel calls, so only
#: the last bits of rounding may differ (tests/test_fused.py holds every optimizer to the sequential
#: runs' weights). Measured per step on the digits MLP's and CNN's parameters, one CPU thread
#: (microseconds, default -> chosen): Adam 527 -> 184, AdamW 328 -> 115, Adagrad 161 -> 74, SGD with
#: momentum 88-221 -> 73-88 (fused); RMSprop 366 -> 266, Adadelta 503 -> 322, NAdam 626 -> 515,
#: RAdam 849 -> 680, Adamax 557 -> 512 on the CNN (foreach). Plain SGD (no state) and Adafactor were
#: slower with either, Muon has neither. The sequential loop keeps torch's default: it is what
#: ``Recommendation.build`` gives the user.
FAST_IMPLEMENTATION: dict[type, dict[str, bool]] = {
    torch.optim.Adam: {"fused": True},
    torch.optim.AdamW: {"fused": True},
    torch.optim.Adagrad: {"fused": True},
    torch.optim.SGD: {"fused": True},  # only with momentum, see _implementation
    torch.optim.RMSprop: {"foreach": True},
    torch.optim.Adadelta: {"foreach": True},
    torch.optim.NAdam: {"foreach": True},
    torch.optim.RAdam: {"foreach": True},
    torch.optim.Adamax: {"foreach": True},
}


def _implementation(spec: OptimizerSpec, hparams, device: torch.device) -> dict[str, bool]:
    """Keyword arguments choosing FAST_IMPLEMENTATION for ``spec``, or none where it does not apply."""
    merged = {**spec.fixed, **hparams}
    if device.type not in ("cpu", "cuda") or "foreach" in merged or "fused" in merged:
        return {}  # MPS lacks some fused kernels; a choice the user made stays theirs
    chosen = FAST_IMPLEMENTATION.get(spec.optimizer_class, {})  # exact class: a subclass may step differently
    if spec.optimizer_class is torch.optim.SGD and not merged.get("momentum", 0.0):
        return {}
    return chosen


#: Ctrl-C during a fused pass: every member's measurement so far, in member order (``loop.GroupInterrupted``)
FusedInterrupted = GroupInterrupted


@dataclass(eq=False)  # members are compared by identity
class _Member:
    """One candidate inside a fused pass: its optimizer, its measurement and its time this epoch."""

    spec: OptimizerSpec
    candidate: Candidate
    on_epoch: OnEpoch | None
    optimizer: torch.optim.Optimizer
    params: list  # its leaf tensors, or their groups: what its optimizer was built over
    measurement: Measurement = field(default_factory=lambda: Measurement(outcome="completed"))
    shared_seconds: float = 0.0  # this epoch: its share of the passes it took part in
    own_seconds: float = 0.0  # this epoch: its own optimizer steps
    state: dict[str, torch.Tensor] | None = None  # final weights and buffers, when asked for

    def step(self) -> None:
        """One optimizer step on the gradient the fused backward left in ``params``' ``.grad``.

        Per-member gradient clipping goes before ``optimizer.step()``, a per-member lr schedule's
        ``scheduler.step()`` after it, once TrainingSetup has them (until then ``fusable`` refuses them).
        """
        start = time.perf_counter()
        self.optimizer.step()
        self.own_seconds += time.perf_counter() - start


@overload
def train_fused(setup: TrainingSetup, members: Sequence[Member], seed: int,
                on_epoch: Sequence[OnEpoch | None] | None = None, *,
                return_models: Literal[False] = False, fast_optimizers: bool = True,
                group_stop: GroupStop | None = None) -> list[Measurement]: ...
@overload
def train_fused(setup: TrainingSetup, members: Sequence[Member], seed: int,
                on_epoch: Sequence[OnEpoch | None] | None = None, *,
                return_models: Literal[True], fast_optimizers: bool = True, group_stop: GroupStop | None = None
                ) -> tuple[list[Measurement], list[nn.Module | None]]: ...


def train_fused(setup, members, seed, on_epoch=None, *, return_models=False, fast_optimizers=True, group_stop=None):
    """Train every ``(spec, candidate)`` of ``members`` from seed ``seed``'s weights in one fused pass.

    Per member the result is what ``train_candidate(setup, spec, candidate, seed, on_epoch[i])``
    measures: the same outcomes, curve, steps, exact optimizer-state bytes; ``seconds`` is the
    member's share of each shared pass (split evenly among the members in it) plus its own optimizer
    steps, scaled so that the members' seconds add up to the synchronized wall time. With
    ``return_models=True`` it returns ``(measurements, models)``: each member's final model (None for
    an out-of-memory member). A single member without ``return_models`` is trained sequentially.
    ``fast_optimizers`` steps each optimizer class with the implementation in FAST_IMPLEMENTATION
    (the same update rule; False: torch's default, as the sequential loop). ``group_stop`` decides,
    after each epoch, which members stop together (see GroupStop): pruned, or completed at the last epoch.
    A member whose optimizer step raises ends "failed" alone; the others go on.

    >>> from autoopt.training.intake import prepare_data
    >>> from autoopt.training.task import infer_task
    >>> from autoopt.optimizers.registry import get_spec
    >>> split = prepare_data((torch.randn(64, 3), torch.randn(64, 1)))
    >>> model = nn.Linear(3, 1)
    >>> setup = TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 2, 16, 0)
    >>> ms = train_fused(setup, [(get_spec("sgd"), Candidate("sgd", {"lr": 0.1})),
    ...                          (get_spec("adam"), Candidate("adam", {"lr": 1e-2}))], seed=0)
    >>> [m.outcome for m in ms]
    ['completed', 'completed']
    """
    members = list(members)
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(members)
    if len(callbacks) != len(members):
        raise ValueError(f"on_epoch has {len(callbacks)} entries for {len(members)} members; give one per member.")
    reason = unsupported_setup(setup) or next(
        (problem for problem in (member_problem(c) for _, c in members) if problem), None)
    if reason is not None:
        raise ValueError(f"cannot fuse this: {reason}; train it with train_candidate.")
    if not members:
        return ([], []) if return_models else []
    if len(members) == 1 and not return_models and group_stop is None:
        spec, candidate = members[0]
        try:
            return [train_candidate(setup, spec, candidate, seed, callbacks[0])]
        except TrainingInterrupted as stop:
            raise FusedInterrupted([stop.measurement]) from None
    return _FusedRun(setup, members, callbacks, seed, return_models, fast_optimizers, group_stop).run()


class _FusedRun:
    """One call of ``train_fused``: the stack, the members still in it and the ones that left."""

    def __init__(self, setup: TrainingSetup, members: list[Member], callbacks: list[OnEpoch | None],
                 seed: int, keep_states: bool, fast_optimizers: bool, group_stop: GroupStop | None = None) -> None:
        self.setup, self.seed, self.keep_states, self.group_stop = setup, seed, keep_states, group_stop
        self.device = setup.device
        model = setup.fresh_model(seed).to(self.device).train()
        self.with_accuracy = has_accuracy(setup, model)
        self.stack = StackedModel(model, len(members))
        self.members = [
            _Member(spec, candidate, callback, spec.build(params, {
                **candidate.params, **(_implementation(spec, candidate.params, self.device) if fast_optimizers else {})
            }), params)
            for (spec, candidate), callback, leaves in zip(members, callbacks, self.stack.leaves)
            # each member's own leaves, grouped as the optimizer wants them (Muon: by the model's names)
            for params in [spec.parameters_of(model, dict(zip(self.stack.trainable, leaves)))]
        ]
        self.alive = list(self.members)  # row r of the stack is alive[r]
        self.totals = torch.zeros(len(self.alive), device=self.device)
        self.planned_bytes = sum(member_bytes(m.params, m.spec, m.candidate.params) for m in self.members)

    def run(self):
        try:
            self._train()
        except KeyboardInterrupt:
            for member in self.alive:
                member.measurement.outcome = "interrupted"
            raise FusedInterrupted([m.measurement for m in self.members]) from None
        measurements = [m.measurement for m in self.members]
        if not self.keep_states:
            return measurements
        return measurements, [self._model(m) for m in self.members]

    def _train(self) -> None:
        setup, device = self.setup, self.device
        reset_peak_memory(device)
        self._modes("eval")
        initial, _ = self.stack.evaluate(setup.split.val, setup.task, self.with_accuracy)
        for member, loss in zip(self.alive, initial):
            member.measurement.initial_val_loss = loss
        generator = torch.Generator().manual_seed(self.seed)  # as train_candidate: the same batches in order
        for epoch in range(1, setup.epochs + 1):
            synchronize(device)
            start = mark = time.perf_counter()
            for member in self.alive:
                member.shared_seconds = member.own_seconds = 0.0
            self._modes("train")
            self.totals = torch.zeros(len(self.alive), device=device)  # row r: alive[r]'s summed loss
            count = 0
            for xb, yb in setup.split.train.batches(setup.batch_size, generator):
                losses = self._shared_pass(xb, yb)
                if losses is None:
                    return  # every member ran out of memory
                shared = (time.perf_counter() - mark) / len(self.alive)
                failed = []
                for row, member in enumerate(self.alive):
                    member.shared_seconds += shared
                    try:
                        member.step()
                    except Exception as exc:  # this member's own step: it ends alone, the others go on
                        failed.append(row)
                        if is_out_of_memory(exc):
                            self._end_oom(member, exc)
                        else:
                            self._end_failed(member, exc)
                        continue
                    member.measurement.steps += 1
                # per-member sums as train_candidate keeps them: no .item(), a per-step sync would stall CUDA
                self.totals += losses.detach().float() * len(xb)
                count += len(xb)
                if failed:
                    self._keep([r for r in range(len(self.alive)) if r not in failed])
                    release_memory(device)
                    if not self.alive:
                        return
                mark = time.perf_counter()
            train_losses = [t / max(count, 1) for t in self.totals.tolist()]
            synchronize(device)
            self._end_epoch(epoch, train_losses, time.perf_counter() - start)
            if not self.alive:
                return
        for member in self.alive:
            self._finish(member)

    def _shared_pass(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor | None:
        """Forward and backward of every member in the stack; out of memory drops the largest and retries.

        No member has stepped yet when the pass fails, so retrying the batch without one member is
        what the others would have seen (BatchNorm's statistics are put back first).
        """
        while self.alive:
            snapshot = self.stack.snapshot_buffers()
            try:
                losses = self.stack.losses(xb, yb, self.setup.task.loss_fn)
                self.stack.backward(losses)
                return losses
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                losses = None
                self.stack.restore_buffers(snapshot)
                # the member with the largest footprint leaves: the most memory back for one candidate lost
                row = max(range(len(self.alive)), key=lambda r: self._bytes(self.alive[r]))
                self._end_oom(self.alive[row], exc, f" (in a fused pass of {len(self.alive)} members)")
                self._keep([r for r in range(len(self.alive)) if r != row])
                release_memory(self.device)
        return None

    def _modes(self, mode: str) -> None:
        """Schedule-Free-style optimizers evaluate at other weights than they step: switch them, as
        train_candidate does, before training (``train()``) and before every evaluation (``eval()``)."""
        for member in self.alive:
            if member.spec.train_eval_modes:
                getattr(member.optimizer, mode)()

    def _end_epoch(self, epoch: int, train_losses: list[float], wall: float) -> None:
        setup = self.setup
        self._modes("eval")
        val_losses, accuracies = self.stack.evaluate(setup.split.val, setup.task, self.with_accuracy)
        # Honest shares: each member's part of the shared passes plus its own steps, scaled so that
        # the members' seconds add up to the epoch's synchronized wall time (on CUDA the host-side
        # timings only see kernel launches; the scale puts the device's time back in proportion).
        measured = sum(m.shared_seconds + m.own_seconds for m in self.alive)
        scale = wall / measured if measured > 0 else 0.0
        ended = []
        for row, member in enumerate(self.alive):
            m = member.measurement
            seconds = (member.shared_seconds + member.own_seconds) * scale
            accuracy = accuracies[row] if accuracies is not None else None
            record = EpochRecord(epoch, train_losses[row], val_losses[row], accuracy, seconds, m.seconds + seconds)
            m.epochs.append(record)
            m.seconds += seconds
            stop = member.on_epoch(record) if member.on_epoch is not None else False
            if _diverged(record, m.initial_val_loss, setup.divergence_factor):
                m.outcome = "diverged"
            elif stop:
                m.outcome = "pruned" if epoch < setup.epochs else "completed"
            else:
                continue
            ended.append(row)
            self._finish(member)
        if self.group_stop is not None:  # members compare by identity: index() finds each one's position
            going_on = {self.members.index(m): m.measurement.epochs[-1] for r, m in enumerate(self.alive)
                        if r not in ended}
            stopped = self.group_stop(epoch, going_on) if going_on else set()
            for row, member in enumerate(self.alive):
                if row not in ended and self.members.index(member) in stopped:
                    member.measurement.outcome = "pruned" if epoch < setup.epochs else "completed"
                    ended.append(row)
                    self._finish(member)
        if ended:
            self._keep([r for r in range(len(self.alive)) if r not in ended])

    def _keep(self, rows: list[int]) -> None:
        """Only ``rows`` go on: the stack, the alive list and the epoch's loss sums follow."""
        self.stack.keep(rows)
        self.alive = [self.alive[r] for r in rows]
        self.totals = self.totals[rows]

    def _end_oom(self, member: _Member, exc: BaseException, where: str = "") -> None:
        member.measurement.outcome = "oom"
        member.measurement.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"
        member.optimizer.state.clear()  # its state is not needed any more: give the memory back

    def _end_failed(self, member: _Member, exc: BaseException) -> None:
        failed = Measurement.failure(exc)
        member.measurement.outcome, member.measurement.error = failed.outcome, failed.error
        self._finish(member)
        member.optimizer.state.clear()

    def _finish(self, member: _Member) -> None:
        """Record the member's memory (and weights, if asked) as it leaves the stack or the run ends."""
        m = member.measurement
        m.optimizer_state_bytes = optimizer_state_bytes(member.optimizer)
        own = 2 * param_bytes(member.params) + m.optimizer_state_bytes
        peak = peak_memory_bytes(self.device)
        # CPU: params + grads + state, as train_candidate. CUDA: its own tensors plus an even share of
        # the group's activations (the group's peak beyond every member's own tensors), what it would
        # need about alone; the whole group's peak would charge it for the others.
        m.peak_memory_bytes = own if peak is None else own + max(0, peak - self.planned_bytes) // len(self.members)
        if self.keep_states:
            member.state = self.stack.member_state(self.alive.index(member))

    def _bytes(self, member: _Member) -> int:
        return member_bytes(member.params, member.spec, member.candidate.params)

    def _model(self, member: _Member) -> nn.Module | None:
        if member.state is None:
            return None
        model = self.setup.fresh_model(self.seed).to(self.device)
        model.load_state_dict(member.state, strict=False)
        return model
