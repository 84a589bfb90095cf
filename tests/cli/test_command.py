"""The ``autoopt`` command, through ``main(argv)``: each subcommand, exit codes, one-line errors, resume.

Every test runs in its own folder (conftest), with tracking off or pointed into that folder.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from autoopt import list_optimizers
from autoopt.cli import main
from autoopt.cli import ui as cli_ui
from autoopt.cli.listing import state_per_parameter
from autoopt.optimizers.registry import get_spec
from autoopt.study.budget import finished_trials

ROOT = Path(__file__).resolve().parents[2]

#: A tiny problem whose forward pass can raise KeyboardInterrupt on its N-th call (Ctrl-C, deterministically).
TINY_RECIPE = '''\
"""Three blobs, a linear model: a study in a second."""
import os

import torch

EPOCHS = 2
BATCH_SIZE = 16
CALLS = 0  # forward calls in this process (all copies of the model share the module)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def forward(self, x):
        global CALLS
        CALLS += 1
        if CALLS == int(os.environ.get("AUTOOPT_TEST_INTERRUPT_AT", "0")):
            raise KeyboardInterrupt
        return self.layer(x)


def build(seed: int = 0):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 4, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    torch.manual_seed(seed)
    return Net(), (X, y)
'''

TINY_STUDY = '''\
recipe = "tiny"
optimizers = ["sgd", "adam"]
n_trials = 3
reevaluate_top = 1
seeds = 2
pruner = "none"
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path/recipes/tiny.py and tmp_path/studies/tiny.toml; the cwd is tmp_path."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.py").write_text(TINY_RECIPE)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "tiny.toml").write_text(TINY_STUDY)
    return tmp_path


def one_line_error(err: str, prefix: str = "autoopt: error: ") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix) and "Traceback" not in err
    return lines[0]


def stored_trials(name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{name}.db").trials


def search_budget_spent(name: str = "tiny") -> int:
    """The engine's own count of the trials that n_trials limits."""
    return finished_trials(optuna.load_study(study_name=name, storage=f"sqlite:///{name}.db"))


# --- help and usage ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["optimizers", "--help"], ["recipes", "--help"],
                                  ["show", "--help"], ["ui", "--help"]])
def test_help_of_every_command(argv, capsys):
    assert main(argv) == 0
    assert "usage: autoopt" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["run"], "the following arguments are required: STUDY_FILE"),
    (["run", "s.toml", "--trials", "many"], "argument --trials: invalid int value: 'many'"),
])
def test_bad_usage_is_exit_2_and_one_line(argv, message, capsys):
    assert main(argv) == 2
    assert message in one_line_error(capsys.readouterr().err)


# --- optimizers and recipes --------------------------------------------------------------------------

def test_optimizers_lists_the_registry(capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    for name in list_optimizers():
        assert f"\n{name} " in out
    adam = next(line for line in out.splitlines() if line.startswith("adam "))
    assert "2x params + step" in adam and "lr 1e-05..1 log" in adam


@pytest.mark.parametrize("name, expected", [
    ("sgd", "none"),
    ("momentum", "1x params"),
    ("adam", "2x params + step"),
    ("nadam", "2x params + 2 scalars"),
    ("adafactor", "rows + cols + step (matrices), 1x params + step (vectors)"),
    ("muon", "1x params (matrices), 2x params + step (vectors)"),
])
def test_state_per_parameter_comes_from_the_state_rule(name, expected):
    assert state_per_parameter(get_spec(name)) == expected


def test_recipes_lists_name_and_first_docstring_line(project, capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "Three blobs, a linear model: a study in a second." in out
    if importlib.util.find_spec("sklearn"):
        assert "digits_mlp" in out  # the shipped recipes are listed too


# --- run, resume, show -------------------------------------------------------------------------------

def test_run_prints_table_recommendation_and_where_it_is_stored(project, capsys):
    assert main(["run", "studies/tiny.toml", "--no-tracking"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Best configuration of each optimizer (★ the recommendation" in out and "val_loss" in out
    assert "Recommendation:" in out and "Chosen by policy 'default'" in out
    assert "In code:\n    optimizer = torch.optim." in out
    assert "Study 'tiny':" in out and "sqlite:///tiny.db" in out
    assert "MLflow: not recorded" in out
    assert "study 'tiny' in sqlite:///tiny.db" in captured.err  # the plan, on stderr
    assert (project / "tiny.db").exists()  # the default storage: named after the study, in the cwd
    assert search_budget_spent() == 3  # n_trials (re-evaluations come on top)


def test_a_study_file_objective_is_what_the_run_maximizes_and_show_reads_back(project, capsys):
    (project / "studies" / "tiny.toml").write_text(TINY_STUDY + 'objective = "val_accuracy"\n')
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "the best mean validation accuracy (maximized)" in out
    assert "val_accuracy" in out.split("Recommendation:")[0]  # a column of the table
    assert optuna.load_study(study_name="tiny", storage="sqlite:///tiny.db").direction.name == "MAXIMIZE"
    assert main(["show", "tiny"]) == 0
    assert "the best mean validation accuracy (maximized)" in capsys.readouterr().out


def test_run_flags_override_the_file(project, capsys):
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet", "--trials", "2", "--epochs", "1",
                 "--study-name", "other", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no plan, no progress bar
    assert search_budget_spent("other") == 2
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--budget", "0"]) == 2  # validated like the file
    assert "budget must be a positive number" in one_line_error(capsys.readouterr().err)
    epochs = [len(t.user_attrs["measurement"]["epochs"]) for t in stored_trials("other")]
    assert max(epochs) == 1


def test_run_again_resumes_and_a_larger_budget_searches_more(project, capsys):
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 0
    first = stored_trials()
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 0  # budget spent: nothing new
    assert len(stored_trials()) == len(first)
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--trials", "5"]) == 0
    assert "resuming, 3 search trial(s) already done" in capsys.readouterr().err
    assert len(stored_trials()) > len(first)


def test_ctrl_c_exits_130_with_the_resume_command_and_a_rerun_continues(project, capsys, monkeypatch):
    # the recipe's model raises KeyboardInterrupt on its 18th forward call: a few calls into trial 2 or 3
    # (task inference and trial 1 take the first ones)
    monkeypatch.setenv("AUTOOPT_TEST_INTERRUPT_AT", "18")
    argv = ["run", "studies/tiny.toml", "--no-tracking", "--quiet"]
    assert main(argv) == 130
    message = one_line_error(capsys.readouterr().err, prefix="autoopt: interrupted; ")
    kept = search_budget_spent()
    assert kept >= 1 and f"{kept} finished search trial(s) are kept in sqlite:///tiny.db" in message
    assert message.endswith("Resume with: autoopt run studies/tiny.toml --no-tracking --quiet")
    before = stored_trials()
    interrupted = [t for t in before if t.state == optuna.trial.TrialState.FAIL]
    assert len(interrupted) == 1  # recorded as interrupted, not lost
    assert interrupted[0].user_attrs["measurement"]["outcome"] == "interrupted"

    monkeypatch.delenv("AUTOOPT_TEST_INTERRUPT_AT")
    assert main(argv) == 0
    after = stored_trials()
    assert len(after) > len(before)
    for old, new in zip(before, after):  # the finished trials are kept as they were, not redone
        if old.state != optuna.trial.TrialState.WAITING:
            assert (new.number, new.state, new.params, new.value) == (old.number, old.state, old.params, old.value)
    done = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    assert interrupted[0].params in [t.params for t in done]  # the interrupted configuration, trained again
    assert not [t for t in after if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)]
    assert search_budget_spent() == 3  # the interrupted trial does not count against n_trials


def test_show_rebuilds_the_report_from_the_storage(project, capsys):
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 0
    ran = capsys.readouterr().out
    assert main(["show", "tiny"]) == 0
    shown = capsys.readouterr().out
    assert "Recommendation:" in shown and "Best configuration of each optimizer (" in shown
    recommended = ran[ran.index("In code:"):].split("\n\n")[0]  # the code lines up to the blank line
    assert recommended in shown
    assert main(["show", "studies/tiny.toml"]) == 0  # a study file stands for its name and storage
    assert recommended in capsys.readouterr().out


def _cli_in_a_fresh_process(project: Path, *argv: str) -> tuple[str, list[str]]:
    """stdout of ``autoopt ARGV`` in a new interpreter, and which of torch, MLflow, matplotlib it imported."""
    script = ("import sys\nfrom autoopt.cli import main\ncode = main(sys.argv[1:])\nassert code == 0, code\n"
              "print(sorted(m for m in ('torch', 'mlflow', 'matplotlib') if m in sys.modules), file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, *argv], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout, eval(done.stderr.strip().splitlines()[-1])


def test_a_finished_study_prints_from_its_storage_without_importing_torch_or_mlflow(project, capsys):
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 0
    ran = capsys.readouterr().out
    trials = len(stored_trials())
    again, imported = _cli_in_a_fresh_process(project, "run", "studies/tiny.toml", "--no-tracking", "--quiet")
    assert again == ran and imported == []  # the same answer, read from the storage: no recipe, no torch
    shown, imported = _cli_in_a_fresh_process(project, "show", "tiny")
    assert "Recommendation:" in shown and imported == []
    assert len(stored_trials()) == trials
    # other settings than the finished run's may have work left: the full run decides (here: 2 more trials)
    more, imported = _cli_in_a_fresh_process(project, "run", "studies/tiny.toml", "--no-tracking", "--quiet",
                                             "--trials", "5")
    assert "torch" in imported and len(stored_trials()) > trials


def test_show_of_a_missing_study(project, capsys):
    assert main(["show", "nothing"]) == 2
    assert "no study database nothing.db" in one_line_error(capsys.readouterr().err)
    assert not (project / "nothing.db").exists()  # looking did not create it
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["show", "nothing", "--storage", "sqlite:///tiny.db"]) == 2
    assert "no study named 'nothing'" in one_line_error(capsys.readouterr().err)


def test_run_with_tracking_says_where_the_record_is_and_how_to_open_it(project, capsys, monkeypatch):
    # MLflow itself is tested in test_mlflow_tracker.py; here only what the CLI prints about it, without
    # paying for a real store: the real tune() runs untracked and the report is given a record's address
    real_tune = sys.modules["autoopt.tune"].tune
    seen = {}

    def tune_with_a_record(model, data, config):
        seen["config"] = config
        report = real_tune(model, data, config=dataclasses.replace(config, tracking=False))
        report.tracking_uri, report.parent_run_id = config.tracking_uri or "sqlite:///mlflow.db", "abc123"
        report._mlflow_link = "http://127.0.0.1:5000/#/experiments/7/runs?viewStateShareKey=autoopt-abc123"
        return report

    monkeypatch.setattr(sys.modules["autoopt.tune"], "tune", tune_with_a_record)
    assert main(["run", "studies/tiny.toml", "--quiet"]) == 0
    assert seen["config"].tracking is True
    out = capsys.readouterr().out
    assert "MLflow: parent run abc123 in sqlite:///mlflow.db. See it with: autoopt ui\n" in out
    assert ("The answer at a glance (the comparison chart), once `autoopt ui` runs:\n"
            "  http://127.0.0.1:5000/#/experiments/7/runs?viewStateShareKey=autoopt-abc123\n") in out
    # autoopt show prints the link the finished run noted, where the study says its record is
    optuna.load_study(study_name="tiny", storage="sqlite:///tiny.db").set_user_attr(
        "mlflow", {"tracking_uri": "sqlite:///mlflow.db", "parent_run_id": "abc123"})
    assert main(["show", "tiny"]) == 0
    assert "  http://127.0.0.1:5000/#/experiments/7/runs?viewStateShareKey=autoopt-abc123\n" in capsys.readouterr().out
    assert main(["run", "studies/tiny.toml", "--quiet", "--tracking-uri", "sqlite:///elsewhere.db"]) == 0
    assert seen["config"].tracking_uri == "sqlite:///elsewhere.db"
    assert "See it with: autoopt ui --tracking-uri sqlite:///elsewhere.db" in capsys.readouterr().out


# --- bad study files and recipes ---------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ('recipe = "tiny"\nn_trials = \n', "not valid TOML"),
    ('recipe = "tiny"\nn_trial = 3\n', "unknown key 'n_trial'"),
    ('recipe = "tiny"\noptimizers = ["adam", "adamm"]\n', "unknown optimizer(s) ['adamm']"),
    ('recipe = "no_such_recipe"\n', "unknown recipe 'no_such_recipe'"),
    ('recipe = "../boom.py"\n', "raised while building: ValueError: the data is not there"),
])
def test_a_bad_study_file_is_exit_2_and_one_line(project, capsys, text, message):
    (project / "boom.py").write_text("def build(seed=0):\n    raise ValueError('the data is not there')\n")
    (project / "studies" / "bad.toml").write_text(text)
    assert main(["run", "studies/bad.toml", "--no-tracking"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert message in line
    assert not (project / "bad.db").exists()  # nothing ran


@pytest.mark.parametrize("flags, message", [
    (["--trials", "0"], "n_trials must be a positive integer"),
    (["--device", "tpu9"], "device='tpu9'"),
])
def test_bad_flag_values_are_exit_2(project, capsys, flags, message):
    assert main(["run", "studies/tiny.toml", "--no-tracking", *flags]) == 2
    assert message in one_line_error(capsys.readouterr().err)


def test_a_failure_at_run_time_is_exit_1_and_debug_shows_the_traceback(project, capsys, monkeypatch):
    def broken_tune(*args, **kwargs):
        raise RuntimeError("the storage went away")

    monkeypatch.setattr(sys.modules["autoopt.tune"], "tune", broken_tune)  # `autoopt.tune` is the function
    assert main(["run", "studies/tiny.toml", "--no-tracking", "--quiet"]) == 1
    assert "RuntimeError: the storage went away" in one_line_error(capsys.readouterr().err)
    with pytest.raises(RuntimeError):
        main(["--debug", "run", "studies/tiny.toml", "--no-tracking"])
    with pytest.raises(RuntimeError):
        main(["run", "studies/tiny.toml", "--no-tracking", "--debug"])  # after the command, too


# --- ui ----------------------------------------------------------------------------------------------

def test_ui_starts_mlflow_on_localhost(monkeypatch, capsys):
    calls = []  # the command lines only: test_ui_stops_its_server_when_stopped runs the real server
    monkeypatch.setattr(cli_ui, "_serve", lambda command, env: calls.append(command) or 0)
    assert main(["ui", "--port", "5123"]) == 0
    assert main(["ui", "--tracking-uri", "sqlite:///x.db"]) == 0
    assert calls[0][calls[0].index("--host") + 1] == "127.0.0.1"
    assert calls[0][calls[0].index("--port") + 1] == "5123" and "--backend-store-uri" not in calls[0]
    assert calls[1][calls[1].index("--backend-store-uri") + 1] == "sqlite:///x.db"
    assert main(["ui", "--tracking-uri", "http://mlflow.example:5000"]) == 0  # a server: nothing to start
    assert len(calls) == 2 and "open it in a browser" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="signals and process groups as on POSIX")
def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path):
    """``autoopt optimizers | head -0``: stdout is a pipe nobody reads any more (its read end closed
    before the command starts, so the first write fails for certain): exit 1, no error line, no
    traceback from the flush at exit."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "autoopt.cli", "optimizers"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


def test_ui_stops_its_server_when_stopped(tmp_path):
    """A real `autoopt ui`: once its server answers, SIGTERM to autoopt alone stops the server too."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    ui = subprocess.Popen([sys.executable, "-m", "autoopt.cli", "ui", "--port", str(port),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _answers(port):
            assert ui.poll() is None, f"autoopt ui exited with {ui.returncode} before its server answered"
            assert time.monotonic() < deadline, "the MLflow server did not answer within 120 s"
            time.sleep(0.25)  # polling for the port, not a synchronisation
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=30) == 0
        assert not _answers(port), "the MLflow server kept running after autoopt ui was stopped"
    finally:
        if ui.poll() is None:
            ui.kill()


# --- init --------------------------------------------------------------------------------------------

def test_init_writes_a_study_and_a_recipe_that_run(tmp_path, capsys):
    assert main(["init", str(tmp_path), "--name", "first"]) == 0
    assert "autoopt run" in capsys.readouterr().out
    study = tmp_path / "studies" / "first.toml"
    from autoopt.cli.recipes import load_recipe
    from autoopt.cli.studyfile import load_study_file

    loaded = load_study_file(study)
    recipe = load_recipe(loaded.recipe, loaded.base_dir)
    assert recipe.name == "first" and recipe.source == str((tmp_path / "recipes" / "first.py").resolve())
    model, (X, y) = recipe.make(seed=0)
    assert len(X) == len(y) == 1797
    assert main(["init", str(tmp_path), "--name", "first"]) == 2  # never overwrites
    assert "already exist" in capsys.readouterr().err
