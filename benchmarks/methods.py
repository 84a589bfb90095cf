"""The search methods compared: autoopt (its defaults and one-mechanism-off ablations) and plain Optuna.

A method is named by a string:

- ``autoopt``: ``autoopt.tune`` with StudyConfig's current defaults;
- ``autoopt:key=value[,key=value]``: the same with those settings changed (an ablation), e.g.
  ``autoopt:pruner=none``; values are read as Python literals when they parse (``False``, ``0``);
- ``tpe`` / ``random``: a plain Optuna study over (optimizer, log-uniform lr in [1e-5, 10]) with
  TPESampler / RandomSampler, no pruner, full-length trials until the budget is spent.

Every method is given the same problem (train part as data, the fixed validation part as
``val_data``), the same candidate optimizers and the same budget in training-run equivalents (TRE).
A run returns a plain dict: its recommendation, its cost and a summary of its trials.
"""

from __future__ import annotations

import ast
import math
import time
import traceback
from dataclasses import fields
from typing import Any

import optuna

import autoopt
from autoopt.config import StudyConfig
from autoopt.records import Candidate
from autoopt.registry import get_spec
from autoopt.search import PRUNERS
from autoopt.task import infer_task
from autoopt.training import TrainingSetup, train_candidate

from problems import OPTIMIZERS, build_model, load_problem

PLAIN_LR_RANGE = (1e-5, 10.0)  # the grid's learning-rate range
PLAIN_METHODS = ("tpe", "random")


#: Boolean StudyConfig fields that are not search mechanisms (never ablated).
NOT_MECHANISMS = ("tracking", "verbose")


def mechanism_flags() -> list[str]:
    """StudyConfig's boolean fields that switch a search mechanism (any new one is picked up)."""
    return [f.name for f in fields(StudyConfig) if isinstance(f.default, bool) and f.name not in NOT_MECHANISMS]


def default_settings() -> dict[str, Any]:
    """StudyConfig's current defaults for the mechanisms the ablations switch, and the search's shape."""
    config = StudyConfig()
    names = (*mechanism_flags(), "pruner", "reevaluate_top", "seeds", "sampler", "space", "screen_epochs",
             "budget", "policy", "tolerance")
    return {n: getattr(config, n) for n in names if hasattr(config, n)}


def ablations(base: dict[str, Any] | None = None) -> list[str]:
    """One method per mechanism switched away from its current default (read from StudyConfig).

    With ``base`` settings, each ablation is ``base`` with one mechanism switched from its value there.
    """
    current = {**default_settings(), **(base or {})}
    out = []
    for flag in mechanism_flags():
        out.append(method_name({**(base or {}), flag: not current[flag]}))
    out += [method_name({**(base or {}), "pruner": p}) for p in PRUNERS if p != current.get("pruner")]
    if "reevaluate_top" in current:
        out.append(method_name({**(base or {}), "reevaluate_top": 0 if current["reevaluate_top"] else 3}))
    return out


def method_name(settings: dict[str, Any]) -> str:
    """``autoopt`` with ``settings`` as a method name: ``autoopt:key=value,...`` (``autoopt`` if none)."""
    return "autoopt" + (":" + ",".join(f"{k}={v}" for k, v in settings.items()) if settings else "")


def expand_methods(names: list[str], base: dict[str, Any] | None = None) -> list[str]:
    """Method names with ``ablations`` and ``all`` expanded and ``base`` put into every autoopt method.

    ``base`` settings come first in a name and an autoopt method's own settings override them, so
    ``autoopt:pruner=none`` with base ``{"reevaluate_top": 1}`` is ``autoopt:reevaluate_top=1,pruner=none``.
    """
    out: list[str] = []
    for name in names:
        if name == "all":
            out += [method_name(dict(base or {})), *ablations(base), *PLAIN_METHODS]
        elif name == "ablations":
            out += ablations(base)
        else:
            kind, settings = parse_method(name)  # a bad name is an error before anything trains
            out.append(method_name({**(base or {}), **settings}) if kind == "autoopt" else name)
    return list(dict.fromkeys(out))


def parse_method(name: str) -> tuple[str, dict[str, Any]]:
    """``("autoopt", overrides)`` or ``("tpe" | "random", {})``; raises ValueError on a bad name."""
    if name in PLAIN_METHODS:
        return name, {}
    kind, _, rest = name.partition(":")
    if kind != "autoopt":
        raise ValueError(f"unknown method {name!r}; use 'autoopt', 'autoopt:key=value,...', "
                         f"'ablations', 'all' or one of {list(PLAIN_METHODS)}.")
    overrides: dict[str, Any] = {}
    valid = {f.name for f in fields(StudyConfig)}
    for item in filter(None, rest.split(",")):
        key, sep, text = item.partition("=")
        if not sep or key not in valid:
            raise ValueError(f"method {name!r}: {item!r} is not key=value with key a StudyConfig field "
                             f"({sorted(valid)}).")
        try:
            overrides[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[key] = text
    return "autoopt", overrides


def run_method(problem_name: str, method: str, sampler_seed: int, budget: float) -> dict[str, Any]:
    """Run ``method`` once on the problem with ``sampler_seed``; never raises (errors are recorded)."""
    kind, overrides = parse_method(method)
    start = time.perf_counter()
    try:
        if kind == "autoopt":
            result = _run_autoopt(problem_name, sampler_seed, budget, overrides)
        else:
            result = _run_plain(problem_name, kind, sampler_seed, budget)
    except Exception as exc:  # a method that cannot run is a result too (e.g. a budget it refuses)
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=3),
                  "recommendation": None, "tre": None}
    result.update(problem=problem_name, method=method, sampler_seed=sampler_seed, budget=budget,
                  wall_seconds=round(time.perf_counter() - start, 2))
    return result


def _run_autoopt(name: str, seed: int, budget: float, settings: dict[str, Any]) -> dict[str, Any]:
    problem = load_problem(name)
    model = build_model(name, seed)
    report = autoopt.tune(model, problem.train, val_data=problem.val, epochs=problem.epochs,
                          batch_size=problem.batch_size, optimizers=list(OPTIMIZERS), budget=budget, seed=seed,
                          device="cpu", tracking=False, verbose=False, **settings)
    rec = report.recommendation
    trials = report.trials
    summary = [
        {"optimizer": row["optimizer"], "lr": float(row["lr"]), "purpose": row["purpose"], "seed": int(row["seed"]),
         "outcome": row["outcome"], "epochs": int(row["epochs"]),
         "final_val_loss": _finite(row["final_val_loss"])}
        for _, row in trials.iterrows()
    ]
    range_epochs = report.epochs_spent - float(trials["epochs"].sum())
    return {"recommendation": {"optimizer": rec.optimizer, "params": {k: _plain(v) for k, v in rec.params.items()},
                               "search_val_loss": _finite(rec.val_loss), "n_seeds": rec.n_seeds},
            "tre": float(report.cost), "range_test_tre": range_epochs / problem.epochs,
            "settings": {k: _plain(v) for k, v in settings.items()}, "trials": summary}


def _run_plain(name: str, sampler_kind: str, seed: int, budget: float) -> dict[str, Any]:
    """Plain Optuna: (optimizer, lr) only, no pruner, full-length trials until ``budget`` TRE is spent.

    A diverged trial stops early (the training loop's rule) and reports its last loss when finite;
    a non-finite one is told to Optuna as a failure, as a plain objective returning NaN would be. A
    trial the budget cuts short is told as pruned and cannot be recommended.
    """
    problem = load_problem(name)
    sampler = (optuna.samplers.TPESampler(seed=seed) if sampler_kind == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=optuna.pruners.NopPruner())
    model = build_model(name, seed)
    split = autoopt.prepare_data(problem.train, val_data=problem.val)
    setup = TrainingSetup(template=model, split=split, task=infer_task(model, split), device=split.train.X.device,
                          epochs=problem.epochs, batch_size=problem.batch_size, seed=seed)
    limit = budget * problem.epochs
    spent = 0
    trials = []
    while limit - spent >= 1:
        trial = study.ask()
        optimizer = trial.suggest_categorical("optimizer", list(OPTIMIZERS))
        lr = trial.suggest_float("lr", *PLAIN_LR_RANGE, log=True)
        params = {**get_spec(optimizer).defaults, "lr": lr}
        room = limit - spent

        def stop(record: Any, room: float = room) -> bool:
            return record.epoch + 1 > room  # the next epoch would overrun the budget

        m = train_candidate(setup, get_spec(optimizer), Candidate(optimizer, params), seed=seed, on_epoch=stop)
        spent += len(m.epochs)
        loss = m.final_val_loss
        if m.outcome == "completed":
            study.tell(trial, loss)
        elif m.outcome == "diverged" and math.isfinite(loss):
            study.tell(trial, loss)
        elif m.outcome == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        trials.append({"optimizer": optimizer, "lr": lr, "purpose": "search", "seed": seed, "outcome": m.outcome,
                       "epochs": len(m.epochs), "final_val_loss": _finite(loss)})
    eligible = [(t["final_val_loss"], i) for i, t in enumerate(trials)
                if t["outcome"] == "completed" and t["final_val_loss"] is not None]
    rec = None
    if eligible:
        best = trials[min(eligible)[1]]
        rec = {"optimizer": best["optimizer"], "params": {**get_spec(best["optimizer"]).defaults, "lr": best["lr"]},
               "search_val_loss": best["final_val_loss"], "n_seeds": 1}
    return {"recommendation": rec, "tre": spent / problem.epochs, "range_test_tre": 0.0,
            "settings": {"sampler": sampler_kind, "lr_range": list(PLAIN_LR_RANGE)}, "trials": trials}


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """A JSON-able value (numpy scalars to Python ones)."""
    if hasattr(value, "item"):
        return value.item()
    return value
