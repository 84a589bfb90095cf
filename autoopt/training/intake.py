"""Data intake: every accepted form becomes a ``Split`` (train + validation), checked before training.

Accepted forms of ``data``: ``(X, y)`` as numpy arrays or torch tensors, a pandas DataFrame with
``target="column"``, a map-style torch ``Dataset`` of ``(x, y)`` pairs, or a ``DataLoader``. Without
``val_data`` a validation set is held out with a fixed seed (stratified for classification).

A DataLoader's batches may be ``(x, y)`` pairs, tuples or lists of several inputs and the target last
(``(x1, x2, y)``), or dicts by the Hugging Face convention: ``labels`` is the target (``target=``
names another key), the other keys are the model's keyword inputs. Each batch becomes ``(inputs,
target)``; with ``raw_batches=True`` (``step_fn=``) batches are passed on as they come, ``(batch, None)``.

The result is batched by ``batches.py``. (A few lines over the package's 350-line guide: every accepted
form and the checks that refuse it belong together, so that each form is refused the same way.)
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Subset

from .batches import DEFAULT_TARGET_KEY, LoaderPart, Split, TensorPart, all_tensors, split_batch

#: Features or regression targets larger than this (in absolute value) after intake are badly scaled:
#: every optimizer's default learning rate assumes values of order 1.
SCALE_WARNING = 1e3


def prepare_data(
    data: Any,
    *,
    target: str | None = None,
    val_data: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    raw_batches: bool = False,
) -> Split:
    """Turn any accepted data form into a checked ``Split`` on ``device``.

    >>> X, y = np.random.rand(50, 3).astype("float32"), np.arange(50) % 2
    >>> split = prepare_data((X, y))
    >>> len(split.train), len(split.val), split.n_classes
    (40, 10, 2)
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive) but got {val_fraction}.")
    check_target_fits(data, target)
    if isinstance(data, DataLoader):
        return _split_loaders(data, val_data, val_fraction, seed, device, target or DEFAULT_TARGET_KEY, raw_batches)
    X, y, classes = _toall_tensors(data, target, "data")
    classification = _is_classification(y)
    if val_data is not None:
        X_val, y_val, _ = _toall_tensors(val_data, target, "val_data")
        if classes is not None or _is_classification(y_val) != classification:
            raise ValueError("val_data's targets must be of the same kind (integer class ids or floats) as data's.")
        if X_val.shape[1:] != X.shape[1:]:
            raise ValueError(f"val_data's samples have shape {tuple(X_val.shape[1:])} but data's have {tuple(X.shape[1:])}.")
    else:
        X, y, X_val, y_val = _hold_out(X, y, classification, val_fraction, seed)
    n_classes = int(max(y.max(), y_val.max())) + 1 if classification else None
    if classification and int(min(y.min(), y_val.min())) < 0:
        raise ValueError(f"class labels must be 0 or more but the smallest is {int(min(y.min(), y_val.min()))}.")
    if classification:
        check_two_classes(torch.cat([y, y_val]).unique().tolist(), "data")
    return Split(
        train=TensorPart(X.to(device), y.to(device)),
        val=TensorPart(X_val.to(device), y_val.to(device)),
        classification=classification,
        n_classes=n_classes,
        classes=classes,
    )


def check_target_fits(data: Any, target: str | None) -> None:
    """``target=`` names a DataFrame column or a DataLoader's dict-batch key; with any other data it
    would be ignored, so it is an error."""
    import pandas as pd

    if target is None or isinstance(data, (pd.DataFrame, DataLoader)):
        return
    raise ValueError(f"target={target!r} names a DataFrame column or the target key of a DataLoader's dict "
                     f"batches, but data is {type(data).__name__}, whose targets are "
                     + ("its second element (X, y)" if isinstance(data, (tuple, list)) else "each item's y")
                     + "; leave target out.")


def check_two_classes(labels: list[Any], what: str) -> None:
    """Classification needs two classes at least: with one, every model scores a loss of 0 and 100%."""
    if len(labels) < 2:
        raise ValueError(f"{what}'s targets are all class {labels[0] if labels else '?'!r}: one class, so there "
                         "is nothing to classify (any model would score 100%); give samples of at least two "
                         "classes, or float targets for regression.")


def _toall_tensors(data: Any, target: str | None, what: str) -> tuple[torch.Tensor, torch.Tensor, list[Any] | None]:
    """(X, y, original class labels or None) from arrays, tensors, a DataFrame or a Dataset."""
    import pandas as pd

    columns: list[str] | None = None
    if isinstance(data, pd.DataFrame):
        if target is not None and target not in data.columns:
            import difflib

            close = difflib.get_close_matches(str(target), [str(c) for c in data.columns], n=1)
            raise ValueError(f"target={target!r} is not a column of {what}"
                             + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" Its {len(data.columns)} columns are {list(data.columns)}.")
        if target is None:
            raise ValueError(
                f"{what} is a DataFrame: pass target= naming its target column, one of {list(data.columns)} "
                f"(got target={target!r})."
            )
        features = data.drop(columns=[target])
        bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c]) and not pd.api.types.is_bool_dtype(features[c])]
        if bad:
            raise ValueError(
                f"{what} has non-numeric feature columns {bad}; encode them first (e.g. pandas.get_dummies)."
            )
        X_raw, y_raw = features.to_numpy(dtype=np.float32), data[target]
        columns = [str(c) for c in features.columns]
    elif isinstance(data, Dataset) and not isinstance(data, (tuple, list)):
        X_raw, y_raw = _materialize(data, what)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X_raw, y_raw = data
    else:
        raise TypeError(
            f"{what} of type {type(data).__name__} is not accepted; give (X, y) arrays or tensors, a pandas "
            "DataFrame with target='column', a torch Dataset of (x, y) pairs, or a DataLoader."
        )
    y, classes = _targets(y_raw, what)
    y = _class_id_shape(y)
    X = _features(X_raw, what)
    if len(X) != len(y):
        raise ValueError(f"{what}: X has {len(X)} samples but y has {len(y)}; they must have the same length.")
    if len(X) == 0:
        raise ValueError(f"{what} is empty (0 samples); give at least a few samples to train on.")
    _check_finite(X, f"{what}: X (features)")
    _check_finite(y, f"{what}: y (targets)")
    warn_badly_scaled(X, y, what, columns, target)
    return X, y, classes


def warn_badly_scaled(X: torch.Tensor, y: torch.Tensor, what: str, columns: Sequence[str] | None = None,
                      target: str | None = None) -> None:
    """Warn, naming the columns, when float features or targets exceed SCALE_WARNING in absolute value."""
    bad: list[str] = []
    if X.is_floating_point() and len(X):
        peak = X.abs().reshape(len(X), -1).amax(dim=0)
        for i in (peak > SCALE_WARNING).nonzero().flatten().tolist()[:10]:
            bad.append(f"{columns[i] if columns else f'x[{i}]'} (|x| up to {float(peak[i]):.3g})")
    if y.is_floating_point() and len(y) and float(y.abs().max()) > SCALE_WARNING:
        bad.append(f"{target or 'y'} (target, |y| up to {float(y.abs().max()):.3g})")
    if bad:
        warnings.warn(f"{what} is badly scaled: {', '.join(bad)} exceed {SCALE_WARNING:g}; optimizers' default "
                      "learning rates assume values of order 1, so standardize them first (e.g. "
                      "sklearn.preprocessing.StandardScaler) or the recommendation will not carry over.",
                      UserWarning, stacklevel=4)


def _materialize(dataset: Dataset, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} is an iterable Dataset without a length; wrap it in a DataLoader.") from None
    if n == 0:
        raise ValueError(f"{what} is empty (0 samples); give at least a few samples to train on.")
    pairs = [_read(lambda i=i: dataset[i], f"{what}: item {i}") for i in range(n)]
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"{what}: a Dataset must return (x, y) pairs, but item {i} is {type(pair).__name__}"
                             + (f" of length {len(pair)}" if isinstance(pair, (tuple, list)) else "") + ".")
    stacked = []
    for side, name in ((0, "x"), (1, "y")):
        try:
            items = [torch.as_tensor(p[side]) for p in pairs]
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{what}: an item's {name} is not a number or an array ({type(exc).__name__}: {exc}); "
                             "a Dataset must return (x, y) pairs of numbers, arrays or tensors.") from None
        odd = next((i for i, t in enumerate(items) if t.shape != items[0].shape), None)
        if odd is not None:
            raise ValueError(f"{what}: item {odd}'s {name} has shape {tuple(items[odd].shape)} but item 0's has "
                             f"{tuple(items[0].shape)}; every sample must have the same shape (pad them, or give a "
                             "DataLoader with a collate_fn).")
        stacked.append(torch.stack(items))
    return stacked[0], stacked[1]


def _features(X: Any, what: str) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        return X.float() if X.dtype in (torch.float64, torch.bool) else X
    array = np.asarray(X)
    if array.dtype.kind in "fb":
        return _from_numpy(array, np.float32)
    if array.dtype.kind in "iu":
        return _from_numpy(array, np.int64)  # token ids stay integers
    raise ValueError(f"{what}: X has dtype {array.dtype}; features must be numeric (float, int or bool).")


def _from_numpy(array: np.ndarray, dtype: type) -> torch.Tensor:
    """A tensor of ``array`` as ``dtype``, copied when it is read-only (pandas 3 hands out read-only
    views under copy-on-write, which torch.from_numpy warns about)."""
    return torch.from_numpy(np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


def _targets(y: Any, what: str) -> tuple[torch.Tensor, list[Any] | None]:
    """Integer class ids stay int64; strings and categories are encoded; floats stay float32."""
    import pandas as pd

    if isinstance(y, torch.Tensor):
        y = y.detach().cpu()
        if y.dtype == torch.bool:
            return y.long(), None
        return (y.float() if y.dtype == torch.float64 else y), None
    if isinstance(y, pd.Series) and isinstance(y.dtype, pd.CategoricalDtype):
        return _from_numpy(y.cat.codes.to_numpy(), np.int64), list(y.cat.categories)
    array = np.asarray(y)
    if array.dtype.kind == "b":
        return torch.from_numpy(array.astype(np.int64)), None
    if array.dtype.kind in "iu":
        return torch.from_numpy(array.astype(np.int64)), None
    if array.dtype.kind == "f":
        return _from_numpy(array, np.float32), None
    if array.dtype.kind in "OUS":
        if array.ndim != 1:
            raise ValueError(f"{what}: label targets must be one-dimensional but have shape {array.shape}.")
        classes, codes = np.unique(array.astype(str), return_inverse=True)
        return torch.from_numpy(codes.astype(np.int64)), list(classes)
    raise ValueError(f"{what}: y has dtype {array.dtype}; targets must be numbers, booleans or labels.")


def _class_id_shape(y: torch.Tensor) -> torch.Tensor:
    """Integer class ids as a column, (N, 1), are class ids (N,); integer one-hot rows, (N, C) of 0 and 1
    with one 1 a row, become float one-hot rows, which task inference treats as C classes with a note."""
    if y.is_floating_point() or y.ndim != 2 or len(y) == 0:
        return y
    if y.shape[1] == 1:
        return y[:, 0]
    if bool(((y == 0) | (y == 1)).all()) and bool((y.sum(dim=1) == 1).all()):
        return y.float()
    return y


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        return
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = bad.reshape(len(t), -1).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{what} contains {int(bad.sum())} NaN or infinite value(s), first in row {int(rows[0])}; "
            "drop those rows or impute them (e.g. sklearn.impute.SimpleImputer)."
        )


def _is_classification(y: torch.Tensor) -> bool:
    return not y.is_floating_point() and y.ndim == 1


def _hold_out(
    X: torch.Tensor, y: torch.Tensor, classification: bool, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(X)
    if n < 2:
        raise ValueError(f"data has {n} sample; at least 2 are needed to hold out a validation set.")
    stratify = None
    if classification:
        counts = torch.bincount(y - y.min())
        n_val = max(1, round(n * val_fraction))
        # scikit-learn stratifies only when every class has 2+ members and fits in both parts
        if counts[counts > 0].min() >= 2 and n_val >= int((counts > 0).sum()):
            stratify = y.numpy()
    train_idx, val_idx = train_test_split(
        np.arange(n), test_size=val_fraction, random_state=seed, stratify=stratify
    )
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return X[train_idx], y[train_idx], X[val_idx], y[val_idx]


def _split_loaders(
    loader: DataLoader, val_data: Any, val_fraction: float, seed: int, device: torch.device,
    target_key: str = DEFAULT_TARGET_KEY, raw: bool = False,
) -> Split:
    if val_data is not None:
        if not isinstance(val_data, DataLoader):
            raise TypeError(f"data is a DataLoader, so val_data must be one too, not {type(val_data).__name__}.")
        train_loader, val_loader = loader, val_data
    else:
        n = len(loader.dataset)  # type: ignore[arg-type]
        if n < 2:
            raise ValueError(f"data has {n} sample(s); at least 2 are needed to hold out a validation set.")
        train_idx, val_idx = train_test_split(np.arange(n), test_size=val_fraction, random_state=seed)
        options = dict(batch_size=loader.batch_size, num_workers=loader.num_workers,
                       collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)
        train_loader = DataLoader(Subset(loader.dataset, train_idx.tolist()), shuffle=True,
                                  drop_last=loader.drop_last, **options)
        val_loader = DataLoader(Subset(loader.dataset, val_idx.tolist()), shuffle=False, **options)
    parts = (LoaderPart(train_loader, device, target_key, raw), LoaderPart(val_loader, device, target_key, raw))
    # every batch is read once here, before any training: a bad batch would otherwise fail each trial when
    # it comes up, after the trials before it trained
    labels = _check_batches(train_loader, "data", target_key, raw)
    _check_batches(val_loader, "val_data" if val_data is not None else "data (validation part)", target_key, raw)
    if raw:  # step_fn: the batch is the user's to read; only its tensors are checked
        return Split(*parts, classification=False, n_classes=None, target_key=target_key)
    classification = labels is not None
    n_classes = None
    if labels is not None:
        check_two_classes(sorted(labels), "data")
        n_classes = int(max(labels)) + 1
    return Split(*parts, classification=classification, n_classes=n_classes, target_key=target_key)


_END = object()


def _read(get: Any, what: str) -> Any:
    """``get()``: reading the user's data, whose failure is named (with the item or batch) before training."""
    try:
        return get()
    except Exception as exc:
        raise ValueError(f"{what} could not be read: {type(exc).__name__}: {exc}") from exc


def _check_batches(loader: DataLoader, what: str, target_key: str, raw: bool) -> set[int] | None:
    """Every batch finite (sample shapes may differ between batches: text padded per batch); the class
    labels seen when the targets are class ids (None when they are not)."""
    labels: set[int] | None = None
    reader = iter(loader)
    for i in itertools.count():
        batch = _read(lambda: next(reader, _END), f"{what}: batch {i}")
        if batch is _END:
            break
        where = f"{what}: batch {i}"
        if raw:
            for t in all_tensors(batch):
                _check_finite(t, where)
            continue
        xb, yb = split_batch(batch, target_key)
        for t in all_tensors(xb):
            _check_finite(t, f"{where}'s features")
        yb = torch.as_tensor(yb)
        _check_finite(yb, f"{where}'s targets")
        if i == 0:
            labels = set() if _is_classification(yb) else None
        if labels is not None:
            labels.update(yb.unique().tolist())
    if i == 0:  # the loop ended at its first batch: there is none
        raise ValueError(f"{what}: the DataLoader yields no batches; give it at least one sample "
                         "(with drop_last=True, at least one full batch).")
    return labels
