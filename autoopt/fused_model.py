"""K copies of one model held as stacked tensors and run in one vmapped pass; and whether a model can be.

The model half of the fused trainer (``fused.py`` is the loop). Every parameter and buffer of the
model is stored once as a ``[K, ...]`` tensor; ``torch.func.functional_call`` under ``torch.vmap``
runs the forward of all K copies at once, and one backward fills a ``[K, ...]`` gradient per
parameter. Each member's optimizer sees its own leaf tensors, whose storage *is* its row of the
stacked tensors and whose ``.grad`` *is* its row of the stacked gradient: an optimizer step writes
straight into the stack and no tensor is copied per step (measured faster than re-stacking member
tensors with ``torch.stack`` every step, which copies every parameter twice per step).

It imports neither Optuna nor MLflow.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from .data import VAL_CHUNK, Part
from .fused_rnn import make_vmappable
from .task import Task
from .training import TrainingSetup

#: The TrainingSetup fields the fused trainer reproduces exactly. A field added later (an lr schedule,
#: gradient clipping, ...) that is set away from its default makes ``fusable`` refuse, so a setup the
#: fused loop does not know is trained sequentially instead of differently.
SUPPORTED_SETUP_FIELDS = frozenset(
    {"template", "split", "task", "device", "epochs", "batch_size", "seed", "divergence_factor",
     "_initial_states", "_lock"}
)

_PROBE_BATCH = 8


class StackedModel:
    """K copies of ``model`` (all with its current weights) as ``[K, ...]`` tensors.

    ``leaves[k]`` are member k's trainable parameters, in ``model.parameters()`` order, as the
    optimizer of member k must see them: their data is row k of the stack and their ``.grad`` row k
    of the stacked gradient, both refreshed in place.

    >>> stack = StackedModel(nn.Linear(3, 2), k=4)
    >>> losses = stack.losses(torch.randn(5, 3), torch.randn(5, 2), torch.nn.functional.mse_loss)
    >>> stack.backward(losses); losses.shape, stack.leaves[3][0].grad.shape
    (torch.Size([4]), torch.Size([2, 3]))
    """

    def __init__(self, model: nn.Module, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1 but got {k}.")
        # The module functional_call runs: its own tensors are swapped for the stacked rows inside vmap.
        self.base = copy.deepcopy(model)
        make_vmappable(self.base)  # torch's fused RNN kernels have no vmap rule: unroll them
        named = dict(self.base.named_parameters())
        self.names = list(named)
        self.trainable = [n for n in self.names if named[n].requires_grad]
        self.params = {n: _repeat(p, k).requires_grad_(p.requires_grad) for n, p in named.items()}
        self.buffers = {n: _repeat(b, k) for n, b in self.base.named_buffers()}
        self.grads = {n: torch.zeros_like(self.params[n]) for n in self.trainable}
        self.leaves = [[nn.Parameter(torch.empty(0, dtype=self.params[n].dtype, device=self.params[n].device))
                        for n in self.trainable] for _ in range(k)]
        self._has_grad = dict.fromkeys(self.trainable, True)
        self._point_leaves()
        # Where each tensor sits in the module tree (a tied tensor sits in several places), so that a
        # call can swap the vmapped rows in with plain dict writes: functional_call does the same job
        # with checks that cost more than the small model's whole forward (measured ~0.6 ms a call).
        flat = {id(t): i for i, t in enumerate([*named.values(), *dict(self.base.named_buffers()).values()])}
        self._slots = [(table, key, flat[id(t)]) for module in self.base.modules()
                       for table in (module._parameters, module._buffers)
                       for key, t in table.items() if t is not None and id(t) in flat]

    @property
    def k(self) -> int:
        return len(self.leaves)

    def losses(self, x: torch.Tensor, y: torch.Tensor, loss_fn) -> torch.Tensor:
        """Training-mode loss of every copy on the batch ``(x, y)``: a ``[K]`` tensor with a graph."""
        self.base.train()

        def one(tensors, xb, yb):
            return loss_fn(self._call(tensors, xb), yb)

        return torch.vmap(one, in_dims=(0, None, None))(self._tensors(), x, y)

    def _tensors(self) -> list[torch.Tensor]:
        return [*self.params.values(), *self.buffers.values()]

    def _call(self, tensors: Sequence[torch.Tensor], x: torch.Tensor):
        """The base module's forward on ``x`` with ``tensors`` (one copy's rows) in its slots."""
        saved = [table[key] for table, key, _ in self._slots]
        try:
            for table, key, index in self._slots:
                table[key] = tensors[index]
            return self.base(x)
        finally:
            for (table, key, _), tensor in zip(self._slots, saved):
                table[key] = tensor

    def backward(self, losses: torch.Tensor) -> None:
        """Fill every member's ``.grad`` from one backward pass of ``losses.sum()``.

        The copies share no tensor, so the gradient of the sum with respect to row k is exactly the
        gradient of loss k; a NaN in one member stays in that member's rows.
        """
        stacked = [self.params[n] for n in self.trainable]
        grads = torch.autograd.grad(losses.sum(), stacked, allow_unused=True)
        used = [(self.grads[n], g) for n, g in zip(self.trainable, grads) if g is not None]
        if used:
            torch._foreach_copy_([b for b, _ in used], [g for _, g in used])
        for i, (name, g) in enumerate(zip(self.trainable, grads)):
            # A parameter the loss did not reach has no gradient in a plain backward either, so the
            # optimizer must skip it (no weight decay, no state), not see zeros.
            if (g is not None) != self._has_grad[name]:
                self._has_grad[name] = g is not None
                for row, leaves in enumerate(self.leaves):
                    leaves[i].grad = self.grads[name][row] if g is not None else None

    def evaluate(self, part: Part, task: Task, with_accuracy: bool) -> tuple[list[float], list[float] | None]:
        """Mean loss (and accuracy) of every copy on ``part``, as ``training.evaluate`` computes them."""
        self.base.eval()

        def one(tensors, xb, yb):
            output = self._call(tensors, xb)
            loss = task.loss_fn(output, yb).detach().float()
            return (loss, task.correct(output, yb)) if with_accuracy else (loss, loss)

        run = torch.vmap(one, in_dims=(0, None, None))
        first = next(iter(self.params.values()))
        total = torch.zeros(self.k, device=first.device)
        correct = torch.zeros(self.k, device=first.device)
        count = 0
        with torch.no_grad():
            for xb, yb in part.batches(VAL_CHUNK, None):
                loss, hits = run(self._tensors(), xb, yb)
                total += loss * len(xb)
                if with_accuracy:
                    correct += hits
                count += len(xb)
        self.base.train()
        losses = [t / max(count, 1) for t in total.tolist()]  # one device sync per evaluation
        return losses, ([c / max(count, 1) for c in correct.tolist()] if with_accuracy else None)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` of the stack (members that go on); the others' leaves are detached.

        A member that leaves keeps its last weights in its own leaves (copied out of the stack), and
        the members that stay keep their leaf objects, so their optimizers' state is untouched.
        """
        rows = list(rows)
        leaving = [r for r in range(self.k) if r not in set(rows)]
        for r in leaving:
            for leaf in self.leaves[r]:
                leaf.data = leaf.data.clone()
                leaf.grad = None
        index = torch.tensor(rows, dtype=torch.long, device=next(iter(self.params.values())).device)
        self.params = {n: p.detach().index_select(0, index).requires_grad_(p.requires_grad)
                       for n, p in self.params.items()}
        self.buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}
        self.grads = {n: g.index_select(0, index) for n, g in self.grads.items()}
        self.leaves = [self.leaves[r] for r in rows]
        self._point_leaves()

    def snapshot_buffers(self) -> dict[str, torch.Tensor] | None:
        """Copies of the buffers (None without buffers), to undo a pass that failed half-way."""
        return {n: b.clone() for n, b in self.buffers.items()} if self.buffers else None

    def restore_buffers(self, snapshot: dict[str, torch.Tensor] | None) -> None:
        if snapshot is not None:
            for name, value in snapshot.items():
                self.buffers[name].copy_(value)

    def member_state(self, row: int) -> dict[str, torch.Tensor]:
        """Row ``row``'s parameters and buffers by module name, copied (for ``load_state_dict``)."""
        state = {n: p[row].detach().clone() for n, p in self.params.items()}
        state.update({n: b[row].clone() for n, b in self.buffers.items()})
        return state

    def _point_leaves(self) -> None:
        for row, leaves in enumerate(self.leaves):
            for leaf, name in zip(leaves, self.trainable):
                leaf.data = self.params[name].detach()[row]
                leaf.grad = self.grads[name][row] if self._has_grad[name] else None


def activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> int:
    """Bytes autograd saves for one training step of ``model`` on ``(x, y)`` (its activations).

    Counted by saved-tensor hooks, each storage once, the model's own weights left out.
    """
    model = copy.deepcopy(model).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(model(x), y)
    return sum(saved.values())


def _repeat(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.detach().unsqueeze(0).expand(k, *t.shape).clone()


def fusable(setup: TrainingSetup) -> str | None:
    """None if K copies of ``setup.template`` can train in one vmapped pass, else a one-line reason.

    Decided by trying: one fused forward and backward of two copies on a small training batch, and a
    fused evaluation, compared with the model's own forward and backward on the same batch (loss,
    gradients and buffers). A model that vmap rejects (data-dependent control flow, random
    operations such as dropout, ``.item()`` in forward), one whose fused pass differs from its own,
    non-tensor batches, or a setup option the fused loop does not reproduce, all give a reason.

    >>> from autoopt.data import prepare_data
    >>> from autoopt.task import infer_task
    >>> split = prepare_data((torch.randn(40, 3), torch.randn(40, 1)))
    >>> model = nn.Linear(3, 1)
    >>> print(fusable(TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 2, 8, 0)))
    None
    """
    unsupported = unsupported_setup(setup)
    if unsupported is not None:
        return unsupported
    try:
        xb, yb = next(iter(setup.split.train.batches(min(_PROBE_BATCH, setup.batch_size), None)))
    except Exception as exc:  # e.g. a DataLoader of dicts: LoaderPart cannot move them to the device
        return f"the training data does not yield (tensor, tensor) batches: {_one_line(exc)}"
    if not (isinstance(xb, torch.Tensor) and isinstance(yb, torch.Tensor)):
        return f"the training data yields {type(xb).__name__} / {type(yb).__name__} batches, not tensors"
    model = setup.fresh_model(setup.seed).to(setup.device).train()
    if not any(p.requires_grad for p in model.parameters()):
        return "the model has no trainable parameters"
    try:
        stack = StackedModel(model, 2)
        losses = stack.losses(xb, yb, setup.task.loss_fn)
        stack.backward(losses)
        stack.evaluate(_OneBatch(xb, yb), setup.task, _has_accuracy(model, setup.task, xb, yb))
        model.train()
    except Exception as exc:
        return _vmap_reason(exc)
    try:
        reference = model(xb)
        ref_loss = setup.task.loss_fn(reference, yb)
        ref_loss.backward()
    except Exception as exc:
        return f"the model's own forward/backward failed on a batch: {_one_line(exc)}"
    return _compare(stack, model, losses.detach(), ref_loss.detach())


def unsupported_setup(setup: TrainingSetup) -> str | None:
    """A reason if ``setup`` uses an option the fused loop does not reproduce, else None."""
    for f in dataclasses.fields(setup):
        if f.name in SUPPORTED_SETUP_FIELDS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if default is dataclasses.MISSING or getattr(setup, f.name) != default:
            return f"the fused trainer does not support TrainingSetup.{f.name} (set to {getattr(setup, f.name)!r})"
    return None


def _compare(stack: StackedModel, model: nn.Module, losses: torch.Tensor, ref_loss: torch.Tensor) -> str | None:
    """A reason if the fused pass's loss, gradients or buffers differ from the model's own."""
    checks: list[tuple[str, torch.Tensor, torch.Tensor]] = [("the loss", losses, ref_loss.expand_as(losses))]
    named = dict(model.named_parameters())
    for name in stack.trainable:
        grad = named[name].grad
        if grad is None:
            if stack._has_grad[name]:
                return f"parameter {name!r} gets a gradient in the fused pass but none in the model's own"
            continue
        checks.append((f"the gradient of {name!r}", stack.grads[name], grad.expand_as(stack.grads[name])))
    for name, buffer in model.named_buffers():
        if name in stack.buffers:
            checks.append((f"buffer {name!r}", stack.buffers[name], buffer.expand_as(stack.buffers[name])))
    for what, fused, own in checks:
        if not fused.is_floating_point():
            if not torch.equal(fused, own):
                return f"the fused pass changes {what} differently from the model's own forward"
            continue
        scale = float(own.abs().max()) if own.numel() else 0.0
        if not math.isfinite(scale):
            return f"{what} is not finite on the first batch"
        if not torch.allclose(fused, own, rtol=1e-3, atol=1e-5 * max(scale, 1.0)):
            diff = float((fused - own).abs().max())
            return f"the fused pass gives a different value of {what} than the model's own (max difference {diff:.3g})"
    return None


def _has_accuracy(model: nn.Module, task: Task, xb: torch.Tensor, yb: torch.Tensor) -> bool:
    model.eval()  # as training.evaluate, and so that BatchNorm's statistics stay as they are
    with torch.no_grad():
        return task.correct(model(xb), yb) is not None


def has_accuracy(setup: TrainingSetup, model: nn.Module) -> bool:
    """Whether ``training.evaluate`` reports an accuracy for this task (one forward of a small batch)."""
    xb, yb = next(iter(setup.split.val.batches(_PROBE_BATCH, None)))
    was_training = model.training
    try:
        return _has_accuracy(model, setup.task, xb, yb)
    finally:
        model.train(was_training)


@dataclasses.dataclass
class _OneBatch:
    """A Part of one batch, for the probe's fused evaluation."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.X)

    def batches(self, batch_size: int, generator: torch.Generator | None):
        yield self.X, self.y


def _vmap_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "data-dependent control flow" in text or "is_nonzero" in text or ".item()" in text:
        hint = "the model's forward has data-dependent control flow or reads tensor values (vmap cannot batch it)"
    elif "random" in text:
        hint = "the model uses random operations (e.g. dropout) that vmap cannot reproduce per copy"
    elif "in-place" in text or "inplace" in text:
        hint = "the model updates a tensor in place in a way vmap rejects"
    else:
        hint = "vmap cannot run the model"
    return f"{hint}: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
