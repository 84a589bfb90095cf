"""Links into the MLflow UI, and the view a study's link opens: its comparison chart.

MLflow's UI keeps a shared view as an experiment tag (``mlflow.sharedViewState.<key>``, what its
"Share" button writes) and opens it from ``?viewStateShareKey=<key>``. Each study writes one, so that
its link opens straight on the answer, from a fresh browser too:

- the filter: the runs tagged ``autoopt.best_of_optimizer`` under this study's parent run: one per
  optimizer, the recommended run among them (named ``★ ... (recommended)``);
- sorted by ``best_val_loss`` (a sort other than by date also keeps MLflow from listing the parent run,
  which would add a legend entry without a line);
- one chart, ``val_loss`` by epoch, on a log axis, full width;
- ``compareRunsMode=CHART`` (the Chart view) and ``workflowType=machine_learning`` (MLflow 3 opens in
  its GenAI mode, whose experiment page shows no runs).

An MLflow too old for shared views opens the experiment's run list instead.

>>> comparison_path("1", "abc")
'#/experiments/1/runs?viewStateShareKey=autoopt-abc&compareRunsMode=CHART&workflowType=machine_learning'
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from . import runs

#: Where ``autoopt ui`` (and ``mlflow ui``) serves a local store's UI unless told otherwise.
LOCAL_UI = "http://127.0.0.1:5000"
SHARED_VIEW_TAG = "mlflow.sharedViewState."
#: The chart the view shows: one card, its own section, full width and tall.
_SECTION = "autoopt-comparison"


def share_key(parent_run_id: str) -> str:
    return f"autoopt-{parent_run_id}"


def comparison_filter(parent_run_id: str) -> str:
    """The run filter of the comparison: this study's runs that stand for their optimizer."""
    return f"tags.`{runs.BEST_TAG}` = 'true' and tags.`{runs.PARENT_TAG}` = '{parent_run_id}'"


def comparison_view(parent_run_id: str) -> dict[str, Any]:
    """The shared view state (MLflow's own format) of the comparison chart."""
    chart = {"uuid": f"{_SECTION}-val-loss", "type": "LINE", "metricSectionId": _SECTION,
             "metricKey": "val_loss", "selectedMetricKeys": ["val_loss"], "scaleType": "log",
             "xAxisKey": "step", "xAxisScaleType": "linear", "lineSmoothness": 0, "displayPoints": True,
             "deleted": False, "isGenerated": False, "runsCountToCompare": 100}
    section = {"uuid": _SECTION, "name": "validation loss: the recommended run (★) and the best of each other "
               "optimizer", "display": True, "isReordered": False, "columns": 1, "cardHeight": 560}
    return {"searchFilter": comparison_filter(parent_run_id), "orderByKey": "metrics.`best_val_loss`",
            "orderByAsc": True, "compareRunCharts": [chart], "compareRunSections": [section],
            "hideEmptyCharts": True, "chartsSearchFilter": ""}


def comparison_view_tag(parent_run_id: str) -> tuple[str, str]:
    """(key, value) of the experiment tag that holds the comparison view."""
    return SHARED_VIEW_TAG + share_key(parent_run_id), json.dumps(comparison_view(parent_run_id))


def comparison_path(experiment_id: str, parent_run_id: str) -> str:
    """The comparison chart's address inside the UI (a link in a run's description)."""
    query = urllib.parse.urlencode({"viewStateShareKey": share_key(parent_run_id), "compareRunsMode": "CHART",
                                    "workflowType": "machine_learning"})
    return f"#/experiments/{experiment_id}/runs?{query}"


def run_path(experiment_id: str, run_id: str) -> str:
    """A run's page inside the UI.

    >>> run_path("1", "abc")
    '#/experiments/1/runs/abc'
    """
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def ui_address(tracking_uri: str) -> str:
    """Where a person opens the UI of ``tracking_uri``: the server itself, else ``autoopt ui``'s address.

    >>> ui_address("http://10.0.0.2:5000/"), ui_address("sqlite:///mlflow.db")
    ('http://10.0.0.2:5000', 'http://127.0.0.1:5000')
    """
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def comparison_link(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """The whole link printed at the end of a study and kept on its parent run."""
    return f"{ui_address(tracking_uri)}/{comparison_path(experiment_id, parent_run_id)}"


def link_of_study(tracking_uri: str, parent_run_id: str, timeout: int = 5) -> str | None:
    """The comparison link of a recorded study, its experiment read from the store (None when the store
    does not answer within ``timeout`` seconds, or has no such run)."""
    import os

    from mlflow import MlflowClient

    from .calls import quiet_calls

    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri[len("sqlite:///"):]):
        return None  # no such store: asking would create it (and build MLflow's schema, 10-20 s)
    try:
        with quiet_calls(tracking_uri, timeout, retries=0):
            experiment_id = MlflowClient(tracking_uri).get_run(parent_run_id).info.experiment_id
    except Exception:  # a link is a convenience: no store, no link
        return None
    return comparison_link(tracking_uri, experiment_id, parent_run_id)
