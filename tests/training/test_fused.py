"""The fused trainer against the sequential one: same weights, same curves, per-member endings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import mlp
from torch import nn

from autoopt.optimizers.registry import get_spec, list_optimizers
from autoopt.optimizers.spec import OptimizerSpec, dense_state
from autoopt.records import Candidate
from autoopt.training.batches import TensorPart
from autoopt.training.fused.eligibility import fusable
from autoopt.training.fused.loop import FusedInterrupted, train_fused
from autoopt.training.fused.sizing import max_group_size
from autoopt.training.intake import prepare_data
from autoopt.training.loop import train_candidate
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task


class RecordingSetup(TrainingSetup):
    """A TrainingSetup that keeps every model it hands out, so a test can read a sequential run's
    final weights: train_candidate trains the model ``fresh_model`` returns (``.to`` a device it is
    already on returns the same module)."""

    def fresh_model(self, seed: int) -> nn.Module:
        model = super().fresh_model(seed)
        self.__dict__.setdefault("handed_out", []).append(model)
        return model


def make_setup(data, model, epochs=2, batch_size=16) -> RecordingSetup:
    split = prepare_data(data)
    return RecordingSetup(model, split, infer_task(model, split), torch.device("cpu"), epochs, batch_size, seed=0)


def every_optimizer() -> list[tuple[OptimizerSpec, Candidate]]:
    return [(get_spec(name), Candidate(name, dict(get_spec(name).defaults))) for name in list_optimizers()]


def sequential(setup: RecordingSetup, spec: OptimizerSpec, candidate: Candidate, seed: int = 0, on_epoch=None):
    """train_candidate's measurement and the model it trained."""
    setup.handed_out = []
    measurement = train_candidate(setup, spec, candidate, seed, on_epoch)
    return measurement, setup.handed_out[-1]


def assert_same_run(fused_m, fused_model, seq_m, seq_model, name: str) -> None:
    assert fused_m.outcome == seq_m.outcome, name
    assert fused_m.steps == seq_m.steps, name
    assert fused_m.optimizer_state_bytes == seq_m.optimizer_state_bytes, name
    assert fused_m.initial_val_loss == pytest.approx(seq_m.initial_val_loss, rel=1e-5), name
    assert len(fused_m.epochs) == len(seq_m.epochs), name
    for f, s in zip(fused_m.epochs, seq_m.epochs):
        assert f.train_loss == pytest.approx(s.train_loss, rel=1e-4, abs=1e-6), (name, f.epoch)
        assert f.val_loss == pytest.approx(s.val_loss, rel=1e-4, abs=1e-6), (name, f.epoch)
        assert (f.val_accuracy is None) == (s.val_accuracy is None), name
        if s.val_accuracy is not None:
            assert abs(f.val_accuracy - s.val_accuracy) <= 1.5 / 100, name  # one borderline sample at most
    fused_state, seq_state = fused_model.state_dict(), seq_model.state_dict()
    assert fused_state.keys() == seq_state.keys(), name
    for key, value in seq_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(fused_state[key], value, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
        else:
            assert torch.equal(fused_state[key], value), (name, key)


def assert_fused_matches_sequential(setup: RecordingSetup, members, seed: int = 0) -> None:
    assert fusable(setup) is None
    measurements, models = train_fused(setup, members, seed, return_models=True)
    for (spec, candidate), fused_m, fused_model in zip(members, measurements, models):
        seq_m, seq_model = sequential(setup, spec, candidate, seed)
        assert_same_run(fused_m, fused_model, seq_m, seq_model, spec.name)


# --- the three model kinds ---------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> pool -> linear, on 1x6x6 images.

    The convolution has no bias, as usual before BatchNorm: BatchNorm subtracts it again, so its
    gradient is rounding noise, which Adam-like optimizers scale up to full steps of either sign
    (two correct implementations of the same convolution then differ by lr per step).
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        h = torch.max_pool2d(torch.relu(self.norm(self.conv(x))), 2)
        return self.head(h.flatten(1))


class SmallGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(1, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[0])


@pytest.fixture
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    y = np.arange(96) % 3
    X = rng.normal(0, 1, size=(96, 1, 6, 6)).astype(np.float32)
    X[:, 0, y * 2, :] += 2.0  # each class lights up its own rows
    return X, y


@pytest.fixture
def sequences() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    steps = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(64, 5))
    return np.ascontiguousarray(steps[:, :, None]), (steps.sum(axis=1) > 0).astype(np.int64)


def test_every_optimizer_fused_on_an_mlp_matches_sequential_runs(blobs):
    assert_fused_matches_sequential(make_setup(blobs, mlp(4, 3)), every_optimizer())


def test_every_optimizer_fused_on_a_cnn_with_batchnorm_matches_sequential_runs(images):
    assert_fused_matches_sequential(make_setup(images, SmallCNN(), batch_size=32), every_optimizer())


def test_every_optimizer_fused_on_a_gru_matches_sequential_runs(sequences):
    assert_fused_matches_sequential(make_setup(sequences, SmallGRU()), every_optimizer())


def test_another_seed_reinitializes_every_member_as_sequential_runs_do(blobs):
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2})), (get_spec("sgd"), Candidate("sgd", {"lr": 0.1}))]
    assert_fused_matches_sequential(make_setup(blobs, mlp(4, 3)), members, seed=3)


# --- members that end early ---------------------------------------------------------------------------

def test_a_diverging_member_ends_alone_and_the_others_are_unchanged(regression):
    setup = make_setup(regression, mlp(5, 1), epochs=4)
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2})),
               (get_spec("sgd"), Candidate("sgd", {"lr": 50.0})),  # diverges
               (get_spec("momentum"), Candidate("momentum", {"lr": 1e-2, "momentum": 0.9}))]
    measurements, models = train_fused(setup, members, 0, return_models=True)
    assert [m.outcome for m in measurements] == ["completed", "diverged", "completed"]
    assert len(measurements[1].epochs) < 4
    for (spec, candidate), fused_m, fused_model in zip(members, measurements, models):
        seq_m, seq_model = sequential(setup, spec, candidate)
        if seq_m.outcome == "diverged":  # NaN weights: compare the curve up to the divergence
            assert len(fused_m.epochs) == len(seq_m.epochs) and fused_m.steps == seq_m.steps
            continue
        assert_same_run(fused_m, fused_model, seq_m, seq_model, spec.name)


def test_a_pruned_member_ends_alone_and_the_others_are_unchanged(blobs):
    setup = make_setup(blobs, mlp(4, 3), epochs=3)
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2})),
               (get_spec("rmsprop"), Candidate("rmsprop", {"lr": 1e-3, "alpha": 0.99})),
               (get_spec("nadam"), Candidate("nadam", {"lr": 2e-3}))]
    seen: list[tuple[int, int]] = []

    def watch(index: int, prune_after: int | None):
        return lambda record: seen.append((index, record.epoch)) or record.epoch == prune_after

    callbacks = [watch(0, None), watch(1, 1), watch(2, None)]
    measurements, models = train_fused(setup, members, 0, callbacks, return_models=True)
    assert [m.outcome for m in measurements] == ["completed", "pruned", "completed"]
    assert sorted(seen) == [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1), (2, 2), (2, 3)]
    for (spec, candidate), callback, fused_m, fused_model in zip(members, [None, lambda r: r.epoch == 1, None],
                                                                 measurements, models):
        seq_m, seq_model = sequential(setup, spec, candidate, on_epoch=callback)
        assert_same_run(fused_m, fused_model, seq_m, seq_model, spec.name)


class RaisesOnStep(torch.optim.SGD):
    """SGD whose third step raises CUDA's out-of-memory error, as a state allocation that fails would."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.calls = 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().step(closure)


def test_a_member_whose_step_runs_out_of_memory_ends_alone(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    greedy = OptimizerSpec("greedy", "sgd", RaisesOnStep, (get_spec("sgd").space[0],), {"lr": 0.1}, dense_state(0))
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2})), (greedy, Candidate("greedy", {"lr": 0.1})),
               (get_spec("sgd"), Candidate("sgd", {"lr": 0.1}))]
    measurements, models = train_fused(setup, members, 0, return_models=True)
    assert [m.outcome for m in measurements] == ["completed", "oom", "completed"]
    assert measurements[1].steps == 2 and "out of memory" in measurements[1].error and models[1] is None
    for index in (0, 2):
        seq_m, seq_model = sequential(setup, *members[index])
        assert_same_run(measurements[index], models[index], seq_m, seq_model, members[index][0].name)


class FailsOnStep(torch.optim.SGD):
    """SGD whose second step raises an error of its own (not out of memory)."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.calls = 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("this optimizer is broken")
        return super().step(closure)


def test_a_member_whose_step_raises_ends_failed_alone(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    broken = OptimizerSpec("broken", "sgd", FailsOnStep, (get_spec("sgd").space[0],), {"lr": 0.1}, dense_state(0))
    members = [(broken, Candidate("broken", {"lr": 0.1})), (get_spec("adam"), Candidate("adam", {"lr": 1e-2}))]
    measurements, models = train_fused(setup, members, 0, return_models=True)
    assert [m.outcome for m in measurements] == ["failed", "completed"]
    assert "this optimizer is broken" in measurements[0].error and measurements[0].steps == 1
    seq_m, seq_model = sequential(setup, *members[1])
    assert_same_run(measurements[1], models[1], seq_m, seq_model, "adam")


def test_group_stop_ends_the_members_it_names_once_every_member_has_its_epoch(blobs):
    setup = make_setup(blobs, mlp(4, 3), epochs=3)
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2})), (get_spec("sgd"), Candidate("sgd", {"lr": 0.1})),
               (get_spec("momentum"), Candidate("momentum", {"lr": 0.05, "momentum": 0.9}))]
    asked: list[tuple[int, list[int]]] = []

    def keep_the_best(epoch, records):  # rung at epoch 1: only the lowest validation loss goes on
        asked.append((epoch, sorted(records)))
        if epoch != 1:
            return set()
        best = min(records, key=lambda i: records[i].val_loss)
        return set(records) - {best}

    measurements = train_fused(setup, members, 0, group_stop=keep_the_best)
    winner = min(range(3), key=lambda i: measurements[i].epochs[0].val_loss)
    assert [m.outcome for m in measurements] == ["completed" if i == winner else "pruned" for i in range(3)]
    assert [len(m.epochs) for m in measurements] == [3 if i == winner else 1 for i in range(3)]
    assert asked == [(1, [0, 1, 2]), (2, [winner]), (3, [winner])]
    seq_m = train_candidate(setup, *members[winner], 0)
    assert measurements[winner].val_losses == pytest.approx(seq_m.val_losses, rel=1e-5)


def test_a_candidate_with_its_own_training_settings_is_not_fused(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2, "schedule": "cosine"})),
               (get_spec("sgd"), Candidate("sgd", {"lr": 0.1}))]
    with pytest.raises(ValueError, match="schedule='cosine'"):
        train_fused(setup, members, 0)


class RunsOutOfMemoryOnce(nn.Module):
    """An MLP whose n-th training forward raises out-of-memory (the counter is shared by all copies)."""

    calls = 0

    def __init__(self, n: int) -> None:
        super().__init__()
        self.net, self.n = mlp(4, 3), n

    def forward(self, x):
        if self.training:
            type(self).calls += 1
            if type(self).calls == self.n:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return self.net(x)


def test_a_fused_pass_out_of_memory_drops_the_largest_member_and_retries_the_batch(blobs):
    setup = make_setup(blobs, RunsOutOfMemoryOnce(n=3))  # 1, 2: fusable's probe (fused, then its own); 3: the first fused pass
    assert fusable(setup) is None
    members = [(get_spec("sgd"), Candidate("sgd", {"lr": 0.1})), (get_spec("adam"), Candidate("adam", {"lr": 1e-2}))]
    measurements, models = train_fused(setup, members, 0, return_models=True)
    assert [m.outcome for m in measurements] == ["completed", "oom"]  # adam holds the larger state
    assert "fused pass of 2 members" in measurements[1].error
    seq_m, seq_model = sequential(setup, *members[0])
    assert_same_run(measurements[0], models[0], seq_m, seq_model, "sgd")


def test_an_interrupt_carries_every_members_measurement(blobs):
    setup = make_setup(blobs, mlp(4, 3), epochs=3)
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-2})), (get_spec("sgd"), Candidate("sgd", {"lr": 0.1}))]

    def interrupt_at_epoch_2(record):
        if record.epoch == 2:
            raise KeyboardInterrupt
        return False

    with pytest.raises(FusedInterrupted) as caught:
        train_fused(setup, members, 0, [None, interrupt_at_epoch_2])
    measurements = caught.value.measurements
    assert [m.outcome for m in measurements] == ["interrupted", "interrupted"]
    assert [len(m.epochs) for m in measurements] == [2, 2]


# --- the measurements ---------------------------------------------------------------------------------

def test_seconds_add_up_to_the_wall_time_and_memory_is_counted_per_member(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    members = [(get_spec("sgd"), Candidate("sgd", {"lr": 0.1})), (get_spec("adam"), Candidate("adam", {"lr": 1e-2}))]
    measurements = train_fused(setup, members, 0)
    for m in measurements:
        assert all(e.epoch_seconds > 0 for e in m.epochs)
        assert m.seconds == pytest.approx(sum(e.epoch_seconds for e in m.epochs))
    n_params = sum(p.numel() for p in setup.template.parameters())
    assert measurements[0].optimizer_state_bytes == 0
    assert measurements[1].optimizer_state_bytes == 2 * 4 * n_params + 4 * 4
    for m in measurements:  # CPU: params + grads + its own state, as train_candidate counts it
        assert m.peak_memory_bytes == 2 * 4 * n_params + m.optimizer_state_bytes


def test_max_group_size_respects_the_memory_budget(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    members = [(get_spec("adam"), Candidate("adam", {"lr": 1e-3}))] * 10
    n_params = sum(p.numel() for p in setup.template.parameters())
    one = 2 * 4 * n_params + get_spec("adam").predict_state_bytes(list(setup.template.parameters()), {})
    assert max_group_size(setup, members) == 10  # tiny models: RAM is no limit
    assert max_group_size(setup, members, memory_budget=3 * one) == 3
    assert max_group_size(setup, members, memory_budget=3 * one - 1) == 2
    assert max_group_size(setup, members, memory_budget=1) == 1  # one always: feasibility is checked before
    assert max_group_size(setup, [], memory_budget=1) == 0


# --- where fusing does not apply ----------------------------------------------------------------------

class BranchesOnItsActivations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:  # differs per copy once the weights differ: vmap cannot batch it
            return h
        return -h


def test_fusable_gives_a_reason_for_data_dependent_control_flow(blobs):
    reason = fusable(make_setup(blobs, BranchesOnItsActivations()))
    assert reason is not None and "control flow" in reason


def test_fusable_gives_a_reason_for_dropout(blobs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    reason = fusable(make_setup(blobs, model))
    assert reason is not None and "random" in reason


class PairsPart(TensorPart):
    """Training data whose batches are (list of tensors, tensor), as a multi-input DataLoader yields."""

    def batches(self, batch_size, generator):
        for xb, yb in super().batches(batch_size, generator):
            yield [xb, xb], yb


def test_fusable_gives_a_reason_for_non_tensor_batches(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    setup.split.train = PairsPart(setup.split.train.X, setup.split.train.y)
    reason = fusable(setup)
    assert reason is not None and "list" in reason and "not tensors" in reason


def test_fusable_accepts_the_shipped_model_kinds(blobs, images, sequences):
    assert fusable(make_setup(blobs, mlp(4, 3))) is None
    assert fusable(make_setup(images, SmallCNN())) is None
    assert fusable(make_setup(sequences, SmallGRU())) is None


def test_a_setup_option_the_fused_loop_does_not_know_is_refused(blobs):
    from dataclasses import dataclass

    @dataclass
    class ClippingSetup(TrainingSetup):
        max_grad_norm: float | None = None

    model = mlp(4, 3)
    split = prepare_data(blobs)
    task = infer_task(model, split)
    plain = ClippingSetup(model, split, task, torch.device("cpu"), 1, 16, 0)
    assert fusable(plain) is None  # at its default the option changes nothing
    clipped = ClippingSetup(model, split, task, torch.device("cpu"), 1, 16, 0, max_grad_norm=1.0)
    reason = fusable(clipped)
    assert reason is not None and "max_grad_norm" in reason
    with pytest.raises(ValueError, match="max_grad_norm"):
        train_fused(clipped, every_optimizer()[:2], 0)


def test_one_member_is_trained_sequentially(blobs):
    setup = make_setup(blobs, mlp(4, 3))
    spec, candidate = get_spec("adam"), Candidate("adam", {"lr": 1e-2})
    (fused_m,) = train_fused(setup, [(spec, candidate)], 0)
    seq_m = train_candidate(setup, spec, candidate, 0)
    assert fused_m.val_losses == seq_m.val_losses and math.isfinite(fused_m.final_val_loss)


def test_with_torchs_default_optimizer_implementations_the_weights_agree_to_float32_rounding(blobs):
    # Not bit-identical on every CPU: a vmapped matmul may sum in another order than a plain one (seen:
    # up to 1.2e-7 relative after 2 epochs on an AMD EPYC; bit-identical on another). 1e-6 is 100x
    # tighter than the fast implementations' tolerance above, so an update rule that differs fails.
    setup = make_setup(blobs, mlp(4, 3))
    members = every_optimizer()
    _, models = train_fused(setup, members, 0, return_models=True, fast_optimizers=False)
    for (spec, candidate), fused_model in zip(members, models):
        _, seq_model = sequential(setup, spec, candidate)
        for key, value in seq_model.state_dict().items():
            scale = float(value.abs().max()) if value.is_floating_point() and value.numel() else 1.0
            torch.testing.assert_close(fused_model.state_dict()[key], value, rtol=1e-6, atol=1e-6 * max(scale, 1.0),
                                       msg=f"{spec.name}: {key}")


@pytest.mark.parametrize("value", [True, False, None])
def test_the_study_setting_fused_takes_a_bool_or_none(value):
    from autoopt.config import StudyConfig

    assert StudyConfig(fused=value).fused is value


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_the_study_setting_fused_rejects_anything_else_naming_it(value):
    from autoopt.config import StudyConfig

    with pytest.raises(ValueError, match=f"fused must be True, False or None .* but got {value!r}"):
        StudyConfig(fused=value)
