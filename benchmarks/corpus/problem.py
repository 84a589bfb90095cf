"""``Problem``: one benchmark problem, its data, its model builder and its training budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: how to make its data and its model, and its training budget."""

    name: str
    kind: str  # the model kind (the fold rule stratifies by it)
    task: str  # multiclass / binary / regression / reconstruction / sequence
    make_data: Callable[[], tuple[np.ndarray, np.ndarray]]  # (X, y), always the same
    make_model: Callable[[], nn.Module]  # called under torch.manual_seed(seed)
    epochs: int
    batch_size: int
    note: str = ""
    version: int = 1  # the corpus version that added the problem (1: the original 34, 2: corpus v2)

    def model(self, seed: int) -> nn.Module:
        """The model with the initial weights of ``seed``.

        For a fine-tuning problem the body is the same pretrained body for every seed (computed once
        per process) and only the fresh head depends on ``seed``.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.make_model()
