"""Crash-safe resume: a real process SIGKILLed mid-trial, then the same command again.

0 finished trials lost, the killed trial re-run once with the same params and purpose, 0 RUNNING left.
The heartbeat is shortened to 1 s (grace 3 s) through AUTOOPT_HEARTBEAT_SECONDS; every wait polls the
storage with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import autoopt
from autoopt import search

STUDY = """
import sys, torch, autoopt
g = torch.Generator().manual_seed(0)
X = torch.randn(400, 8, generator=g)
y = (X[:, 0] + X[:, 1] > 0).long()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
autoopt.tune(model, (X, y), optimizers=["sgd", "adam"], n_trials=4, epochs=8, batch_size=8, seeds=1,
             pruner="none", storage=sys.argv[1], study_name="resume", tracking=False, verbose=False)
"""


def poll(condition, timeout: float, interval: float = 0.05):
    """condition()'s first truthy value within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


def load(storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="resume", storage=search.open_storage(storage))
    except Exception:  # not created yet
        return None


def trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    study = load(storage)
    return study.get_trials(deepcopy=False) if study else []


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume_loses_nothing_and_reruns_the_killed_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOOPT_HEARTBEAT_SECONDS", "1")  # this process judges staleness by the same grace
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    (tmp_path / "study.py").write_text(STUDY)
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent),
           "AUTOOPT_HEARTBEAT_SECONDS": "1"}
    command = [sys.executable, str(tmp_path / "study.py"), storage]
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def running_after_a_finished_one():
            now = trials(storage)
            done = [t for t in now if t.state.is_finished()]
            # mid-trial: it has reported an epoch and has several left, so it is still running when the kill lands
            running = [t for t in now if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 4]
            return (done, running[0]) if done and running else None

        found = poll(running_after_a_finished_one, timeout=120)
        assert found, f"no trial was ever running: {first.poll()} {first.stderr.read().decode()[-2000:] if first.poll() is not None else ''}"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    before = {t.number: (t.state, t.params, t.value) for t in trials(storage) if t.state.is_finished()}
    killed = next(t for t in trials(storage) if t.number == found[1].number)
    assert killed.state == TrialState.RUNNING
    # the killed trial's heartbeat stops; once past the grace period the storage calls it stale
    assert poll(lambda: [t.number for t in search.stale_trials(load(storage))], timeout=30) == [killed.number]

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]

    after = trials(storage)
    by_number = {t.number: t for t in after}
    for number, (state, params, value) in before.items():  # 0 finished trials lost or changed
        assert (by_number[number].state, by_number[number].params, by_number[number].value) == (state, params, value)
    assert by_number[killed.number].state == TrialState.FAIL
    reruns = [t for t in after if t.user_attrs.get(search.RETRY_OF) == killed.number]
    assert len(reruns) == 1, [(t.number, t.user_attrs) for t in after]
    rerun = reruns[0]
    assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED) and rerun.params == killed.params
    assert rerun.user_attrs["purpose"] == killed.user_attrs["purpose"]
    assert rerun.user_attrs["seed"] == killed.user_attrs["seed"]
    assert [t.number for t in after if t.state == TrialState.RUNNING] == []
    assert not any(t.state == TrialState.WAITING and search.RETRY_OF in t.user_attrs for t in after)
    # a third run finds nothing to recover and queues no second re-run
    assert search.recover_stale_trials(load(storage)) == []
