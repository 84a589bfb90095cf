"""Bad input, everywhere: property-based checks that every bad setting is a clear error before training.

Each *kind* of bad input (a setting and a way of getting it wrong) is one test case; hypothesis draws a
few values of that kind. Through ``tune()`` the error must be a ValueError or TypeError naming the
setting, raised before the model's first training step (the model counts them); through a study file
and the CLI it must be exit 2 with one line on stderr that names it, and the recipe's model must never
have trained (it leaves a marker file when it does). A few cases run the real ``autoopt`` process.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
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

FAST = dict(epochs=1, batch_size=32, n_trials=2, tracking=False, verbose=False, optimizers=["sgd"], seeds=1)
FEW = settings(max_examples=4, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

NAN, INF = math.nan, math.inf
not_a_bool = st.one_of(st.sampled_from(["false", "true", "False", "no", "yes", "0", ""]), st.integers(0, 1),
                       st.floats(0, 1), st.none())
non_finite = st.sampled_from([NAN, INF, -INF])
a_string_number = st.integers(1, 100).map(str)
not_positive_int = st.integers(max_value=0)
not_an_int = st.one_of(st.booleans(), st.floats(0.5, 50).filter(lambda v: v != int(v)), a_string_number)


class Kind(NamedTuple):
    """One way of getting a setting wrong: ``values`` draws bad values; ``toml``: a study file can hold them."""

    setting: str
    label: str
    values: st.SearchStrategy
    toml: bool = True


KINDS = [
    Kind("epochs", "bool", st.booleans()),
    Kind("epochs", "not positive", not_positive_int),
    Kind("epochs", "not an int", not_an_int),
    Kind("batch_size", "not positive", not_positive_int),
    Kind("batch_size", "bool", st.booleans()),
    Kind("n_trials", "not positive", not_positive_int),
    Kind("n_trials", "not an int", not_an_int),
    Kind("seeds", "not positive", not_positive_int),
    Kind("n_jobs", "not positive", not_positive_int),
    Kind("n_jobs", "bool", st.booleans()),
    Kind("threads", "not positive", not_positive_int),
    Kind("timeout", "non-finite", non_finite),
    Kind("timeout", "not positive", st.floats(max_value=0, allow_nan=False)),
    Kind("timeout", "bool or text", st.one_of(st.booleans(), a_string_number)),
    Kind("budget", "non-finite", non_finite),
    Kind("budget", "not positive", st.floats(max_value=0, allow_nan=False)),
    Kind("budget", "bool or text", st.one_of(st.booleans(), a_string_number)),
    Kind("budget", "too small for the re-evaluation", st.floats(0.01, 2.0)),  # with reevaluate_top 2, seeds 2
    Kind("tolerance", "non-finite", non_finite),
    Kind("tolerance", "out of [0, 1)", st.one_of(st.floats(max_value=-1e-9, allow_nan=False),
                                                   st.floats(min_value=1, allow_nan=False))),
    Kind("tolerance", "bool or text", st.one_of(st.booleans(), st.just("0.1"))),
    Kind("memory_budget", "non-finite", non_finite),
    Kind("memory_budget", "not positive", st.integers(max_value=0)),
    Kind("memory_budget", "bool", st.booleans()),
    Kind("memory_budget", "not a size", st.sampled_from(["lots", "12 parsecs", "1.2.3MB", "MB", "-5MB", "nan"])),
    Kind("memory_budget", "a list", st.lists(st.integers(1, 9), min_size=1, max_size=3)),
    Kind("policy", "non-finite weight", st.builds(lambda c, w: {c: w}, st.sampled_from(["loss", "speed"]), non_finite)),
    Kind("policy", "bool or text weight", st.builds(lambda w: {"loss": w}, st.one_of(st.booleans(), st.just("1")))),
    Kind("policy", "negative weight", st.builds(lambda w: {"loss": 1.0, "speed": w}, st.floats(max_value=-1e-6,
                                                                                                allow_nan=False))),
    Kind("policy", "all-zero weights", st.just({"loss": 0, "speed": 0.0})),
    Kind("policy", "unknown criterion", st.sampled_from([{"cost": 1}, {"loss": 1, "beauty": 2}])),
    Kind("policy", "unknown name", st.sampled_from(["cheapest", "best", ""])),
    Kind("policy", "a number", st.integers(), toml=True),
    Kind("seed", "negative", st.integers(max_value=-1)),
    Kind("seed", "too large", st.integers(min_value=2**31)),
    Kind("seed", "not an int", not_an_int),
    Kind("optimizers", "a number", st.integers()),
    Kind("optimizers", "a list of numbers", st.lists(st.integers(), min_size=1, max_size=3)),
    Kind("optimizers", "empty", st.just([])),
    Kind("optimizers", "twice", st.just(["adam", "sgd", "adam"])),
    Kind("optimizers", "unknown", st.sampled_from(["adamz", "Adam", "sgd,adam"])),
    Kind("storage", "not a URL", st.sampled_from(["notaurl", "study.db", "::", "sqlite"])),
    Kind("storage", "unknown database", st.sampled_from(["bogus://x", "oracle9://h/db", "nosuch+sql://a/b"])),
    Kind("storage", "a journal without a file", st.sampled_from(["journal:", "journal://"])),
    Kind("storage", "a number", st.integers()),
    Kind("tracking_uri", "unknown scheme", st.sampled_from(["bogus://x", "s3x://bucket/path", "ftp://h/p"])),
    Kind("tracking_uri", "not a string", st.one_of(st.integers(), st.booleans())),
    Kind("tracking", "not a bool", not_a_bool),
    Kind("verbose", "not a bool", not_a_bool, toml=False),  # a command-line flag (--quiet), not a file key
    Kind("refine_lr", "not a bool", not_a_bool),
    Kind("refine_after", "not positive", not_positive_int),
    Kind("refine_after", "a bool", st.booleans()),
    Kind("reevaluate_top", "negative", st.integers(max_value=-1)),
    Kind("reevaluate_top", "bool", st.booleans()),
    Kind("val_fraction", "out of (0, 1)", st.one_of(st.floats(max_value=0, allow_nan=False),
                                                     st.floats(min_value=1, allow_nan=False), non_finite)),
    Kind("divergence_factor", "at most 1 or non-finite", st.one_of(st.floats(max_value=1, allow_nan=False),
                                                                   non_finite)),
    Kind("sampler", "unknown", st.one_of(st.sampled_from(["grid", "TPE", ""]), st.integers())),
    Kind("pruner", "unknown", st.one_of(st.sampled_from(["never", "Median"]), st.integers())),
    Kind("space", "unknown", st.one_of(st.sampled_from(["all", "lr-only"]), st.integers())),
    Kind("parallel", "unknown", st.one_of(st.sampled_from(["gpu", "fork"]), st.booleans())),
    Kind("study_name", "empty or not text", st.one_of(st.just(""), st.just("  "), st.integers())),
    Kind("experiment_name", "empty or not text", st.one_of(st.just(""), st.integers())),
    Kind("device", "not text", st.integers(), toml=False),
]


def _extra(kind: Kind) -> dict[str, Any]:
    """The other settings a kind needs to be wrong (a budget is too small only next to a re-evaluation)."""
    if kind.label == "too small for the re-evaluation":
        return {"reevaluate_top": 2, "seeds": 2}
    return {}


def test_there_are_at_least_40_kinds_of_bad_input():
    assert len({(k.setting, k.label) for k in KINDS}) >= 40
    assert len({k.setting for k in KINDS}) >= 25


class CountsTraining(torch.nn.Module):
    """Counts forward passes in training mode: bad input must be caught before the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.training_calls = torch.nn.Linear(4, 3), 0

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.training_calls += 1
        return self.fc(x)


def _assert_names(exc: BaseException, setting: str) -> None:
    message = str(exc)
    assert setting in message, message
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: f"{k.setting}-{k.label}")
def test_tune_names_the_bad_setting_before_training(kind, blobs):
    @FEW
    @given(value=kind.values)
    def check(value):
        model = CountsTraining()
        with pytest.raises((ValueError, TypeError)) as info:
            autoopt.tune(model, blobs, **{**FAST, **_extra(kind), kind.setting: value})
        _assert_names(info.value, kind.setting)
        assert model.training_calls == 0

    check()


# --- the other arguments of tune() and the data --------------------------------------------------------

def _data_kinds(blobs) -> list[tuple[str, dict[str, Any], str]]:
    X, y = blobs
    return [
        ("model", dict(model="not a model"), "model"),
        ("target not text", dict(data=pd.DataFrame(X).assign(t=y), target=3), "target"),
        ("target missing", dict(data=pd.DataFrame(X).assign(t=y), target="label"), "target"),
        ("loss_fn not callable", dict(loss_fn="mse"), "loss_fn"),
        ("NaN feature", dict(data=(np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y)), "NaN"),
        ("inf target", dict(data=(X[:, :1].repeat(4, 1), np.where(np.arange(len(y)) == 3, np.inf, 1.0))), "infinite"),
        ("lengths differ", dict(data=(X, y[:-5])), "same length"),
        ("empty", dict(data=(X[:0], y[:0])), "empty"),
        ("not data", dict(data=42), "not accepted"),
        ("unknown setting", dict(trials=3), "trials"),
    ]


def test_bad_arguments_and_data_are_named_before_training(blobs):
    for label, args, needle in _data_kinds(blobs):
        model = CountsTraining()
        call = {"model": model, "data": blobs, **args}
        with pytest.raises((ValueError, TypeError)) as info:
            autoopt.tune(call.pop("model"), call.pop("data"), **{**FAST, **call})
        assert needle in str(info.value), (label, str(info.value))
        assert model.training_calls == 0, label


@settings(max_examples=6, deadline=None, derandomize=True)
@given(scale=st.floats(2e3, 1e9), column=st.integers(0, 3))
def test_badly_scaled_features_get_a_warning_naming_the_column(scale, column):
    from autoopt.training.intake import prepare_data

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    X[:, column] *= scale
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=rng.normal(size=40))
    with pytest.warns(UserWarning, match=rf"badly scaled: {'abcd'[column]} \(") as record:
        prepare_data(frame, target="y")
    assert all("abcd"[other] + " (" not in str(record[0].message) for other in range(4) if other != column)


def test_badly_scaled_targets_get_a_warning_and_good_data_none(regression):
    from autoopt.training.intake import prepare_data

    X, y = regression
    with pytest.warns(UserWarning, match=r"y \(target, \|y\| up to"):
        prepare_data((X, y * 1e6))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_data((X, y))


# --- study files -------------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """``value`` written as TOML (the shapes a study file can hold)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


FILE_KINDS = [k for k in KINDS if k.toml]


@pytest.mark.parametrize("kind", FILE_KINDS, ids=lambda k: f"{k.setting}-{k.label}")
def test_a_study_file_names_the_bad_setting(kind):
    @FEW
    @given(value=kind.values.filter(lambda v: v is not None))  # TOML has no null
    def check(value):
        with pytest.raises(StudyFileError) as info:
            parse_study({"recipe": "tiny", "epochs": 1, **_extra(kind), kind.setting: value}, "s.toml")
        _assert_names(info.value, kind.setting)
        assert str(info.value).startswith("s.toml: ")

    check()


TINY_RECIPE = '''\
"""Three blobs and a linear model that leaves a marker file when it trains."""
from pathlib import Path

import torch

EPOCHS = 1


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            Path(__file__).with_name("TRAINED").touch()
        return self.layer(x)


def build(seed: int = 0):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 4, generator=g)
    return Net(), (X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long())
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.py").write_text(TINY_RECIPE)
    (tmp_path / "studies").mkdir()
    return tmp_path


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def assert_usage_error(code: int, err: str, needle: str, project: Path) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoopt: error: "), err
    assert needle in lines[0], err
    assert not (project / "recipes" / "TRAINED").exists(), "trained before the error"


@pytest.mark.parametrize("kind", FILE_KINDS, ids=lambda k: f"{k.setting}-{k.label}")
def test_the_cli_rejects_a_bad_study_file_with_exit_2(kind, project):
    @settings(max_examples=2, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=kind.values.filter(lambda v: v is not None))
    def check(value):
        values = {"recipe": "tiny", "n_trials": 1, "tracking": False, **_extra(kind), kind.setting: value}
        path = project / "studies" / "bad.toml"
        path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
        assert_usage_error(*run_cli(["run", str(path)]), kind.setting, project)

    check()


@pytest.mark.parametrize("flags, needle", [
    (["--trials", "0"], "n_trials"),
    (["--trials", "-3"], "n_trials"),
    (["--timeout", "nan"], "timeout"),
    (["--timeout", "inf"], "timeout"),
    (["--budget", "nan"], "budget"),
    (["--budget", "-1"], "budget"),
    (["--epochs", "0"], "epochs"),
    (["--tracking-uri", "bogus://x"], "tracking_uri"),
    (["--storage", "notaurl"], "storage"),
    (["--storage", "bogus://x"], "storage"),
    (["--study-name", ""], "study_name"),
    (["--device", "tpu"], "tpu"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_the_cli_rejects_bad_flags_with_exit_2(flags, needle, project):
    (project / "studies" / "ok.toml").write_text('recipe = "tiny"\nn_trials = 1\ntracking = false\n')
    assert_usage_error(*run_cli(["run", str(project / "studies" / "ok.toml"), *flags]), needle, project)


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe\x00\x01binary\x00", "not a text file"),
    (b"recipe = 'tiny'\nepochs = \n", "not valid TOML"),
    (b"[study]\nrecipe = 'tiny'\n", "no [sections]"),
    (b"recipe = 'tiny'\nn_trial = 3\n", "did you mean 'n_trials'"),
    (b"epochs = 3\n", "no 'recipe' key"),
    (b"recipe = 3\n", "recipe must be a non-empty string"),
])
def test_the_cli_rejects_a_file_that_is_not_a_study_with_exit_2(content, needle, project):
    (project / "studies" / "bad.toml").write_bytes(content)
    assert_usage_error(*run_cli(["run", str(project / "studies" / "bad.toml")]), needle, project)


@pytest.mark.parametrize("content, flags, needle", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", [], "not a text file"),
    (b"recipe = 'tiny'\nn_trials = 1\n", ["--tracking-uri", "bogus://x"], "tracking_uri='bogus://x'"),
    (b"recipe = 'tiny'\nn_trials = 1\nstorage = 'notaurl'\n", [], "storage='notaurl'"),
])
def test_the_real_command_exits_2_with_one_line(content, flags, needle, project):
    (project / "studies" / "bad.toml").write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent)}
    result = subprocess.run([sys.executable, "-m", "autoopt.cli", "run", "studies/bad.toml", *flags],
                            cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert_usage_error(result.returncode, result.stderr, needle, project)
    assert result.stdout == ""
