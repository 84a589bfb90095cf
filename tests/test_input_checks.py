"""Bad input, generated: every case is either accepted and correct, or refused before any training with
one line that names the value and what is accepted (``autoopt/input_checks.py`` and the checks it calls).

Hypothesis draws data arrays (shapes, dtypes, labels, non-finite values, containers), ``tune()``'s other
arguments (functions, ``config=``, ``target=``, numpy numbers, storages and tracking URIs) and study files
(settings, and recipes that exit or lead out of their project): 240 cases in all, each a tiny ``tune()``
(milliseconds when refused, a 1-epoch trial on 40 samples when accepted) or an ``autoopt run`` that stops
before building anything. The last tests are the cases an earlier probe found, each named.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autoopt
from autoopt.cli.command import main
from autoopt.cli.studyfile import StudyFileError, parse_study

ROOT = Path(autoopt.__file__).resolve().parent.parent
TINY = dict(epochs=1, batch_size=64, n_trials=1, seeds=1, optimizers=["sgd"], tracking=False, verbose=False)
CASES = settings(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Counted(torch.nn.Module):
    """A linear model that counts its training forward passes: a refusal must come before the first."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same case trains the same way every time it is drawn
        self.layer, self.training_calls = torch.nn.Linear(inputs, outputs), 0

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.training_calls += 1
        return self.layer(x.float())


def refused(model: Counted, call: Any, *needles: str) -> str:
    """``call()`` raises ValueError or TypeError, in one line naming every needle, before any training."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert all(n in message for n in needles), (needles, message)
    assert model.training_calls == 0, message
    return message


# --- data arrays --------------------------------------------------------------------------------------

class Data(NamedTuple):
    """Generated data and what must happen to it: ``needle`` in the refusal, or None and ``classes``
    (classification: accuracy measured) / regression."""

    data: Any
    outputs: int  # the model's output width
    target: str | None
    needle: str | None
    classes: bool


LABELS = ["ids", "ids column", "one-hot ints", "one-hot floats", "floats", "0/1 floats", "two float columns",
          "one class", "one class one-hot", "negative ids", "bools", "strings"]


@st.composite
def datasets(draw) -> Data:
    n = draw(st.sampled_from([0, 1, 2, 5, 17, 40]))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    label = draw(st.sampled_from(LABELS))
    c = draw(st.integers(2, 4))
    ids = np.arange(n) % c
    centers = rng.normal(0, 2, size=(c, d))  # learnable: the features depend on the class
    X = (centers[ids] + 0.3 * rng.normal(size=(n, d))).astype(draw(st.sampled_from([np.float32, np.float64])))
    y: Any = {"ids": ids, "ids column": ids[:, None], "one-hot ints": np.eye(c, dtype=np.int64)[ids],
              "one-hot floats": np.eye(c, dtype=np.float32)[ids], "floats": X @ rng.normal(size=d),
              "0/1 floats": (ids % 2).astype(np.float32), "two float columns": X @ rng.normal(size=(d, 2)),
              "one class": np.full(n, c - 1), "one class one-hot": np.eye(c, dtype=np.int64)[np.zeros(n, int)],
              "negative ids": ids - 1, "bools": ids % 2 == 0, "strings": np.array([f"k{i}" for i in ids])}[label]
    outputs = {"floats": 1, "0/1 floats": 1, "two float columns": 2, "bools": 2}.get(label, c)
    classes = label not in ("floats", "two float columns")
    fault = draw(st.sampled_from(["none", "none", "none", "NaN in X", "inf in y", "lengths", "target= with arrays"]))
    if fault == "NaN in X" and n:
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = np.nan
    elif fault == "inf in y" and n and label in ("floats", "0/1 floats", "one-hot floats"):
        y = y.copy()
        y[draw(st.integers(0, n - 1))] = np.inf
    elif fault == "lengths" and n:
        y = y[:-1]
    else:
        fault = "none" if fault != "target= with arrays" else fault
    # the first check that fails, in the order they run: target=, lengths, empty, NaN, one sample, labels
    needle = next((word for failed, word in [
        (fault == "target= with arrays", "leave target out"), (fault == "lengths", "same length"),
        (n == 0, "empty"), (fault == "NaN in X", "NaN"), (fault == "inf in y", "NaN or infinite"),
        (n == 1, "at least 2"), (label == "negative ids", "0 or more"),
        (label in ("one class", "one class one-hot"), "one class")] if failed), None)
    container = draw(st.sampled_from(["numpy", "torch", "frame"]))
    target = draw(st.sampled_from(["y", "label"])) if fault == "target= with arrays" else None
    if container == "torch" and label != "strings":
        data: Any = (torch.from_numpy(X), torch.from_numpy(np.asarray(y)))
    elif container == "frame" and target is None and np.ndim(y) == 1 and len(y) == n:
        data, target = pd.DataFrame(X, columns=[f"f{i}" for i in range(d)]).assign(label=y), "label"
    else:
        data = (X, y)
    return Data(data, outputs, target, needle, classes)


@settings(CASES, max_examples=100)
@given(case=datasets())
def test_data_is_refused_before_training_or_trained_as_its_kind(case):
    model = Counted(case.data[0].shape[1] if isinstance(case.data, tuple) else case.data.shape[1] - 1, case.outputs)

    def call():
        return autoopt.tune(model, case.data, target=case.target, **TINY)

    if case.needle is not None:
        refused(model, call, case.needle)
        return
    n = len(case.data[0]) if isinstance(case.data, tuple) else len(case.data)
    try:
        report = call()
    except RuntimeError as exc:  # trained, and said so: a few samples may teach nothing in a short trial
        assert n < 10 and "trained cleanly" in str(exc), str(exc)
        return
    assert model.training_calls == 0  # tune() trains copies: the user's model is never touched
    assert report.recommendation is not None and len(report.trials) >= 1
    accuracy = report.trials["final_val_accuracy"]
    assert accuracy.notna().all() if case.classes else accuracy.isna().all()


# --- the other arguments of tune() -----------------------------------------------------------------------

Y40 = np.arange(40) % 3
X40 = (np.random.default_rng(0).normal(0, 2, size=(3, 4))[Y40]
       + 0.3 * np.random.default_rng(1).normal(size=(40, 4))).astype(np.float32)  # three separable blobs
not_callable = st.one_of(st.text(max_size=8), st.integers(), st.lists(st.integers(), max_size=2))
numpy_int = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32])


@st.composite
def arguments(draw) -> tuple[dict[str, Any], list[str] | None]:
    """tune() keyword arguments and the words the refusal must hold: the value, what is accepted (None:
    accepted)."""
    kind = draw(st.sampled_from(["loss_fn", "output_fn", "step_fn", "config", "target", "numpy ints",
                                 "numpy floats", "numpy bools", "memory storage", "folder tracking"]))
    if kind in ("loss_fn", "output_fn", "step_fn"):
        value = draw(not_callable.filter(lambda v: v != [] and v != ""))
        return {kind: value}, [f"{kind} must be a function", f"got {value!r}"]
    if kind == "config":
        value = draw(st.one_of(st.dictionaries(st.sampled_from(["epochs", "n_trials"]), st.integers(1, 3)),
                               st.text(max_size=5), st.integers()).filter(lambda v: v not in ({}, "", 0)))
        return {"config": value}, ["config must be an autoopt.StudyConfig", type(value).__name__]
    if kind == "target":
        value = draw(st.text(min_size=1, max_size=6))
        return {"target": value}, [f"target={value!r}", "leave target out"]
    if kind == "numpy ints":
        ints = draw(st.fixed_dictionaries({"epochs": st.integers(1, 2), "n_trials": st.integers(1, 2),
                                           "batch_size": st.integers(8, 64), "seed": st.integers(0, 99)}))
        return {k: draw(numpy_int)(v) for k, v in ints.items()}, None
    if kind == "numpy floats":
        return {"tolerance": np.float64(draw(st.floats(0, 0.5))), "timeout": np.float32(draw(st.floats(30, 99))),
                "val_fraction": np.float64(draw(st.floats(0.1, 0.5)))}, None
    if kind == "numpy bools":
        return {"refine_lr": np.bool_(draw(st.booleans())), "tracking": np.bool_(False)}, None
    if kind == "memory storage":
        value = draw(st.sampled_from(["sqlite:///:memory:", "sqlite://", "sqlite:///"]))
        return {"storage": value}, [f"storage={value!r}", "in-memory SQLite", "sqlite:///study.db"]
    folder = draw(st.sampled_from(["./mlruns", "mlruns", "../runs", "file:./mlruns", "file:///tmp/autoopt-mlruns"]))
    return {"tracking": True, "tracking_uri": folder}, [f"tracking_uri={folder!r}", "sqlite:///mlflow.db"]


@settings(CASES, max_examples=80)
@given(case=arguments())
def test_tune_arguments_are_refused_before_training_or_taken_as_given(case, tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("args")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    given_args, needles = case
    model = Counted(4, 3)

    def call():
        return autoopt.tune(model, (X40, Y40), **{**TINY, **given_args})

    if needles is not None:
        refused(model, call, *needles)
        assert list(folder.iterdir()) == []  # no study file, no MLflow store left behind
        return
    report = call()
    for name, value in given_args.items():
        kept = getattr(report.config, name)
        assert kept == value.item() and type(kept) is type(value.item()), (name, kept)


# --- study files ---------------------------------------------------------------------------------------

GOOD = {"epochs": st.integers(1, 9), "n_trials": st.integers(1, 50), "seed": st.integers(0, 1000),
        "optimizers": st.lists(st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]), min_size=1, max_size=3,
                               unique=True),
        "budget": st.floats(1.5, 20), "storage": st.sampled_from(["sqlite:///s.db", "journal:s.log"]),
        "tracking_uri": st.sampled_from(["sqlite:///mlflow.db", "http://127.0.0.1:5000"])}
BAD = {"epochs": st.sampled_from([0, -1, 2.5, "3", True]), "n_trials": st.sampled_from([0, -4, 1.5, "ten"]),
       "seed": st.sampled_from([-1, 2**40, "x"]), "optimizers": st.sampled_from([["adamz"], [], ["sgd", "sgd"], 3]),
       "budget": st.sampled_from([0.0, -2.0, "lots"]),
       "storage": st.sampled_from(["sqlite:///:memory:", "sqlite://", "notaurl", "bogus://x"]),
       "tracking_uri": st.sampled_from(["./mlruns", "mlruns", "bogus://x"])}


@st.composite
def study_files(draw) -> tuple[dict[str, Any], set[str]]:
    keys = draw(st.lists(st.sampled_from(sorted(GOOD)), min_size=1, max_size=4, unique=True))
    bad = set(draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)))
    return {k: draw(BAD[k] if k in bad else GOOD[k]) for k in keys}, bad


@settings(CASES, max_examples=40)
@given(case=study_files())
def test_a_study_file_is_refused_naming_a_bad_key_or_read_as_written(case, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    values, bad = case
    if bad:
        with pytest.raises(StudyFileError) as info:
            parse_study({"recipe": "tiny", **values}, "s.toml")
        message = str(info.value)
        assert message.startswith("s.toml: ") and len(message.splitlines()) == 1, message
        assert any(key in message for key in bad), (bad, message)
        return
    settings_read = parse_study({"recipe": "tiny", **values}, "s.toml").settings
    for key, value in values.items():
        assert getattr(settings_read, key) == (tuple(value) if isinstance(value, list) else value), key


EXITS = {"sys.exit": "import sys\nsys.exit({code})\n", "os._exit": "import os\nos._exit({code})\n",
         "from os import _exit": "from os import _exit\n_exit({code})\n"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project" / "recipes").mkdir(parents=True)
    (tmp_path / "project" / "studies").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "project"


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@settings(CASES, max_examples=20)
@given(how=st.sampled_from(sorted(EXITS)), code=st.integers(0, 255), when=st.sampled_from(["importing", "building"]),
       linked=st.booleans())
def test_a_recipe_that_exits_or_leaves_its_project_is_exit_2_naming_it(project, how, code, when, linked):
    """A recipe that ends the process (sys.exit, os._exit, however imported) while importing or building is
    reported with exit 2; a recipe that is a link to a file outside its project is refused unread."""
    call = EXITS[how].format(code=code)
    source = '"""Exits."""\n' + (call if when == "importing" else
                                 "def build(seed=0):\n" + "".join(f"    {line}\n" for line in call.splitlines()))
    recipe = project / "recipes" / "quits.py"
    recipe.unlink(missing_ok=True)
    if linked:
        (project.parent / "outside" / "quits.py").write_text(source)
        recipe.symlink_to(project.parent / "outside" / "quits.py")
    else:
        recipe.write_text(source)
    (project / "studies" / "q.toml").write_text('recipe = "quits"\nn_trials = 1\ntracking = false\n')
    status, err = run_cli(["run", str(project / "studies" / "q.toml")])
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoopt: error: recipe"), err
    expected = "outside its project" if linked else f"{'sys.exit' if how == 'sys.exit' else 'os._exit'}({code})"
    assert expected in lines[0] and (linked or when in lines[0]), err


# --- what the probe found, each case named ------------------------------------------------------------

def test_the_real_command_reports_a_recipe_calling_os_exit_and_refuses_sqlite_in_memory(project):
    (project / "recipes" / "quits.py").write_text('"""Exits."""\nimport os\nos._exit(0)\n')
    (project / "recipes" / "fine.py").write_text('"""Never built."""\ndef build(seed=0):\n    raise AssertionError\n')
    (project / "studies" / "q.toml").write_text('recipe = "quits"\nn_trials = 1\ntracking = false\n')
    (project / "studies" / "m.toml").write_text('recipe = "fine"\nn_trials = 1\ntracking = false\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv, needle in [(["studies/q.toml"], "called os._exit(0) while importing"),
                         (["studies/m.toml", "--storage", "sqlite:///:memory:"], "in-memory SQLite database")]:
        done = subprocess.run([sys.executable, "-m", "autoopt.cli", "run", *argv], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and needle in done.stderr and "Traceback" not in done.stderr
        assert "Run the same command again" not in done.stdout + done.stderr


@pytest.mark.parametrize("labels, expected", [
    (np.eye(3, dtype=np.int64)[np.arange(40) % 3], "one-hot rows over 3 classes"),  # int64 one-hot: classes
    ((np.arange(40) % 3)[:, None], None),  # class ids as a column: classes, no note needed
])
def test_one_hot_ints_and_a_column_of_ids_are_classes(labels, expected, capsys):
    report = autoopt.tune(Counted(4, 3), (X40, labels), **{**TINY, "verbose": True})
    assert report.trials["final_val_accuracy"].notna().all()  # accuracy is measured: classification
    err = capsys.readouterr().err
    assert (expected in err) if expected else "note: the targets" not in err


def test_a_bad_batch_of_a_loader_is_named_before_the_first_trial():
    X = torch.from_numpy(X40.copy())
    X[33, 1] = float("nan")  # a later batch than the first
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, torch.from_numpy(Y40)), batch_size=8)
    model = Counted(4, 3)
    refused(model, lambda: autoopt.tune(model, loader, **TINY), "batch", "NaN")


def test_ragged_dataset_items_are_named():
    items = [(torch.randn(4), i % 2) for i in range(9)] + [(torch.randn(5), 0)]

    class Ragged(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    model = Counted(4, 2)
    refused(model, lambda: autoopt.tune(model, Ragged(), **TINY), "item 9", "(5,)", "(4,)")


class Unreadable(torch.utils.data.Dataset):
    """40 samples, of which item 23 raises when read."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        if i == 23:
            raise OSError("disk on fire")
        return torch.from_numpy(X40[i]), int(Y40[i])


def test_an_item_or_batch_that_cannot_be_read_is_named_before_training():
    model = Counted(4, 3)
    refused(model, lambda: autoopt.tune(model, Unreadable(), **TINY), "item 23", "OSError: disk on fire")
    loader = torch.utils.data.DataLoader(Unreadable(), batch_size=8)
    refused(model, lambda: autoopt.tune(model, loader, **TINY), "batch", "OSError: disk on fire")
