"""Muon as its authors intend: hidden matrices only, torch's update, Newton-Schulz in a dtype the device
runs fast, and code a user can paste."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import autoopt
from autoopt.optimizers.muon import Muon, newton_schulz_dtype, orthogonalize
from autoopt.optimizers.param_roles import MUON_ROLES, muon_groups, parameter_roles
from autoopt.optimizers.registry import get_spec
from autoopt.training.loop import optimizer_state_bytes


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.pos = nn.Parameter(torch.randn(6, 8) * 0.1)
        layer = nn.TransformerEncoderLayer(8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x) + self.pos).mean(1))


class TiedLanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.hidden = nn.Linear(4, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight  # the output layer tied to the input embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.embed(x))))


def test_roles_of_an_mlp_a_cnn_a_transformer_a_gru_and_a_tied_head():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert parameter_roles(mlp) == {"0.weight": "input", "0.bias": "vector", "2.weight": "matrix",
                                    "2.bias": "vector", "4.weight": "output", "4.bias": "vector"}
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(16, 3))
    assert parameter_roles(cnn) == {"0.weight": "input", "0.bias": "vector", "1.weight": "vector",
                                    "1.bias": "vector", "2.weight": "conv", "2.bias": "vector",
                                    "4.weight": "output", "4.bias": "vector"}
    roles = parameter_roles(TinyTransformer())
    assert roles["embed.weight"] == "embedding" and roles["pos"] == "embedding"  # a positional table
    assert roles["head.weight"] == "output"
    assert roles["encoder.layers.0.self_attn.in_proj_weight"] == "matrix"
    assert roles["encoder.layers.0.linear1.weight"] == "matrix"
    gru = nn.ModuleDict({"rnn": nn.GRU(2, 5, batch_first=True), "head": nn.Linear(5, 1)})
    assert parameter_roles(gru)["rnn.weight_hh_l0"] == "recurrent" and parameter_roles(gru)["head.weight"] == "output"
    tied = parameter_roles(TiedLanguageModel())
    assert tied == {"embed.weight": "embedding", "hidden.weight": "matrix", "hidden.bias": "vector"}


def test_muon_gets_the_hidden_matrices_and_adamw_the_rest():
    model = TinyTransformer()
    muon, rest = muon_groups(model)
    roles = parameter_roles(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert muon["use_muon"] and not rest["use_muon"]
    assert {roles[names[id(p)]] for p in muon["params"]} <= MUON_ROLES
    assert {roles[names[id(p)]] for p in rest["params"]} == {"embedding", "output", "vector"}
    assert len(muon["params"]) + len(rest["params"]) == len(list(model.parameters()))
    optimizer = get_spec("muon").build(get_spec("muon").parameters_of(model), get_spec("muon").defaults)
    inner = {type(o).__name__: {id(p) for g in o.param_groups for p in g["params"]} for o in optimizer._inner}
    assert inner["Muon"] == {id(p) for p in muon["params"]}
    assert inner["AdamW"] == {id(p) for p in rest["params"]}


def test_the_state_size_rule_predicts_the_grouped_state_exactly():
    model = TinyTransformer()
    spec = get_spec("muon")
    optimizer = spec.build(spec.parameters_of(model), spec.defaults)
    model(torch.randint(0, 20, (4, 6))).sum().backward()
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == spec.predict_state_bytes(spec.parameters_of(model), spec.defaults)


def test_in_bfloat16_the_update_is_torchs_own_step_for_step():
    torch.manual_seed(0)
    a, b = torch.randn(6, 4, requires_grad=True), torch.randn(3, 7, requires_grad=True)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours = Muon([a, b], lr=0.05, weight_decay=0.1, momentum=0.9, ns_dtype=torch.bfloat16)
    torchs = torch.optim.Muon([a2, b2], lr=0.05, weight_decay=0.1, momentum=0.9)
    for step in range(3):
        for (x, y), opt in (((a, b), ours), ((a2, b2), torchs)):
            opt.zero_grad()
            ((x.sin() ** 2).sum() + (y.cos() * step).sum()).backward()
            opt.step()
    assert torch.equal(a, a2) and torch.equal(b, b2)


def test_float32_newton_schulz_orthogonalizes_and_a_conv_kernel_is_a_matrix():
    torch.manual_seed(0)
    g = torch.randn(16, 24)
    singular = torch.linalg.svdvals(orthogonalize(g, torch.float32))
    assert singular.min() > 0.5 and singular.max() < 1.5  # the quintic iteration's band, as torch's
    close = orthogonalize(g, torch.bfloat16).float()
    assert torch.allclose(orthogonalize(g, torch.float32), close, atol=0.05)  # bfloat16's rounding apart
    kernel = torch.randn(4, 3, 3, 3, requires_grad=True)
    opt = Muon([kernel], lr=0.1, ns_dtype=torch.float32)
    (kernel ** 2).sum().backward()
    before = kernel.detach().clone()
    opt.step()
    step = (before * (1 - 0.1 * 0.1) - kernel.detach()).reshape(4, -1) / 0.1
    assert torch.linalg.svdvals(step).max() < 1.5 and not torch.equal(before, kernel)
    with pytest.raises(ValueError, match="not: \\[\\(4,\\)\\]"):
        Muon([torch.zeros(4, requires_grad=True)])


def test_the_newton_schulz_dtype_is_chosen_once_per_process():
    assert newton_schulz_dtype("cuda") is torch.bfloat16
    cpu = newton_schulz_dtype("cpu")
    assert cpu in (torch.float32, torch.bfloat16) and newton_schulz_dtype("cpu") is cpu
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX"):  # no native bfloat16 matmul
        assert cpu is torch.float32


def test_a_muon_recommendation_is_code_a_user_can_paste(blobs):
    X, y = blobs
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    report = autoopt.tune(model, (X, y), optimizers=["muon"], epochs=2, n_trials=1, tracking=False, verbose=False)
    rec = report.recommendation
    assert rec.optimizer == "muon" and rec.muon_parameters == ["0.weight", "2.weight"]
    assert "Newton-Schulz iteration ran in" in rec.explanation
    scope = {"model": model, "torch": torch}
    exec(rec.code(), scope)  # noqa: S102 - the printed code, run as a user would paste it
    pasted = scope["optimizer"]
    built = rec.build(model)
    for a, b in zip(pasted._inner, built._inner):
        assert type(a) is type(b) and [p for g in a.param_groups for p in g["params"]] == \
            [p for g in b.param_groups for p in g["params"]]
    assert math.isclose(pasted._inner[0].param_groups[0]["lr"], rec.params["lr"], rel_tol=1e-3)


def test_the_environment_pins_the_newton_schulz_dtype_for_every_device(monkeypatch):
    choose = newton_schulz_dtype.__wrapped__  # the per-process cache would hide the variable
    monkeypatch.setenv("AUTOOPT_NEWTON_SCHULZ_DTYPE", "float32")
    assert choose("cuda") is torch.float32 and choose("cpu") is torch.float32
    monkeypatch.setenv("AUTOOPT_NEWTON_SCHULZ_DTYPE", "bfloat16")
    assert choose("cpu") is torch.bfloat16
    monkeypatch.setenv("AUTOOPT_NEWTON_SCHULZ_DTYPE", "half")
    with pytest.raises(ValueError, match="'half'.*'float32' or 'bfloat16'"):
        choose("cpu")
