"""The README's path, walked the way a newcomer walks it: a real ``mlflow server``, a study, a fresh
headless Chromium opening the link the study printed, one click to the recommended run, its link to the
study's run, and optuna-dashboard on the study's storage (``docs/screenshots.py``, which takes the
README's pictures the same way on the README's example).

Skipped where there is no browser to drive: Debian's ``chromium`` and the ``playwright`` package
(``apt-get install chromium``, ``pip install playwright``; never ``playwright install``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from conftest import mlp

import autoopt

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("playwright.sync_api", reason="pip install playwright (the package only) to walk the README")


def _screenshots():
    spec = importlib.util.spec_from_file_location("autoopt_docs_screenshots", ROOT / "docs" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docs():
    module = _screenshots()
    if module.chromium() is None:
        pytest.skip("no chromium: apt-get install chromium")
    if shutil.which("mlflow") is None:
        pytest.skip("the `mlflow` executable is not on PATH")
    return module


def test_the_printed_link_shows_the_recommended_curve_and_one_click_says_why(docs, blobs, tmp_path):
    from mlflow import MlflowClient

    from autoopt.tracking.compared import compared_trials
    from autoopt.tracking.mlflow.transport import wait_for_background

    server, uri = docs.start_server(tmp_path)
    try:
        storage = f"sqlite:///{tmp_path / 'walk.db'}"
        report = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam", "rmsprop"], n_trials=6, seeds=1, epochs=3,
                              batch_size=32, storage=storage, study_name="walk", tracking_uri=uri, verbose=False)
        assert wait_for_background(60)
        shown = compared_trials(report.trials, report.recommendation)
        seen = docs.walk(report, tmp_path / "pictures", expected_curves=len(shown), storage=storage)
        client = MlflowClient(uri)
        number = min(report.recommendation.trial_numbers)
        (run,) = client.search_runs([client.get_run(report.parent_run_id).info.experiment_id],
                                    f"tags.`autoopt.trial` = '{number}' and tags.`mlflow.parentRunId` = '{report.parent_run_id}'")
        history = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # the chart: one curve per optimizer, the recommended run's among them, named as the choice
    assert len(seen.curves) == len(shown) == len(report.trials["optimizer"].unique())
    assert seen.chosen_name == run.info.run_name and seen.chosen_name.startswith("★ ")
    (chosen,) = [name for name in seen.curves if name.startswith(seen.chosen_name)]
    assert seen.curves[chosen] == pytest.approx(history)  # its own curve, every epoch
    # one click from the chart: the run's page says which and why; its link leads to the whole record
    assert report.recommendation.explanation.splitlines()[1] in seen.chosen_description
    assert "Terms." in seen.parent_description and "Open the comparison chart" in seen.parent_description
    if seen.dashboard_text:  # optuna-dashboard is a dev dependency
        assert f"trial {number}:" in seen.dashboard_text
    for picture in seen.pictures:
        assert picture.read_bytes()[:4] == b"\x89PNG"
