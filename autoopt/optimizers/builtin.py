"""The optimizers autoopt ships, grouped by family, with their search spaces and state-size rules.

Each is torch's own implementation (or a maintained package's), used as its authors intend; the
registry (``registry.py``) registers them when it is first imported.

>>> [s.name for s in shipped_specs()][:3]
['sgd', 'momentum', 'nesterov']
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .param_roles import muon_groups
from .spec import LogUniform, OptimizerSpec, Parameters, Uniform, dense_state, scalar_bytes, tensors

if TYPE_CHECKING:
    pass


def _sgd_state(params: Parameters, hparams: Mapping[str, Any]) -> int:
    # torch's SGD keeps no state at all without momentum
    return dense_state(1)(params, hparams) if hparams.get("momentum", 0.0) else 0


def _rmsprop_state(params: Parameters, hparams: Mapping[str, Any]) -> int:
    buffers = 1 + bool(hparams.get("momentum", 0.0)) + bool(hparams.get("centered", False))
    return dense_state(buffers, 1)(params, hparams)


def _adam_state(params: Parameters, hparams: Mapping[str, Any]) -> int:
    return dense_state(3 if hparams.get("amsgrad", False) else 2, 1)(params, hparams)


def _adafactor_state(params: Parameters, hparams: Mapping[str, Any]) -> int:
    # factored second moment: one row and one column vector per matrix, a full vector otherwise
    total = 0
    for p in tensors(params):
        if p.ndim >= 2:
            rows = math.prod(p.shape[:-1])
            cols = math.prod(p.shape[:-2]) * p.shape[-1]
            total += (rows + cols) * p.element_size()
        else:
            total += p.numel() * p.element_size()
        total += scalar_bytes()
    return total


def _muon_state(params: Parameters, hparams: Mapping[str, Any]) -> int:
    # Muon keeps a momentum buffer per matrix, AdamW two moments and a step per other tensor; groups
    # flagged use_muon say which is which (muon_groups), a plain list puts every 2-D tensor on Muon
    if params and all(isinstance(g, Mapping) for g in params):
        matrices = [p for g in params if g.get("use_muon") for p in g["params"]]
        others = [p for g in params if not g.get("use_muon") for p in g["params"]]
    else:
        matrices = [p for p in params if p.ndim == 2]
        others = [p for p in params if p.ndim != 2]
    return dense_state(1)(matrices, hparams) + dense_state(2, 1)(others, hparams)


# --- the shipped optimizers, grouped by family ------------------------------------------------------

_LR_SGD = LogUniform("lr", 1e-4, 1.0)
_MOMENTUM = Uniform("momentum", 0.8, 0.99)
_BETA1 = Uniform("beta1", 0.8, 0.95)
_BETA2 = Uniform("beta2", 0.99, 0.9999)
_EPS = LogUniform("eps", 1e-10, 1e-6)
_LR_ADAM = LogUniform("lr", 1e-5, 1.0)  # the corpus has problems whose best Adam-family rate is 0.1-0.2
_ADAM_DEFAULTS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def _standard_specs() -> list[OptimizerSpec]:
    return [
        # SGD family: one momentum buffer per parameter at most
        OptimizerSpec("sgd", "sgd", "torch.optim:SGD", (_LR_SGD,), {"lr": 1e-2}, _sgd_state,
                      description="plain stochastic gradient descent"),
        OptimizerSpec("momentum", "sgd", "torch.optim:SGD", (_LR_SGD, _MOMENTUM), {"lr": 1e-2, "momentum": 0.9},
                      _sgd_state, description="SGD with heavy-ball momentum"),
        OptimizerSpec("nesterov", "sgd", "torch.optim:SGD", (_LR_SGD, _MOMENTUM), {"lr": 1e-2, "momentum": 0.9},
                      _sgd_state, fixed={"nesterov": True}, description="SGD with Nesterov momentum"),
        # per-coordinate step sizes from squared-gradient statistics
        OptimizerSpec("adagrad", "adaptive", "torch.optim:Adagrad", (LogUniform("lr", 1e-4, 1.0),), {"lr": 1e-2},
                      dense_state(1, 1), description="AdaGrad: accumulated squared gradients"),
        OptimizerSpec("rmsprop", "adaptive", "torch.optim:RMSprop",
                      (LogUniform("lr", 1e-5, 1e-1), Uniform("alpha", 0.9, 0.999)), {"lr": 1e-3, "alpha": 0.99},
                      _rmsprop_state, description="RMSprop: running average of squared gradients"),
        OptimizerSpec("adadelta", "adaptive", "torch.optim:Adadelta",
                      (LogUniform("lr", 1e-2, 100.0), Uniform("rho", 0.8, 0.99)), {"lr": 1.0, "rho": 0.9},
                      dense_state(2, 1), description="Adadelta: unit-corrected RMSprop"),
        OptimizerSpec("adafactor", "adaptive", "torch.optim:Adafactor", (LogUniform("lr", 1e-4, 1e-1),),
                      {"lr": 1e-2}, _adafactor_state, description="Adafactor: factored second moments, sublinear memory"),
        # Adam family: first and second moments
        OptimizerSpec("adam", "adam", "torch.optim:Adam", (_LR_ADAM, _BETA1, _BETA2, _EPS), _ADAM_DEFAULTS,
                      _adam_state, description="Adam (Kingma & Ba, 2015)"),
        OptimizerSpec("adamw", "adam", "torch.optim:AdamW",
                      (_LR_ADAM, _BETA1, _BETA2, _EPS, LogUniform("weight_decay", 1e-5, 1e-1)),
                      {**_ADAM_DEFAULTS, "weight_decay": 1e-2}, _adam_state,
                      description="Adam with decoupled weight decay (Loshchilov & Hutter)"),
        OptimizerSpec("nadam", "adam", "torch.optim:NAdam", (_LR_ADAM, _BETA1, _BETA2, _EPS),
                      {**_ADAM_DEFAULTS, "lr": 2e-3}, dense_state(2, 2), description="Adam with Nesterov momentum"),
        OptimizerSpec("radam", "adam", "torch.optim:RAdam", (_LR_ADAM, _BETA1, _BETA2, _EPS), _ADAM_DEFAULTS,
                      dense_state(2, 1), description="Rectified Adam: variance-corrected warm-up"),
        OptimizerSpec("adamax", "adam", "torch.optim:Adamax", (_LR_ADAM, _BETA1, _BETA2, _EPS),
                      {**_ADAM_DEFAULTS, "lr": 2e-3}, dense_state(2, 1), description="Adam with an infinity norm"),
        # Muon: orthogonalized momentum for matrices
        OptimizerSpec("muon", "muon", "autoopt.optimizers.muon:MuonWithAdamW",
                      (LogUniform("lr", 1e-3, 0.3), Uniform("momentum", 0.85, 0.98), LogUniform("adamw_lr", 1e-4, 1e-2)),
                      {"lr": 0.02, "momentum": 0.95, "adamw_lr": 1e-3}, _muon_state, groups=muon_groups,
                      description="Muon on the hidden matrices; AdamW on embeddings, the output layer and vectors"),
    ]


# --- learning-rate-free optimizers, from their maintained packages (pip install "autoopt[lrfree]") ----

def _lr_free_specs() -> list[OptimizerSpec]:
    """Schedule-Free AdamW and Prodigy, where their packages are installed (found, not imported)."""
    specs = []
    if importlib.util.find_spec("schedulefree") is not None:
        # state: z (the iterate the averages are taken around) and exp_avg_sq; the step is a group value
        specs.append(OptimizerSpec(
            "schedulefree_adamw", "lr-free", "schedulefree:AdamWScheduleFree",
            (LogUniform("lr", 1e-4, 1e-1), Uniform("beta1", 0.8, 0.95)), {"lr": 2.5e-3, "beta1": 0.9},
            dense_state(2), train_eval_modes=True,
            description="Schedule-Free AdamW (Defazio et al., 2024): no decay schedule needed"))
    if importlib.util.find_spec("prodigyopt") is not None:
        # state: exp_avg, exp_avg_sq, s and p0 (flattened copies, slice_p=1); the step is a Python int.
        # lr is a multiplier of the step size Prodigy estimates (1.0 by its authors' advice).
        specs.append(OptimizerSpec(
            "prodigy", "lr-free", "prodigyopt:Prodigy", (LogUniform("lr", 0.1, 10.0),), {"lr": 1.0}, dense_state(4),
            description="Prodigy (Mishchenko & Defazio, 2024): Adam with an estimated step size"))
    return specs


def shipped_specs() -> list[OptimizerSpec]:
    """Every optimizer autoopt ships, the learning-rate-free ones where their packages are installed."""
    return _standard_specs() + _lr_free_specs()
