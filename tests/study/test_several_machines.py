"""Several processes (machines) on one study: optuna-dashboard reads autoopt's storage; 4 workers share a
budget on a journal file and on PostgreSQL (skipped cleanly without a server on 127.0.0.1:5432), recorded
in one MLflow store: one parent run, one child run per trained trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import POSTGRES, postgres_available

import autoopt
from autoopt.study import budget, stored
from autoopt.study.storage import QUEUE_KEY, enqueue_once, open_storage

RECIPE = '''\
"""Three blobs, a linear model: a study in seconds."""
import torch

EPOCHS = 3
BATCH_SIZE = 16


def build(seed: int = 0):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 4, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3), (X, y)
'''


def project(tmp_path: Path, n_trials: int, tracking: bool = False) -> Path:
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "recipes" / "blobs.py").write_text(RECIPE)
    (tmp_path / "studies").mkdir(exist_ok=True)
    study = tmp_path / "studies" / "shared.toml"
    study.write_text(f'recipe = "blobs"\noptimizers = ["sgd", "adam"]\nn_trials = {n_trials}\nseeds = 1\n'
                     f'tracking = {str(tracking).lower()}\npruner = "none"\nstudy_name = "shared-{uuid.uuid4().hex[:8]}"\n')
    return study


def wsgi_get(app, path: str) -> tuple[str, object]:
    from wsgiref.util import setup_testing_defaults

    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: dict = {}
    body = b"".join(app(environ, lambda s, headers, exc=None: status.setdefault("s", s)))
    return status["s"], json.loads(body)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_optuna_dashboard_opens_autoopts_storage_and_sees_the_study(tmp_path, kind, blobs):
    dashboard = pytest.importorskip("optuna_dashboard")
    storage = f"sqlite:///{tmp_path / 'd.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'd.log'}"
    import torch

    autoopt.tune(torch.nn.Linear(4, 3), blobs, optimizers=["sgd"], n_trials=2, epochs=1, seeds=1,
                 storage=storage, study_name="dash", tracking=False, verbose=False)
    # the dashboard takes a URL, or for a journal file the storage autoopt opens (as its CLI takes the file)
    app = dashboard.wsgi(storage if kind == "sqlite" else open_storage(storage))
    status, listing = wsgi_get(app, "/api/studies")
    assert status == "200 OK"
    (summary,) = [s for s in listing["study_summaries"] if s["study_name"] == "dash"]
    status, detail = wsgi_get(app, f"/api/studies/{summary['study_id']}")
    assert status == "200 OK" and len(detail["trials"]) >= 2


@pytest.mark.slow
def test_four_workers_share_one_study(tmp_path):
    """On a journal file, where two workers' MLflow runs once raced. (It ran on PostgreSQL too, 50 s more
    than the suite can spare; the RDB path with several processes is tested by the resume tests and
    ``test_an_rdb_storage_shared_by_workers_holds_every_trial``.)"""
    mlflow = pytest.importorskip("mlflow")
    n_trials, workers = 6, 4
    study_file = project(tmp_path, n_trials, tracking=True)
    storage = f"journal:{tmp_path / 'shared.log'}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the store exists before the workers start, as a server would (four processes creating one sqlite
    # store's tables at once is MLflow's race, not autoopt's)
    mlflow.MlflowClient(tracking_uri).search_experiments()
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent)}
    processes = [subprocess.Popen([sys.executable, "-m", "autoopt.cli", "worker", str(study_file),
                                   "--storage", storage, "--tracking-uri", tracking_uri], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    results = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err[-2000:]
    name = study_file.read_text().split('study_name = "')[1].split('"')[0]
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # every number once
    trained = [t for t in trials if t.user_attrs.get("purpose") == "search"
               and t.user_attrs.get("measurement", {}).get("outcome") not in (None, "cancelled", "eliminated")]
    print("search trials trained:", len(trained), "all trials:", len(trials))
    # the budget is the study's total: at most one in-flight trial per other worker on top, and every
    # trial trained (none opened only to be closed "cancelled")
    assert budget.finished_trials(study) <= len(trials) <= n_trials + workers - 1
    assert [t.number for t in trials if t.user_attrs.get("measurement", {}).get("outcome") in (None, "cancelled")] == []

    # one MLflow store shared by the four: 1 parent, exactly one child run per trained trial
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("autoopt.role") == "study"]
    assert len(parents) == 1, [r.info.run_id for r in parents]
    assert parents[0].info.status == "FINISHED"
    assert stored.load_tracking(study)[1] == parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("autoopt.role") == "trial"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert [r.info.run_name for r in children if r.info.status == "RUNNING"] == []
    numbers = sorted(int(r.data.tags["autoopt.trial"]) for r in children)
    with_runs = sorted(t.number for t in trials
                       if t.user_attrs.get("measurement", {}).get("outcome") not in (None, "cancelled", "eliminated"))
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    assert (duplicates, sorted(set(with_runs) - set(numbers)), sorted(set(numbers) - set(with_runs))) == ([], [], [])


SHARED = """
import sys, torch, autoopt
g = torch.Generator().manual_seed(0)
X = torch.randn(120, 4, generator=g)
y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
autoopt.tune(torch.nn.Linear(4, 3), (X, y), optimizers=["sgd", "adam"], n_trials=10, epochs=3, seeds=1,
             pruner="none", storage=sys.argv[1], study_name="shared", tracking=False, verbose=False)
"""


@pytest.mark.slow
def test_two_processes_on_one_sqlite_study_make_at_most_n_trials_plus_one(tmp_path):
    """Before: 13-17 trials for n_trials=10, some opened only to be closed "cancelled", and a queued
    trial taken by both processes (trained twice, its second reports 'already reported')."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "shared.py").write_text(SHARED)
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent)}
    processes = [subprocess.Popen([sys.executable, str(tmp_path / "shared.py"), storage], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        assert "already reported" not in err  # no trial trained by both
    trials = optuna.load_study(study_name="shared", storage=open_storage(storage)).get_trials(deepcopy=False)
    assert 10 <= len(trials) <= 10 + 2 - 1
    assert [t.number for t in trials if t.state != TrialState.COMPLETE] == []
    assert all(t.user_attrs["measurement"]["outcome"] == "completed" for t in trials)


def _enqueue_many(storage: str, name: str, barrier, keys: list[str]) -> None:
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    barrier.wait(timeout=60)  # every process starts queueing at the same moment
    for key in keys:
        enqueue_once(study, key, {"x": 1.0}, {"purpose": "search"})


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_enqueue_once_queues_each_key_once_across_processes(tmp_path, kind):
    import multiprocessing

    if kind == "postgresql" and not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (database test)")
    storage = {"sqlite": f"sqlite:///{tmp_path / 'q.db'}", "journal": f"journal:{tmp_path / 'q.log'}",
               "postgresql": POSTGRES}[kind]
    name = f"queue-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(storage))
    context = multiprocessing.get_context("fork")  # each child opens the storage itself
    barrier = context.Barrier(4)
    keys = [f"promote:{i}" for i in range(8)]
    processes = [context.Process(target=_enqueue_many, args=(storage, name, barrier, keys)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    queued = sorted(t.user_attrs[QUEUE_KEY] for t in study.get_trials(deepcopy=False))
    assert queued == sorted(keys)  # each key once, none missing


def _join_new_study(storage: str, name: str, barrier) -> None:
    barrier.wait(timeout=60)  # every process opens the new storage at the same moment
    stored.create_study(study_name=name, storage=storage, sampler="random", pruner="none", seed=0, epochs=1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_starting_a_new_study_at_the_same_moment_all_join_it(tmp_path, kind, request):
    """Before, two processes creating one new sqlite database within milliseconds: in 5 of 8 pairs one
    died (``UNIQUE constraint failed: alembic_version.version_num``)."""
    import multiprocessing

    storage = f"sqlite:///{tmp_path / 'new.db'}" if kind == "sqlite" else request.getfixturevalue("fresh_postgres")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_join_new_study, args=(storage, "new", barrier)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))] == ["new"]
