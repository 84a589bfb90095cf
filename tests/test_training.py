from __future__ import annotations

import pytest
import torch

from autoopt.data import prepare_data
from autoopt.records import Candidate
from autoopt.registry import get_spec
from autoopt.task import infer_task
from autoopt.training import TrainingInterrupted, TrainingSetup, train_candidate
from conftest import mlp


def make_setup(data, model, epochs=3) -> TrainingSetup:
    split = prepare_data(data)
    return TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), epochs, 16, seed=0)


def test_completed_trial_measures_every_epoch_and_its_memory(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 1e-2}), seed=0)
    assert m.outcome == "completed" and [e.epoch for e in m.epochs] == [1, 2, 3]
    assert m.steps == 3 * 6  # 96 training samples in batches of 16
    assert m.final_val_loss < m.initial_val_loss
    assert 0 <= m.final_val_accuracy <= 1
    n_params = sum(p.numel() for p in setup.template.parameters())
    assert m.optimizer_state_bytes == 2 * 4 * n_params + 4 * 4  # exp_avg + exp_avg_sq + a step per tensor
    assert m.peak_memory_bytes == 2 * 4 * n_params + m.optimizer_state_bytes


def test_every_candidate_starts_from_the_same_weights_and_order(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    a = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.05}), seed=0)
    b = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.05}), seed=0)
    assert a.val_losses == b.val_losses  # same weights, same data order: bit-identical
    c = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.05}), seed=1)
    assert c.val_losses != a.val_losses


def test_the_search_seed_keeps_the_users_weights_and_other_seeds_reinitialize(blobs):
    model = mlp(4, 3)
    setup = make_setup(blobs, model)
    assert torch.equal(setup.fresh_model(0)[0].weight, model[0].weight)
    other = setup.fresh_model(7)[0].weight
    assert not torch.equal(other, model[0].weight)
    assert torch.equal(other, setup.fresh_model(7)[0].weight)


def test_a_huge_learning_rate_ends_as_diverged_not_a_crash(regression):
    setup = make_setup(regression, mlp(5, 1), epochs=5)
    m = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 50.0}), seed=0)
    assert m.outcome == "diverged" and len(m.epochs) < 5


def test_on_epoch_can_stop_a_trial_as_pruned(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    seen = []
    m = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.1}), seed=0,
                        on_epoch=lambda r: seen.append(r.epoch) or r.epoch == 1)
    assert m.outcome == "pruned" and seen == [1] and len(m.epochs) == 1


class FailsOnCall(torch.nn.Module):
    """A model whose forward raises ``error`` on its n-th call in training mode."""

    def __init__(self, error: BaseException, n: int) -> None:
        super().__init__()
        self.fc, self.error, self.n, self.calls = torch.nn.Linear(4, 3), error, n, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.n:
                raise self.error
        return self.fc(x)


def test_out_of_memory_ends_the_trial_as_oom(blobs):
    setup = make_setup(blobs, FailsOnCall(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"), 8))
    m = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.1}), seed=0)
    assert m.outcome == "oom" and "out of memory" in m.error and len(m.epochs) == 1


def test_ctrl_c_carries_the_partial_measurement(blobs):
    setup = make_setup(blobs, FailsOnCall(KeyboardInterrupt(), 8))
    with pytest.raises(TrainingInterrupted) as info:
        train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.1}), seed=0)
    assert info.value.measurement.outcome == "interrupted" and len(info.value.measurement.epochs) == 1


def test_other_errors_propagate_to_the_caller(blobs):
    setup = make_setup(blobs, FailsOnCall(ZeroDivisionError("boom"), 3))
    with pytest.raises(ZeroDivisionError):
        train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.1}), seed=0)
