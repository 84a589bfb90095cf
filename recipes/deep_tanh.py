"""Deep, narrow tanh MLP on Friedman #1 (regression).

Problem: fit the Friedman #1 function
         y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + noise
         of 10 uniform inputs (x6..x10 are irrelevant).
Data:    generated with scikit-learn's ``make_friedman1(n_samples=2000,
         n_features=10, noise=1.0, random_state=0)`` (always the same data; no
         download). Features and target are standardized with
         ``StandardScaler``, so predicting the mean gives MSE 1.0; the noise
         floor is about 0.04.
Model:   8 hidden layers of width 32 with tanh (10 -> 32 -> ... -> 32 -> 1),
         about 7.8k parameters, PyTorch's default initialization. Deep,
         narrow and saturating, so the usable learning-rate range is narrow.
Task:    regression, target float32 of shape (N, 1); loss mean squared error.

What a good result looks like: trained on 80% of the data for EPOCHS=20
epochs, a good optimizer reaches a held-out MSE below 0.08; Adam at lr 3e-3
to 1e-2 gets about 0.07. Learning-rate sensitive on both sides: Adam at 1e-3
ends near 0.18, at 1e-4 near 0.26 (about what a linear fit gets, 0.27); at
0.03 and above it saturates the tanh units and sticks at 0.45-0.95. SGD with
momentum 0.9 gets about 0.1 at its best lr (0.1) and diverges at 0.3. One
full run takes under a second on a 2-core CPU.
"""

import numpy as np
import torch
from sklearn.datasets import make_friedman1
from sklearn.preprocessing import StandardScaler

EPOCHS: int = 20
BATCH_SIZE: int = 128

DATA_SEED: int = 0
N_SAMPLES: int = 2000
DEPTH: int = 8
WIDTH: int = 32


def build(seed: int = 0) -> tuple[torch.nn.Module, tuple]:
    """Return ``(model, (X, y))``: X float32 (2000, 10), y float32 (2000, 1).

    ``seed`` only seeds the model's initialization; the data is always the same.
    """
    X, y = make_friedman1(
        n_samples=N_SAMPLES, n_features=10, noise=1.0, random_state=DATA_SEED
    )
    X = StandardScaler().fit_transform(X).astype(np.float32)
    y = StandardScaler().fit_transform(y.reshape(-1, 1)).astype(np.float32)

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(10, WIDTH), torch.nn.Tanh()]
    for _ in range(DEPTH - 1):
        layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh()]
    layers.append(torch.nn.Linear(WIDTH, 1))
    model = torch.nn.Sequential(*layers)
    return model, (X, y)
