"""Default training is pinned: constant lr, no clipping, no autocast, the same batches and the same loss.

The benchmark's cached results depend on the training loop's behaviour with default settings, so
new training features (schedules, clipping, mixed precision, model outputs of other kinds) must
leave it bit-for-bit unchanged. Two pins: the losses the loop produced before those features were
added (captured on torch 2.13 CPU; compared to 1e-6 so that another CPU's rounding cannot fail
them), and a plain reference loop written here, which the default loop must match exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import mlp
from torch.utils.data import DataLoader, TensorDataset

from autoopt.optimizers.registry import get_spec
from autoopt.records import Candidate
from autoopt.training.evaluation import evaluate
from autoopt.training.intake import prepare_data
from autoopt.training.loop import train_candidate
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task

#: (data kind, optimizer, seed) -> (train losses, val losses, initial val loss, steps) of the loop
#: before schedules, clipping, mixed precision and model-output handling existed.
BEFORE = {
    ("tensors", "adam", 0): ([0.8276079495747884, 0.5059440930684408, 0.36275362968444824],
                             [0.5721660852432251, 0.40246880054473877, 0.3154950539271037], 1.0201719601949055, 18),
    ("tensors", "adam", 1): ([0.6670308113098145, 0.395615816116333, 0.2591191331545512],
                             [0.4406960805257161, 0.31662968794504803, 0.2525860667228699], 0.7209378083546957, 18),
    ("tensors", "momentum", 0): ([0.7632863521575928, 0.3491288423538208, 0.19938562313715616],
                                 [0.38194302717844647, 0.26679110527038574, 0.2116797169049581], 1.0201719601949055, 18),
    ("tensors", "momentum", 1): ([0.6264616250991821, 0.2516369620958964, 0.14446351925532022],
                                 [0.3476479450861613, 0.25161198774973553, 0.21941796938578287], 0.7209378083546957, 18),
    ("loader", "adam", 0): ([0.8429820537567139, 0.512374480565389, 0.3621244430541992],
                            [0.625633160273234, 0.4493571917215983, 0.3469141324361165], 1.0178772608439128, 18),
    ("loader", "adam", 1): ([0.659850001335144, 0.4006425142288208, 0.27139053742090863],
                            [0.5355535745620728, 0.35999488830566406, 0.25926289955774945], 0.8502740859985352, 18),
    ("loader", "momentum", 0): ([0.769521951675415, 0.33569812774658203, 0.21463904778162637],
                                [0.4758748610814412, 0.24504282077153525, 0.14391625920931497], 1.0178772608439128, 18),
    ("loader", "momentum", 1): ([0.6172952651977539, 0.26058022181193036, 0.15506118535995483],
                                [0.38160645961761475, 0.2240299383799235, 0.15405113498369852], 0.8502740859985352, 18),
}
PARAMS = {"adam": {"lr": 1e-2}, "momentum": {"lr": 0.05, "momentum": 0.9}}


def _setup(kind: str, blobs) -> TrainingSetup:
    X, y = blobs
    data = (X, y) if kind == "tensors" else DataLoader(
        TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=16, shuffle=True)
    model = mlp(4, 3)
    split = prepare_data(data)
    return TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 3, 16, seed=0)


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_default_training_gives_the_losses_it_gave_before(key, blobs):
    kind, name, seed = key
    m = train_candidate(_setup(kind, blobs), get_spec(name), Candidate(name, PARAMS[name]), seed=seed)
    train, val, initial, steps = BEFORE[key]
    assert [e.train_loss for e in m.epochs] == pytest.approx(train, rel=1e-6, abs=0)
    assert m.val_losses == pytest.approx(val, rel=1e-6, abs=0)
    assert m.initial_val_loss == pytest.approx(initial, rel=1e-6, abs=0) and m.steps == steps


def _reference(setup: TrainingSetup, name: str, seed: int) -> list[float]:
    """The loop as it was: zero_grad, loss of model(x) against y, backward, step; nothing else."""
    model = setup.fresh_model(seed)
    model.train()
    optimizer = get_spec(name).build([p for p in model.parameters() if p.requires_grad], PARAMS[name])
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(setup.epochs):
        total, count = torch.zeros(()), 0
        for xb, yb in setup.split.train.batches(setup.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            loss = setup.task.loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach().float() * len(xb)
            count += len(xb)
        out += [float(total) / count, evaluate(model, setup.split.val, setup.task)[0]]
    return out


@pytest.mark.parametrize("kind", ["tensors", "loader"])
def test_default_training_matches_a_plain_loop_bit_for_bit(kind, blobs):
    setup = _setup(kind, blobs)
    for name in PARAMS:
        m = train_candidate(setup, get_spec(name), Candidate(name, PARAMS[name]), seed=0)
        measured = [v for e in m.epochs for v in (e.train_loss, e.val_loss)]
        expected = _reference(setup, name, 0)
        assert measured == expected and all(math.isfinite(v) for v in measured)
