"""Whether a study's trials can train fused: the model (tried: one vmapped pass of two copies against its
own forward and backward), the setup and the candidates' training settings; with a one-line reason
where they cannot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from ...optimizers.schedules import TRAINING_KEYS, TrainingSettings, split_params
from ...optimizers.spec import OptimizerSpec
from ...records import Candidate
from ..setup import TrainingSetup
from ..task import Task
from .stacked_model import StackedModel

#: Devices where a study fuses by default (``fused=None``). Not the CPU: there a default study's groups
#: (3-8 portfolio entries, Muon among them) trained no faster fused than one by one (0.7-1.1x the
#: wall time of the same studies, benchmarks/wall_overhead.py --fused both, 2026-12-02): the members'
#: own optimizer steps, Muon's above all, cost what they cost alone, and vmap's overhead eats the
#: shared pass's saving at these sizes. On a GPU a small model's steps are bound by kernel launches,
#: which fusing shares (HFTA, Wang et al., MLSys 2021). ``fused=True`` fuses on any device.
DEFAULT_DEVICES = frozenset({"cuda"})


def member_problem(candidate: Candidate) -> str | None:
    """Why ``candidate`` cannot be a member of a fused pass, or None.

    The fused loop steps each member's optimizer with nothing around it: a candidate with its own
    training settings (an lr schedule, warm-up, gradient clipping) trains alone.
    """
    _, settings = split_params(candidate.params)
    if settings != TrainingSettings():
        return f"{candidate.key()} has its own training settings ({settings}), which the fused loop does not apply"
    return None


def why_not_fused(setup: TrainingSetup, specs: Sequence[OptimizerSpec]) -> str | None:
    """Why a study of ``specs`` on ``setup`` trains its trials one at a time, or None: it can fuse them.

    >>> from autoopt.training.intake import prepare_data
    >>> from autoopt.training.task import infer_task
    >>> from autoopt.optimizers.registry import resolve_specs
    >>> split = prepare_data((torch.randn(64, 3), torch.randn(64, 1)))
    >>> model = nn.Linear(3, 1)
    >>> setup = TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 2, 16, 0)
    >>> print(why_not_fused(setup, resolve_specs(["sgd", "adam"])))
    None
    """
    searched = sorted({d.name for s in specs for d in s.space if d.name in TRAINING_KEYS})
    if searched:
        return f"the search space includes training settings ({', '.join(searched)}), which the fused loop does not apply"
    return fusable(setup)


#: The TrainingSetup fields the fused trainer reproduces exactly. A field added later (an lr schedule,
#: gradient clipping, ...) that is set away from its default makes ``fusable`` refuse, so a setup the
#: fused loop does not know is trained sequentially instead of differently.
SUPPORTED_SETUP_FIELDS = frozenset(
    {"template", "split", "task", "device", "epochs", "batch_size", "seed", "divergence_factor",
     "_initial_states", "_lock"}
)

_PROBE_BATCH = 8


def fusable(setup: TrainingSetup) -> str | None:
    """None if K copies of ``setup.template`` can train in one vmapped pass, else a one-line reason.

    Decided by trying: one fused forward and backward of two copies on a small training batch, and a
    fused evaluation, compared with the model's own forward and backward on the same batch (loss,
    gradients and buffers). A model that vmap rejects (data-dependent control flow, random
    operations such as dropout, ``.item()`` in forward), one whose fused pass differs from its own,
    non-tensor batches, or a setup option the fused loop does not reproduce, all give a reason.

    >>> from autoopt.training.intake import prepare_data
    >>> from autoopt.training.task import infer_task
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
    """Whether ``training.loop.evaluate`` reports an accuracy for this task (one forward of a small batch)."""
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
