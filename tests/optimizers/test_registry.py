from __future__ import annotations

import pytest
import torch

from autoopt.optimizers import registry
from autoopt.optimizers.registry import get_spec, list_optimizers, register_optimizer, resolve_specs
from autoopt.optimizers.spec import LogUniform, OptimizerSpec, dense_state
from autoopt.training.loop import optimizer_state_bytes

SHIPPED = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "radam",
           "adamax", "adadelta", "adafactor", "muon"]


class SmallNet(torch.nn.Module):
    """Conv (4-D weight), linear (2-D) and biases (1-D): every state-size rule is exercised."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3)
        self.fc = torch.nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def test_every_required_optimizer_is_shipped():
    assert set(SHIPPED) <= set(list_optimizers())


@pytest.mark.parametrize("name", list_optimizers())
def test_each_entry_builds_steps_and_its_state_size_is_exact(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    model = SmallNet()
    before = [p.detach().clone() for p in model.parameters()]
    opt = spec.build(model.parameters(), spec.defaults)
    if spec.train_eval_modes:  # Schedule-Free: steps only in train mode, as the training loop sets it
        opt.train()
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 1, 4, 4)).pow(2).mean().backward()
        opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "step changed nothing"
    assert optimizer_state_bytes(opt) == spec.predict_state_bytes(list(model.parameters()), spec.defaults)


@pytest.mark.parametrize("name", list_optimizers())
def test_defaults_lie_inside_the_search_space(name):
    spec = get_spec(name)
    for dim in spec.space:
        assert dim.low <= spec.defaults[dim.name] <= dim.high


def _theta_after(name: str, hparams: dict, steps: int) -> list[float]:
    """Minimize f(θ) = θ² − 2θ + 1 from θ = 0 and return θ after each step."""
    theta = torch.zeros(1, requires_grad=True)
    opt = get_spec(name).build([theta], hparams)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (theta**2 - 2 * theta + 1).sum().backward()
        opt.step()
        out.append(theta.item())
    return out


def test_sgd_update_rule_is_the_textbook_one():
    assert _theta_after("sgd", {"lr": 0.1}, 3) == pytest.approx([0.2, 0.36, 0.488])


def test_momentum_update_rule_is_the_textbook_one():
    assert _theta_after("momentum", {"lr": 0.1, "momentum": 0.9}, 2) == pytest.approx([0.2, 0.54])


def test_adam_update_rule_is_kingma_and_ba():
    assert _theta_after("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, 2) == pytest.approx(
        [0.0100, 0.0200], abs=1e-4)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown optimizer\(s\) \['adamm'\].*'adam'"):
        resolve_specs(["adam", "adamm"])


def test_an_argument_the_optimizer_does_not_take_is_an_error_not_dropped():
    with pytest.raises(ValueError, match=r"does not accept \['momentum'\]"):
        get_spec("adam").build(torch.nn.Linear(2, 1).parameters(), {"lr": 1e-3, "momentum": 0.9})


def test_muon_puts_matrices_on_muon_and_the_rest_on_adamw():
    opt = get_spec("muon").build(torch.nn.Linear(3, 2).parameters(), get_spec("muon").defaults)
    kinds = {type(o).__name__: [tuple(p.shape) for g in o.param_groups for p in g["params"]] for o in opt._inner}
    assert kinds == {"Muon": [(2, 3)], "AdamW": [(2,)]}
    assert len(opt.param_groups) == 2  # one optimizer to the outside


def test_register_a_custom_optimizer_and_its_space(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # keep the global registry clean
    spec = OptimizerSpec(name="test-asgd", family="sgd", optimizer_class=torch.optim.ASGD,
                         space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.01},
                         state_bytes=dense_state(2, 3))
    register_optimizer(spec, replace=True)
    assert resolve_specs(["test-asgd"]) == [spec]
    with pytest.raises(ValueError, match="already registered"):
        register_optimizer(spec)


def test_a_spec_with_an_argument_its_class_rejects_fails_at_registration():
    with pytest.raises(ValueError, match="does not accept"):
        OptimizerSpec(name="bad", family="sgd", optimizer_class=torch.optim.SGD,
                      space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.1, "beta1": 0.9},
                      state_bytes=dense_state(0))


def test_a_class_given_by_path_is_imported_and_checked_when_first_read(monkeypatch):
    spec = OptimizerSpec(name="path-asgd", family="sgd", optimizer_class="torch.optim:ASGD",
                         space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.01}, state_bytes=dense_state(1, 3))
    assert spec.optimizer_class is torch.optim.ASGD
    assert type(spec.build(torch.nn.Linear(2, 1).parameters(), {"lr": 0.1})) is torch.optim.ASGD
    bad = OptimizerSpec(name="bad-path", family="sgd", optimizer_class="torch.optim:SGD",
                        space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.1, "beta1": 0.9},
                        state_bytes=dense_state(0))
    with pytest.raises(ValueError, match="does not accept"):
        bad.optimizer_class
    missing = OptimizerSpec(name="gone", family="sgd", optimizer_class="no_such_package:Opt",
                            space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.1}, state_bytes=dense_state(0))
    with pytest.raises(ValueError, match=r"optimizer 'gone': its class 'no_such_package:Opt' cannot be imported"):
        missing.optimizer_class
    with pytest.raises(ValueError, match=r"'torch.optim.SGD' is not a class path; write 'module:QualName'"):
        OptimizerSpec(name="dots", family="sgd", optimizer_class="torch.optim.SGD",
                      space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.1}, state_bytes=dense_state(0))


def test_state_rules_give_the_same_bytes_for_shape_stand_ins_as_for_tensors():
    from autoopt.optimizers.spec import ParameterShape

    for name in list_optimizers():
        spec = get_spec(name)
        for shape in [(3, 5), (7,)]:
            assert spec.predict_state_bytes([ParameterShape(shape)], spec.defaults) == \
                spec.predict_state_bytes([torch.empty(shape)], spec.defaults)


def test_the_learning_rate_free_optimizers_are_registered_where_installed():
    pytest.importorskip("schedulefree")
    pytest.importorskip("prodigyopt")
    assert {"schedulefree_adamw", "prodigy"} <= set(list_optimizers())
    assert get_spec("schedulefree_adamw").train_eval_modes and not get_spec("prodigy").train_eval_modes
    assert {s.name for s in resolve_specs(None)} >= {"schedulefree_adamw", "prodigy"}  # the default candidates


def test_training_settings_are_accepted_with_any_optimizer_and_never_passed_to_it():
    opt = get_spec("sgd").build(torch.nn.Linear(2, 1).parameters(),
                                {"lr": 0.1, "schedule": "cosine", "warmup_fraction": 0.1, "clip_norm": 1.0})
    assert type(opt) is torch.optim.SGD and "schedule" not in opt.defaults
    with pytest.raises(ValueError, match=r"unknown schedule 'cosin'"):
        OptimizerSpec(name="bad", family="sgd", optimizer_class=torch.optim.SGD,
                      space=(LogUniform("lr", 1e-3, 1.0),), defaults={"lr": 0.1, "schedule": "cosin"},
                      state_bytes=dense_state(0))
