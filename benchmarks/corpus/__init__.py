"""The problem corpus: small problems of many model kinds, split once into development and test folds.

Every problem is data (a scikit-learn loader, a scikit-learn generator or a synthetic generator, with
a fixed data seed) plus a model builder whose only seed is the initial weights (``Problem.model(seed)``).
Problems are kept small enough that an exhaustive reference grid over every optimizer family and
learning rate is affordable: one training run takes about 0.3-2.5 s on one CPU thread, and a few
seconds for the problems of kind "large".

Corpus v1 (``v1.py``, ``Problem.version == 1``): 34 problems of 10 model kinds: linear, mlp, deep_tanh,
deep_relu, resmlp, cnn, recurrent, autoencoder, transformer, embedding. They stay bit-identical (names,
kinds, data, initial weights, epochs, batch sizes), since their cached grids are keyed by a fingerprint
of data and initial weights.

Corpus v2 (``v2.py``, ``Problem.version == 2``): 17 problems of 8 new kinds, the kinds real users bring:

* fine-tuning a pretrained model, every weight, on 200 samples under a fresh head: finetune_cnn (a
  residual CNN), finetune_mlp, finetune_transformer (an encoder with dropout 0.1). The body is pretrained
  in the corpus code (``pretrain.py``: deterministic, one thread, a few seconds, cached per process) and
  is the same for every seed; the head is drawn from the seed;
* dropout_mlp: regularized MLPs on small, noisy data that overfit;
* transformer_dropout: 2-layer ``nn.TransformerEncoderLayer`` encoders with dropout 0.1 and LayerNorm;
* rescnn: residual CNNs with BatchNorm on noisy images;
* label_noise: BatchNorm-dropout MLPs on 25-30% noisy labels (validation labels noisy too);
* large: a residual CNN, an MLP and an encoder whose single run takes several seconds.

Modules: ``problem.py`` (``Problem``), ``v1.py``, ``v2.py`` (the problem lists), ``v2_data.py`` and
``v2_models.py`` (v2's data generators and models), ``pretrain.py`` (the pretrained bodies).

The folds (``FOLD_RULE``): within each model kind, the problem whose name has the smallest SHA-256 is
a test problem; the rest are development problems. The rule is fixed before any result is seen and
spreads the test fold over every model kind; it applies to v2 as to v1, and since every v2 problem is
in a new kind, v1's folds are unchanged. Every strategy decision uses ``DEV`` only.

>>> len(PROBLEMS), len({p.kind for p in PROBLEMS.values()})
(51, 18)
>>> sorted(set(DEV) & set(TEST))
[]
>>> sum(p.version == 2 for p in PROBLEMS.values()), sum(n in TEST for n in PROBLEMS if PROBLEMS[n].version == 2)
(17, 8)
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import torch

# Muon's Newton-Schulz step in float32 on every CPU, whatever its bfloat16 support: a cached grid means
# the same on every machine (autoopt's own default would pick bfloat16 where matmul has it natively)
os.environ.setdefault("AUTOOPT_NEWTON_SCHULZ_DTYPE", "float32")

from . import v1, v2
from .problem import Problem

__all__ = ["DEV", "FOLD_RULE", "PROBLEMS", "Problem", "TEST", "split_of"]

#: What ``FOLD_RULE`` says, for the README and the results files.
FOLD_RULE = ("within each model kind, the problem whose name has the smallest SHA-256 hex digest is in the "
             "test fold; every other problem is in the development fold")

PROBLEMS: dict[str, Problem] = {p.name: p for p in v1.problems() + v2.problems()}


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _folds() -> tuple[tuple[str, ...], tuple[str, ...]]:
    kinds = sorted({p.kind for p in PROBLEMS.values()})
    test = {min((n for n, p in PROBLEMS.items() if p.kind == k), key=_digest) for k in kinds}
    return tuple(n for n in PROBLEMS if n not in test), tuple(n for n in PROBLEMS if n in test)


DEV, TEST = _folds()


@functools.lru_cache(maxsize=None)
def split_of(name: str) -> Any:
    """The problem's fixed train/validation split (``prepare_data`` with seed 0), on the CPU."""
    from autoopt.training.intake import prepare_data

    X, y = PROBLEMS[name].make_data()
    return prepare_data((X, y), seed=0, device=torch.device("cpu"))
