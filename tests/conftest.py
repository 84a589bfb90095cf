"""Shared tiny problems: every test trains in well under a second on a 2-core CPU."""

from __future__ import annotations

import math
import signal
import time
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(autouse=True)
def _no_mlflow_litter(monkeypatch, tmp_path):
    """Tests run in their own folder so that MLflow's default store never lands in the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True)
def _ctrl_c_left_as_found():
    """A test that leaves SIGINT ignored in this process hands that to every process started after it
    (an ignored signal survives exec), and a later Ctrl-C test's study would never see its Ctrl-C."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, before)
    assert after == before, f"the test left SIGINT's handler {after!r} (it was {before!r})"


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """120 samples, 4 features, 3 separable classes."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 4))
    y = np.arange(120) % 3
    X = (centers[y] + rng.normal(0, 1, size=(120, 4))).astype(np.float32)
    return X, y


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 5)).astype(np.float32)
    y = (X @ rng.normal(size=5) + 0.1 * rng.normal(size=100)).astype(np.float32)
    return X, y


def mlp(inputs: int, outputs: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(inputs, 16), torch.nn.Tanh(), torch.nn.Linear(16, outputs))


def trained_mlp(blobs, steps: int = 30) -> torch.nn.Module:
    """A 4-32-32-3 MLP after ``steps`` Adam steps on ``blobs``: pretrained weights, whose 32x32 matrix
    (index 2) has a spectral spike (``training/initialization.py``); ``steps=0``: its fresh draw."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 3))
    X, y = torch.as_tensor(blobs[0]), torch.as_tensor(blobs[1])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model


def poll(condition, timeout: float, interval: float = 0.05):
    """condition()'s first truthy value within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=2).close()
        return True
    except Exception:
        return False


@pytest.fixture
def fresh_postgres():
    """A new, empty PostgreSQL database (dropped after the test): its tables do not exist yet."""
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (database test)")
    import psycopg

    name = f"autoopt_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    from autoopt.study.storage import close_connections

    close_connections()
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


# --- a trials table built from validation curves, as the recommendation reads it (the tests of the
# choice's noise and of what a fresh seed is expected to reach) ---

def _table(*rows: tuple[str, float, list[float]]) -> pd.DataFrame:
    """Rows of (optimizer, lr, validation curve), one seed each, trained to the end."""
    return pd.DataFrame([{
        "number": n, "optimizer": opt, "family": opt, "purpose": "search", "seed": 0, "outcome": "completed",
        "config": f"{opt}(lr={lr})", "params": {"lr": lr}, "val_curve": curve, "initial_val_loss": 1.1,
        "final_val_loss": curve[-1], "final_val_accuracy": math.nan, "epochs_to_target": 5.0,
        "seconds_to_target": 1.0, "optimizer_state_bytes": 0, "peak_memory_bytes": 1000,
    } for n, (opt, lr, curve) in enumerate(rows)])


@pytest.fixture
def curves_table() -> Callable[..., pd.DataFrame]:
    """``curves_table(("adam", 1e-3, [1.0, 0.6, 0.4]), ...)``: one seed per row, trained to the end."""
    return _table
