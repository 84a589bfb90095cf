from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from autoopt.training.batches import LoaderPart, TensorPart
from autoopt.training.intake import prepare_data


def test_numpy_pair_is_held_out_stratified_with_a_fixed_seed(blobs):
    X, y = blobs
    a, b = prepare_data((X, y), seed=3), prepare_data((X, y), seed=3)
    assert isinstance(a.train, TensorPart) and (len(a.train), len(a.val)) == (96, 24)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.X, b.val.X)
    assert torch.bincount(a.val.y).tolist() == [8, 8, 8]  # stratified
    assert a.classification and a.n_classes == 3
    assert a.train.X.dtype == torch.float32 and a.train.y.dtype == torch.int64


def test_tensor_pair_and_explicit_validation_set(regression):
    X, y = map(torch.from_numpy, regression)
    split = prepare_data((X[:80], y[:80]), val_data=(X[80:], y[80:]))
    assert (len(split.train), len(split.val)) == (80, 20)
    assert not split.classification and split.n_classes is None
    assert torch.equal(split.val.X, X[80:])


def test_dataframe_with_a_target_column_and_string_labels():
    df = pd.DataFrame({"a": np.arange(20.0), "b": np.ones(20), "label": ["cat", "dog"] * 10})
    split = prepare_data(df, target="label")
    assert split.classification and split.classes == ["cat", "dog"]
    assert split.train.X.shape[1] == 2


def test_dataframe_without_target_names_the_columns():
    df = pd.DataFrame({"a": [1.0, 2.0], "y": [0, 1]})
    with pytest.raises(ValueError, match=r"target=.*\['a', 'y'\]"):
        prepare_data(df)


def test_dataframe_with_text_features_says_how_to_encode():
    df = pd.DataFrame({"city": ["a", "b"] * 5, "y": [0, 1] * 5})
    with pytest.raises(ValueError, match=r"non-numeric feature columns \['city'\].*get_dummies"):
        prepare_data(df, target="y")


def test_dataset_is_materialized_on_the_device(blobs):
    X, y = blobs
    split = prepare_data(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)))
    assert isinstance(split.train, TensorPart) and len(split.train) + len(split.val) == 120


def test_dataloader_is_used_as_given_with_its_validation_loader(blobs):
    X, y = map(torch.from_numpy, blobs)
    train = DataLoader(TensorDataset(X[:100], y[:100]), batch_size=10, shuffle=True)
    val = DataLoader(TensorDataset(X[100:], y[100:]), batch_size=10)
    split = prepare_data(train, val_data=val)
    assert isinstance(split.train, LoaderPart) and split.train.loader is train and split.val.loader is val
    assert split.n_classes == 3


def test_dataloader_order_is_the_same_for_the_same_seed(blobs):
    X, y = map(torch.from_numpy, blobs)
    split = prepare_data(DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True))
    first = [yb for _, yb in split.train.batches(16, torch.Generator().manual_seed(5))]
    second = [yb for _, yb in split.train.batches(16, torch.Generator().manual_seed(5))]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_tensor_order_is_seeded_and_covers_every_sample(blobs):
    split = prepare_data(blobs)
    batches = list(split.train.batches(10, torch.Generator().manual_seed(1)))
    again = list(split.train.batches(10, torch.Generator().manual_seed(1)))
    other = list(split.train.batches(10, torch.Generator().manual_seed(2)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(batches, other))
    assert sum(len(b[0]) for b in batches) == len(split.train)


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((10, 2)), np.zeros(9), r"X has 10 samples but y has 9"),
        (np.zeros((0, 2)), np.zeros(0), r"empty \(0 samples\)"),
        (np.array([[1.0, 2.0], [1.0, 2.0], [np.nan, 1.0], [1.0, 1.0]]), np.zeros(4),
         r"X \(features\) contains 1 NaN or infinite.*row 2"),
        (np.ones((4, 2)), np.array([0.0, np.inf, 1.0, 2.0]), r"y \(targets\) contains 1 NaN or infinite.*row 1"),
        (np.ones((4, 2)), np.array([0, -1, 1, 0]), r"class labels must be 0 or more"),
    ],
)
def test_bad_data_is_named_before_training(X, y, message):
    with pytest.raises(ValueError, match=message):
        prepare_data((X, y))


def test_unaccepted_type_lists_the_accepted_forms():
    with pytest.raises(TypeError, match=r"int is not accepted.*DataFrame.*DataLoader"):
        prepare_data(42)


def test_read_only_arrays_become_writable_tensors_without_a_warning():
    import warnings

    from autoopt.training.intake import _from_numpy

    array = np.arange(6, dtype=np.float64)
    array.flags.writeable = False  # what pandas 3 hands out under copy-on-write
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = _from_numpy(array, np.float32)
    assert tensor.dtype == torch.float32 and tensor.numpy().flags.writeable
    assert tensor.tolist() == [0, 1, 2, 3, 4, 5]


def test_a_dataframe_with_one_float_column_and_a_float_target_is_accepted_as_is():
    df = pd.DataFrame({"a": np.linspace(0, 1, 20, dtype=np.float32), "t": np.linspace(1, 2, 20)})
    split = prepare_data(df, target="t")
    assert split.train.X.shape == (16, 1) and not split.classification
