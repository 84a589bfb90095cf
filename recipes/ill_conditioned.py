"""Ill-conditioned linear least squares (regression).

Problem: recover a linear map from features whose scales span 3 orders of
         magnitude, i.e. a badly conditioned design matrix.
Data:    generated with a fixed seed (always the same data; no download):
         Z ~ N(0, 1) of shape (1000, 20), X = Z @ diag(s) with
         s = logspace(0, -3, 20) (condition number of X about 1e3, of the
         Hessian X^T X about 1e6), y = X @ w_true + noise (noise 1% of the
         signal's standard deviation), with w_true = random signs *
         min(1/s, 100): every feature with scale >= 0.01 carries the same
         share of the signal, so the low-curvature directions matter. y is
         then standardized (the least-squares weights are up to about 27).
         Features are deliberately NOT standardized: that would remove the
         ill-conditioning.
Model:   ``nn.Linear(20, 1)`` (21 parameters).
Task:    regression, target float32 of shape (N, 1); loss mean squared error.

What a good result looks like: the noise floor is about 1e-4 (training and
held-out alike). Adaptive optimizers (Adam and friends, which rescale each
coordinate) get there within EPOCHS=50 epochs, but only with a large learning
rate: Adam reaches about 2e-4 at lr 0.1-0.3, yet is still near 0.55 with its
default lr 1e-3 and at about 0.16 with 1e-2. SGD is limited by the largest
curvature and cannot move the small-scale directions: plain SGD stays above
0.2 at its best learning rate, SGD with momentum 0.9 above 0.04 (at lr 1.0,
on the edge of divergence). So a good result is a loss below 0.001, and a
good search picks an adaptive optimizer with lr around 0.1. One full run
takes about half a second on a 2-core CPU.
"""

import numpy as np
import torch

EPOCHS: int = 50
BATCH_SIZE: int = 64

DATA_SEED: int = 0
N_SAMPLES: int = 1000
N_FEATURES: int = 20
LOG10_SCALE_RANGE: float = 3.0  # feature scales go from 1 down to 10**-3
NOISE: float = 0.01
MAX_WEIGHT: float = 100.0  # cap on |w_true|, so the small-scale features still matter


def build(seed: int = 0) -> tuple[torch.nn.Module, tuple]:
    """Return ``(model, (X, y))``: X float32 (1000, 20), y float32 (1000, 1).

    ``seed`` only seeds the model's initialization; the data is always the same.
    """
    rng = np.random.default_rng(DATA_SEED)
    scales = np.logspace(0.0, -LOG10_SCALE_RANGE, N_FEATURES)
    Z = rng.standard_normal((N_SAMPLES, N_FEATURES))
    X = Z @ np.diag(scales)
    signs = rng.choice([-1.0, 1.0], size=N_FEATURES)
    w_true = signs * np.minimum(1.0 / scales, MAX_WEIGHT)
    y = X @ w_true
    y = y + NOISE * y.std() * rng.standard_normal(N_SAMPLES)
    y = (y - y.mean()) / y.std()

    torch.manual_seed(seed)
    model = torch.nn.Linear(N_FEATURES, 1)
    return model, (X.astype(np.float32), y.astype(np.float32).reshape(-1, 1))
