from __future__ import annotations


import pytest
import torch
from conftest import mlp

from autoopt.optimizers.registry import get_spec
from autoopt.records import Candidate
from autoopt.training import bare_epoch
from autoopt.training.intake import prepare_data
from autoopt.training.loop import TrainingInterrupted, train_candidate
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task


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


class _Clock:
    """A clock that moves only when told: what a stall costs, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _SlowFirstCalls(torch.nn.Module):
    """A model whose first forward passes stall, the way a process's first steps pay for lazy set-up."""

    def __init__(self, inner: torch.nn.Module, stalls: int, clock: _Clock) -> None:
        super().__init__()
        self.inner, self.stalls, self.clock = inner, stalls, clock

    def forward(self, x):  # noqa: ANN001
        if self.stalls > 0:
            self.stalls -= 1
            self.clock.now += 100.0
        return self.inner(x)


def test_the_bare_epoch_excludes_the_warm_up(blobs, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(bare_epoch, "time", clock)
    setup = make_setup(blobs, mlp(4, 3))
    # the stalls are set on the copy the measurement trains (fresh_model deep-copies the template)
    setup.template = _SlowFirstCalls(setup.template, stalls=bare_epoch.BARE_WARMUP_BATCHES, clock=clock)
    assert bare_epoch.measure_bare_epoch(setup) < 1  # each warm-up batch stalled 100 s; none is in the unit


def test_the_bare_epoch_is_the_fastest_timed_one(blobs, monkeypatch):
    setup = make_setup(blobs, mlp(4, 3))
    times = iter([5.0, 0.2, 0.1])  # warm-up, first timed epoch, second timed epoch
    monkeypatch.setattr(bare_epoch, "_bare_epoch", lambda *a, **k: next(times))
    assert bare_epoch.measure_bare_epoch(setup) == 0.1


def test_the_bare_epoch_leaves_torchs_random_state_as_one_plain_epoch_does(blobs):
    # a model with dropout draws from torch's global generator; the trials after the measurement must
    # draw what they drew when the measurement was one plain epoch, so that no result changes
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
    setup = make_setup(blobs, model)
    torch.manual_seed(123)
    bare_epoch.measure_bare_epoch(setup, epochs=1, warmup_batches=0)  # what it was: one plain epoch
    plain = torch.get_rng_state()
    torch.manual_seed(123)
    bare_epoch.measure_bare_epoch(setup)
    assert torch.equal(torch.get_rng_state(), plain)
