"""storage.py: storage strings, queue-once under the storage's lock, stale trials.

The several-process cases (4 workers, kill -9 and resume) are in test_several_machines.py and
test_resume.py; these are the same rules on one process, in milliseconds.
"""

from __future__ import annotations

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from autoopt.config import journal_file
from autoopt.study.storage import (
    HEARTBEAT_ATTR,
    QUEUE_KEY,
    RETRY_OF,
    enqueue_once,
    open_storage,
    recover_stale_trials,
    stale_trials,
)


def test_a_journal_storage_string_names_its_file(tmp_path):
    assert journal_file("journal:///tmp/s.log") == "/tmp/s.log" and journal_file("journal:s.log") == "s.log"
    assert isinstance(open_storage(f"journal:{tmp_path / 's.log'}"), optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match="cannot be opened"):
        open_storage(f"journal:{tmp_path / 'missing' / 'dir' / 's.log'}")


def test_threads_racing_to_queue_one_key_queue_it_once(tmp_path):
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'q.log'}"), study_name="q")
    start = threading.Barrier(8)
    queued = []

    def race() -> None:
        start.wait()
        queued.append(enqueue_once(study, "portfolio:0", {"x": 1.0}))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(queued) == [False] * 7 + [True]
    assert [t.user_attrs[QUEUE_KEY] for t in study.get_trials()] == ["portfolio:0"]


def test_a_journal_trial_whose_heartbeat_stopped_is_failed_and_queued_again_once(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOOPT_HEARTBEAT_SECONDS", "1")
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'h.log'}"), study_name="h")
    study.enqueue_trial({"x": 2.0}, user_attrs={"purpose": "race", "seed": 0, "race_index": 1,
                                                 "race_list": "pretrained_entries"})
    trial = study.ask()  # RUNNING, as a process that died mid-trial leaves it
    trial.suggest_float("x", 0.0, 5.0)
    storage = study._storage
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
    assert stale_trials(study) == []  # beating: a live trial is never touched
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time() - 60)
    assert [t.number for t in stale_trials(study)] == [trial.number]
    assert recover_stale_trials(study) == [trial.number]
    assert recover_stale_trials(study) == []  # once
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    rerun = [t for t in trials if t.user_attrs.get(RETRY_OF) == trial.number]
    assert len(rerun) == 1 and rerun[0].state == TrialState.WAITING and rerun[0].system_attrs["fixed_params"] == {"x": 2.0}
    assert {k: rerun[0].user_attrs[k] for k in ("purpose", "race_index", "race_list")} == {
        "purpose": "race", "race_index": 1, "race_list": "pretrained_entries"}  # the re-run is the same race entry


def test_a_trial_whose_process_is_gone_is_stale_at_once_without_its_heartbeat(tmp_path):
    import subprocess
    import sys

    from autoopt.study.owners import OWNER_ATTR, process_identity

    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'o.log'}"), study_name="o")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    mine, theirs = study.ask(), study.ask()
    study._storage.set_trial_system_attr(mine._trial_id, OWNER_ATTR, process_identity())
    study._storage.set_trial_system_attr(theirs._trial_id, OWNER_ATTR, process_identity(ended.pid))  # it runs...
    for trial in (mine, theirs):
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())  # ...and beat just now
    assert stale_trials(study) == []
    ended.wait()  # ...and has ended: known at once, long before its heartbeat's grace period
    assert [t.number for t in stale_trials(study)] == [theirs.number]


def _count_trials(storage: str, out) -> None:
    out.put(len(optuna.load_study(study_name="s", storage=open_storage(storage)).get_trials()))


def test_a_database_server_is_opened_once_per_process_so_its_connections_stay_few(fresh_postgres):
    """Each ``open_storage(url)`` used to make a new connection pool that lived until garbage collection:
    the resume test polling its study held 40 idle connections, and CI's server refused clients ("too
    many clients already"). A forked child opens the parent's storage on connections of its own."""
    import multiprocessing

    import psycopg

    first = open_storage(fresh_postgres)
    optuna.create_study(study_name="s", storage=first).enqueue_trial({})
    for _ in range(30):
        assert len(optuna.load_study(study_name="s", storage=open_storage(fresh_postgres)).get_trials()) == 1
    assert open_storage(fresh_postgres) is first
    database = fresh_postgres.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as connection:
        (held,) = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                     (database,)).fetchone()
    assert 1 <= held <= 5  # one pool (SQLAlchemy's pool_size), not one per open

    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_count_trials, args=(fresh_postgres, out))
    child.start()
    child.join(timeout=60)
    assert (child.exitcode, out.get(timeout=5)) == (0, 1)
    assert len(optuna.load_study(study_name="s", storage=open_storage(fresh_postgres)).get_trials()) == 1
