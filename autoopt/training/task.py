"""What the model is asked to do: the task, its loss, and a check that the model's output fits.

Classification (integer or categorical targets) gets cross-entropy, or BCE-with-logits when the
model has a single output for two classes; regression (float targets) gets mean squared error.
Float targets that are all 0 or 1 with a one-output model, and one-hot float targets, are
classification too, with a note saying so (``task="regression"`` overrides). ``loss_fn=`` overrides
the loss. The check runs one forward pass before any training, so a model that cannot fit its
targets is an error up front, not a crash in trial 1.

What a model returns may be a tensor, a tuple (its first element is the prediction), a dict or an
object with ``logits`` and/or ``loss`` (Hugging Face models); ``output_fn=`` picks the prediction
from anything else. A model that returns its own ``loss`` is trained and judged on it. A batch's
inputs are a tensor (``model(x)``), a tuple (``model(*x)``) or a dict (``model(**x)``, the target
passed too as the keyword it came under when ``forward`` takes it, as Hugging Face models do).
``step_fn(model, batch) -> loss`` replaces all of this for a batch of any other shape.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .batches import Split, TensorPart
from .intake import check_two_classes

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: picks the prediction tensor out of whatever the model returns
OutputFn = Callable[[Any], torch.Tensor]
#: the loss of one batch, forward pass included: ``step_fn(model, batch) -> scalar tensor``
StepFn = Callable[[nn.Module, Any], torch.Tensor]
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Task:
    """The kind of problem and the loss every candidate is trained and judged on.

    ``kind`` is "multiclass", "binary", "regression", "custom" (``loss_fn=``), "model" (the loss the
    model returns) or "step" (``step_fn=``). ``note`` says what was inferred that a user may want
    to override.
    """

    kind: str
    loss_fn: LossFn | None
    output_fn: OutputFn | None = None
    step_fn: StepFn | None = None
    target_keyword: str | None = None  # dict batches: the target is passed to the model under this name
    accuracy: str | None = None  # "multiclass" or "binary" where accuracy is measured besides the loss
    note: str | None = None

    def batch_loss(self, model: nn.Module, inputs: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, prediction) of one batch; the prediction is None under ``step_fn``."""
        if self.step_fn is not None:
            return self.step_fn(model, inputs if target is None else (inputs, target)), None
        output = call_model(model, inputs, target, self.target_keyword)
        if isinstance(output, torch.Tensor) and self.output_fn is None:
            return self.loss_fn(output, target), output  # type: ignore[misc]
        prediction, own_loss = select_output(output, self.output_fn)
        if self.kind == "model":
            return own_loss, prediction  # type: ignore[return-value]
        return self.loss_fn(prediction, target), prediction  # type: ignore[misc,arg-type]

    def correct(self, output: torch.Tensor | None, target: Any) -> torch.Tensor | None:
        """Number of correct predictions in a batch (a 0-d tensor); None when accuracy has no meaning."""
        kind = self.accuracy if self.kind == "model" else self.kind
        if output is None or not isinstance(target, torch.Tensor):
            return None
        if kind == "multiclass":
            labels = target.argmax(dim=-1) if target.is_floating_point() and target.ndim == output.ndim else target
            return (output.argmax(dim=-1) == labels).sum()
        if kind == "binary":
            return ((output.reshape(-1) > 0).long() == target.reshape(-1)).sum()
        return None


def call_model(model: nn.Module, inputs: Any, target: Any = None, target_keyword: str | None = None) -> Any:
    """``model(x)``, ``model(*inputs)`` for a tuple or list, ``model(**inputs)`` for a dict (with the
    target as ``target_keyword=`` when given)."""
    if isinstance(inputs, Mapping):
        return model(**inputs, **({target_keyword: target} if target_keyword else {}))
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def select_output(output: Any, output_fn: OutputFn | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(prediction, the model's own loss) from what a model returned; either may be None.

    >>> select_output({"logits": torch.zeros(2, 3), "loss": torch.tensor(1.0)})[1]
    tensor(1.)
    >>> select_output((torch.ones(2), "hidden state"))[0]
    tensor([1., 1.])
    """
    if output_fn is not None:
        prediction = output_fn(output)
        if not isinstance(prediction, torch.Tensor):
            raise ValueError(f"output_fn must return a tensor of predictions but returned {type(prediction).__name__}.")
        return prediction, None
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, Mapping):
        logits, loss = output.get("logits"), output.get("loss")
    elif isinstance(output, (tuple, list)):
        logits, loss = (output[0] if output else None), None
    else:
        logits, loss = getattr(output, "logits", None), getattr(output, "loss", None)
    logits = logits if isinstance(logits, torch.Tensor) else None
    loss = loss if isinstance(loss, torch.Tensor) else None
    if logits is None and loss is None:
        keys = f" with keys {list(output)}" if isinstance(output, Mapping) else ""
        raise ValueError(
            f"the model returned {type(output).__name__}{keys}, which holds no 'logits' or 'loss' tensor "
            "(nor is its first element a tensor); pass output_fn= to pick the predictions, e.g. "
            "output_fn=lambda out: out['scores'], or step_fn= to compute the loss of a batch yourself."
        )
    return logits, loss


def _binary_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output.reshape(-1), target.float())


def _binary_loss_flat(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output.reshape(-1), target.reshape(-1).float())


def _multiclass_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def _mse_flat(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output.reshape(target.shape), target)


def infer_task(
    model: nn.Module,
    split: Split,
    loss_fn: LossFn | None = None,
    *,
    output_fn: OutputFn | None = None,
    step_fn: StepFn | None = None,
    task: str | None = None,
) -> Task:
    """The task and loss for ``model`` on ``split``; raises ValueError if the output cannot fit.

    >>> from autoopt.training.intake import prepare_data
    >>> import numpy as np
    >>> split = prepare_data((np.random.rand(20, 3), np.arange(20) % 3))
    >>> infer_task(nn.Linear(3, 3), split).kind
    'multiclass'
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task={task!r} is not a task; use one of {list(TASKS)} (or leave it out to infer it).")
    check_device(model)
    xb, yb = split.first_batch(8)
    if step_fn is not None:
        result = Task("step", None, step_fn=step_fn)
        _check_loss(result, model, xb, yb)
        return result
    keyword = _target_keyword(model, xb, split.target_key)
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            output = call_model(model, xb, yb, keyword)
        model.train(was_training)
    except Exception as exc:  # the user's forward pass: any failure is theirs to see, named
        raise ValueError(
            f"the model could not run on a batch of the data (inputs {describe_inputs(xb)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    prediction, own_loss = select_output(output, output_fn)
    if loss_fn is not None:
        result = Task("custom", loss_fn, output_fn, target_keyword=keyword)
    elif own_loss is not None:
        accuracy = _accuracy_kind(prediction, yb, split) if prediction is not None else None
        result = Task("model", None, output_fn, target_keyword=keyword, accuracy=accuracy)
    elif task == "regression" or (task is None and not split.classification):
        inferred = None if task == "regression" else _classification_from_floats(prediction, yb, split)
        result = inferred or _regression_task(prediction, yb)
        result = Task(result.kind, result.loss_fn, output_fn, target_keyword=keyword, note=result.note)
    elif not split.classification:  # task="classification" asked for float targets
        base = _classification_from_floats(prediction, yb, split)
        if base is None:
            raise ValueError("task='classification' needs integer class ids, 0/1 floats (one output) or one-hot "
                             f"floats as targets, but they are other floats, of shape {tuple(yb.shape[1:])}.")
        result = Task(base.kind, base.loss_fn, output_fn, target_keyword=keyword)
    else:
        base = _classification_task(prediction, split.n_classes or 0)
        result = Task(base.kind, base.loss_fn, output_fn, target_keyword=keyword)
    _check_loss(result, model, xb, yb)
    return result


def check_device(model: nn.Module) -> None:
    """Raise ValueError for a model whose parameters hold no data (the meta device)."""
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(
            f"the model's parameters are on the meta device (no values), {meta[0]!r} first; load or "
            "initialize its weights before tuning, e.g. model.to_empty(device='cpu') then "
            "model.load_state_dict(...) or each module's reset_parameters()."
        )


def describe_inputs(inputs: Any) -> str:
    """Shapes and dtypes of a batch's inputs, for messages."""
    if isinstance(inputs, torch.Tensor):
        return f"x of shape {tuple(inputs.shape)}, dtype {inputs.dtype}"
    if isinstance(inputs, Mapping):
        return "{" + ", ".join(f"{k}: {describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(v) for v in inputs) + ")"
    return type(inputs).__name__


def _target_keyword(model: nn.Module, inputs: Any, key: str | None) -> str | None:
    """The target's key when a dict batch's model takes it as a keyword (Hugging Face's ``labels``)."""
    if not isinstance(inputs, Mapping) or key is None:
        return None
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    return key if key in parameters else None


def _accuracy_kind(prediction: torch.Tensor, target: Any, split: Split) -> str | None:
    if not split.classification or not isinstance(target, torch.Tensor):
        return None
    if prediction.ndim == 2 and target.ndim == 1 and len(prediction) == len(target):
        return "binary" if prediction.shape[-1] == 1 else "multiclass"
    return None


def _all_targets(split: Split, first: torch.Tensor) -> torch.Tensor:
    """Every target, training and validation, for in-memory data; the first batch's for a DataLoader (read
    as given)."""
    if isinstance(split.train, TensorPart) and isinstance(split.val, TensorPart):
        return torch.cat([split.train.y, split.val.y])
    return first


def _classification_from_floats(prediction: torch.Tensor, target: torch.Tensor, split: Split) -> Task | None:
    """Float targets that are really class labels: all 0/1 with one output, or one-hot rows."""
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        return None
    values = _all_targets(split, target)
    binary = bool(((values == 0) | (values == 1)).all())
    one_output = prediction.numel() == len(prediction) == len(target)  # (N,) or (N, 1)
    if binary and one_output and target.numel() == len(target):
        check_two_classes(values.unique().tolist(), "data")
        return Task("binary", _binary_loss_flat, note=(
            "the targets are floats that are all 0 or 1 and the model has one output: treated as binary "
            "classification (BCE with logits, accuracy measured); pass task='regression' for MSE instead."))
    one_hot = binary and values.ndim == 2 and values.shape[1] > 1 and bool((values.sum(dim=1) == 1).all())
    if one_hot and prediction.shape == target.shape:
        check_two_classes(values.argmax(dim=1).unique().tolist(), "data")
        return Task("multiclass", _multiclass_loss, note=(
            f"the targets are one-hot rows over {values.shape[1]} classes: treated as multiclass "
            "classification (cross-entropy, accuracy measured); pass task='regression' for MSE instead."))
    return None


def _classification_task(output: torch.Tensor, n_classes: int) -> Task:
    width = output.shape[-1] if output.ndim == 2 else None
    if width == 1 and n_classes <= 2:
        return Task("binary", _binary_loss)
    if width is not None and width >= max(n_classes, 2):
        return Task("multiclass", _multiclass_loss)
    raise ValueError(
        f"the model outputs shape {tuple(output.shape[1:])} per sample but the targets are class ids with "
        f"{n_classes} classes (0..{n_classes - 1}); give the model {n_classes} outputs"
        + (" (or 1 output for binary)" if n_classes <= 2 else "")
        + ", or pass loss_fn=."
    )


def _regression_task(output: torch.Tensor, target: torch.Tensor) -> Task:
    if output.shape == target.shape:
        return Task("regression", _mse)
    if output.numel() == target.numel() and output.shape[0] == target.shape[0]:
        return Task("regression", _mse_flat)  # e.g. outputs (N, 1) for targets (N,)
    raise ValueError(
        f"the model outputs shape {tuple(output.shape[1:])} per sample but the float targets have shape "
        f"{tuple(target.shape[1:])}; make them match (regression), use integer class ids (classification), "
        "or pass loss_fn=."
    )


def _check_loss(task: Task, model: nn.Module, inputs: Any, target: Any) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            loss, _ = task.batch_loss(model, inputs, target)
    except Exception as exc:
        raise ValueError(f"the loss could not be computed on a batch: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    what = "step_fn" if task.kind == "step" else ("the model's own loss" if task.kind == "model" else "loss_fn")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"{what} must return a scalar tensor (use reduction='mean').")
    if not math.isfinite(float(loss)):
        raise ValueError(f"the loss of the initial model is {float(loss)} on a batch; check the data and the loss.")
