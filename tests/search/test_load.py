"""A study decides the same on a busy machine as on a quiet one: its budget counts epochs, its
tie-breaks count epochs, nothing it decides is timed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import mlp

import autoopt


def _study(data, budget: float) -> tuple[list[tuple], tuple]:
    report = autoopt.tune(mlp(4, 3), data, optimizers=["adam", "sgd", "momentum", "rmsprop"], budget=budget,
                          epochs=3, tracking=False, verbose=False, seed=0)
    trials = report.trials.sort_values(["config", "seed", "number"])
    listed = [(r.config, r.seed, r.purpose, r.outcome, r.epochs) for r in trials.itertuples()]
    rec = report.recommendation
    return listed, (rec.optimizer, round(rec.params["lr"], 12), round(rec.val_loss, 9))


@pytest.mark.parametrize("budget", [2, 5])
def test_the_same_study_beside_busy_processes_trains_the_same_trials_and_recommends_the_same(blobs, budget):
    quiet = _study(blobs, budget)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = _study(blobs, budget)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert loaded == quiet
