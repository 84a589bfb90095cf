from __future__ import annotations

import pytest
import torch
from conftest import mlp

from autoopt.training.intake import prepare_data
from autoopt.training.task import infer_task


def test_integer_targets_with_k_outputs_is_multiclass_cross_entropy(blobs):
    task = infer_task(mlp(4, 3), prepare_data(blobs))
    assert task.kind == "multiclass"
    out, y = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]), torch.tensor([0, 2])
    assert int(task.correct(out, y)) == 1
    assert float(task.loss_fn(out, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)))


def test_two_classes_with_one_logit_is_binary_bce(blobs):
    X, y = blobs
    task = infer_task(mlp(4, 1), prepare_data((X, y % 2)))
    assert task.kind == "binary"
    assert int(task.correct(torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 1]))) == 1


def test_float_targets_are_regression_and_a_column_output_fits_a_flat_target(regression):
    task = infer_task(mlp(5, 1), prepare_data(regression))
    assert task.kind == "regression" and task.correct(torch.zeros(2, 1), torch.zeros(2)) is None
    assert float(task.loss_fn(torch.ones(3, 1), torch.zeros(3))) == pytest.approx(1.0)


def test_too_few_outputs_for_the_classes_is_named(blobs):
    with pytest.raises(ValueError, match=r"outputs shape \(2,\).*3 classes.*give the model 3 outputs"):
        infer_task(mlp(4, 2), prepare_data(blobs))


def test_regression_output_that_cannot_match_is_named(regression):
    with pytest.raises(ValueError, match=r"outputs shape \(3,\).*float targets have shape \(\)"):
        infer_task(mlp(5, 3), prepare_data(regression))


def test_a_model_that_cannot_run_on_the_data_is_named(blobs):
    with pytest.raises(ValueError, match=r"could not run on a batch.*shape \(8, 4\)"):
        infer_task(mlp(7, 3), prepare_data(blobs))


def test_custom_loss_overrides_the_inferred_one(regression):
    task = infer_task(mlp(5, 1), prepare_data(regression), loss_fn=lambda out, y: torch.nn.functional.l1_loss(out.squeeze(-1), y))
    assert task.kind == "custom"


def test_a_custom_loss_that_is_not_a_scalar_is_rejected(regression):
    with pytest.raises(ValueError, match="scalar"):
        infer_task(mlp(5, 1), prepare_data(regression), loss_fn=lambda out, y: (out.squeeze(-1) - y).abs())
