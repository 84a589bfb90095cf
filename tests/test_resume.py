"""Crash-safe resume: a real process SIGKILLed mid-trial, then the same command again, on each storage
that survives its process (sqlite, a journal file), recorded in a real MLflow store (sqlite).

0 finished trials lost, the killed trial re-run once with the same params and purpose, 0 RUNNING left,
in the storage and in MLflow: the killed trial's run ends KILLED, its re-run and every other trained
trial has one run of its own, and the study one parent, FINISHED. The heartbeat is shortened to 1 s
(grace 3 s) through AUTOOPT_HEARTBEAT_SECONDS and MLflow's first flush to 0.2 s through
AUTOOPT_MLFLOW_FLUSH_SECONDS (so that the killed trial has a live run); every wait polls the storage
or MLflow with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import poll
from optuna.trial import TrialState

import autoopt
from autoopt.study import budget
from autoopt.study.storage import RETRY_OF, open_storage, recover_stale_trials, stale_trials
from autoopt.study.trials import GROUP_SIZE_ATTR

# about 0.1 s an epoch on one core, 2-3 s a trial: a trial runs long enough to have a live MLflow run, and
# the poll below (each look opens the storage) sees it mid-trial (with 1200 samples, a trial took 0.9 s on
# one machine and the poll missed it)
STUDY = """
import faulthandler, os, signal, sys, time, torch, autoopt
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for a traceback if the study hangs
g = torch.Generator().manual_seed(0)
X = torch.randn(3600, 8, generator=g)
y = (X[:, 0] + X[:, 1] > 0).long()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
PAUSE = os.environ.get("PAUSE_DIR")  # the test's barrier (kill_9_when): no race between a look and a signal
def pause(module, args):
    if PAUSE and os.path.exists(os.path.join(PAUSE, "request")):
        os.remove(os.path.join(PAUSE, "request"))
        open(os.path.join(PAUSE, "paused"), "w").close()
        while True:  # mid-trial until the signal; not one blocking call, which a SIGINT delivered to
            time.sleep(0.01)  # another thread (the heartbeat's) would never interrupt
model.register_forward_pre_hook(pause)
report = autoopt.tune(model, (X, y), optimizers=OPTIMIZERS, n_trials=len(OPTIMIZERS), epochs=EPOCHS, batch_size=8, seeds=1,
             pruner="none", storage=sys.argv[1], study_name="resume", tracking=sys.argv[2] != "off",
             tracking_uri=None if sys.argv[2] == "off" else sys.argv[2], verbose=False, fused=FUSED)
print("RECOMMENDED", report.recommendation.optimizer, report.recommendation.params, report.recommendation.val_loss)
"""
EPOCHS = 24


def study_script(optimizers: list[str], fused: bool | None) -> str:
    return STUDY.replace("EPOCHS", str(EPOCHS)).replace("OPTIMIZERS", repr(optimizers)).replace("FUSED", repr(fused))


def recorder_pids(pid: int) -> list[int]:
    """The MLflow recorder processes the process ``pid`` started (Linux's /proc; [] elsewhere)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if b"transport import serve" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:  # it ended meanwhile
                pass
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_9_when(command: list[str], cwd: Path, env: dict[str, str], moment, recorders: list[int] | None = None,
                sig: int = signal.SIGKILL):
    """Start ``command``, SIGKILL it (or send it ``sig``) as soon as ``moment()`` returns something, wait
    for it to end, and return that; ``recorders`` gets the pids of the MLflow recorder processes it had
    started."""
    pause_dir = Path(env["PAUSE_DIR"]) if "PAUSE_DIR" in env else None
    # Ctrl-C as in a terminal: a shell's background job (the suite started with `&`) hands its children
    # SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # generous: on a starved machine (the suite niced beside two full-speed processes) the study's
        # imports and its MLflow recorder's start alone took over 2 minutes
        found = poll(moment, timeout=300)
        ended = process.poll()
        assert found, f"the moment never came: {ended} {process.stderr.read().decode()[-2000:] if ended is not None else ''}"
        if pause_dir is not None:  # the study stops at its next forward call, still mid-trial, until the signal
            (pause_dir / "request").touch()
            assert poll(lambda: (pause_dir / "paused").exists() or process.poll() is not None, timeout=120)
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
        if recorders is not None:
            recorders.extend(recorder_pids(process.pid))
        process.send_signal(sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # say where it hangs, and what the signal met
            process.send_signal(signal.SIGUSR1)
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=3)
            process.kill()
            raise AssertionError(f"no end 60 s after signal {sig}:\n{process.stderr.read().decode()[-6000:]}")
        return found
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def load(storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="resume", storage=open_storage(storage))
    except Exception:  # not created yet
        return None


def trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    study = load(storage)
    return study.get_trials(deepcopy=False) if study else []


def mlflow_runs(tracking_uri: str) -> list:
    """Every active run of the study's experiment ("resume"), parent and children."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        experiment = client.get_experiment_by_name("resume")
    except Exception:  # the store is not created yet
        return []
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def live_run_of(tracking_uri: str, number: int) -> bool:
    return any(r.info.status == "RUNNING" and r.data.tags.get("autoopt.trial") == str(number)
               for r in mlflow_runs(tracking_uri))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "tracked"), [("journal", True)])
def test_kill_9_mid_trial_then_resume_loses_nothing_and_reruns_the_killed_trial(tmp_path, monkeypatch, kind, tracked):
    """A resume after the heartbeat's grace, tracked: what MLflow records does not depend on the storage.
    (Untracked on sqlite it took 35 s the suite cannot spare; sqlite's resume at once is tested below,
    and its resume after the grace by ``test_kill_9_mid_fused_group_then_resume_reruns_every_member_once``.)"""
    if tracked:
        pytest.importorskip("mlflow")
    monkeypatch.setenv("AUTOOPT_HEARTBEAT_SECONDS", "1")  # this process judges staleness by the same grace
    storage = f"sqlite:///{tmp_path / 'resume.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'resume.log'}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if tracked else "off"
    # one trial at a time, so that one trial has finished while another runs when the kill lands
    (tmp_path / "study.py").write_text(study_script(["sgd", "adam"], fused=False))
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent),
           "AUTOOPT_HEARTBEAT_SECONDS": "1", "AUTOOPT_MLFLOW_FLUSH_SECONDS": "0.2", "PAUSE_DIR": str(tmp_path)}
    command = [sys.executable, str(tmp_path / "study.py"), storage, tracking_uri]

    def running_after_a_finished_one():
        now = trials(storage)
        done = [t for t in now if t.state.is_finished()]
        # mid-trial: it has reported epochs and has many left, so it is still running when the kill lands
        running = [t for t in now if t.state == TrialState.RUNNING
                   and 1 <= len(t.intermediate_values) <= EPOCHS - 8]
        if not (done and running and (not tracked or live_run_of(tracking_uri, running[0].number))):
            return None  # (and its MLflow run exists, RUNNING)
        return done, running[0]

    recorders: list[int] = []
    kill_9_when(command, tmp_path, env, running_after_a_finished_one, recorders)
    if tracked and Path("/proc").is_dir():  # its MLflow recorder saw the pipe close without a goodbye: gone too
        assert len(recorders) == 1
        assert poll(lambda: not alive(recorders[0]), timeout=30)
    before = {t.number: (t.state, t.params, t.value) for t in trials(storage) if t.state.is_finished()}
    (killed,) = [t for t in trials(storage) if t.state == TrialState.RUNNING]  # the one the kill landed in
    # the killed trial's heartbeat stops; once past the grace period the storage calls it stale
    assert poll(lambda: [t.number for t in stale_trials(load(storage))], timeout=30) == [killed.number]

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]

    after = trials(storage)
    by_number = {t.number: t for t in after}
    for number, (state, params, value) in before.items():  # 0 finished trials lost or changed
        assert (by_number[number].state, by_number[number].params, by_number[number].value) == (state, params, value)
    assert by_number[killed.number].state == TrialState.FAIL
    reruns = [t for t in after if t.user_attrs.get(RETRY_OF) == killed.number]
    assert len(reruns) == 1, [(t.number, t.user_attrs) for t in after]
    rerun = reruns[0]
    assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED) and rerun.params == killed.params
    assert rerun.user_attrs["purpose"] == killed.user_attrs["purpose"]
    assert rerun.user_attrs["seed"] == killed.user_attrs["seed"]
    assert [t.number for t in after if t.state == TrialState.RUNNING] == []
    assert not any(t.state == TrialState.WAITING and RETRY_OF in t.user_attrs for t in after)
    # a third run finds nothing to recover and queues no second re-run
    assert recover_stale_trials(load(storage)) == []
    if not tracked:
        return

    # MLflow: one parent, FINISHED; the killed trial's run KILLED; one run per trained trial, its re-run's own
    from autoopt.tracking.mlflow.runs import RUN_STATUS

    runs = mlflow_runs(tracking_uri)
    (parent,) = [r for r in runs if r.data.tags.get("autoopt.role") == "study"]
    children = [r for r in runs if r.data.tags.get("autoopt.role") == "trial"]
    assert parent.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert [r.info.run_name for r in children if r.info.status == "RUNNING"] == []
    numbers = sorted(int(r.data.tags["autoopt.trial"]) for r in children)
    assert len(numbers) == len(set(numbers)), numbers  # no trial has two runs
    (dead,) = [r for r in children if r.info.status == "KILLED"]
    assert dead.data.tags["autoopt.trial"] == str(killed.number) and dead.info.run_name.endswith("-killed")
    assert "process died" in dead.data.tags["autoopt.outcome"]
    trained = {t.number: t.user_attrs["measurement"]["outcome"] for t in after
               if t.user_attrs.get("measurement", {}).get("outcome") not in (None, "cancelled", "eliminated")}
    assert rerun.number in trained
    status = {int(r.data.tags["autoopt.trial"]): r.info.status for r in children if r is not dead}
    assert status == {n: RUN_STATUS[outcome] for n, outcome in trained.items()}
    assert parent.data.metrics["trials"] == len(trained) and parent.data.metrics["trials_killed"] == 1


def mid_trial_after_a_finished_one(storage: str):
    """The moment to kill: one trial finished and another running with many epochs left."""
    def moment():
        now = trials(storage)
        running = [t for t in now if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= EPOCHS - 8]
        return running[0] if running and any(t.state.is_finished() for t in now) else None
    return moment


def recommended(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("RECOMMENDED"))


def study_env() -> dict[str, str]:
    # a grace of 3 minutes: a resume that starts at once cannot rely on the heartbeat
    return {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent),
            "AUTOOPT_HEARTBEAT_SECONDS": "60"}


@pytest.fixture(scope="module")
def unkilled_answer(tmp_path_factory) -> str:
    """What the study of ``study_script(["sgd", "adam"])`` recommends when nothing stops it."""
    folder = tmp_path_factory.mktemp("unkilled")
    (folder / "study.py").write_text(study_script(["sgd", "adam"], fused=False))
    done = subprocess.run([sys.executable, str(folder / "study.py"), f"sqlite:///{folder / 'ref.db'}", "off"],
                          cwd=folder, env=study_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return recommended(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "sig"), [("journal", signal.SIGKILL), ("sqlite", signal.SIGINT),
                                           ("postgresql", signal.SIGKILL)])
def test_a_resume_at_once_reruns_the_killed_or_interrupted_trial_first_and_gets_the_same_answer(
        tmp_path, kind, sig, unkilled_answer, request):
    """The heartbeat's grace is 3 minutes here: the resume starts at once, long before it, and knows the
    trial's process is gone from its pid (same host). SIGINT is Ctrl-C: the trial ends "interrupted", and
    is re-run the same way. The resumed study recommends what an unkilled one recommends."""
    storage = {"sqlite": lambda: f"sqlite:///{tmp_path / 'resume.db'}",
               "journal": lambda: f"journal:{tmp_path / 'resume.log'}",
               "postgresql": lambda: request.getfixturevalue("fresh_postgres")}[kind]()
    (tmp_path / "study.py").write_text(study_script(["sgd", "adam"], fused=False))
    env = {**study_env(), "PAUSE_DIR": str(tmp_path)}
    command = [sys.executable, str(tmp_path / "study.py"), storage, "off"]
    kill_9_when(command, tmp_path, env, mid_trial_after_a_finished_one(storage), sig=sig)
    before = trials(storage)
    # the trial the signal landed in: RUNNING after SIGKILL, ended "interrupted" after Ctrl-C
    (killed,) = [t for t in before if t.state == TrialState.RUNNING
                 or t.user_attrs.get("measurement", {}).get("outcome") == "interrupted"]
    assert by_state(before, TrialState.RUNNING) == ([killed.number] if sig == signal.SIGKILL else [])

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    after = trials(storage)
    assert after[killed.number].state == TrialState.FAIL
    (rerun,) = [t for t in after if t.user_attrs.get(RETRY_OF) == killed.number]
    assert rerun.number == len(before)  # the resume's first trial
    assert rerun.state == TrialState.COMPLETE and rerun.params == killed.params
    assert len(rerun.intermediate_values) == EPOCHS
    assert by_state(after, TrialState.RUNNING) == by_state(after, TrialState.WAITING) == []
    assert recover_stale_trials(load(storage)) == []
    assert recommended(second.stdout) == unkilled_answer


def by_state(found: list[optuna.trial.FrozenTrial], state: TrialState) -> list[int]:
    return [t.number for t in found if t.state == state]


@pytest.mark.slow
def test_kill_9_mid_fused_group_then_resume_reruns_every_member_once(tmp_path, monkeypatch):
    """A fused study trains the portfolio entries queued together in one pass, so a kill lands on all of
    them at once: each is failed and queued again once, and the re-runs train together."""
    monkeypatch.setenv("AUTOOPT_HEARTBEAT_SECONDS", "1")
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    (tmp_path / "study.py").write_text(study_script(["sgd", "adam", "momentum"], fused=True))
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent),
           "AUTOOPT_HEARTBEAT_SECONDS": "1"}
    command = [sys.executable, str(tmp_path / "study.py"), storage, "off"]

    def group_mid_training():
        running = [t for t in trials(storage) if t.state == TrialState.RUNNING
                   and 1 <= len(t.intermediate_values) <= EPOCHS - 8]
        return running if len(running) == 3 else None

    killed = kill_9_when(command, tmp_path, env, group_mid_training)
    numbers = sorted(t.number for t in killed)
    assert poll(lambda: sorted(t.number for t in stale_trials(load(storage))) == numbers or None, timeout=30)

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    after = trials(storage)
    by_number = {t.number: t for t in after}
    assert [by_number[n].state for n in numbers] == [TrialState.FAIL] * 3
    reruns = {t.user_attrs[RETRY_OF]: t for t in after if RETRY_OF in t.user_attrs}
    assert sorted(reruns) == numbers  # each member once
    for number, rerun in reruns.items():
        assert rerun.state == TrialState.COMPLETE and rerun.params == by_number[number].params
        assert rerun.user_attrs[GROUP_SIZE_ATTR] == 3  # trained together again
        assert len(rerun.intermediate_values) == EPOCHS
    assert [t.number for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    assert recover_stale_trials(load(storage)) == []


TIMED = """
import sys, torch, autoopt
g = torch.Generator().manual_seed(0)
X = torch.randn(200, 4, generator=g)
y = (X[:, 0] > 0).long()
autoopt.tune(torch.nn.Linear(4, 2), (X, y), optimizers=["sgd", "adam"], timeout=float(sys.argv[2]), epochs=2,
             batch_size=32, seeds=1, storage=sys.argv[1], study_name="timed", tracking=False, verbose=False)
"""


@pytest.mark.slow
def test_timeout_is_the_studys_total_across_processes(tmp_path):
    """Two processes one after the other with timeout=2: the second finds the study's 2 s spent and
    trains nothing (before, each process had 2 s of its own)."""
    storage = f"sqlite:///{tmp_path / 'timed.db'}"
    (tmp_path / "timed.py").write_text(TIMED)
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent)}

    def run(timeout: float) -> tuple[list, float]:
        done = subprocess.run([sys.executable, str(tmp_path / "timed.py"), storage, str(timeout)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        study = optuna.load_study(study_name="timed", storage=storage)
        return study.get_trials(deepcopy=False), float(study.user_attrs[budget.SEARCH_SECONDS_ATTR])

    # no bound here depends on the machine's speed: the clock is read from the study itself
    trials_first, seconds_first = run(2)
    assert trials_first and seconds_first >= 2  # the clock ran out before the search did
    longest = max((t.datetime_complete - t.datetime_start).total_seconds() for t in trials_first if t.datetime_complete)
    assert seconds_first - 2 <= longest + 5  # at most a trial ran past it
    trials_second, seconds_second = run(2)
    assert len(trials_second) == len(trials_first)  # nothing left of the study's 2 s: no trial
    assert seconds_second >= seconds_first  # the second process's time adds to the study's clock
