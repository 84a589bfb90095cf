"""Another seed re-draws a freshly initialized model's weights and keeps a pretrained model's; trained
weights are told from any fresh draw by their spectrum."""

from __future__ import annotations

import pytest
import torch
from conftest import trained_mlp
from torch import nn

from autoopt.training.initialization import looks_freshly_initialized, looks_trained, spectral_spike
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


def _fresh_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    hf_style = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 10))
    for layer in hf_style:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.02)  # as Hugging Face draws: not torch's default, not trained
    orthogonal = nn.Linear(32, 32)
    nn.init.orthogonal_(orthogonal.weight)
    return {
        "mlp": nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)),
        "encoder": nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2),
        "gru": nn.GRU(16, 32, 2),
        "cnn": nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3)),
        "hf_style": hf_style,
        "orthogonal": orthogonal,
    }


@pytest.mark.parametrize("name", list(_fresh_models()))
def test_no_fresh_draw_looks_trained_whatever_its_initializer(name):
    assert not looks_trained(_fresh_models()[name])


def test_a_few_steps_of_training_make_weights_look_trained(blobs):
    before = spectral_spike(trained_mlp(blobs, steps=0)[2].weight)
    model = trained_mlp(blobs)
    assert before < 1.0 < 1.2 < spectral_spike(model[2].weight)
    assert looks_trained(model)
    model[2].weight.requires_grad_(False)  # a frozen layer is not what the study fine-tunes
    assert not looks_trained(model)
