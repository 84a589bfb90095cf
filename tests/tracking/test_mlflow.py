"""The MLflow tracker against a real ``mlflow server`` on 127.0.0.1, read back through MlflowClient:
what the UI reads (the best-of-optimizer filter, step-0 summaries, finite values, names, statuses)
and what survives the server going away (a real kill, then the next run and ``autoopt sync``).

One server serves the whole module (it takes seconds to start); it is launched when the module
starts, so the tests that need no server run while it boots. Every study is tiny (a 4-16-3 MLP,
120 samples, 2-3 epochs) so that the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch
from conftest import mlp

import autoopt
from autoopt.optimizers import registry
from autoopt.optimizers.spec import LogUniform, OptimizerSpec, dense_state
from autoopt.records import Candidate, EpochRecord, Measurement, TrialRecord

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from autoopt import cli  # noqa: E402  (cli.main: the autoopt command)
from autoopt.recommendation.table import trials_table  # noqa: E402
from autoopt.tracking.mlflow.tracker import RUN_STATUS, MlflowTracker, TrackingWarning  # noqa: E402
from autoopt.tracking.mlflow.transport import wait_for_background  # noqa: E402

MLFLOW = shutil.which("mlflow")
TINY = dict(epochs=3, batch_size=32, verbose=False, seed=0)
ARTIFACTS = {"recommendation.json", "trials.csv", "val_loss_curves.png", "lr_sensitivity.png", "tradeoff.png"}
PER_EPOCH = {"train_loss", "val_loss", "val_accuracy", "epoch_seconds", "elapsed_seconds"}


# --- the server ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A real ``mlflow server`` process on 127.0.0.1 that a test can kill and start again (same port,
    same database), to make the server go away for real."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.log = open(self.root / "server.log", "ab")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner
        self.proc = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
             "--default-artifact-root", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health within {seconds} s:\n{self._log_tail()}")
            time.sleep(0.2)  # polling pace, not synchronisation: the loop ends on the answer

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn's worker is a child): gone, no goodbye."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def _log_tail(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module", autouse=True)
def _server_process(tmp_path_factory):
    """Start ``mlflow server`` at once (not waited for here) and stop it after the module."""
    if MLFLOW is None:
        yield None
        return
    server = _Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_server(_server_process) -> _Server:
    if _server_process is None:
        pytest.skip("the `mlflow` executable is not on PATH")
    _server_process.wait_ready()
    return _server_process


@pytest.fixture(scope="module")
def server(live_server) -> str:
    """The server's URI, once /health answers (bounded wait)."""
    return live_server.uri


# --- helpers --------------------------------------------------------------------------------------------

def _children(client: MlflowClient, parent_id: str, extra: str = "") -> list:
    experiment = client.get_run(parent_id).info.experiment_id
    query = f"tags.`mlflow.parentRunId` = '{parent_id}'" + (f" and {extra}" if extra else "")
    return client.search_runs([experiment], query, max_results=1000)


def _by_number(children: list) -> dict[int, object]:
    out: dict[int, object] = {}
    for run in children:
        number = int(run.data.tags["autoopt.trial"])
        assert number not in out, f"trial {number} has two runs"
        out[number] = run
    return out


def _trained_numbers(trials) -> list[int]:
    """The trials that get a run: all but the never-trained (a trial that failed at its first step
    did try to train, and is a FAILED run)."""
    tried = trials[trials["number"].notna() & ~trials["outcome"].isin(["eliminated", "cancelled", "infeasible"])]
    return sorted(int(n) for n in tried["number"])


def _record(number: int | None, optimizer: str = "sgd", outcome: str = "completed", epochs: int = 2) -> TrialRecord:
    records = [EpochRecord(e, 1.0 / e, 1.2 / e, 0.5, 0.01, 0.01 * e) for e in range(1, epochs + 1)]
    return TrialRecord(number, Candidate(optimizer, {"lr": 0.1}), "sgd", 0, "search",
                       Measurement(outcome, records, steps=4 * epochs, seconds=0.01 * epochs))


def _mlp_that_calls(action, at_step: int = 25) -> torch.nn.Module:
    """A 4-16-3 MLP that runs ``action()`` at its ``at_step``-th training forward pass (a few trials in,
    at 3 steps an epoch): the moment a test makes something go away mid-study."""
    steps = []  # shared by tune()'s deep copies of the model

    class CallsMidStudy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(4, 3)

        def forward(self, x):
            if torch.is_grad_enabled():
                steps.append(1)
                if len(steps) == at_step:
                    action()
            return self.net(x)

    return CallsMidStudy()


@pytest.fixture(scope="module")
def exotic_optimizers():
    """Optimizers that always diverge and always fail, so that every outcome has a trial."""

    class BrokenSGD(torch.optim.SGD):
        def step(self, closure=None):
            raise RuntimeError("this optimizer always fails")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        registry.register_optimizer(OptimizerSpec("test-huge-sgd", "sgd", torch.optim.SGD,
                                                  (LogUniform("lr", 1e3, 1e4),), {"lr": 5e3}, dense_state(0)))
        registry.register_optimizer(OptimizerSpec("test-broken", "sgd", BrokenSGD,
                                                  (LogUniform("lr", 1e-3, 1e-1),), {"lr": 1e-2}, dense_state(0)))
        yield


def _blobs():
    import numpy as np

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 4))
    y = np.arange(120) % 3
    return (centers[y] + rng.normal(0, 1, size=(120, 4))).astype(np.float32), y


@pytest.fixture(scope="module")
def tracked(server, exotic_optimizers, tmp_path_factory):
    """One small study recorded on the server, all its background work done: (report, client)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("tracked"))
        report = autoopt.tune(mlp(4, 3), _blobs(), optimizers=["adam", "sgd", "test-huge-sgd", "test-broken"],
                              n_trials=10, seeds=2, reevaluate_top=1, pruner="percentile", study_name="tracked",
                              tracking=True, tracking_uri=server, **TINY)
    assert wait_for_background(60)
    return report, MlflowClient(server)


# --- the tests that need no server run first, while it starts ------------------------------------------

def test_an_unreachable_server_is_an_error_before_any_training(blobs):
    forwards: list[bool] = []

    class Recorded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(4, 3)

        def forward(self, x):
            forwards.append(torch.is_grad_enabled())  # the list is shared by tune()'s deep copies
            return self.net(x)

    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="tracking=False") as error:
        autoopt.tune(Recorded(), blobs, optimizers=["sgd"], n_trials=1, tracking_uri=uri, **TINY)
    assert uri in str(error.value)
    assert time.monotonic() - start < 15  # no minutes of HTTP retries
    assert not any(forwards)  # at most the no-grad shape check ran: nothing trained
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the probe's settings were put back


def test_the_default_store_is_mlflow_db_in_the_working_directory(blobs, tmp_path, monkeypatch):
    """Also with forked workers: each opens its own connections to the sqlite file, and all of
    them write under the one parent run the main process created."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam"], n_trials=4, seeds=1, n_jobs=2,
                          study_name="local", **TINY)
    assert wait_for_background(60)
    assert (tmp_path / "mlflow.db").exists()
    assert report.tracking_uri == mlflow.get_tracking_uri() and report.tracking_uri.startswith("sqlite:")
    client = MlflowClient(report.tracking_uri)
    assert client.get_run(report.parent_run_id).info.run_name == "local"
    assert sorted(_by_number(_children(client, report.parent_run_id))) == _trained_numbers(report.trials)


def test_a_killed_recorder_process_costs_no_training_and_sync_writes_what_it_missed(blobs, tmp_path):
    """The recorder (the process that makes the MLflow calls) SIGKILLed mid-study: training goes on,
    one warning says so, and the next tune() of this process starts a new recorder."""
    from autoopt.tracking.mlflow import transport as mlflow_writer

    storage, uri = f"sqlite:///{tmp_path / 'study.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    kills_the_recorder = _mlp_that_calls(lambda: os.kill(mlflow_writer._RECORDER.process.pid, signal.SIGKILL))
    settings = dict(optimizers=["sgd", "adam"], seeds=1, pruner="none", refine_lr=False, storage=storage,
                    study_name="cut", tracking_uri=uri, n_trials=6, **TINY)
    with pytest.warns(TrackingWarning) as caught:
        report = autoopt.tune(kills_the_recorder, blobs, **settings)
    assert len(report.trials) == 6 and (report.trials["outcome"] == "completed").all()
    messages = [str(w.message) for w in caught]
    assert sum("recorder process exited (code -9)" in m for m in messages) == 1  # said once, when it died ...
    assert any(f"autoopt sync cut --storage {storage}" in m for m in messages)  # ... and how to backfill, at the end
    assert cli.main(["sync", "cut", "--storage", storage]) == 0
    client = MlflowClient(uri)
    runs = _by_number(_children(client, report.parent_run_id))
    assert sorted(runs) == list(range(6)) and all(r.info.status == "FINISHED" for r in runs.values())
    assert {a.path for a in client.list_artifacts(report.parent_run_id)} >= ARTIFACTS
    again = autoopt.tune(mlp(4, 3), blobs, **{**settings, "n_trials": 7})  # a new recorder, the same parent
    assert wait_for_background(60)
    assert again.parent_run_id == report.parent_run_id
    assert sorted(_by_number(_children(client, again.parent_run_id))) == list(range(7))


def test_studies_of_one_process_in_different_folders_each_get_their_own_default_store(blobs, tmp_path, monkeypatch):
    """One recorder serves every study of a process: a relative store is the study's folder's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    parents = {}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        report = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd"], n_trials=2, seeds=1, study_name=folder, **TINY)
        parents[folder] = report.parent_run_id
    assert wait_for_background(60)
    for folder, parent in parents.items():
        client = MlflowClient(f"sqlite:///{tmp_path / folder / 'mlflow.db'}")
        assert len(_children(client, parent)) == 2
        assert {a.path for a in client.list_artifacts(parent)} >= ARTIFACTS


# --- one study on the server: what the UI shows -----------------------------------------------------------

def test_the_best_of_optimizer_filter_gives_one_run_per_optimizer_the_recommended_one_among_them(tracked):
    """One filter shows the answer: the recommended run (named so, with the explanation as its
    description) beside the run the explanation names for every other optimizer."""
    from autoopt.tracking.compared import compared_trials

    report, client = tracked
    best = _children(client, report.parent_run_id, "tags.`autoopt.best_of_optimizer` = 'true'")
    trained = report.trials[report.trials["epochs"] > 0]
    assert sorted(r.data.params["optimizer"] for r in best) == sorted(trained["optimizer"].unique())
    assert len(trained["optimizer"].unique()) >= 3  # adam, sgd and the diverging one at least
    shown = compared_trials(report.trials, report.recommendation)
    assert {int(r.data.tags["autoopt.trial"]) for r in best} == set(shown["number"].astype(int))
    rec = report.recommendation
    chosen = [r for r in best if r.data.tags.get("autoopt.recommended") == "true"]
    assert len(chosen) == 1 and int(chosen[0].data.tags["autoopt.trial"]) == min(rec.trial_numbers)
    assert chosen[0].info.run_name.startswith("★ ") and chosen[0].info.run_name.endswith(" (recommended)")
    assert rec.explanation in chosen[0].data.tags["mlflow.note.content"]
    assert not any("★" in r.info.run_name for r in best if r is not chosen[0])
    colours = {r.data.params["optimizer"]: r.data.tags["mlflow.runColor"] for r in best}
    assert len(set(colours.values())) == len(colours)  # one colour per optimizer


def test_the_link_opens_the_studys_comparison_view(tracked):
    from autoopt.tracking.mlflow.links import comparison_view, share_key

    report, client = tracked
    parent = client.get_run(report.parent_run_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    link = parent.data.tags["autoopt.comparison_link"]
    assert link == report.mlflow_link
    assert link.startswith(f"{report.tracking_uri}/#/experiments/{experiment.experiment_id}/runs?")
    assert f"viewStateShareKey={share_key(report.parent_run_id)}" in link and "workflowType=machine_learning" in link
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{share_key(report.parent_run_id)}"])
    assert view == comparison_view(report.parent_run_id)
    assert view["compareRunCharts"][0]["scaleType"] == "log"
    found = client.search_runs([experiment.experiment_id], view["searchFilter"])  # the view's own filter
    assert {r.data.tags["autoopt.trial"] for r in found} == {
        r.data.tags["autoopt.trial"] for r in _children(client, report.parent_run_id, "tags.`autoopt.best_of_optimizer` = 'true'")}


def test_the_recommended_runs_are_tagged_and_named_on_the_parent_and_in_the_json(tracked, tmp_path):
    report, client = tracked
    rec = report.recommendation
    tagged = _children(client, report.parent_run_id, "tags.`autoopt.recommended` = 'true'")
    assert sorted(int(r.data.tags["autoopt.trial"]) for r in tagged) == sorted(rec.trial_numbers)
    parent = client.get_run(report.parent_run_id)
    ids = parent.data.tags["autoopt.recommended_run_ids"].split(",")
    assert sorted(ids) == sorted(r.info.run_id for r in tagged)
    local = client.download_artifacts(report.parent_run_id, "recommendation.json", str(tmp_path))
    saved = json.loads(Path(local).read_text())
    assert saved["optimizer"] == rec.optimizer and saved["run_ids"] == ids
    assert {a.path for a in client.list_artifacts(report.parent_run_id)} >= ARTIFACTS


def test_the_parent_holds_the_study_settings_and_explains_the_choice(tracked):
    report, client = tracked
    parent = client.get_run(report.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tracked"
    params = parent.data.params
    assert params and all(k.startswith("study.") for k in params)
    assert params["study.epochs"] == "3" and params["study.device"] == "cpu" and "study.version_torch" in params
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**[Open the comparison chart](#/experiments/")
    assert report.recommendation.explanation in note and "autoopt.best_of_optimizer = \"true\"" in note
    for run_id in parent.data.tags["autoopt.recommended_run_ids"].split(","):  # each run is a link
        assert f"/runs/{run_id})" in note
    assert parent.data.metrics["rec_val_loss"] == pytest.approx(report.recommendation.val_loss)
    # what a fresh seed is expected to reach sits beside it, for the runs table's columns
    assert parent.data.metrics["rec_expected_val_loss"] == pytest.approx(report.recommendation.expected_val_loss)


def test_a_child_run_holds_only_its_trials_own_params(tracked):
    report, client = tracked
    runs = _by_number(_children(client, report.parent_run_id))
    assert sorted(runs) == _trained_numbers(report.trials)
    for _, row in report.trials.dropna(subset=["number"]).iterrows():
        run = runs[int(row["number"])]
        assert set(run.data.params) == {"optimizer", "seed", "purpose", "log10_lr", *row["params"]}
        assert float(run.data.params["lr"]) == pytest.approx(row["lr"], rel=1e-5)
        assert float(run.data.params["log10_lr"]) == pytest.approx(math.log10(row["lr"]), abs=1e-3)
        assert run.data.metrics["epochs_trained"] == row["epochs"]
        assert run.data.tags["autoopt.stage"] in {"portfolio", "lr line search", "search", "re-evaluation"}


def test_summaries_are_at_step_0_epochs_at_their_epoch_and_nothing_is_non_finite(tracked):
    report, client = tracked
    runs = _by_number(_children(client, report.parent_run_id))
    everything = list(runs.values()) + [client.get_run(report.parent_run_id)]
    for run in everything:
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            assert all(math.isfinite(m.value) for m in history), (run.info.run_name, key)
            if key in PER_EPOCH:
                assert [m.step for m in history] == list(range(1, len(history) + 1)), (run.info.run_name, key)
            else:
                assert {m.step for m in history} == {0}, (run.info.run_name, key)
    for _, row in report.trials[report.trials["epochs"] > 0].iterrows():
        run = runs[int(row["number"])]
        history = client.get_metric_history(run.info.run_id, "val_loss")
        shown = row["val_curve"][:-1] if row["outcome"] == "diverged" else row["val_curve"]
        assert [m.value for m in history] == pytest.approx([v for v in shown if math.isfinite(v)])


def test_outcomes_show_in_names_statuses_and_tags(tracked):
    report, client = tracked
    runs = _by_number(_children(client, report.parent_run_id))
    outcomes = set()
    for _, row in report.trials[report.trials["epochs"] > 0].iterrows():
        run, outcome = runs[int(row["number"])], row["outcome"]
        outcomes.add(outcome)
        assert run.info.status == RUN_STATUS[outcome], outcome
        tag = run.data.tags["autoopt.outcome"]
        if outcome == "pruned":
            assert tag == f"pruned at epoch {row['epochs']}"
            assert run.info.run_name.endswith(f"-pruned@{row['epochs']}")
        elif outcome == "diverged":
            assert tag == f"diverged at epoch {row['epochs']}" and run.info.run_name.endswith(f"-diverged@{row['epochs']}")
            assert run.data.metrics["diverged_at_epoch"] == row["epochs"]
        elif outcome == "failed":
            assert tag == "failed: RuntimeError" and "always fails" in run.data.tags["autoopt.error"]
        else:
            assert tag == outcome and "@" not in run.info.run_name
    assert {"completed", "pruned", "diverged"} <= outcomes
    failed = report.trials[report.trials["outcome"] == "failed"]
    assert len(failed) and (failed["epochs"] == 0).all()  # failed at its first step: trained nothing ...
    # ... but it did try, so it has a FAILED run; never-trained candidates have none (next test)


def test_run_times_are_the_trainings(tracked):
    report, client = tracked
    runs = _by_number(_children(client, report.parent_run_id))
    for _, row in report.trials[report.trials["epochs"] > 0].iterrows():
        info = runs[int(row["number"])].info
        duration = (info.end_time - info.start_time) / 1000
        # training time plus validation and bookkeeping; never the process's one-time set-up (seconds)
        assert row["seconds"] - 0.01 <= duration <= row["seconds"] + 1.0, (info.run_name, duration, row["seconds"])


def test_never_trained_candidates_get_no_run_and_a_half_written_run_is_rewritten(server):
    """Eliminated and infeasible candidates are listed on the parent, not shown as failed runs; a
    run left RUNNING without an outcome (the server went away) is replaced by a complete one."""
    name = f"summary-{uuid.uuid4().hex[:6]}"
    tracker = MlflowTracker(tracking_uri=server)
    tracker.start_study(name, {"epochs": 2})
    client = MlflowClient(server)
    half = client.create_run(tracker.experiment_id, tags={"mlflow.parentRunId": tracker.parent_run_id,
                                                          "autoopt.trial": "1"}).info.run_id
    records = [_record(0), _record(1, "adam"), _record(2, "adam", outcome="eliminated", epochs=0),
               _record(None, "muon", outcome="infeasible", epochs=0)]
    tracker.end_trial(records[0])
    tracker.end_trial(records[3])
    tracker.log_summary(None, trials_table(records), records, {})
    tracker.close()
    assert wait_for_background(60)
    children = {c.info.run_name: c for c in _children(client, tracker.parent_run_id)}
    assert set(children) == {"sgd-t000", "adam-t001"}
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    assert tracker.synced == {"created": 0, "rewritten": 1}
    note = client.get_run(tracker.parent_run_id).data.tags["mlflow.note.content"]
    assert "adam: eliminated" in note and "muon: infeasible" in note


def test_a_summary_leaves_a_run_another_process_is_still_writing_and_a_trial_never_loses_its_last_run(server):
    """Four workers' summaries, each listing while another's run was still being written, deleted each
    other's runs and left a trial with none (1 run in 5 of the four-workers test). A run of a trial that
    ended a moment ago may still be finished by its writer: a summary neither deletes it nor writes a
    second one, and once finished it is the trial's run; a run of a trial that ended ten minutes ago
    was abandoned, and is replaced."""
    name = f"race-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(server)
    first = MlflowTracker(tracking_uri=server)
    first.start_study(name, {"epochs": 2})

    def trial_run(number: int) -> str:
        return client.create_run(first.experiment_id, tags={"mlflow.parentRunId": first.parent_run_id,
                                                            "autoopt.trial": str(number)}).info.run_id

    writing, abandoned = trial_run(0), trial_run(1)  # another worker's recorder is writing the first
    now = int(time.time() * 1000)
    times = {0: (now - 5_000, now - 1_000), 1: (now - 900_000, now - 600_000)}
    records = [_record(0), _record(1)]
    first.log_summary(None, trials_table(records), records, times)
    first.close(end_study=False)

    def runs_of(number: int) -> list:
        return [r for r in _children(client, first.parent_run_id) if r.data.tags["autoopt.trial"] == str(number)]

    assert [r.info.run_id for r in runs_of(0)] == [writing]  # left to its writer, no second run
    assert client.get_run(abandoned).info.lifecycle_stage == "deleted"
    assert [r.info.status for r in runs_of(1)] == ["FINISHED"]
    assert first.synced == {"created": 0, "rewritten": 1}

    client.set_tag(writing, "autoopt.outcome", "completed")  # the writer finishes it
    client.set_terminated(writing, "FINISHED")
    second = MlflowTracker(tracking_uri=server)  # the next worker's summary
    second.start_study(name, {"epochs": 2}, parent_run_id=first.parent_run_id)
    second.log_summary(None, trials_table(records), records, times)
    second.close()
    assert [r.info.run_id for r in runs_of(0)] == [writing]
    assert len(runs_of(1)) == 1 and second.synced == {"created": 0, "rewritten": 0}


def test_each_call_without_a_study_name_is_a_new_study_and_stdout_stays_clean(server, blobs, capfd):
    reports = [autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd"], n_trials=1, seeds=1, tracking_uri=server,
                            **TINY) for _ in range(2)]
    assert wait_for_background(60)
    names = [r.study.study_name for r in reports]
    assert names[0] != names[1] and all(n.startswith("autoopt-sequential-") for n in names)
    assert reports[0].parent_run_id != reports[1].parent_run_id
    client = MlflowClient(server)
    for report in reports:
        assert len(_children(client, report.parent_run_id)) == len(report.trials)
    assert "View run" not in capfd.readouterr().out


def test_a_resumed_study_reuses_its_parent_and_moves_the_tags(server, blobs, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    name = f"resumed-{uuid.uuid4().hex[:6]}"
    first = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam"], n_trials=3, seeds=1, storage=storage,
                         study_name=name, tracking_uri=server, **TINY)
    second = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam"], n_trials=6, seeds=1, storage=storage,
                          study_name=name, tracking_uri=server, **TINY)
    assert wait_for_background(60)
    assert second.parent_run_id == first.parent_run_id
    client = MlflowClient(server)
    runs = _by_number(_children(client, second.parent_run_id))
    assert sorted(runs) == _trained_numbers(second.trials)
    best = _children(client, second.parent_run_id, "tags.`autoopt.best_of_optimizer` = 'true'")
    assert sorted(r.data.params["optimizer"] for r in best) == ["adam", "sgd"]  # one each: stale tags gone
    assert client.get_run(second.parent_run_id).data.tags["latest.study.n_trials"] == "6"
    # the mark of the choice is on the second answer's run alone, whichever run had it before
    starred = [r for r in runs.values() if "★" in r.info.run_name or "mlflow.note.content" in r.data.tags]
    assert [int(r.data.tags["autoopt.trial"]) for r in starred] == [min(second.recommendation.trial_numbers)]


def _record_state(client: MlflowClient, parent_run_id: str, artifacts: Path) -> dict:
    """Everything a sync could write, as the server has it: each run's status, end time, tags and every
    value of every metric (with its timestamp), and the parent's files with their modification times."""
    state = {}
    for run in [client.get_run(parent_run_id), *_children(client, parent_run_id)]:
        history = {k: [(m.value, m.timestamp, m.step) for m in client.get_metric_history(run.info.run_id, k)]
                   for k in run.data.metrics}
        state[run.info.run_id] = (run.info.status, run.info.end_time, run.data.tags, history)
    files = {str(f): f.stat().st_mtime_ns for f in artifacts.rglob("*") if f.is_file() and parent_run_id in str(f)}
    assert {Path(f).name for f in files} >= ARTIFACTS
    return {"runs": state, "files": files}


def test_a_sync_of_a_recorded_study_writes_nothing_and_keeps_its_end_time(live_server, blobs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage, name = f"sqlite:///{tmp_path / 'again.db'}", f"again-{uuid.uuid4().hex[:6]}"
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam"], n_trials=3, seeds=1, storage=storage,
                          study_name=name, tracking_uri=live_server.uri, **TINY)
    assert wait_for_background(60)
    client = MlflowClient(live_server.uri)
    recorded = _record_state(client, report.parent_run_id, live_server.root / "artifacts")
    for _ in range(2):  # nothing was missing: neither sync writes a metric, a tag, a file or an end time
        assert cli.main(["sync", name, "--storage", storage]) == 0
        assert _record_state(client, report.parent_run_id, live_server.root / "artifacts") == recorded


# --- a server that goes away mid-study: last, since it kills the module's server ------------------------

def test_a_killed_server_costs_nothing_the_next_run_and_sync_cannot_write(live_server, blobs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'cut.db'}"
    name = f"cut-{uuid.uuid4().hex[:6]}"
    kills_the_server = _mlp_that_calls(live_server.kill)
    settings = dict(optimizers=["sgd", "adam"], seeds=1, pruner="none", refine_lr=False, storage=storage,
                    study_name=name, tracking_uri=live_server.uri, **TINY)
    with pytest.warns(TrackingWarning) as caught:
        report = autoopt.tune(kills_the_server, blobs, n_trials=6, **settings)
    assert wait_for_background(60)
    assert len(report.trials) == 6 and (report.trials["outcome"] == "completed").all()  # training went on
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert sum(" failed (" in m for m in messages) == 1  # warned once, at the first failure ...
    assert any(f"autoopt sync {name}" in m for m in messages)  # ... and told how to backfill at the end

    live_server.start()
    live_server.wait_ready()
    client = MlflowClient(live_server.uri)
    before = _children(client, report.parent_run_id)
    complete = [r for r in before if r.info.status == "FINISHED" and "autoopt.outcome" in r.data.tags]
    assert len(complete) < 6  # the kill cost runs (or left them half written) ...
    assert cli.main(["sync", name, "--storage", storage]) == 0  # ... which `autoopt sync` writes
    runs = _by_number(_children(client, report.parent_run_id))
    assert sorted(runs) == _trained_numbers(report.trials) == list(range(6))
    assert all(r.info.status == "FINISHED" and "autoopt.outcome" in r.data.tags for r in runs.values())
    for number, run in runs.items():  # the stored curve, at step = epoch
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == [1, 2, 3]
    parent = client.get_run(report.parent_run_id)
    assert parent.info.status == "FINISHED" and "autoopt.recommended_run_ids" in parent.data.tags
    import optuna  # the parent, left running by the kill, ends when the study's last trial did, not at the sync

    ends = [t.datetime_complete for t in optuna.load_study(study_name=name, storage=storage).trials]
    assert parent.info.end_time == max(int(end.timestamp() * 1000) for end in ends if end is not None)
    assert {a.path for a in client.list_artifacts(report.parent_run_id)} >= ARTIFACTS

    from autoopt.cli.sync import sync_study

    synced = _record_state(client, report.parent_run_id, live_server.root / "artifacts")
    result = sync_study(name, storage)  # idempotent: nothing left to write
    assert (result.created, result.rewritten, result.trained_trials) == (0, 0, 6)
    assert _record_state(client, report.parent_run_id, live_server.root / "artifacts") == synced
    assert sorted(_by_number(_children(client, report.parent_run_id))) == list(range(6))
