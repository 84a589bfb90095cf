"""One MLflow call at a time, bounded and counted: what the tracker and the recorder call MLflow through.

HTTP calls run with few retries and a bounded timeout (MLflow's defaults retry a refused connection
for minutes) and without MLflow's "View run ..." lines on stdout. The first failed call of a study
warns once and probes the store; if it is gone, every later call is skipped at once and counted
(``Calls.unsent``), since each try could otherwise wait on timeouts. Nothing is lost for good: the
Optuna storage holds every result, and ``autoopt sync`` writes what is missing.

>>> # Calls(client, uri, warn=print).attempt(client.set_terminated, run_id)  # result, or FAILED
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["FAILED", "Calls", "TrackingWarning", "probe", "quiet_calls"]

FAILED = object()  # what Calls.attempt returns when the MLflow call raised or was skipped


class TrackingWarning(UserWarning):
    """MLflow could not record something; the study itself goes on."""


_ENV_LOCK = threading.Lock()  # threads override MLflow's env settings one call at a time


@contextlib.contextmanager
def _temporary_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for one MLflow call, then put them back.

    MLflow reads its HTTP and printing settings from the environment at each call and offers no
    per-client setting; the override lasts only as long as the call.
    """
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def quiet_calls(uri: str, timeout: int, retries: int) -> contextlib.AbstractContextManager[None]:
    """Bounded HTTP retries and timeout for an HTTP store, and no "View run ..." lines on stdout."""
    if not uri.startswith(("http://", "https://")):
        return contextlib.nullcontext()
    return _temporary_env({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
                           "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout)),
                           "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"})


def probe(client: Any, uri: str, timeout: int) -> str | None:
    """None if the store answers a cheap request (one try, short timeout), else what went wrong."""
    try:
        with quiet_calls(uri, timeout, retries=0):
            client.search_experiments(max_results=1)
    except Exception as exc:  # any failure means "cannot use it"; the message says which
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}"[:300]
    return None


class Calls:
    """MLflow calls of one study, made in the recorder: ``attempt`` returns the call's result, or
    FAILED (counted in ``unsent``; the first failure warns through ``warn`` and probes the store,
    and a store that is gone makes later calls skip at once until ``recheck`` finds it back)."""

    def __init__(self, client: Any, uri: str, warn: Callable[[str], None], call_timeout: int = 10) -> None:
        self.client, self.uri, self.warn = client, uri, warn
        self.call_timeout = call_timeout  # seconds one HTTP request may take mid-study
        self.unsent = 0  # calls that failed or were skipped: what a sync has to write later
        self.failed = False  # the first failure has been reported
        self.broken = False  # the store is gone: later calls are skipped and counted

    def attempt(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            self.unsent += 1
            return FAILED
        try:
            with quiet_calls(self.uri, self.call_timeout, retries=1):
                return action(*args, **kwargs)
        except Exception as exc:  # the study must go on whatever MLflow raises
            self.unsent += 1
            self.failure(exc)
            return FAILED

    def recheck(self) -> bool:
        """Probe a store that was gone; if it answers again, later calls are tried again."""
        if self.broken and probe(self.client, self.uri, 5) is None:
            self.broken = False
        return not self.broken

    def failure(self, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            self.warn(f"MLflow logging to {self.uri} failed ({type(exc).__name__}: {str(exc)[:300]}). Training goes "
                      "on; every result is in the Optuna storage, and `autoopt sync STUDY` (or the next run of the "
                      "study) writes what MLflow is missing.")
        if probe(self.client, self.uri, 5) is not None:
            self.broken = True  # gone, not a one-off error: stop trying
