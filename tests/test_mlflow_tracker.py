"""The MLflow tracker against a real ``mlflow server`` on 127.0.0.1, read back through MlflowClient.

One server serves the whole module (it takes seconds to start); it is launched when the module
starts, so the tests that need no server run while it boots. Every study is tiny (a 4-16-3 MLP,
120 samples, 2 epochs) so that the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

import autoopt
from autoopt import registry
from autoopt.records import Candidate, EpochRecord, Measurement, TrialRecord
from autoopt.registry import LogUniform, OptimizerSpec, dense_state
from conftest import mlp

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from autoopt.mlflow_tracker import RUN_STATUS, MlflowTracker, TrackingWarning  # noqa: E402

MLFLOW = shutil.which("mlflow")
TINY = dict(epochs=2, batch_size=32, verbose=False, seed=0)
ARTIFACTS = {"recommendation.json", "trials.csv", "val_loss_curves.png", "lr_sensitivity.png", "tradeoff.png"}


# --- the server ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _server_process(tmp_path_factory):
    """Start ``mlflow server`` at once (not waited for here) and stop its whole process group after."""
    if MLFLOW is None:
        yield None
        return
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "wb")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner
    proc = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    yield proc, f"http://127.0.0.1:{port}", root / "server.log"
    os.killpg(proc.pid, signal.SIGTERM)  # uvicorn's worker is a child: stop the whole group
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def server(_server_process) -> str:
    """The server's URI, once /health answers (bounded wait)."""
    if _server_process is None:
        pytest.skip("the `mlflow` executable is not on PATH")
    proc, uri, log = _server_process
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{Path(log).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return uri
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not answer /health within 180 s:\n{Path(log).read_text()[-3000:]}")
        time.sleep(0.2)  # polling pace, not synchronisation: the loop ends on the answer


# --- helpers --------------------------------------------------------------------------------------------

def _children(client: MlflowClient, parent_id: str) -> list:
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=1000)


def _parents(client: MlflowClient, experiment_name: str, study: str) -> list:
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], "tags.`autoopt.role` = 'study'")
    return [r for r in runs if r.data.tags.get("autoopt.study") == study]


def _trial_numbers(children: list) -> list[int]:
    return sorted(int(c.data.tags["trial_number"]) for c in children if "trial_number" in c.data.tags)


def _record(number: int | None, optimizer: str = "sgd", outcome: str = "completed", epochs: int = 2) -> TrialRecord:
    records = [EpochRecord(e, 1.0 / e, 1.2 / e, 0.5, 0.01, 0.01 * e) for e in range(1, epochs + 1)]
    return TrialRecord(number, Candidate(optimizer, {"lr": 0.1}), "sgd", 0, "search",
                       Measurement(outcome, records, steps=4 * epochs, seconds=0.01 * epochs))


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


@pytest.fixture(scope="module")
def tracked(server, exotic_optimizers, tmp_path_factory):
    """One small study recorded on the server: (report, client)."""
    import numpy as np

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 4))
    y = np.arange(120) % 3
    X = (centers[y] + rng.normal(0, 1, size=(120, 4))).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("tracked"))
        report = autoopt.tune(mlp(4, 3), (X, y), optimizers=["adam", "test-huge-sgd", "test-broken"],
                              n_trials=9, seeds=2, reevaluate_top=1, pruner="percentile", study_name="tracked",
                              tracking=True, tracking_uri=server, **{**TINY, "epochs": 4})
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
    """Also with forked workers: each opens its own connections to the sqlite file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["sgd", "adam"], n_trials=4, seeds=1, n_jobs=2,
                          study_name="local", **TINY)
    assert (tmp_path / "mlflow.db").exists()
    assert report.tracking_uri == mlflow.get_tracking_uri() and report.tracking_uri.startswith("sqlite:")
    client = MlflowClient(report.tracking_uri)
    assert client.get_run(report.parent_run_id).info.run_name == "local"
    assert _trial_numbers(_children(client, report.parent_run_id)) == sorted(report.trials["number"])


# --- one study on the server -----------------------------------------------------------------------------

def test_the_parent_run_holds_the_configuration_and_the_recommendation(tracked):
    report, client = tracked
    parent = client.get_run(report.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tracked"
    assert client.get_experiment(parent.info.experiment_id).name == "tracked"
    params, rec = parent.data.params, report.recommendation
    assert params["epochs"] == "4" and params["seed"] == "0" and params["optimizers"].startswith("adam")
    assert params["device"] == "cpu" and "version_torch" in params and "data_x_shape" in params
    assert params["rec_optimizer"] == rec.optimizer
    assert float(params["rec_lr"]) == pytest.approx(rec.params["lr"], rel=1e-5)
    assert parent.data.metrics["rec_val_loss"] == pytest.approx(rec.val_loss)
    assert parent.data.tags["mlflow.note.content"] == rec.explanation


def test_the_parent_run_has_the_json_the_table_and_the_plots(tracked, tmp_path):
    report, client = tracked
    assert {a.path for a in client.list_artifacts(report.parent_run_id)} >= ARTIFACTS
    local = client.download_artifacts(report.parent_run_id, "recommendation.json", str(tmp_path))
    saved = json.loads(Path(local).read_text())
    assert saved["optimizer"] == report.recommendation.optimizer
    assert saved["trial_numbers"] == report.recommendation.trial_numbers


def test_every_trial_has_one_named_child_run_with_its_params(tracked):
    report, client = tracked
    children = _children(client, report.parent_run_id)
    numbered = report.trials.dropna(subset=["number"])
    assert _trial_numbers(children) == sorted(int(n) for n in numbered["number"])
    by_number = {int(c.data.tags["trial_number"]): c for c in children}
    for _, row in numbered.iterrows():
        run = by_number[int(row["number"])]
        params, tags = run.data.params, run.data.tags
        assert run.info.run_name.startswith(f"{row['optimizer']}-t{int(row['number']):03d}")
        assert params["optimizer"] == row["optimizer"] and float(params["lr"]) == pytest.approx(row["lr"], rel=1e-5)
        assert (params["seed"], params["purpose"]) == (str(row["seed"]), row["purpose"])
        assert (params["epochs"], params["batch_size"], params["device"]) == ("4", "32", "cpu")
        assert tags["optimizer_family"] == row["family"] and tags["autoopt.study"] == "tracked"
    reruns = numbered[numbered["purpose"] == "reevaluation"]
    assert len(reruns) >= 1
    for _, row in reruns.iterrows():
        assert by_number[int(row["number"])].info.run_name.endswith(f"-seed{row['seed']}")


def test_each_outcome_has_its_status_and_tag(tracked):
    report, client = tracked
    by_number = {int(c.data.tags["trial_number"]): c for c in _children(client, report.parent_run_id)}
    outcomes = set()
    for _, row in report.trials.dropna(subset=["number"]).iterrows():
        run = by_number[int(row["number"])]
        outcomes.add(row["outcome"])
        assert run.info.status == RUN_STATUS[row["outcome"]], row["outcome"]
        tag = run.data.tags["outcome"]
        if row["outcome"] == "pruned":
            assert tag == f"pruned at epoch {row['epochs']}"
        elif row["outcome"] == "failed":
            assert tag == "failed: RuntimeError" and "always fails" in run.data.tags["error"]
        else:
            assert tag == row["outcome"]
    assert {"completed", "pruned", "diverged", "failed"} <= outcomes


def test_epoch_metrics_have_one_value_per_epoch_and_summaries_follow(tracked):
    report, client = tracked
    by_number = {int(c.data.tags["trial_number"]): c for c in _children(client, report.parent_run_id)}
    for _, row in report.trials.dropna(subset=["number"]).iterrows():
        run = by_number[int(row["number"])]
        if row["epochs"] == 0:
            continue
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(1, row["epochs"] + 1))
        for mine, theirs in zip(history, row["val_curve"]):
            assert mine.value == pytest.approx(theirs) or not math.isfinite(theirs)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [m.step for m in history]
        metrics = run.data.metrics
        assert {"val_accuracy", "epoch_seconds", "elapsed_seconds", "steps", "seconds"} <= set(metrics)
        if row["outcome"] == "completed":
            assert metrics["final_val_loss"] == pytest.approx(row["final_val_loss"])
            assert metrics["optimizer_state_bytes"] == row["optimizer_state_bytes"]
            if math.isfinite(row["epochs_to_target"]):  # only known when the study ended
                assert metrics["epochs_to_target"] == row["epochs_to_target"]
                assert metrics["seconds_to_target"] == pytest.approx(row["seconds_to_target"])


# --- concurrency: threads, workers, resumes ----------------------------------------------------------------

def test_parallel_trials_each_land_in_exactly_one_child_run(server, blobs):
    name = f"parallel-{uuid.uuid4().hex[:6]}"
    report = autoopt.tune(mlp(4, 3), blobs, optimizers=["adam", "sgd"], n_trials=6, seeds=1, n_jobs=2,
                          study_name=name, tracking_uri=server, **TINY)
    client = MlflowClient(server)
    assert len(_parents(client, name, name)) == 1
    assert _trial_numbers(_children(client, report.parent_run_id)) == sorted(report.trials["number"])


def test_workers_starting_together_share_one_parent_run(server):
    """Two trackers (as in two worker processes) open the same study at the same moment."""
    name = f"workers-{uuid.uuid4().hex[:6]}"
    trackers = [MlflowTracker(tracking_uri=server) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors = []

    def work(i: int, tracker: MlflowTracker) -> None:
        try:
            barrier.wait()
            tracker.start_study(name, {"epochs": 2})
            tracker.start_trial(i, Candidate("sgd", {"lr": 0.1}), "sgd", 0, "search")
            tracker.log_epoch(i, EpochRecord(1, 1.0, 1.1, None, 0.01, 0.01))
            tracker.end_trial(_record(i, epochs=1))
            tracker.close("FINISHED")
        except Exception as exc:  # surfaced below: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, t)) for i, t in enumerate(trackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    client = MlflowClient(server)
    parents = _parents(client, name, name)
    assert len(parents) == 1
    assert {t.parent_run_id for t in trackers} == {parents[0].info.run_id}
    assert _trial_numbers(_children(client, parents[0].info.run_id)) == [0, 1]


def test_a_resumed_study_reuses_the_oldest_parent_and_merges_a_duplicate(server):
    """Two parents (an earlier session's and a duplicate from a start race) become one."""
    name = f"resumed-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(server)
    experiment = client.create_experiment(name)
    tags = {"autoopt.role": "study", "autoopt.study": name}
    old = client.create_run(experiment, tags=tags, run_name=name, start_time=1_000).info.run_id
    client.log_param(old, "epochs", "5")
    duplicate = client.create_run(experiment, tags=tags, run_name=name, start_time=2_000).info.run_id
    orphan = client.create_run(experiment, tags={"mlflow.parentRunId": duplicate, "trial_number": "0"}).info.run_id
    for run in (old, duplicate, orphan):
        client.set_terminated(run, "FINISHED")

    tracker = MlflowTracker(tracking_uri=server)
    tracker.start_study(name, {"epochs": 2})
    assert tracker.parent_run_id == old
    tracker.end_trial(_record(1))
    tracker.close()

    parents = _parents(client, name, name)
    assert [p.info.run_id for p in parents] == [old] and parents[0].info.status == "FINISHED"
    assert _trial_numbers(_children(client, old)) == [0, 1]  # the duplicate's child moved over
    assert parents[0].data.params["epochs"] == "5"  # MLflow params never change ...
    assert parents[0].data.tags["latest.epochs"] == "2"  # ... so the new value is a tag


def test_trials_the_tracker_never_saw_get_a_child_run_at_the_summary(server):
    """An eliminated trial ends inside the search, untrained; log_summary records it."""
    from autoopt.results import trials_table

    name = f"summary-{uuid.uuid4().hex[:6]}"
    tracker = MlflowTracker(tracking_uri=server, experiment_name=name)
    tracker.start_study(name, {"epochs": 2})
    tracker.end_trial(_record(0))
    trials = trials_table([_record(0), _record(1, "adam", outcome="eliminated", epochs=0),
                           _record(None, "muon", outcome="infeasible", epochs=0)])
    tracker.end_trial(_record(None, "muon", outcome="infeasible", epochs=0))
    tracker.log_summary(None, trials)
    tracker.close()
    client = MlflowClient(server)
    children = {c.info.run_name: c for c in _children(client, tracker.parent_run_id)}
    assert set(children) == {"sgd-t000", "adam-t001", "muon-infeasible"}
    assert children["adam-t001"].info.status == "KILLED"
    assert children["adam-t001"].data.tags["outcome"] == "eliminated"
    assert children["muon-infeasible"].info.status == "FAILED"
    assert children["sgd-t000"].data.metrics["epochs_to_target"] == 2
    assert {a.path for a in client.list_artifacts(tracker.parent_run_id)} >= {"trials.csv", "val_loss_curves.png"}


# --- a server that goes away mid-study ----------------------------------------------------------------------

class _Proxy:
    """A TCP relay in front of the server that can be cut: the server 'goes away' for its clients."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def test_a_server_that_goes_away_costs_the_records_not_the_study(server, blobs, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail in milliseconds, not minutes
    proxy = _Proxy(int(server.rsplit(":", 1)[1]))
    steps = []

    class CutsTheServer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(4, 3)

        def forward(self, x):
            if torch.is_grad_enabled():
                steps.append(1)
                if len(steps) == 3 + 14:  # in the third trial (3 steps an epoch; the first epoch is the bare one)
                    proxy.cut()
            return self.net(x)

    with pytest.warns(TrackingWarning) as caught:
        report = autoopt.tune(CutsTheServer(), blobs, optimizers=["sgd"], n_trials=5, seeds=1, pruner="none",
                              refine_lr=False, study_name=f"cut-{uuid.uuid4().hex[:6]}",
                              tracking_uri=f"http://127.0.0.1:{proxy.port}", **TINY)
    assert len(report.trials) == 5 and (report.trials["outcome"] == "completed").all()
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert sum("failed" in m for m in messages) == 1  # warned once ...
    lost = [m for m in messages if "were lost" in m]  # ... and counted at the end
    assert len(lost) == 1 and "Optuna storage still holds every result" in lost[0]
    assert int(lost[0].split()[0]) >= 3  # at least the summary, the close and a trial's end
