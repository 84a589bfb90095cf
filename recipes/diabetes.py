"""Diabetes disease progression with a small MLP (regression).

Problem: predict a quantitative measure of diabetes progression one year after
         baseline from 10 baseline variables (age, sex, BMI, blood pressure,
         six blood serum measurements).
Data:    scikit-learn's bundled ``load_diabetes`` (442 samples, 10 features;
         no download). Features and the target are both standardized with
         ``StandardScaler``, so predicting the mean gives MSE 1.0.
Model:   MLP 10 -> 32 -> 32 -> 1 with ReLU (about 1.4k parameters).
Task:    regression, target float32 of shape (N, 1) (the same shape as the
         model's output); loss mean squared error.

What a good result looks like: the problem is noisy; even the best models
explain only about half of the variance. Trained on 80% of the data for
EPOCHS=40 epochs, a good optimizer reaches a held-out MSE of about 0.55
(R^2 about 0.45); Adam at lr 3e-4 to 1e-3 does. Too small a learning rate
(Adam 1e-4) stays near 0.8; larger ones (Adam >= 3e-3) overfit or get noisy:
the held-out MSE rises to 0.65-0.9. The data set is tiny,
so held-out numbers are noisy. One full run takes well under a second on a
2-core CPU.
"""

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler

EPOCHS: int = 40
BATCH_SIZE: int = 32


def build(seed: int = 0) -> tuple[torch.nn.Module, tuple]:
    """Return ``(model, (X, y))``: X float32 (442, 10), y float32 (442, 1).

    ``seed`` only seeds the model's initialization; the data is always the same.
    """
    data = load_diabetes()
    X = StandardScaler().fit_transform(data.data).astype(np.float32)
    y = StandardScaler().fit_transform(data.target.reshape(-1, 1)).astype(np.float32)

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 1),
    )
    return model, (X, y)
