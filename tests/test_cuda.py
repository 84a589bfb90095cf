"""CUDA paths: device-resident data, peak-memory measurement, out-of-memory as a result.

CI has no GPU: every test here skips cleanly without one.
"""

from __future__ import annotations

import pytest
import torch
from conftest import mlp

import autoopt
from autoopt.optimizers.registry import get_spec
from autoopt.records import Candidate
from autoopt.training.intake import prepare_data
from autoopt.training.loop import train_candidate
from autoopt.training.setup import TrainingSetup
from autoopt.training.task import infer_task

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")


def test_in_memory_data_lives_on_the_device_once(blobs):
    split = prepare_data(blobs, device=CUDA)
    assert split.train.X.device.type == "cuda" and split.val.y.device.type == "cuda"


def test_peak_memory_is_measured_by_cuda_and_covers_the_state(blobs):
    model = mlp(4, 3).to(CUDA)
    split = prepare_data(blobs, device=CUDA)
    setup = TrainingSetup(model, split, infer_task(model, split), CUDA, 2, 16, seed=0)
    m = train_candidate(setup, get_spec("adam"), Candidate("adam", {"lr": 1e-2}), seed=0)
    assert m.outcome == "completed"
    assert m.peak_memory_bytes >= m.optimizer_state_bytes > 0


class Greedy(torch.nn.Module):
    """Asks for far more memory than any GPU has on the third training step of the study (the
    counter lives on the class, so it is shared by the copies that trials train)."""

    calls = 0

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        if self.training:
            Greedy.calls += 1
            if Greedy.calls == 3:
                torch.empty(1 << 46, dtype=torch.uint8, device=x.device)  # 64 TiB
        return self.fc(x)


def test_out_of_memory_is_a_result_and_the_study_goes_on(blobs):
    report = autoopt.tune(Greedy(), blobs, optimizers=["sgd", "adam"], n_trials=3, epochs=2,
                          reevaluate_top=0, device="cuda", tracking=False, verbose=False)
    outcomes = report.trials["outcome"].tolist()
    assert "oom" in outcomes
    assert torch.cuda.memory_allocated() < 1 << 30  # the failed trial's memory was given back


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_under_autocast_with_a_scaler_for_fp16(blobs, precision):
    model = mlp(4, 3).to(CUDA)
    split = prepare_data(blobs, device=CUDA)
    setup = TrainingSetup(model, split, infer_task(model, split), CUDA, 3, 16, seed=0, precision=precision)
    # clipping with fp16 unscales the gradients first; a schedule rides along
    candidate = Candidate("adam", {"lr": 1e-2, "clip_norm": 1.0, "schedule": "cosine", "warmup_fraction": 0.1})
    m = train_candidate(setup, get_spec("adam"), candidate, seed=0)
    assert m.outcome == "completed" and m.final_val_loss < m.initial_val_loss
    fp32 = TrainingSetup(model, split, setup.task, CUDA, 3, 16, seed=0)
    reference = train_candidate(fp32, get_spec("adam"), candidate, seed=0)
    assert m.val_losses != reference.val_losses  # autocast did run in lower precision
    assert abs(m.final_val_loss - reference.final_val_loss) < 0.1 * reference.initial_val_loss


def test_tune_takes_a_precision_on_cuda(blobs):
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam"], n_trials=2, epochs=2, reevaluate_top=0,
                          device="cuda", precision="bf16", tracking=False, verbose=False)
    assert report.recommendation.optimizer == "adam"


def test_every_optimizer_fused_on_cuda_matches_its_sequential_run(blobs):
    from autoopt.optimizers.registry import list_optimizers
    from autoopt.training.fused.loop import train_fused

    model = mlp(4, 3)
    split = prepare_data(blobs, device=CUDA)
    setup = TrainingSetup(model.to(CUDA), split, infer_task(model, split), CUDA, 2, 16, 0)
    members = [(get_spec(n), Candidate(n, dict(get_spec(n).defaults))) for n in list_optimizers()]
    fused = train_fused(setup, members, 0)
    for (spec, candidate), f in zip(members, fused):
        s = train_candidate(setup, spec, candidate, 0)
        assert f.outcome == s.outcome and f.steps == s.steps, spec.name
        assert f.val_losses == pytest.approx(s.val_losses, rel=1e-3, abs=1e-5), spec.name
        assert f.optimizer_state_bytes == s.optimizer_state_bytes, spec.name


def test_a_default_study_on_cuda_trains_its_portfolio_entries_in_one_fused_pass(blobs):
    from autoopt.study.trials import GROUP_SIZE_ATTR

    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "momentum", "sgd"], epochs=2, budget=3,
                          device="cuda", tracking=False, verbose=False)
    assert [t.user_attrs.get(GROUP_SIZE_ATTR) for t in report.study.trials] == [3, 3, 3]
    assert report.wall_seconds > 0 and report.cost == 3
