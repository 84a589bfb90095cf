"""Forked workers die with their parent: a real process, a real SIGKILL, /proc polled with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import poll

import autoopt
from autoopt.study.workers import can_fork

pytestmark = pytest.mark.skipif(not (can_fork() and Path("/proc/self/stat").exists()),
                                reason="needs fork and /proc (Linux)")

#: A study that keeps two forked workers busy for minutes unless they are stopped.
LONG_STUDY = """
import sys, torch, autoopt
g = torch.Generator().manual_seed(0)
X = torch.randn(400, 8, generator=g)
y = (X[:, 0] > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
# no line search: the portfolio, then one long sampled phase, so the workers found are the ones that would train on
autoopt.tune(model, (X, y), optimizers=["sgd", "adam"], n_trials=400, epochs=10, batch_size=8, n_jobs=2, study_name="orphans",
             storage=sys.argv[1], tracking=len(sys.argv) > 2, tracking_uri=(sys.argv + [None])[2], verbose=False,
             seeds=1, pruner="none",
             refine_lr=False)
"""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie has exited, only not reaped yet


def stored_trials(storage: str) -> int:
    """Trials in the study's storage (0 before the study exists)."""
    import optuna

    try:
        return len(optuna.load_study(study_name="orphans", storage=storage).trials)
    except Exception:  # no database or no study yet
        return 0


def recorders_of(pids: list[int]) -> list[int]:
    """The MLflow recorder processes these processes started."""
    return [c for pid in pids for c in children_of(pid)
            if b"transport import serve" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.parametrize("tracked", [False, True])
def test_no_worker_survives_its_parent_killed(tmp_path, tracked):
    """Tracked: each worker's MLflow recorder ends with it too (before, they lived up to 35 s on)."""
    if tracked:
        pytest.importorskip("mlflow")
    script = tmp_path / "study.py"
    script.write_text(LONG_STUDY)
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent),
           "AUTOOPT_MLFLOW_FLUSH_SECONDS": "0.2"}
    tracking = [f"sqlite:///{tmp_path / 'mlflow.db'}"] if tracked else []
    parent = subprocess.Popen([sys.executable, str(script), f"sqlite:///{tmp_path / 's.db'}", *tracking], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        storage = f"sqlite:///{tmp_path / 's.db'}"
        assert poll(lambda: stored_trials(storage) >= 3, timeout=120), "the study never got to its search"
        workers = poll(lambda: (lambda c: c if len(c) >= 2 else None)(
            [w for w in children_of(parent.pid) if w not in recorders_of([parent.pid])]), timeout=30) or []
        assert len(workers) == 2, f"the study never forked its 2 workers: {parent.poll()} " + (
            parent.stderr.read().decode() if parent.poll() is not None else "")
        assert all(alive(w) for w in workers)
        if tracked:  # each worker's own recorder, and the parent's
            recorders = poll(lambda: (lambda r: r if len(r) == 2 else None)(recorders_of(workers)), timeout=60)
            assert recorders, "the workers never started their MLflow recorders"
            workers = workers + recorders + recorders_of([parent.pid])
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [w for w in workers if alive(w)]
        assert survivors == [], f"workers or recorders {survivors} outlived their parent by 5 s"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:  # only if the test failed: do not leave our own workers training
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
