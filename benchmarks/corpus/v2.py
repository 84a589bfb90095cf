"""Corpus v2: 17 problems of 8 new model kinds, of the sorts real users bring (``Problem.version == 2``).

* ``finetune_cnn``, ``finetune_mlp``, ``finetune_transformer``: a body pretrained in the corpus code on a
  related task with plenty of data (``pretrain.py``), fine-tuned, every weight, on 200 samples under a
  fresh head (N(0, 0.02) weights drawn from the seed; the body is the same for every seed). Pretraining
  matters here: at Adam 3e-4 (1e-4 for the classifier that overfits) fine-tuning reaches a clearly lower
  validation loss than the same architecture trained from scratch at its best rate, and Adam at 0.03 does
  markedly worse than 3e-4 (it destroys what the pretraining learned). The head is small at first so
  that small rates can train it within the budget; the CNN body ends in a 1x1 convolution widening its
  features to 128 (as MobileNet's), for the same reason.
* ``dropout_mlp``: wide MLPs with dropout on small, noisy data, where the validation loss turns up later in
  training at a good rate (overfitting is real).
* ``transformer_dropout``: ``nn.TransformerEncoderLayer`` encoders (2 layers, d_model 32, dropout 0.1,
  LayerNorm post-norm or pre-norm) trained from scratch on token tasks.
* ``rescnn``: residual CNNs with BatchNorm on noisy images (occluded digits, synthetic shapes).
* ``label_noise``: MLPs with BatchNorm and dropout 0.3 on labels with 25% symmetric or 30% pairwise noise,
  in the validation labels too.
* ``large``: a wider residual CNN, a wider MLP on 20000 rows and a d_model-64 encoder on 32-token reviews,
  whose single run takes several seconds (the other v2 problems keep to about 0.5-2.5 s).

Every new problem is in a new kind, so the v1 folds are unchanged.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets
from torch import nn

from . import v2_data as data
from .pretrain import finetune
from .problem import Problem
from .v1 import _digits, _std
from .v2_models import EncoderNet, MLPNet, ResCNN

#: Confusable digit pairs for the asymmetric label noise.
PAIRS = {1: 7, 7: 1, 3: 8, 8: 3, 4: 9, 9: 4, 5: 6, 6: 5}


def _parity(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return X, (y % 2).astype(np.int64)


def _classification(*args: float, **kwargs: float) -> tuple[np.ndarray, np.ndarray]:
    """``make_classification`` with standardized features."""
    X, y = datasets.make_classification(*args, **kwargs)  # type: ignore[arg-type]
    return _std(X), y


def problems() -> list[Problem]:
    P = lambda *a, **k: Problem(*a, **k, version=2)
    cnn = lambda d_out: lambda: finetune("rescnn_noisy_digits", lambda: ResCNN(8, 16, 2, d_out, expand=128))
    encoder = lambda: finetune("encoder_sentiment_tags", lambda: EncoderNet(40, 16, 1, d_model=32, layers=2, nhead=4))
    return [
        # fine-tuning a pretrained residual CNN (pretrained on 4 noisy copies of digits part "a")
        P("ft_rescnn_digits_fewshot", "finetune_cnn", "multiclass",
          lambda: data.noisy_digits("b", copies=1, seed=7, n=250, subset_seed=1), cnn(10), 20, 16,
          "unseen noisy digits, 20 per class, fresh 10-way head"),
        P("ft_rescnn_digits_parity", "finetune_cnn", "binary",
          lambda: _parity(*data.noisy_digits("b", copies=1, seed=8, n=250, subset_seed=2)), cnn(1), 20, 16,
          "a new task (odd or even) on unseen noisy digits, fresh 1-output head"),
        # fine-tuning a pretrained MLP (pretrained on 5000 samples of a related teacher task)
        P("ft_mlp_teacher_regression", "finetune_mlp", "regression",
          lambda: data.teacher_task(250, teacher=1, task=5, outputs=1, seed=7, shift=0.5, noise=0.1),
          lambda: finetune("mlp_teacher1", lambda: MLPNet(20, [128, 128, 64], 1)), 30, 16,
          "a new readout of the pretraining teacher's features, inputs shifted by 0.5"),
        P("ft_mlp_ln_teacher_classif", "finetune_mlp", "multiclass",
          lambda: data.teacher_task(250, teacher=2, task=6, outputs=0, classes=4, seed=8, shift=0.3, label_noise=0.1),
          lambda: finetune("mlp_ln_teacher2", lambda: MLPNet(20, [128, 128, 64], 4, norm="layer", act=nn.GELU)),
          30, 16,
          "LayerNorm-GELU MLP; 4 new classes, inputs shifted by 0.3, 10% label noise; overfits"),
        # fine-tuning a pretrained transformer encoder (pretrained to tag each token's polarity)
        P("ft_encoder_sentiment", "finetune_transformer", "binary",
          lambda: data.sentiment_task(250, 16, 9, "binary", label_noise=0.05), encoder, 20, 16,
          "sequence sentiment with negations, 5% label noise; dropout 0.1"),
        P("ft_encoder_sentiment_trend", "finetune_transformer", "regression",
          lambda: data.sentiment_task(250, 16, 10, "trend"), encoder, 20, 16,
          "regress the change of mood from the first half to the second; dropout 0.1"),
        # regularized MLPs on small, noisy data
        P("dropout_mlp_diabetes", "dropout_mlp", "regression",
          lambda: (lambda X, y: (_std(X), _std(y.reshape(-1, 1))))(*datasets.load_diabetes(return_X_y=True)),
          lambda: MLPNet(10, [256, 256, 256], 1, dropout=0.3), 30, 32, "353 training rows, dropout 0.3; overfits"),
        P("dropout_mlp_classif_small", "dropout_mlp", "multiclass",
          lambda: _classification(400, 30, n_informative=10, n_redundant=5, n_classes=3, flip_y=0.05, class_sep=1.5,
                                  random_state=22),
          lambda: MLPNet(30, [256, 256], 3, dropout=0.3), 30, 16, "320 training rows, dropout 0.3; overfits"),
        # transformer encoders with dropout 0.1 and LayerNorm, from scratch
        P("tfm_sentiment", "transformer_dropout", "binary",
          lambda: data.sentiment_task(1500, 16, 63, "binary", label_noise=0.05),
          lambda: EncoderNet(40, 16, 1, d_model=32, layers=2, nhead=4), 8, 64, "post-norm; negations need attention"),
        P("tfm_recall_prenorm", "transformer_dropout", "multiclass", lambda: data.recall_task(2000, 4, 8, 61),
          lambda: EncoderNet(16, 9, 8, d_model=32, layers=2, nhead=4, norm_first=True), 8, 64,
          "pre-norm; associative recall of the value paired with the query key"),
        # residual CNNs with BatchNorm on noisy images
        P("rescnn_digits_occluded", "rescnn", "multiclass",
          lambda: (lambda X, y: (data.corrupt_images(X, 8, seed=31, noise=0.2, patch=3), y))(*_digits()),
          lambda: ResCNN(8, 12, 2, 10), 10, 64, "a 3x3 patch of each image blanked, pixel noise 0.2"),
        P("rescnn_shapes", "rescnn", "multiclass", lambda: data.shapes(1200, 12, 32, noise=0.4),
          lambda: ResCNN(12, 12, 2, 5, pool_after=1), 8, 64, "12x12 synthetic shapes on a noisy background"),
        # label noise
        P("noisy_mlp_bn_classif", "label_noise", "multiclass",
          lambda: (lambda X, y: (X, data.symmetric_noise(y, 4, 0.25, 42)))(
              *_classification(1500, 20, n_informative=10, n_classes=4, flip_y=0.0, class_sep=1.5, random_state=41)),
          lambda: MLPNet(20, [256, 256], 4, norm="batch", dropout=0.3), 30, 64,
          "25% symmetric label noise; memorizes it at good rates"),
        P("noisy_mlp_bn_digits_pairs", "label_noise", "multiclass",
          lambda: (lambda X, y: (X, data.pair_noise(y, PAIRS, 0.3, 43)))(*_digits()),
          lambda: MLPNet(64, [128, 128], 10, norm="batch", dropout=0.3), 15, 32,
          "30% of 1/3/4/5/6/7/8/9 labelled as their confusable pair"),
        # larger problems (several seconds per run)
        P("large_rescnn_shapes", "large", "multiclass", lambda: data.shapes(1600, 16, 51, noise=0.6),
          lambda: ResCNN(16, 24, 3, 5, pool_after=1), 8, 64, "16x16 shapes, 3 residual blocks of 24 channels"),
        P("large_mlp_bn_tabular", "large", "binary",
          lambda: _classification(20000, 40, n_informative=20, flip_y=0.1, random_state=52),
          lambda: MLPNet(40, [512, 256], 1, norm="batch", dropout=0.1), 10, 256, "16000 training rows"),
        P("large_encoder_reviews", "large", "binary",
          lambda: data.sentiment_task(2500, 32, 53, "binary", label_noise=0.05),
          lambda: EncoderNet(40, 32, 1, d_model=64, layers=2, nhead=4), 5, 64,
          "32-token reviews, d_model 64, dropout 0.1"),
    ]
