"""Take the README's MLflow screenshots from a real study, a real server and a real browser.

1. start ``mlflow server`` on 127.0.0.1 (a temporary sqlite store), 2. run a study on scikit-learn's
digits (the README's Python example: 5 optimizers, 10 epochs), 3. open the MLflow UI in headless
Chromium (Debian's ``chromium``, driven by Playwright) and save:

- ``docs/mlflow-best-of-optimizer.png``: the experiment's run list filtered by
  ``tags.autoopt.best_of_optimizer = "true"``, in the Chart view: one ``val_loss`` curve per optimizer;
- ``docs/mlflow-parent-run.png``: the study's parent run, whose description explains the choice.

    pip install playwright          # the Python package only: the browser is the system's chromium
    python docs/screenshots.py      # about a minute on 2 cores; CHROMIUM=/path/to/chromium to override
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "benchmarks"))

from tracking_overhead import start_server  # noqa: E402  (the same local server the benchmark measures)

FILTER = 'tags.autoopt.best_of_optimizer = "true"'


def run_study(uri: str):
    import torch
    from sklearn.datasets import load_digits

    import autoopt
    from autoopt.tracking.mlflow.transport import wait_for_background

    X, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    # the README's example with a budget of 12 runs: every optimizer's portfolio entry trains to the end,
    # so the chart has a curve per optimizer to compare
    report = autoopt.tune(model, (X / 16, y), epochs=10, optimizers=["sgd", "momentum", "adam", "adamw", "rmsprop"],
                          budget=12, study_name="digits-mlp", tracking_uri=uri, verbose=False)
    assert wait_for_background(120), "the study's charts were not uploaded within 120 s"
    print(report.recommendation.explanation)
    return report


def screenshots(uri: str, report) -> None:
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    experiment = MlflowClient(uri).get_run(report.parent_run_id).info.experiment_id
    runs_url = (f"{uri}/#/experiments/{experiment}/runs?"
                + urllib.parse.urlencode({"searchFilter": FILTER, "compareRunsMode": "CHART"}))
    parent_url = f"{uri}/#/experiments/{experiment}/runs/{report.parent_run_id}"
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(runs_url)
        page.get_by_text("matching runs").wait_for(timeout=60_000)
        _close_assistant(page)
        # the filter matches child runs, which the list shows nested under their parent: expand it
        page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
        page.get_by_placeholder("Search metric charts").fill("^val_loss$")  # a regex: that chart alone
        page.get_by_text("val_loss", exact=True).last.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)  # the chart's points arrive and animate in: nothing to poll for
        page.locator("button[data-component-id$='fullscreen_button_chartcard']").first.click()  # a big view
        page.wait_for_timeout(3000)
        page.screenshot(path=str(DOCS / "mlflow-best-of-optimizer.png"))
        page.goto(parent_url)
        page.get_by_text("Show more").first.wait_for(timeout=60_000)
        _close_assistant(page)
        page.get_by_text("Show more").first.click()  # the whole description: the explanation
        page.get_by_text("Recommended runs").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(DOCS / "mlflow-parent-run.png"))
        browser.close()


def _close_assistant(page) -> None:
    """MLflow 3 opens its assistant panel beside the page; it is not what these pictures show."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="autoopt-docs-") as tmp:
        server, uri = start_server(Path(tmp))
        try:
            report = run_study(uri)
            screenshots(uri, report)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(f"wrote {DOCS / 'mlflow-best-of-optimizer.png'} and {DOCS / 'mlflow-parent-run.png'}")


if __name__ == "__main__":
    sys.exit(main())
