"""Candidates trained side by side, an epoch each in turn, train exactly what each trains alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoopt.optimizers.registry import get_spec
from autoopt.records import Candidate
from autoopt.training.intake import prepare_data
from autoopt.training.interleaved import train_interleaved
from autoopt.training.loop import GroupInterrupted, train_candidate
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task


def _setup(blobs, dropout: float = 0.0) -> TrainingSetup:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))
    split = prepare_data(blobs)
    return TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), epochs=4, batch_size=16, seed=0)


MEMBERS = [("adam", 1e-2), ("momentum", 0.05), ("muon", 0.02)]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_side_by_side_is_one_by_one_bit_for_bit_dropout_included(blobs, dropout):
    setup = _setup(blobs, dropout)
    members = [(get_spec(o), Candidate(o, {**get_spec(o).defaults, "lr": lr})) for o, lr in MEMBERS]
    together = train_interleaved(setup, members, seed=1)
    alone = [train_candidate(setup, spec, candidate, 1) for spec, candidate in members]
    for a, b in zip(together, alone):
        assert a.outcome == b.outcome == "completed"
        assert a.val_losses == b.val_losses and a.steps == b.steps
        assert a.optimizer_state_bytes == b.optimizer_state_bytes


def test_a_rung_stops_the_worse_and_the_rest_train_to_the_end(blobs):
    setup = _setup(blobs)
    members = [(get_spec(o), Candidate(o, {**get_spec(o).defaults, "lr": lr})) for o, lr in MEMBERS]
    seen = []

    def keep_one_at_epoch_2(epoch, records):
        seen.append((epoch, sorted(records)))
        if epoch != 2:
            return set()
        best = min(records, key=lambda i: records[i].val_loss)
        return set(records) - {best}

    result = train_interleaved(setup, members, seed=0, group_stop=keep_one_at_epoch_2)
    assert [len(m.epochs) for m in result].count(4) == 1 and sorted(len(m.epochs) for m in result) == [2, 2, 4]
    assert sorted(m.outcome for m in result) == ["completed", "pruned", "pruned"]
    assert seen[:2] == [(1, [0, 1, 2]), (2, [0, 1, 2])] and all(len(ids) == 1 for _, ids in seen[2:])


def test_ctrl_c_in_a_race_keeps_every_members_measurement_so_far(blobs):
    setup = _setup(blobs)
    members = [(get_spec(o), Candidate(o, {**get_spec(o).defaults, "lr": lr})) for o, lr in MEMBERS]
    calls = {"n": 0}

    def interrupt_in_the_second_epoch_of_the_second(record):
        calls["n"] += 1
        if calls["n"] == 5:  # member 1's second epoch (3 members, epoch 1 each, then member 0, then member 1)
            raise KeyboardInterrupt
        return False

    with pytest.raises(GroupInterrupted) as stopped:
        train_interleaved(setup, members, seed=0, on_epoch=[interrupt_in_the_second_epoch_of_the_second] * 3)
    lengths = [len(m.epochs) for m in stopped.value.measurements]
    assert lengths == [2, 2, 1] and all(m.outcome == "interrupted" for m in stopped.value.measurements)
