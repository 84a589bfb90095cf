"""Real models and real training: outputs of every shape, dict and tuple batches, step_fn,
schedules, clipping, bf16 autocast, learning-rate-free optimizers, search-space overrides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import mlp
from torch.utils.data import DataLoader, Dataset, TensorDataset

import autoopt
from autoopt.optimizers.registry import get_spec
from autoopt.optimizers.schedules import TrainingSettings, build_scheduler
from autoopt.records import Candidate
from autoopt.training.intake import prepare_data
from autoopt.training.loop import train_candidate
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task


@dataclass
class SequenceClassifierOutput:
    """What a Hugging Face model returns: an object with ``loss`` (when given labels) and ``logits``."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class TinyTextClassifier(torch.nn.Module):
    """A Hugging Face-style model: keyword inputs, ``labels=`` optional, its own loss, an output object."""

    def __init__(self, vocab: int = 20, classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, 8)
        self.head = torch.nn.Linear(8, classes)

    def forward(self, input_ids, attention_mask, labels=None):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.head(pooled)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss, logits)


class TokenDataset(Dataset):
    """Sequences whose label is whether token 1 occurs more often than token 2; dict items."""

    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 4, (n, 6), generator=g)
        self.mask = torch.ones(n, 6, dtype=torch.long)
        self.labels = ((self.ids == 1).sum(1) > (self.ids == 2).sum(1)).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def _setup(model, data, epochs=3, **kwargs) -> TrainingSetup:
    split = prepare_data(data, raw_batches="step_fn" in kwargs)
    task = infer_task(model, split, **kwargs)
    return TrainingSetup(model, split, task, torch.device("cpu"), epochs, 16, seed=0)


def test_a_hugging_face_style_model_trains_on_its_own_loss_from_dict_batches():
    loader = DataLoader(TokenDataset(), batch_size=16, shuffle=True)
    setup = _setup(TinyTextClassifier(), loader, epochs=4)
    assert setup.task.kind == "model" and setup.task.target_keyword == "labels"
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 0.05}), seed=0)
    assert m.outcome == "completed" and m.final_val_loss < m.initial_val_loss
    assert m.final_val_accuracy is not None and 0 <= m.final_val_accuracy <= 1  # from the logits


def test_tune_takes_the_hugging_face_style_model_and_a_dict_loader():
    loader = DataLoader(TokenDataset(), batch_size=16, shuffle=True)
    report = autoopt.tune(TinyTextClassifier(), loader, optimizers=["adam"], n_trials=2, epochs=2,
                          reevaluate_top=0, tracking=False, verbose=False)
    assert report.recommendation.optimizer == "adam"


@pytest.mark.parametrize("wrap", [
    lambda logits: (logits, "hidden"),  # a tuple: its first element
    lambda logits: {"logits": logits, "aux": 0},  # a dict with logits
    lambda logits: SequenceClassifierOutput(None, logits),  # an object with logits
])
def test_outputs_that_are_not_tensors_are_read_for_their_predictions(blobs, wrap):
    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(4, 3)

        def forward(self, x):
            return wrap(self.net(x))

    setup = _setup(Wrapped(), blobs)
    assert setup.task.kind == "multiclass"
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 1e-2}), seed=0)
    plain = train_candidate(_setup(mlp(4, 3), blobs), get_spec("adam"), Candidate("adam", {"lr": 1e-2}), seed=0)
    assert m.val_losses == plain.val_losses  # the same network, read through its wrapper


def test_output_fn_picks_the_prediction_and_an_unreadable_output_says_so(blobs):
    class Scores(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(4, 3)

        def forward(self, x):
            return {"scores": self.net(x)}

    with pytest.raises(ValueError, match=r"keys \['scores'\].*output_fn="):
        _setup(Scores(), blobs)
    assert _setup(Scores(), blobs, output_fn=lambda out: out["scores"]).task.kind == "multiclass"


def test_tuple_batches_of_several_inputs_call_the_model_with_each():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(80, 3, generator=g), torch.randn(80, 2, generator=g)
    y = (a.sum(1) + b.sum(1) > 0).long()

    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 2)

        def forward(self, x1, x2):
            return self.fc(torch.cat([x1, x2], dim=1))

    setup = _setup(TwoInputs(), DataLoader(TensorDataset(a, b, y), batch_size=16, shuffle=True))
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 0.05}), seed=0)
    assert m.outcome == "completed" and m.final_val_loss < m.initial_val_loss


def test_a_dict_batch_target_is_named_by_target_and_a_missing_one_says_how():
    class Items(TokenDataset):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {"input_ids": item["input_ids"], "attention_mask": item["attention_mask"], "y": item["labels"]}

    class NoLabels(TinyTextClassifier):
        def forward(self, input_ids, attention_mask):
            return super().forward(input_ids, attention_mask).logits

    loader = DataLoader(Items(), batch_size=16)
    with pytest.raises(ValueError, match=r"no target 'labels'.*target="):
        prepare_data(loader)
    split = prepare_data(loader, target="y")
    assert infer_task(NoLabels(), split).kind == "multiclass"


def test_step_fn_computes_the_loss_of_a_batch_of_any_shape(blobs):
    X, y = blobs
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=16, shuffle=True)
    calls = []

    def step(model, batch):
        calls.append(type(batch).__name__)
        x, target = batch
        return torch.nn.functional.cross_entropy(model(x), target)

    setup = _setup(mlp(4, 3), loader, step_fn=step)
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 1e-2}), seed=0)
    assert setup.task.kind == "step" and m.final_val_loss < m.initial_val_loss and calls
    assert m.final_val_accuracy is None


def test_a_cosine_schedule_with_warm_up_sets_each_steps_learning_rate(blobs):
    setup = _setup(mlp(4, 3), blobs, epochs=2)
    seen = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    spec = get_spec("sgd")
    import dataclasses
    recording = dataclasses.replace(spec, optimizer_class=Recording)
    train_candidate(setup, recording, Candidate("sgd", {"lr": 0.1, "schedule": "cosine", "warmup_fraction": 0.25}),
                    seed=0)
    total = 2 * 6  # 96 training samples in batches of 16, 2 epochs
    expected = [0.1 * TrainingSettings("cosine", 0.25).factor(s, total) for s in range(total)]
    assert seen == pytest.approx(expected) and seen[0] == pytest.approx(0.1 / 3) and seen[-1] < 0.01
    # the same schedule for a user, as a torch scheduler
    opt = torch.optim.SGD(mlp(4, 3).parameters(), lr=0.1)
    scheduler = build_scheduler(opt, TrainingSettings("cosine", 0.25), total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs == pytest.approx(expected)


def test_clipping_bounds_the_gradient_norm_and_changes_training(regression):
    setup = _setup(mlp(5, 1), regression, epochs=2)
    plain = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.05}), seed=0)
    clipped = train_candidate(setup, get_spec("sgd"), Candidate("sgd", {"lr": 0.05, "clip_norm": 0.01}), seed=0)
    assert clipped.val_losses != plain.val_losses
    assert clipped.initial_val_loss - clipped.final_val_loss < plain.initial_val_loss - plain.final_val_loss


def test_bf16_autocast_trains_on_cpu_and_fp16_needs_cuda(blobs):
    split = prepare_data(blobs)
    model = mlp(4, 3)
    setup = TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 2, 16, 0, precision="bf16")
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 1e-2}), seed=0)
    assert m.outcome == "completed" and m.final_val_loss < m.initial_val_loss
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        TrainingSetup(model, split, infer_task(model, split), torch.device("cpu"), 2, 16, 0, precision="fp16")


@pytest.mark.parametrize("name", ["schedulefree_adamw", "prodigy"])
def test_learning_rate_free_optimizers_train(blobs, name):
    pytest.importorskip("schedulefree" if name.startswith("schedulefree") else "prodigyopt")
    setup = _setup(mlp(4, 3), blobs)
    spec = get_spec(name)
    m = train_candidate(setup, spec, Candidate(name, dict(spec.defaults)), seed=0)
    assert m.outcome == "completed" and m.final_val_loss < m.initial_val_loss
    assert m.optimizer_state_bytes == spec.predict_state_bytes(list(setup.template.parameters()), spec.defaults)


def test_the_users_space_overrides_ranges_and_searches_schedules(blobs):
    space = {"adam": {"lr": [1e-3, 1e-2]}, "*": {"schedule": ["constant", "cosine"]}}
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd"], n_trials=5, epochs=2, space=space,
                          reevaluate_top=0, refine_lr=False, tracking=False, verbose=False)
    adam = report.trials[report.trials["optimizer"] == "adam"]
    assert ((adam["lr"] >= 1e-3) & (adam["lr"] <= 1e-2)).all()
    assert all(p["schedule"] in ("constant", "cosine") for p in report.trials["params"])
    with pytest.raises(ValueError, match=r"'lrr' is not a dimension of adam \(did you mean 'lr'\?\)"):
        autoopt.tune(mlp(4, 3), blobs, optimizers=["adam"], space={"adam": {"lrr": [1e-3, 1e-2]}})


def test_float_zero_one_targets_with_one_output_are_binary_with_a_note(capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    task = infer_task(mlp(4, 1), prepare_data((X, y)))
    assert task.kind == "binary" and "task='regression'" in task.note
    assert infer_task(mlp(4, 1), prepare_data((X, y)), task="regression").kind == "regression"
    onehot = np.eye(3, dtype=np.float32)[np.arange(80) % 3]
    task = infer_task(mlp(4, 3), prepare_data((X, onehot)))
    assert task.kind == "multiclass" and "one-hot" in task.note
    autoopt.tune(mlp(4, 1), (X, y), optimizers=["adam"], n_trials=1, epochs=1, reevaluate_top=0, tracking=False)
    assert "autoopt: note: the targets are floats that are all 0 or 1" in capsys.readouterr().err


def test_unclear_inputs_name_the_nearest_valid_value(blobs):
    import pandas as pd

    df = pd.DataFrame({"a": [0.0, 1.0] * 10, "label": [0, 1] * 10})
    with pytest.raises(ValueError, match=r"target='lable' is not a column.*did you mean 'label'"):
        prepare_data(df, target="lable")
    with pytest.raises(ValueError, match=r"optimizers=\['adam'\]"):
        autoopt.tune(mlp(4, 3), blobs, optimizers=torch.optim.Adam)
    with pytest.raises(ValueError, match="meta device"):
        with torch.device("meta"):
            model = mlp(4, 3)
        autoopt.tune(model, blobs)


def test_a_study_file_space_table_overrides_ranges_and_is_checked(tmp_path):
    from autoopt.cli.studyfile import StudyFileError, load_study_file

    path = tmp_path / "s.toml"
    path.write_text('recipe = "digits_mlp"\noptimizers = ["adam"]\n\n[space.adam]\nlr = [1e-4, 1e-1]\n'
                    'schedule = ["constant", "cosine"]\n')
    assert load_study_file(path).settings.space == {"adam": {"lr": [1e-4, 1e-1], "schedule": ["constant", "cosine"]}}
    path.write_text('recipe = "digits_mlp"\noptimizers = ["adam"]\n\n[space.sgd]\nlr = [1e-4, 1e-1]\n')
    with pytest.raises(StudyFileError, match=r"\['sgd'\] that are not candidates"):
        load_study_file(path)
