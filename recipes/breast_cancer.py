"""Breast cancer diagnosis with a small MLP (binary classification, 2 logits).

Problem: tell malignant from benign tumours from 30 measurements of cell nuclei.
Data:    scikit-learn's bundled ``load_breast_cancer`` (569 samples, 30
         features; no download), features standardized with ``StandardScaler``.
         Classes: 0 = malignant (212), 1 = benign (357).
Model:   MLP 30 -> 32 -> 2 with ReLU (about 1.1k parameters). The model
         outputs TWO logits (not a single logit), so the loss is ordinary
         cross-entropy on int64 class ids.
Task:    binary classification, targets int64 in {0, 1}; loss cross-entropy.

What a good result looks like: trained on 80% of the data for EPOCHS=30
epochs, a good optimizer reaches a held-out cross-entropy of about 0.10
(accuracy about 97-98%); Adam at lr 1e-3 gets about 0.10. Too small a
learning rate (Adam 1e-4) stays near 0.3; a large one (Adam >= 1e-2)
overfits: training loss near 0, held-out loss 0.2 and up, even though the
accuracy stays around 97%. The data set is tiny (a 20% split is ~114
samples), so held-out numbers are noisy. One full run takes about half a
second on a 2-core CPU.
"""

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

EPOCHS: int = 30
BATCH_SIZE: int = 32


def build(seed: int = 0) -> tuple[torch.nn.Module, tuple]:
    """Return ``(model, (X, y))``: X float32 (569, 30), y int64 (569,) in {0, 1}.

    ``seed`` only seeds the model's initialization; the data is always the same.
    """
    data = load_breast_cancer()
    X = StandardScaler().fit_transform(data.data).astype(np.float32)
    y = data.target.astype(np.int64)

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(30, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 2),
    )
    return model, (X, y)
