"""The transport to MLflow: a recorder process that makes every MLflow call of a study, in order.

Why a process and not a thread: training and a thread making MLflow calls share the GIL, and a
thread busy in MLflow's Python (SQLAlchemy, HTTP) stalls the training thread at every torch call
that releases and retakes it. Measured on a 2-core CPU: a busy thread made a small study 4x slower,
a busy process 1-3%; the writer thread's 28-35 ms of MLflow work per trial came back as 10-40 ms
more training time per trial (``benchmarks/tracking_overhead.py``). So training only pickles a
record onto a pipe (tens of microseconds), and one recorder process per Python process, started at
the first tracked study and reused by later ones, makes the calls.

Why not MLflow's ``synchronous=False``: it covers ``log_batch`` only; ``create_run`` and
``set_terminated`` stay synchronous, and ``set_terminated`` shuts the asynchronous queue down and
joins its thread on every call (``--transports`` in the benchmark, 20 runs x 5 epochs on sqlite:
the training thread was blocked 0.88 s with MLflow's async logging, 0.53 s with plain calls, 0.001 s
with the recorder).

Failures (``calls.py``): the first failed call warns once, as a ``TrackingWarning`` raised
in the study's process, and a store that is gone is skipped from then on; the Optuna storage holds
every result for ``autoopt sync``. If the recorder dies, the study goes on with one warning. If the
study's process dies (kill -9), the recorder sees its pipe close without a goodbye and exits at
once, even mid-call: the next run of the study reconciles what was written.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import calls as mlflow_calls
from .calls import TrackingWarning

__all__ = ["Session", "TrackingWarning", "open_session", "serve", "wait_for_background"]

_BYE = "bye"  # the study's process is exiting normally: finish every message, then exit
PROGRESS_SECONDS = 1.0  # how often the recorder tells a study it is still making progress


# --- the study's side: sessions on the recorder process ---------------------------------------------

class Session:
    """One study's channel to the recorder (``open_session``); ``submit`` is safe from any thread.

    After ``finish``: ``unsent`` counts MLflow calls that could not be made, ``synced`` is what the
    summary wrote ({"created": n, "rewritten": n}).
    """

    def __init__(self, recorder: _Recorder, sid: int, close_timeout: float) -> None:
        self._recorder, self.sid = recorder, sid
        self.close_timeout = close_timeout  # finish() stops waiting after this long without progress
        self.unsent = 0
        self.synced: dict[str, int] = {}
        self.summary_done = threading.Event()  # the summary is written: tune() has its answer
        self.closed = threading.Event()  # everything is written, charts included
        self.last_progress = time.monotonic()

    def submit(self, method: str, *args: Any) -> None:
        """Queue ``method(*args)`` of the study's recorder (pickled here: microseconds)."""
        try:
            message = pickle.dumps((self.sid, method, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # something the recorder cannot receive: counted, the study goes on
            self.unsent += 1
            warnings.warn(f"autoopt could not send {method} to MLflow ({type(exc).__name__}: {exc}); `autoopt sync "
                          "STUDY` writes it from the Optuna storage.", TrackingWarning, stacklevel=3)
            return
        self._recorder.send(message)

    def finish(self, wait_for_summary: bool) -> bool:
        """Wait until the summary is written (``wait_for_summary``) or everything is; False if
        nothing progressed for ``close_timeout`` s."""
        done = self.summary_done if wait_for_summary else self.closed
        while not done.wait(0.1):
            if time.monotonic() - self.last_progress > self.close_timeout:
                return False
        return True

    def on_event(self, kind: str, payload: tuple) -> None:
        """What the recorder says back (on the reader thread)."""
        self.last_progress = time.monotonic()
        if kind == "warn":
            warnings.warn(payload[0], TrackingWarning, stacklevel=2)
            return
        self.unsent = payload[0]
        if kind == "summary":
            self.synced = payload[1]
            self.summary_done.set()
        elif kind == "closed":
            self.summary_done.set()
            self.closed.set()

    def lost(self, why: str) -> None:
        """The recorder is gone: whatever was not confirmed is counted as unsent."""
        if not self.closed.is_set():
            self.unsent += 1
            warnings.warn(f"the MLflow recorder process {why}; every result is in the Optuna storage, and "
                          "`autoopt sync STUDY` (or the next run of the study) writes what MLflow is missing.",
                          TrackingWarning, stacklevel=2)
            self.summary_done.set()
            self.closed.set()


class _Recorder:
    """The recorder process, as the study's process sees it: a pipe each way and two threads (one
    writes queued messages, one reads events); the training thread only puts bytes on a queue."""

    def __init__(self) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        package_root = str(Path(__file__).resolve().parents[3])  # the child imports this very autoopt
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                                              if p)}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from autoopt.tracking.mlflow.transport import serve; serve()"],
                stdin=to_child_r, stdout=from_child_w, env=env, start_new_session=True)  # no Ctrl-C of ours
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.sessions: dict[int, Session] = {}
        self.dead = False
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._lock = threading.Lock()
        self._feeder = threading.Thread(target=self._feed, name="autoopt-mlflow-feeder", daemon=True)
        self._reader = threading.Thread(target=self._read, name="autoopt-mlflow-reader", daemon=True)
        self._feeder.start()
        self._reader.start()

    def send(self, message: bytes) -> None:
        self._outbox.put(message)

    def open(self, config: Mapping[str, Any], close_timeout: float) -> Session:
        with self._lock:
            session = Session(self, next(_SESSION_IDS), close_timeout)
            self.sessions[session.sid] = session
            if self.dead:
                session.lost("is not running")
        session.submit("open", dict(config))
        return session

    def active(self) -> list[Session]:
        with self._lock:
            return [s for s in self.sessions.values() if not s.closed.is_set()]

    def shutdown(self, timeout: float = 60.0) -> None:
        """Say goodbye (the recorder finishes every message, charts included) and wait for it."""
        self._outbox.put(pickle.dumps(_BYE))
        self._outbox.put(None)
        self._feeder.join(timeout)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # it goes on alone in its own session and ends when its work is done

    def forget_after_fork(self) -> None:
        """In a forked worker: close the inherited pipe ends (so the recorder still sees EOF when
        its study's process dies); the worker starts a recorder of its own if it tracks."""
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _feed(self) -> None:
        while True:
            message = self._outbox.get()
            if message is None:
                break
            view = memoryview(message)
            try:
                while view:
                    view = view[os.write(self._to_child, view):]
            except OSError:  # the recorder died: the reader reports it
                break
        with contextlib.suppress(OSError):
            os.close(self._to_child)

    def _read(self) -> None:
        stream = os.fdopen(self._from_child, "rb", closefd=False)
        try:
            while True:
                sid, kind, payload = pickle.load(stream)
                with self._lock:
                    session = self.sessions.get(sid)
                if session is not None:
                    session.on_event(kind, payload)
                    if kind == "closed":
                        with self._lock:
                            self.sessions.pop(sid, None)
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        finally:
            with self._lock:
                self.dead = True
                orphans = list(self.sessions.values())
            try:
                code = self.process.wait(5)  # its end of the pipe closed: it is exiting
            except subprocess.TimeoutExpired:
                code = None
            for session in orphans:
                session.lost(f"exited (code {code})" if code is not None else "stopped answering")


_SESSION_IDS = itertools.count(1)
_RECORDER: _Recorder | None = None
_RECORDER_LOCK = threading.Lock()
_ABANDONED: list[_Recorder] = []  # a forked worker's inherited recorder: kept so nothing closes its fds twice


def open_session(config: Mapping[str, Any], close_timeout: float = 30.0) -> Session:
    """A channel to the recorder process (started on first use) for one study; ``config`` is what
    ``recorder.StudyRecorder`` needs: the store, the parent run, the flush period."""
    global _RECORDER
    with _RECORDER_LOCK:
        if _RECORDER is None or _RECORDER.dead:
            _RECORDER = _Recorder()
        recorder = _RECORDER
    return recorder.open(config, close_timeout)


def wait_for_background(timeout: float = 60.0) -> bool:
    """Wait until every study's recording is done, charts and artifacts included.

    ``tune()`` returns once its trials and summary are recorded; the PNG charts are drawn and uploaded
    after that, in the recorder process. Tests, benchmarks and ``autoopt sync`` call this to wait.
    """
    deadline = time.monotonic() + timeout
    recorder = _RECORDER
    if recorder is None:
        return True
    for session in recorder.active():
        if not session.closed.wait(max(0.0, deadline - time.monotonic())):
            return False
    return True


@atexit.register
def _shutdown() -> None:
    """The study's process exits: the recorder finishes what it was sent (the charts of the last
    study, say) before this process ends, as the documentation promises."""
    if _RECORDER is not None and not _RECORDER.dead:
        _RECORDER.shutdown()


def _after_fork_in_child() -> None:
    """A forked worker process (``tune(n_jobs=2)``) must not reuse what the parent's threads hold.

    The parent's threads may hold a lock at the moment of the fork, and its recorder's threads do not
    exist in the child; MLflow caches one SQLAlchemy engine per database, whose pooled sqlite
    connections belong to the parent (SQLite forbids using a connection across fork):
    ``dispose(close=False)`` forgets them without closing them under the parent's feet.
    """
    global _RECORDER, _RECORDER_LOCK
    mlflow_calls._ENV_LOCK, _RECORDER_LOCK = threading.Lock(), threading.Lock()
    if _RECORDER is not None:
        _RECORDER.forget_after_fork()
        _ABANDONED.append(_RECORDER)
        _RECORDER = None
    store_module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    store_class = getattr(store_module, "SqlAlchemyStore", None)
    for engine in list(getattr(store_class, "_engine_map", {}).values()):
        with contextlib.suppress(Exception):
            engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the recorder process ------------------------------------------------------------------------------

def serve() -> None:
    """The recorder's main loop (``python -c "from autoopt.tracking.mlflow.transport import serve; serve()"``):
    messages from stdin, in order; events to the study's process on the original stdout.

    Stray prints (MLflow's, a library's) go to stderr, never into the event stream; Ctrl-C in the
    terminal is the study's to handle (the recorder runs in its own session and ignores SIGINT).
    """
    from .recorder import StudyRecorder

    events = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")  # MLflow's deprecation notes would only clutter the study's stderr
    inbox: queue.Queue[Any] = queue.Queue()
    end = object()

    def read() -> None:
        stream = sys.stdin.buffer
        said_bye = False
        try:
            while True:
                message = pickle.load(stream)
                if message == _BYE:
                    said_bye = True
                else:
                    inbox.put(message)
        except (EOFError, OSError, pickle.UnpicklingError):
            if not said_bye:
                # the study's process died (kill -9, a worker taken down with its parent): end now, even
                # in the middle of an MLflow call that may wait 30 s on a busy store; the next run of the
                # study reconciles what was written
                os._exit(0)
            inbox.put(end)

    def emit(sid: int, kind: str, *payload: Any) -> None:
        try:
            pickle.dump((sid, kind, payload), events, protocol=pickle.HIGHEST_PROTOCOL)
            events.flush()
        except (OSError, ValueError):
            pass  # the study's process is gone; nothing is waiting for this

    threading.Thread(target=read, name="autoopt-recorder-reader", daemon=True).start()
    studies: dict[int, StudyRecorder] = {}
    reported: dict[int, float] = {}
    while True:
        ticks = [s.flush_seconds for s in studies.values()]
        try:
            message = inbox.get(timeout=min(ticks) if ticks else None)
        except queue.Empty:
            for study in studies.values():
                study.handle("tick", ())
            continue
        if message is end:
            return
        sid, method, args = message
        if method == "open":
            studies[sid] = StudyRecorder(args[0], lambda kind, *p, sid=sid: emit(sid, kind, *p))
            continue
        study = studies.get(sid)
        if study is None:
            continue
        study.handle(method, args)
        if method == "close":
            del studies[sid]
        elif time.monotonic() - reported.get(sid, 0.0) > PROGRESS_SECONDS:
            reported[sid] = time.monotonic()
            emit(sid, "progress", study.calls.unsent)
