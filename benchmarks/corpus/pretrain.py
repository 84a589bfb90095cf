"""Pretrained bodies for corpus v2's fine-tuning problems, computed in the corpus code itself.

A fine-tuning problem's model is a body pretrained on a related task with plenty of data plus a fresh
head for its own task. ``pretrained(key)`` trains the body of recipe ``key`` deterministically (its own
seed, one CPU thread, a fixed number of Adam steps over a seeded batch order; a few seconds at most) and
keeps its state in memory (``functools.lru_cache``), so every ``Problem.model(seed)`` after the first in
a process is cheap. ``finetune(key, build)`` builds the model under the caller's RNG, draws a fresh head
(N(0, 0.02) weights, zero biases, as Hugging Face initializes a classification head; the seed's) and
loads the pretrained body: the body is the same for every seed. A copy re-initialized by each module's
``reset_parameters`` is the same architecture trained from scratch, not a fine-tuning.

The pretraining neither reads nor moves the caller's RNG state (``fork_rng``), and it runs on one thread
whatever the caller's setting, so the pretrained weights are the same in every process and every worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import v2_data as data
from .v2_models import MLPNet, ResCNN, TokenTagger


@dataclass(frozen=True)
class Recipe:
    """How to pretrain one body: the pretraining model (body + pretraining head), its data and its steps."""

    make_model: Callable[[], nn.Module]
    make_data: Callable[[], tuple[np.ndarray, np.ndarray]]
    steps: int
    batch_size: int
    lr: float
    seed: int


#: The pretrained bodies, by key. Each fine-tuning problem names one (see ``v2.py``).
RECIPES: dict[str, Recipe] = {
    # a residual CNN taught to read noisy, occluded digits: 4 corrupted copies of the images of part "a"
    "rescnn_noisy_digits": Recipe(lambda: ResCNN(8, 16, 2, 10, expand=128),
                                  lambda: data.noisy_digits("a", copies=4, seed=300), 200, 64, 3e-3, 101),
    # an MLP taught 16 readouts of teacher 1's features (regression)
    "mlp_teacher1": Recipe(lambda: MLPNet(20, [128, 128, 64], 16),
                           lambda: data.teacher_task(5000, teacher=1, task=0, outputs=16, seed=103),
                           1500, 64, 1e-3, 103),
    # a LayerNorm-GELU MLP taught a 10-way argmax of teacher 2's features
    "mlp_ln_teacher2": Recipe(lambda: MLPNet(20, [128, 128, 64], 10, norm="layer", act=nn.GELU),
                              lambda: data.teacher_task(5000, teacher=2, task=1, outputs=0, classes=10, seed=104),
                              1500, 64, 1e-3, 104),
    # a transformer encoder taught each token's effective polarity in the sentiment language (tagging),
    # without dropout (the fine-tuned encoder has dropout 0.1, which no state holds)
    "encoder_sentiment_tags": Recipe(lambda: TokenTagger(data.SENTIMENT_VOCAB, 16, 5, d_model=32, layers=2, nhead=4,
                                                         dropout=0.0),
                                     lambda: data.sentiment_task(4000, 16, 105, "tags"), 400, 32, 3e-3, 105),
}


def _loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.dtype == torch.int64:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
    return F.mse_loss(output, target)


def pretrain(recipe: Recipe) -> tuple[nn.Module, list[float]]:
    """Train ``recipe``'s model (in the current thread and RNG settings) and return it with its loss per 100 steps."""
    model = recipe.make_model()
    X, y = (torch.from_numpy(a) for a in recipe.make_data())
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    losses, running, order, at = [], 0.0, torch.randperm(len(X), generator=generator), 0
    for step in range(1, recipe.steps + 1):
        if at + recipe.batch_size > len(X):
            order, at = torch.randperm(len(X), generator=generator), 0
        idx = order[at:at + recipe.batch_size]
        at += recipe.batch_size
        optimizer.zero_grad()
        loss = _loss(model(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
        running += float(loss.detach())
        if step % 100 == 0:
            losses.append(running / 100)
            running = 0.0
    model.eval()
    return model, losses


@functools.lru_cache(maxsize=None)
def pretrained(key: str) -> dict[str, torch.Tensor]:
    """The state of recipe ``key``'s pretrained body (computed once per process; treat it as read-only)."""
    recipe = RECIPES[key]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(recipe.seed)
            model, _ = pretrain(recipe)
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.body.state_dict().items()}


def finetune(key: str, build: Callable[[], nn.Module], head_std: float | None = 0.02) -> nn.Module:
    """``build()`` with recipe ``key``'s pretrained body loaded and a fresh head drawn from the caller's RNG:
    weights N(0, ``head_std``) and zero biases, as Hugging Face initializes a classification head
    (``head_std=None`` keeps the head's default initialization)."""
    model = build()
    if head_std is not None:
        nn.init.normal_(model.head.weight, std=head_std)
        nn.init.zeros_(model.head.bias)
    model.body.load_state_dict(pretrained(key))
    return model


