"""Corpus v1: the 34 original problems of 10 model kinds, exactly as they were first defined.

Nothing here may change: each problem's cached grid is keyed by a fingerprint of its data and initial
weights, so its data, its model builder, its epochs and its batch size stay bit-identical.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn import datasets
from sklearn.preprocessing import StandardScaler
from torch import nn

from .problem import Problem

# --- data ------------------------------------------------------------------------------------------

def _std(a: np.ndarray) -> np.ndarray:
    return StandardScaler().fit_transform(a).astype(np.float32)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _col(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype=np.float32).reshape(-1, 1)


def _digits(scale: str = "unit") -> tuple[np.ndarray, np.ndarray]:
    X, y = datasets.load_digits(return_X_y=True)
    return (_f32(X) if scale == "raw" else _f32(X / 16.0)), y.astype(np.int64)


def _noisy_labels(y: np.ndarray, n_classes: int, rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < rate
    return np.where(flip, rng.integers(0, n_classes, len(y)), y).astype(np.int64)


def _sequences_sum(n: int = 1200, t: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Regress the sum of the first half of a noisy sequence minus the second half."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, 1)).astype(np.float32)
    y = X[:, : t // 2, 0].sum(1) - X[:, t // 2:, 0].sum(1) + 0.3 * rng.normal(size=n)
    return X, _col(y / math.sqrt(t))


def _sine_forecast(n: int = 1000, t: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Predict the next value of a noisy sine of random frequency and phase (raw scale, amplitude 5)."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.1, 0.6, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    steps = np.arange(t + 1)[None, :]
    wave = 5.0 * np.sin(freq * steps + phase) + 0.5 * rng.normal(size=(n, t + 1))
    return _f32(wave[:, :t, None]), _col(wave[:, t])


def _pattern_sequences(n: int = 1200, t: int = 20, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Classify which of 4 bumps (position classes) is hidden in a noisy 2-channel sequence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = rng.normal(scale=1.0, size=(n, t, 2)).astype(np.float32)
    for i, c in enumerate(y):
        start = 2 + 4 * c
        X[i, start:start + 3, 0] += 1.5
        X[i, start:start + 3, 1] -= 1.0
    return X, y.astype(np.int64)


def _waveforms(n: int = 1200, t: int = 32, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Classify a noisy waveform as sine, square, sawtooth or triangle (1-D signals for a CNN)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    phase = rng.uniform(0, 1, size=n)
    freq = rng.uniform(1.5, 3.5, size=n)
    s = (np.arange(t)[None, :] / t) * freq[:, None] + phase[:, None]
    frac = s - np.floor(s)
    shapes = np.stack([np.sin(2 * np.pi * s), np.sign(np.sin(2 * np.pi * s)), 2 * frac - 1, 2 * np.abs(2 * frac - 1) - 1])
    X = shapes[y, np.arange(n)] + 0.8 * rng.normal(size=(n, t))
    return _f32(X[:, None, :]), y.astype(np.int64)


def _token_topics(n: int = 1500, t: int = 16, vocab: int = 200, topics: int = 5, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Documents of token ids drawn from one of ``topics`` overlapping topic distributions."""
    rng = np.random.default_rng(seed)
    dists = rng.dirichlet(np.full(vocab, 0.1), size=topics)
    background = np.full(vocab, 1.0 / vocab)
    y = rng.integers(0, topics, n)
    X = np.stack([rng.choice(vocab, size=t, p=0.5 * dists[c] + 0.5 * background) for c in y])
    return X.astype(np.int64), y.astype(np.int64)


def _token_order(n: int = 1500, t: int = 10, vocab: int = 20, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Binary: does token 1 appear before token 2 in the sequence (an order-sensitive task for attention)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(3, vocab, size=(n, t))
    y = rng.integers(0, 2, n)
    for i in range(n):
        a, b = sorted(rng.choice(t, size=2, replace=False))
        X[i, a], X[i, b] = (1, 2) if y[i] else (2, 1)
    flip = rng.random(n) < 0.05
    return X.astype(np.int64), np.where(flip, 1 - y, y).astype(np.int64)


def _token_count(n: int = 1500, t: int = 12, vocab: int = 12, seed: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Regress how many times token 1 appears, plus noise (attention counts)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, vocab, size=(n, t))
    y = (X == 1).sum(1) + 0.3 * rng.normal(size=n)
    return X.astype(np.int64), _col(y)


def _ratings(n_users: int = 150, n_items: int = 120, n: int = 4000, rank: int = 4, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) pairs and a rating from a low-rank model plus noise, on a 1..5-like raw scale."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, rank))
    v = rng.normal(size=(n_items, rank))
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    r = 3.0 + 0.5 * (u[users] * v[items]).sum(1) + 0.5 * rng.normal(size=n)
    return np.stack([users, items], 1).astype(np.int64), _col(r)


def _reconstruct(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = _f32(X)
    return X, X.copy()


# --- models ----------------------------------------------------------------------------------------

def _mlp(d_in: int, widths: list[int], d_out: int, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(d_in, w), act()]
        d_in = w
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class ResidualMLP(nn.Module):
    """Pre-norm residual blocks (norm -> linear -> ReLU -> linear) around a linear stem."""

    def __init__(self, d_in: int, width: int, blocks: int, d_out: int, norm: str = "layer") -> None:
        super().__init__()
        make_norm = nn.LayerNorm if norm == "layer" else nn.BatchNorm1d
        self.stem = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(make_norm(width), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(blocks))
        self.head = nn.Sequential(make_norm(width), nn.Linear(width, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers with BatchNorm on 8x8 digit images (flat 64 inputs)."""

    def __init__(self, channels: int = 8, n_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * channels * 16, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.view(-1, 1, 8, 8))


class SignalCNN(nn.Module):
    """1-D conv net with BatchNorm for (N, 1, T) signals."""

    def __init__(self, channels: int = 8, n_classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.BatchNorm1d(channels), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(channels, channels, 5, padding=2), nn.BatchNorm1d(channels), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Recurrent(nn.Module):
    """A GRU or LSTM over (N, T, F) whose last hidden state feeds a linear head."""

    def __init__(self, d_in: int, hidden: int, d_out: int, cell: str = "gru") -> None:
        super().__init__()
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(d_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class TinyTransformer(nn.Module):
    """Token embedding + learned positions, one or two encoder layers, mean pooling, a linear head."""

    def __init__(self, vocab: int, t: int, d_out: int, d_model: int = 16, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(t, d_model) * 0.1)
        layer = nn.TransformerEncoderLayer(d_model, nhead=2, dim_feedforward=2 * d_model, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(h.mean(1))


class BagOfEmbeddings(nn.Module):
    """Mean of token embeddings (EmbeddingBag) and a linear classifier."""

    def __init__(self, vocab: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bag(x))


class Factorization(nn.Module):
    """Matrix factorization: user and item embeddings, their dot product plus biases and a global mean."""

    def __init__(self, n_users: int, n_items: int, rank: int, mlp: bool = False) -> None:
        super().__init__()
        self.users, self.items = nn.Embedding(n_users, rank), nn.Embedding(n_items, rank)
        self.user_bias, self.item_bias = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        self.mean = nn.Parameter(torch.zeros(1))
        self.mlp = _mlp(2 * rank, [16], 1) if mlp else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.users(x[:, 0]), self.items(x[:, 1])
        score = self.mlp(torch.cat([u, v], 1)) if self.mlp is not None else (u * v).sum(1, keepdim=True)
        return score + self.user_bias(x[:, 0]) + self.item_bias(x[:, 1]) + self.mean


def _autoencoder(d: int, code: int, hidden: int | None = None, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    if hidden is None:
        return nn.Sequential(nn.Linear(d, code), act(), nn.Linear(code, d))
    return nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, code), act(),
                         nn.Linear(code, hidden), act(), nn.Linear(hidden, d))


# --- the problems ----------------------------------------------------------------------------------

def problems() -> list[Problem]:
    D = datasets
    return [
        # linear / logistic
        Problem("logreg_digits_raw", "linear", "multiclass", lambda: _digits("raw"), lambda: nn.Linear(64, 10), 10, 32,
                "digits pixels 0..16, not standardized"),
        Problem("logreg_classif", "linear", "binary",
                lambda: (lambda X, y: (_std(X), y))(*D.make_classification(1500, 20, n_informative=6, flip_y=0.08, random_state=0)),
                lambda: nn.Linear(20, 1), 8, 64),
        Problem("linreg_diabetes_rawy", "linear", "regression",
                lambda: (lambda X, y: (_std(X), _col(y)))(*D.load_diabetes(return_X_y=True)),
                lambda: nn.Linear(10, 1), 30, 16, "targets on their raw scale (25..346)"),
        Problem("linreg_lowrank", "linear", "regression",
                lambda: (lambda X, y: (_f32(X * 10), _col(y / np.std(y))))(*D.make_regression(2000, 50, n_informative=20, effective_rank=5, noise=1.0, random_state=1)),
                lambda: nn.Linear(50, 1), 20, 512, "ill-conditioned features"),
        # shallow MLP
        Problem("mlp_wine", "mlp", "multiclass",
                lambda: (lambda X, y: (_std(X), _noisy_labels(y, 3, 0.15, 1)))(*D.load_wine(return_X_y=True)),
                lambda: _mlp(13, [32], 3), 20, 8, "142 training samples, 15% label noise"),
        Problem("mlp_moons", "mlp", "binary",
                lambda: (lambda X, y: (_f32(X), y))(*D.make_moons(1200, noise=0.3, random_state=2)),
                lambda: _mlp(2, [32], 1), 15, 32),
        Problem("mlp_breast_raw", "mlp", "binary",
                lambda: (lambda X, y: (_f32(X), y))(*D.load_breast_cancer(return_X_y=True)),
                lambda: _mlp(30, [32], 1), 20, 32, "features on their raw scale (up to 4000)"),
        Problem("mlp_friedman2", "mlp", "regression",
                lambda: (lambda X, y: (_std(X), _col(y / 100)))(*D.make_friedman2(1500, noise=20, random_state=3)),
                lambda: _mlp(4, [64], 1), 20, 64, "targets scaled by 1/100, not standardized"),
        Problem("mlp_digits", "mlp", "multiclass", lambda: (lambda X, y: (X, _noisy_labels(y, 10, 0.1, 0)))(*_digits()),
                lambda: _mlp(64, [64], 10), 10, 64, "10% label noise"),
        # deep narrow MLPs
        Problem("deep_tanh_friedman1", "deep_tanh", "regression",
                lambda: (lambda X, y: (_std(X), _std(y.reshape(-1, 1))))(*D.make_friedman1(2000, 10, noise=1.0, random_state=0)),
                lambda: _mlp(10, [32] * 8, 1, nn.Tanh), 20, 128),
        Problem("deep_tanh_circles", "deep_tanh", "binary",
                lambda: (lambda X, y: (_f32(X), y))(*D.make_circles(1500, noise=0.15, factor=0.5, random_state=4)),
                lambda: _mlp(2, [16] * 6, 1, nn.Tanh), 20, 32),
        Problem("deep_tanh_quantiles", "deep_tanh", "multiclass",
                lambda: (lambda X, y: (_f32(X), y))(*D.make_gaussian_quantiles(n_samples=1500, n_features=4, n_classes=3, random_state=5)),
                lambda: _mlp(4, [24] * 6, 3, nn.Tanh), 15, 64),
        Problem("deep_relu_friedman3", "deep_relu", "regression",
                lambda: (lambda X, y: (_std(X), _std(y.reshape(-1, 1))))(*D.make_friedman3(1500, noise=0.1, random_state=6)),
                lambda: _mlp(4, [32] * 6, 1), 20, 64),
        Problem("deep_relu_classif", "deep_relu", "multiclass",
                lambda: (lambda X, y: (_std(X), y))(*D.make_classification(2000, 20, n_informative=10, n_classes=5, flip_y=0.05, random_state=7)),
                lambda: _mlp(20, [32] * 6, 5), 15, 128),
        Problem("deep_relu_swissroll", "deep_relu", "regression",
                lambda: (lambda X, t: (_f32(X), _col(t)))(*D.make_swiss_roll(1500, noise=0.5, random_state=8)),
                lambda: _mlp(3, [32] * 5, 1), 25, 64, "raw inputs (about +-10) and raw targets (5..14)"),
        # residual MLPs with normalization layers
        Problem("resmlp_ln_digits", "resmlp", "multiclass", lambda: _digits(), lambda: ResidualMLP(64, 32, 2, 10, "layer"), 10, 64),
        Problem("resmlp_bn_regression", "resmlp", "regression",
                lambda: (lambda X, y: (_std(X), _col(y / np.std(y))))(*D.make_regression(1500, 20, n_informative=10, noise=60.0, random_state=9)),
                lambda: ResidualMLP(20, 32, 2, 1, "batch"), 15, 64),
        Problem("resmlp_ln_friedman1", "resmlp", "regression",
                lambda: (lambda X, y: (_f32(X), _col(y)))(*D.make_friedman1(1500, 10, noise=1.0, random_state=10)),
                lambda: ResidualMLP(10, 32, 3, 1, "layer"), 20, 64, "raw targets (about 0..30)"),
        # CNNs with BatchNorm
        Problem("cnn_digits", "cnn", "multiclass", lambda: _digits(), lambda: DigitsCNN(8), 8, 64),
        Problem("cnn_digits_noisy", "cnn", "multiclass",
                lambda: (lambda X, y: (_f32(X + np.random.default_rng(11).normal(scale=0.3, size=X.shape)), y))(*_digits()),
                lambda: DigitsCNN(6), 10, 128, "pixel noise"),
        Problem("cnn_waveforms", "cnn", "multiclass", _waveforms, lambda: SignalCNN(8), 12, 32),
        # recurrent sequence models
        Problem("gru_sum", "recurrent", "sequence", _sequences_sum, lambda: Recurrent(1, 16, 1, "gru"), 15, 64),
        Problem("lstm_sine", "recurrent", "sequence", _sine_forecast, lambda: Recurrent(1, 16, 1, "lstm"), 15, 32,
                "raw scale (amplitude 5)"),
        Problem("gru_patterns", "recurrent", "sequence", _pattern_sequences, lambda: Recurrent(2, 16, 4, "gru"), 12, 64),
        # autoencoders
        Problem("ae_digits", "autoencoder", "reconstruction", lambda: _reconstruct(_digits()[0]),
                lambda: _autoencoder(64, 8, 32), 15, 64),
        Problem("ae_lowrank", "autoencoder", "reconstruction",
                lambda: _reconstruct(_std(D.make_low_rank_matrix(1500, 40, effective_rank=6, random_state=12)
                                          + 0.01 * np.random.default_rng(12).normal(size=(1500, 40)))),
                lambda: _autoencoder(40, 6), 20, 32),
        Problem("ae_scurve_tanh", "autoencoder", "reconstruction",
                lambda: _reconstruct(D.make_s_curve(1000, noise=0.05, random_state=13)[0]),
                lambda: _autoencoder(3, 2, 32, nn.Tanh), 20, 16, "raw inputs"),
        # attention
        Problem("attn_order", "transformer", "binary", _token_order, lambda: TinyTransformer(20, 10, 1), 15, 64),
        Problem("attn_count", "transformer", "regression", _token_count, lambda: TinyTransformer(12, 12, 1), 12, 64),
        Problem("attn_topics", "transformer", "multiclass", _token_topics, lambda: TinyTransformer(200, 16, 5), 8, 128),
        # embedding models
        Problem("emb_topics", "embedding", "multiclass", _token_topics, lambda: BagOfEmbeddings(200, 16, 5), 10, 64),
        Problem("emb_ratings", "embedding", "regression", _ratings, lambda: Factorization(150, 120, 4), 20, 128,
                "raw ratings around 3"),
        Problem("emb_ratings_mlp", "embedding", "regression", lambda: _ratings(seed=14),
                lambda: Factorization(150, 120, 8, mlp=True), 15, 256),
        Problem("emb_topics_small", "embedding", "multiclass", lambda: _token_topics(n=400, seed=15),
                lambda: BagOfEmbeddings(200, 8, 5), 40, 8, "400 documents, batch 8"),
    ]

