"""Corpus v2's data: scikit-learn's digits and synthetic generators, each with a fixed data seed.

Every generator returns ``(X, y)`` numpy arrays: float32 inputs or int64 token ids, int64 class ids or
float32 target columns. The pretraining data of a fine-tuning problem comes from the same generator as
its fine-tuning data, drawn with another seed or from a disjoint part (never the same samples).
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from .v1 import _col, _f32

# --- images ----------------------------------------------------------------------------------------

def digits_part(part: str, classes: tuple[int, ...] = tuple(range(10)), n: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digits (flat 64 pixels in 0..1) of ``classes``, relabelled 0..k-1, from one fixed part of the images.

    ``part`` "a" or "b": a fixed random 60/40 partition of the 1797 images, so that a body pretrained on
    part "a" never sees part "b"'s images. ``n`` draws that many of them (seeded by ``seed``).
    """
    X, y = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(20).permutation(len(X))
    cut = int(0.6 * len(X))
    idx = order[:cut] if part == "a" else order[cut:] if part == "b" else order
    idx = idx[np.isin(y[idx], classes)]
    if n is not None:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))
    relabel = {c: i for i, c in enumerate(classes)}
    return _f32(X[idx] / 16.0), np.array([relabel[c] for c in y[idx]], dtype=np.int64)


def corrupt_images(X: np.ndarray, side: int, seed: int, noise: float, patch: int) -> np.ndarray:
    """Gaussian pixel noise plus one random ``patch`` x ``patch`` square per image set to 0 (occlusion)."""
    rng = np.random.default_rng(seed)
    imgs = X.reshape(len(X), side, side).copy()
    rows = rng.integers(0, side - patch + 1, len(X))
    cols = rng.integers(0, side - patch + 1, len(X))
    for i, (r, c) in enumerate(zip(rows, cols)):
        imgs[i, r:r + patch, c:c + patch] = 0.0
    imgs += noise * rng.normal(size=imgs.shape)
    return _f32(imgs.reshape(X.shape))


def noisy_digits(part: str, copies: int, seed: int, noise: float = 0.25, patch: int = 2, n: int | None = None,
                 subset_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` corrupted copies of digits part ``part`` (``corrupt_images`` with seeds ``seed``, ``seed`` + 1, ...)."""
    X, y = digits_part(part, n=n, seed=subset_seed)
    return (np.concatenate([corrupt_images(X, 8, seed + k, noise, patch) for k in range(copies)]),
            np.tile(y, copies))


#: The shape kinds of ``shapes``: each a mask from (dy, dx, d, r) (offsets from the centre, distance, radius).
SHAPES = {
    "disk": lambda dy, dx, d, r: d <= r,
    "square": lambda dy, dx, d, r: (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r),
    "ring": lambda dy, dx, d, r: (d <= r) & (d >= 0.55 * r),
    "plus": lambda dy, dx, d, r: ((np.abs(dy) <= 0.3 * r) | (np.abs(dx) <= 0.3 * r)) & (d <= 1.1 * r),
    "triangle": lambda dy, dx, d, r: (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= (dy + 0.8 * r) * 0.6),
}


def shapes(n: int, side: int, seed: int, noise: float = 0.5, kinds: tuple[str, ...] = tuple(SHAPES),
           contrast: tuple[float, float] = (0.6, 1.4)) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, side, side) images of one shape of ``kinds`` (the class: its index there) of random size,
    position and contrast on a noisy background, with a random bright 2x2 distractor."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(kinds), n)
    rr, cc = np.mgrid[0:side, 0:side].astype(np.float64)
    X = np.empty((n, 1, side, side), dtype=np.float32)
    for i, c in enumerate(y):
        r = rng.uniform(0.18, 0.32) * side
        cy, cx = rng.uniform(r, side - r, size=2)
        dy, dx = rr - cy, cc - cx
        mask = SHAPES[kinds[c]](dy, dx, np.hypot(dy, dx), r)
        img = rng.uniform(*contrast) * mask + noise * rng.normal(size=(side, side))
        sy, sx = rng.integers(0, side - 2, size=2)
        img[sy:sy + 2, sx:sx + 2] += rng.uniform(0.5, 1.5)
        X[i, 0] = img
    return X, y.astype(np.int64)


# --- tabular ---------------------------------------------------------------------------------------

def teacher_features(X: np.ndarray, seed: int, hidden: int = 32, features: int = 16) -> np.ndarray:
    """A fixed random two-layer tanh network (the "true" features of a family of related tasks)."""
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(X.shape[1], hidden)) * 1.5 / np.sqrt(X.shape[1])
    b1 = rng.normal(size=hidden) * 0.5
    W2 = rng.normal(size=(hidden, features)) * 2.0 / np.sqrt(hidden)
    return np.tanh(np.tanh(X @ W1 + b1) @ W2)


def teacher_task(n: int, teacher: int, task: int, outputs: int, seed: int, shift: float = 0.0, classes: int = 0,
                 noise: float = 0.1, label_noise: float = 0.0, d: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Inputs N(shift, 1) in ``d`` dimensions; targets are readout ``task`` of teacher ``teacher``'s features:
    ``outputs`` standardized regression columns plus noise, or (``classes`` > 0) the argmax of ``classes``
    readouts, with a fraction ``label_noise`` of labels replaced by random ones."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + shift
    Z = teacher_features(X, teacher)
    readout = np.random.default_rng(1000 + task).normal(size=(Z.shape[1], classes or outputs))
    S = Z @ readout
    if classes:
        y = S.argmax(1)
        flip = rng.random(n) < label_noise
        return _f32(X), np.where(flip, rng.integers(0, classes, n), y).astype(np.int64)
    S = (S - S.mean(0)) / S.std(0)
    return _f32(X), _f32(S + noise * rng.normal(size=S.shape))


def symmetric_noise(y: np.ndarray, n_classes: int, rate: float, seed: int) -> np.ndarray:
    """Replace a fraction ``rate`` of labels by a different class, uniformly (every label is wrong)."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < rate
    other = (y + rng.integers(1, n_classes, len(y))) % n_classes
    return np.where(flip, other, y).astype(np.int64)


def pair_noise(y: np.ndarray, pairs: dict[int, int], rate: float, seed: int) -> np.ndarray:
    """Asymmetric noise: a fraction ``rate`` of the labels of class c become ``pairs[c]`` (a confusable class)."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < rate
    target = np.array([pairs.get(int(c), int(c)) for c in y])
    return np.where(flip, target, y).astype(np.int64)


# --- tokens ----------------------------------------------------------------------------------------

#: The sentiment language: token 0 "not" (flips the next word), 1 "very" (doubles it), 2..11 positive
#: words, 12..21 negative words, 22..39 neutral words.
NOT, VERY, SENTIMENT_VOCAB = 0, 1, 40


def sentiment_sequences(mood: np.ndarray, t: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of the sentiment language and each token's effective polarity (-2..2).

    ``mood`` (N,) or (N, 2) in [-1, 1] (one per half then): each phrase is polar with probability 0.45,
    positive in effect with probability (1 + mood) / 2, and then a plain word (0.6), "not" and a word of
    the opposite polarity (0.25) or "very" and a word of that polarity (0.15); otherwise a neutral word,
    after a stray "not" 5% of the time. A word's effective polarity is +-1, flipped after "not" and
    doubled after "very".
    """
    mood = mood.reshape(len(mood), -1)
    X = np.empty((len(mood), t), dtype=np.int64)
    for i in range(len(mood)):
        row: list[int] = []
        while len(row) < t:
            m = mood[i, min(len(row) * mood.shape[1] // t, mood.shape[1] - 1)]
            if rng.random() < 0.45:
                sign = 1 if rng.random() < (1 + m) / 2 else -1
                form = rng.random()
                if form < 0.25:
                    sign, row = -sign, row + [NOT]
                elif form < 0.4:
                    row.append(VERY)
                row.append(int(rng.integers(2, 12) if sign > 0 else rng.integers(12, 22)))
            else:
                row += ([NOT] if rng.random() < 0.05 else []) + [int(rng.integers(22, SENTIMENT_VOCAB))]
        X[i] = row[:t]
    base = np.where((X >= 2) & (X < 12), 1, np.where((X >= 12) & (X < 22), -1, 0))
    prev = np.concatenate([np.full((len(X), 1), 22), X[:, :-1]], 1)
    return X, (base * np.where(prev == NOT, -1, 1) * np.where(prev == VERY, 2, 1)).astype(np.int64)


def sentiment_task(n: int, t: int, seed: int, task: str, label_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Tasks on the sentiment language.

    "tags": per-token effective polarity as classes 0..4, moods uniform in [-1, 1] (pretraining);
    "binary": is the mood positive (moods +-U(0.3, 0.9)), a fraction ``label_noise`` of labels flipped;
    "trend": regress the second half's mood minus the first half's (moods uniform, plus noise 0.1).
    """
    rng = np.random.default_rng(seed)
    if task == "tags":
        X, pol = sentiment_sequences(rng.uniform(-1, 1, n), t, rng)
        return X, pol + 2
    if task == "binary":
        y = rng.integers(0, 2, n)
        X, _ = sentiment_sequences(np.where(y == 1, 1, -1) * rng.uniform(0.3, 0.9, n), t, rng)
        flip = rng.random(n) < label_noise
        return X, np.where(flip, 1 - y, y).astype(np.int64)
    mood = rng.uniform(-1, 1, (n, 2))
    X, _ = sentiment_sequences(mood, t, rng)
    return X, _col(mood[:, 1] - mood[:, 0] + 0.1 * rng.normal(size=n))


def recall_task(n: int, pairs: int, keys: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Associative recall: ``pairs`` (key, value) token pairs with distinct keys (tokens 0..keys-1, values
    keys..2*keys-1), then a query key; the class is the value paired with the query (0..keys-1)."""
    rng = np.random.default_rng(seed)
    K = np.argsort(rng.random((n, keys)), 1)[:, :pairs]
    V = rng.integers(0, keys, size=(n, pairs))
    which = rng.integers(0, pairs, n)
    X = np.empty((n, 2 * pairs + 1), dtype=np.int64)
    X[:, 0:-1:2], X[:, 1:-1:2], X[:, -1] = K, V + keys, K[np.arange(n), which]
    return X, V[np.arange(n), which].astype(np.int64)
