"""The transport to MLflow: one background thread that makes every MLflow call of a study, in order.

Why a thread of our own and not MLflow's ``synchronous=False``: MLflow's asynchronous logging covers
``log_batch`` only. ``create_run`` and ``set_terminated`` stay synchronous, and ``set_terminated``
shuts the whole asynchronous queue down and joins its thread (up to a second) on every call, so a
study that ends a run per trial waits at every trial. Measured by ``benchmarks/tracking_overhead.py
--transports`` (20 runs x 5 epochs, sqlite store, shared 2-core CPU): the training thread was blocked
12.4 s with MLflow's async logging, 2.8 s with plain calls, 0.0 s with this thread (which wrote
everything in 3.0 s). So training only
puts a closure on a queue (microseconds) and never waits on the network or the database.

Failures: the first failed call warns once (``TrackingWarning``) and the store is probed; if it is
gone, every later call is skipped at once and counted (each try could otherwise wait on timeouts).
Nothing is lost for good: the Optuna storage holds every result, and ``autoopt sync`` or the next
run of the study writes what is missing. HTTP calls run with few retries and a bounded timeout
(MLflow's defaults retry a refused connection for minutes), and without MLflow's "View run ..."
lines on stdout.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mlflow import MlflowClient

__all__ = ["TrackingWarning", "Writer", "probe", "quiet_calls", "wait_for_background"]

FAILED = object()  # what Writer.attempt returns when the MLflow call raised or was skipped
_STOP = object()  # queued by finish(): the writer ends after the actions queued before it


class TrackingWarning(UserWarning):
    """MLflow could not record something; the study itself goes on."""


_ENV_LOCK = threading.Lock()  # our threads override MLflow's env settings one call at a time
_WRITERS: list[Writer] = []  # writers still finishing in the background (wait_for_background)
_WRITERS_LOCK = threading.Lock()


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


def probe(client: MlflowClient, uri: str, timeout: int) -> str | None:
    """None if the store answers a cheap request (one try, short timeout), else what went wrong."""
    try:
        with quiet_calls(uri, timeout, retries=0):
            client.search_experiments(max_results=1)
    except Exception as exc:  # any failure means "cannot use it"; the message says which
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}"[:300]
    return None


class Writer:
    """Runs queued MLflow actions on one thread, in order; ``attempt`` inside them counts failures.

    ``on_tick`` runs on the writer thread whenever ``tick_seconds`` pass without a new action (the
    tracker sends a long trial's buffered epochs then). ``finish(wait_for=...)`` waits until every
    action queued so far is done, or, with a marker, only until that marker's action has run and
    leaves the rest (chart drawing, artifact upload) to finish in the background; the thread is not a
    daemon, so a process still waits for it before exiting.
    """

    def __init__(self, client: MlflowClient, uri: str, *, tick_seconds: float = 2.0,
                 on_tick: Callable[[], None] | None = None, call_timeout: int = 10,
                 close_timeout: float = 30.0) -> None:
        self.client, self.uri = client, uri
        self.tick_seconds = tick_seconds
        self.call_timeout = call_timeout  # seconds one HTTP request may take mid-study
        self.close_timeout = close_timeout  # finish() stops waiting after this long without progress
        self.unsent = 0  # actions that failed or were skipped: what a sync has to write later
        self.failed = False  # the first failure has been reported
        self.broken = False  # the store is gone: later actions are skipped and counted
        self._on_tick = on_tick
        self._queue: queue.Queue[Any] = queue.Queue()
        self._last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="autoopt-mlflow-writer", daemon=False)
        self._thread.start()
        with _WRITERS_LOCK:
            _WRITERS.append(self)

    def submit(self, action: Callable[[], None]) -> None:
        """Queue ``action`` (microseconds; from any thread). It runs on the writer thread."""
        self._queue.put(action)

    def attempt(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one MLflow call (on the writer thread): its result, or FAILED (counted, warned once)."""
        if self.broken:
            self.unsent += 1
            return FAILED
        try:
            with quiet_calls(self.uri, self.call_timeout, retries=1):
                result = action(*args, **kwargs)
        except Exception as exc:  # the study must go on whatever MLflow raises
            self.unsent += 1
            self._failure(exc)
            return FAILED
        self._last_progress = time.monotonic()
        return result

    def recheck(self) -> bool:
        """Probe a store that was gone; if it answers again, later actions are tried again."""
        if self.broken and probe(self.client, self.uri, 5) is None:
            self.broken = False
        return not self.broken

    def finish(self, wait_for: threading.Event | None = None) -> bool:
        """Stop taking actions and wait for those queued (or only until ``wait_for`` is set).

        Returns False if it stopped waiting because nothing progressed for ``close_timeout`` s.
        """
        self._queue.put(_STOP)
        while True:
            if wait_for is not None and wait_for.wait(0.1):
                return True
            self._thread.join(0.1 if wait_for is not None else 0.2)
            if not self._thread.is_alive():
                return True
            if time.monotonic() - self._last_progress > self.close_timeout:
                return False

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        try:
            while True:
                try:
                    action = self._queue.get(timeout=self.tick_seconds)
                except queue.Empty:
                    action = self._on_tick
                if action is _STOP:
                    return
                if action is not None:
                    try:
                        action()
                    except Exception as exc:  # a bug in an action must not stop the others
                        self.unsent += 1
                        self._failure(exc)
                    self._last_progress = time.monotonic()
        finally:
            with _WRITERS_LOCK:
                if self in _WRITERS:
                    _WRITERS.remove(self)

    def _failure(self, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            warnings.warn(
                f"MLflow logging to {self.uri} failed ({type(exc).__name__}: {str(exc)[:300]}). Training goes on; "
                "every result is in the Optuna storage, and `autoopt sync STUDY` (or the next run of the study) "
                "writes what MLflow is missing.", TrackingWarning, stacklevel=2)
        if probe(self.client, self.uri, 5) is not None:
            self.broken = True  # gone, not a one-off error: stop trying


def wait_for_background(timeout: float = 60.0) -> bool:
    """Wait until every tracker's background work (charts, artifacts, the parent's end) is done.

    ``tune()`` returns once its trials and summary are recorded; the PNG charts are drawn and uploaded
    after that, off the training path. Tests, benchmarks and ``autoopt sync`` call this to wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        with _WRITERS_LOCK:
            writers = list(_WRITERS)
        if not writers:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        writers[0].join(remaining)


def _after_fork_in_child() -> None:
    """A forked worker process (``tune(n_jobs=2)``) must not reuse what the parent's threads hold.

    The parent's writer thread may hold the env lock at the moment of the fork, and its writers do
    not exist in the child; MLflow caches one SQLAlchemy engine per database, whose pooled sqlite
    connections belong to the parent (SQLite forbids using a connection across fork):
    ``dispose(close=False)`` forgets them without closing them under the parent's feet.
    """
    global _ENV_LOCK, _WRITERS_LOCK, _WRITERS
    _ENV_LOCK, _WRITERS_LOCK, _WRITERS = threading.Lock(), threading.Lock(), []
    store_module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    store_class = getattr(store_module, "SqlAlchemyStore", None)
    for engine in list(getattr(store_class, "_engine_map", {}).values()):
        with contextlib.suppress(Exception):
            engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
