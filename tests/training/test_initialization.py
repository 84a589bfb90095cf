"""Another seed re-draws a freshly initialized model's weights and keeps a pretrained model's."""

from __future__ import annotations

import torch
from torch import nn

from autoopt.training.initialization import looks_freshly_initialized
from autoopt.training.intake import prepare_data
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task


def _setup(model: nn.Module, blobs) -> TrainingSetup:
    split = prepare_data(blobs)
    return TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), epochs=1, batch_size=16, seed=0)


def _pretrained(blobs) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    X, y = torch.as_tensor(blobs[0]), torch.as_tensor(blobs[1])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):  # trained well away from its draw
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model


def test_a_fresh_model_gets_other_weights_on_another_seed_attention_included(blobs):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, nhead=2, dim_feedforward=8, dropout=0.0, batch_first=True)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(4, 3))
    assert looks_freshly_initialized(model)
    setup = _setup(nn.Sequential(nn.Unflatten(1, (1, 4)), model), blobs)
    a, b = setup.fresh_model(0).state_dict(), setup.fresh_model(1).state_dict()
    for name in ("1.0.self_attn.in_proj_weight", "1.0.linear1.weight", "1.2.weight"):
        assert not torch.equal(a[name], b[name]), name  # torch's private draw of attention included
    assert all(torch.equal(x, y) for x, y in zip(setup.fresh_model(1).state_dict().values(), b.values()))


def test_a_pretrained_model_keeps_its_weights_on_every_seed(blobs):
    model = _pretrained(blobs)
    assert not looks_freshly_initialized(model)
    setup = _setup(model, blobs)
    for seed in (0, 1, 7):
        assert all(torch.equal(p, q) for p, q in zip(setup.fresh_model(seed).parameters(), model.parameters()))


def test_a_fresh_head_drawn_by_hand_on_a_fresh_body_counts_as_the_users_own_initialization():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    nn.init.normal_(model[2].weight, std=0.02)  # as Hugging Face draws a new head
    assert not looks_freshly_initialized(model)
