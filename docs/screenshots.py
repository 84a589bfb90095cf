"""Walk the README's path the way a newcomer does, from a real study to "which optimizer, and why", and
take the README's pictures on the way: a real ``mlflow server``, a fresh headless Chromium, optuna-dashboard.

1. start ``mlflow server`` on 127.0.0.1 (a temporary sqlite store), 2. run the README's Python example
on scikit-learn's digits (5 optimizers, 10 epochs, ``budget=12``; the study in a sqlite storage),
3. in a browser that has never seen MLflow (so it opens in MLflow 3's GenAI mode):

- open the link the study printed: ``docs/mlflow-comparison.png``, the comparison chart (the
  recommended run, named ``★ ... (recommended)``, beside the best run of each other optimizer);
- click the ★ run in the list (one click): ``docs/mlflow-recommended-run.png``, its page, whose
  description is the explanation;
- follow its link to the study's run: ``docs/mlflow-parent-run.png``, the whole record;
- open optuna-dashboard on the study's storage: ``docs/optuna-dashboard-study.png``, the study page with
  the recommendation among its user attributes;
- ``docs/val_loss_curves.png``: the chart the study attached to its run, as it was uploaded.

``walk`` returns what the pages showed (the chart's curves, the texts), so that
``tests/test_readme_path.py`` asserts the same path on a small study.

    pip install playwright          # the Python package only: the browser is the system's chromium
    python docs/screenshots.py      # about 2 minutes on 2 cores; CHROMIUM=/path/to/chromium to override
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "benchmarks"))

from tracking_overhead import start_server  # noqa: E402  (the same local server the benchmark measures)

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
PAGE_SECONDS = 90  # a page's slowest element on a busy 2-core machine


def chromium() -> str | None:
    """The system's Chromium, or None (then nothing here can run)."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def run_study(uri: str, storage: str):
    """The README's Python example with a budget of 12 runs: every optimizer's portfolio entry trains to
    the end, so the chart compares all five."""
    import torch
    from sklearn.datasets import load_digits

    import autoopt
    from autoopt.tracking.mlflow.transport import wait_for_background

    X, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    report = autoopt.tune(model, (X / 16, y), epochs=10, optimizers=["sgd", "momentum", "adam", "adamw", "rmsprop"],
                          budget=12, study_name="digits-mlp", storage=storage, tracking_uri=uri, verbose=False)
    assert wait_for_background(120), "the study's charts were not uploaded within 120 s"
    return report


@dataclass
class Walk:
    """What a person saw on the README's path."""

    link: str
    curves: dict[str, list[float]] = field(default_factory=dict)  # the comparison chart: run name -> val_loss
    chosen_name: str = ""  # the ★ run's name in the run list
    chosen_description: str = ""  # its page's text (the description is the explanation)
    parent_description: str = ""  # the study's run's page text
    dashboard_text: str = ""  # optuna-dashboard's study page ("" when not taken)
    pictures: list[Path] = field(default_factory=list)


def _close_assistant(page: Any) -> None:
    """MLflow 3 opens its assistant panel beside the page on a first visit; it is not what these show."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def _chart_curves(page: Any, expected: int) -> dict[str, list[float]]:
    """The comparison chart's curves once all ``expected`` are drawn: {legend name: y values}."""
    page.wait_for_function(
        """n => { const p = document.querySelector('.js-plotly-plot');
                  return p && p._fullData && p._fullData.length >= n &&
                         p.querySelectorAll('.scatterlayer .trace').length >= n; }""",
        arg=expected, timeout=PAGE_SECONDS * 1000)
    traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data"
                           ".map(t => [t.name, Array.from(t.y || [])])")
    return {name: [float(v) for v in y] for name, y in traces}


def walk(report: Any, out: Path, expected_curves: int, storage: str | None = None) -> Walk:
    """Follow the README from the printed link, in a fresh browser, saving a picture at each step."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    seen = Walk(link=report.mlflow_link)
    assert seen.link, "the study printed no MLflow link"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950})  # nothing remembered
        page = context.new_page()
        page.set_default_timeout(PAGE_SECONDS * 1000)
        # 1. the printed link: the comparison chart
        page.goto(seen.link)
        page.get_by_text("matching runs").wait_for()
        _close_assistant(page)
        seen.curves = _chart_curves(page, expected_curves)
        seen.pictures.append(out / "mlflow-comparison.png")
        page.screenshot(path=str(seen.pictures[-1]))
        # 2. one click: the ★ run in the list, whose description says why
        star = page.locator("a", has_text="★").first
        seen.chosen_name = star.inner_text().strip()
        star.click()
        page.get_by_text("The recommended configuration").first.wait_for()
        _close_assistant(page)
        more = page.get_by_text("Show more")
        if more.count():
            more.first.click()
        seen.chosen_description = page.inner_text("body")
        seen.pictures.append(out / "mlflow-recommended-run.png")
        page.screenshot(path=str(seen.pictures[-1]))
        # 3. its link to the study's run: the whole record (a description's links open a new tab)
        with context.expect_page() as opened:
            page.get_by_role("link", name="The study's run").first.click()
        parent = opened.value
        parent.set_default_timeout(PAGE_SECONDS * 1000)
        parent.get_by_text("Open the comparison chart").first.wait_for()
        _close_assistant(parent)
        more = parent.get_by_text("Show more")
        if more.count():
            more.first.click()
        parent.get_by_text("Terms.").first.wait_for()
        seen.parent_description = parent.inner_text("body")
        parent.set_viewport_size({"width": 1500, "height": 1250})
        seen.pictures.append(out / "mlflow-parent-run.png")
        parent.screenshot(path=str(seen.pictures[-1]))
        # 4. optuna-dashboard on the study's storage
        if storage is not None and shutil.which("optuna-dashboard"):
            seen.dashboard_text = _dashboard(context, storage, out / "optuna-dashboard-study.png")
            seen.pictures.append(out / "optuna-dashboard-study.png")
        browser.close()
    return seen


def _dashboard(context: Any, storage: str, picture: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([shutil.which("optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_SECONDS * 1000)
        for _ in range(PAGE_SECONDS * 5):  # until it listens (each try waits for its answer)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                page.wait_for_timeout(200)  # polling pace, not synchronisation: the loop ends on the answer
        page.goto(f"http://127.0.0.1:{port}/dashboard/studies/1")
        page.get_by_text("Study User Attributes").wait_for()
        page.get_by_text("autoopt:objective").wait_for()  # the card's first row: the grid is drawn
        card = page.get_by_text("Study User Attributes").locator("xpath=../..")
        while not card.get_by_text("autoopt:recommendation").count():  # the grid shows 5 rows a page
            card.get_by_label("next page", exact=True).click()
        card.get_by_text("autoopt:recommendation").wait_for()
        page.get_by_text("Best Trial").first.evaluate(  # the cards' titles in view, clear of the app bar
            """e => { e.scrollIntoView({block: 'start'});
                      let p = e.parentElement;
                      while (p && p.scrollHeight <= p.clientHeight) p = p.parentElement;
                      (p || document.scrollingElement).scrollBy(0, -90); }""")
        card.get_by_text("autoopt:recommendation").wait_for()
        page.screenshot(path=str(picture))
        return card.inner_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def save_uploaded_chart(report: Any, name: str, dest: Path) -> None:
    """A chart the study attached to its MLflow run, as uploaded."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        local = MlflowClient(report.tracking_uri).download_artifacts(report.parent_run_id, name, tmp)
        shutil.copyfile(local, dest)


def main() -> None:
    if chromium() is None:
        sys.exit("no chromium: apt-get install chromium (or set CHROMIUM=/path/to/chromium)")
    with tempfile.TemporaryDirectory(prefix="autoopt-docs-") as tmp:
        server, uri = start_server(Path(tmp))
        try:
            storage = f"sqlite:///{Path(tmp) / 'digits-mlp.db'}"
            report = run_study(uri, storage)
            print(report.recommendation.explanation)
            print(report.mlflow_link)
            seen = walk(report, DOCS, expected_curves=len(report.trials["optimizer"].unique()), storage=storage)
            save_uploaded_chart(report, "val_loss_curves.png", DOCS / "val_loss_curves.png")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    for path in seen.pictures + [DOCS / "val_loss_curves.png"]:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
