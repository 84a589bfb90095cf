"""``tune()``'s arguments checked before any training: the settings, the model and loss, the objective
against the task, and the candidates against the memory budget. Each error names the bad value and
what is accepted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import StudyConfig
from .objective import Objective
from .optimizers.spec import OptimizerSpec
from .recommendation.record import format_bytes
from .records import Candidate, Measurement, TrialRecord
from .training.evaluation import metric_values
from .training.task import Task


def check_objective_measurable(objective: Objective, task: Task, model: nn.Module, split: Any) -> None:
    """An objective the task cannot measure is an error before training: accuracy without classes, a
    metric without predictions, or a metric that fails (or returns no number) on a batch."""
    accuracy = task.accuracy if task.kind == "model" else task.kind
    if objective.name == "val_accuracy" and accuracy not in ("multiclass", "binary"):
        what = {"regression": "regression (float targets, mean squared error)", "custom": "trained on your loss_fn",
                "step": "trained by your step_fn", "model": "trained on the model's own loss, without logits"}
        raise ValueError(
            f"objective='val_accuracy' needs a classification task, where accuracy is measured, but this task is "
            f"{what.get(task.kind, task.kind)}; use objective='val_loss', or autoopt.Objective(fn, direction="
            "'maximize' or 'minimize', name=...) for a metric fn(predictions, targets) of your own.")
    if objective.metric is None:
        return
    xb, yb = split.first_batch(8)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, prediction = task.batch_loss(model, xb, yb)
            metric_values({objective.name: objective.metric}, [(prediction, yb)])  # type: ignore[dict-item]
    except ValueError:
        raise
    except Exception as exc:  # the user's metric: its failure is theirs to see, named
        raise ValueError(f"the objective {objective.name!r} could not be computed on a batch of the data "
                         f"(predictions and targets as the loss sees them): {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)


#: What each function argument of tune() is called with, for the error when it is not callable.
FUNCTIONS = {"loss_fn": "loss_fn(output, target) -> scalar tensor",
             "output_fn": "output_fn(model_output) -> tensor of predictions, e.g. lambda out: out['logits']",
             "step_fn": "step_fn(model, batch) -> scalar loss tensor"}


def check_arguments(model: Any, target: Any, loss_fn: Any, *, output_fn: Any = None, step_fn: Any = None) -> None:
    """The arguments that are not settings, checked before the data is touched."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module but got {type(model).__name__}.")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"target must be the name of a DataFrame column (a string) but got {target!r}.")
    for name, value in (("loss_fn", loss_fn), ("output_fn", output_fn), ("step_fn", step_fn)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a function, {FUNCTIONS[name]}, but got {value!r} ({type(value).__name__}).")


def make_config(config: StudyConfig | None, settings: dict[str, Any]) -> StudyConfig:
    valid = StudyConfig.field_names()
    if config is not None and not isinstance(config, StudyConfig):
        raise TypeError(f"config must be an autoopt.StudyConfig (or left out) but got {type(config).__name__} "
                        f"{config!r:.80}; pass settings as keywords instead, e.g. tune(model, data, epochs=5), "
                        "or config=autoopt.StudyConfig(epochs=5).")
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise TypeError(f"tune() got unknown setting(s) {unknown}; valid settings are {valid}.")
    if config is None:
        return StudyConfig(**settings)
    return StudyConfig(**{**{n: getattr(config, n) for n in valid}, **settings})


def check_memory(
    specs: list[OptimizerSpec], model: nn.Module, config: StudyConfig
) -> tuple[list[OptimizerSpec], list[TrialRecord]]:
    """Split the candidates into those that fit the memory budget and those skipped as infeasible.

    The need is parameters + gradients + optimizer state, all known from the parameter shapes.
    """
    if config.memory_budget is None:
        return specs, []
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    need = {s.name: 2 * param_bytes + s.predict_state_bytes(s.parameters_of(model), s.defaults) for s in specs}
    feasible = [s for s in specs if need[s.name] <= config.memory_budget]
    if not feasible:
        smallest = min(specs, key=lambda s: need[s.name])
        raise ValueError(
            f"memory_budget={config.memory_budget} bytes is below every candidate's need; the smallest, "
            f"{smallest.name}, needs {need[smallest.name]} bytes ({format_bytes(need[smallest.name])}: "
            "parameters + gradients + optimizer state). Raise the budget or use a smaller model."
        )
    infeasible = [
        TrialRecord(None, Candidate(s.name, dict(s.defaults)), s.family, config.seed, "skipped",
                    Measurement("infeasible", optimizer_state_bytes=need[s.name] - 2 * param_bytes,
                                peak_memory_bytes=need[s.name],
                                error=f"needs {format_bytes(need[s.name])} > budget {format_bytes(config.memory_budget)}"))
        for s in specs if s not in feasible
    ]
    return feasible, infeasible
