"""K copies of one model held as stacked tensors and run in one vmapped pass; and whether a model can be.

The model half of the fused trainer (``loop.py`` is the loop; ``eligibility.py`` decides whether a model can be). Every parameter and buffer of the
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
from collections.abc import Sequence

import torch
from torch import nn

from ..batches import VAL_CHUNK, Part
from ..task import Task
from .unrolled_rnn import make_vmappable


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
        """Mean loss (and accuracy) of every copy on ``part``, as ``training.loop.evaluate`` computes them."""
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
