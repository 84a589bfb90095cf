"""Trials in parallel worker processes that share one Optuna storage.

Small models are bound by Python, not by arithmetic, so threads sharing the GIL do not add speed:
each worker is a forked process with its own torch thread pool (cores / workers threads), which
inherits the prepared data and model copy from the parent instead of pickling them. Workers meet only
through the study's storage (a journal file when the user gave none), so every trial is stored once
and a worker that dies takes only its running trial with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch


def can_fork() -> bool:
    """Process workers need fork (Linux, and macOS where Python still allows it)."""
    return "fork" in multiprocessing.get_all_start_methods() and sys.platform != "win32"


def threads_per_worker(n_workers: int, threads: int | None = None) -> int:
    """``threads`` if the study fixed it, else an equal share of the cores."""
    return threads or max(1, (os.cpu_count() or 1) // n_workers)


def journal_path() -> Path:
    """A fresh file for a journal storage that worker processes can share."""
    folder = Path(tempfile.mkdtemp(prefix="autoopt-"))
    return folder / "study.journal"


def run_forked(n_workers: int, work: Callable[[int], None], on_wait: Callable[[], None],
               threads: int | None = None) -> None:
    """Run ``work(i)`` in ``n_workers`` forked processes and wait for all; ``on_wait`` runs meanwhile.

    A worker that fails makes this raise once every worker has ended; Ctrl-C is passed on to the
    workers (each records its running trial as interrupted) and then re-raised here.
    """
    context = multiprocessing.get_context("fork")
    per_worker = threads_per_worker(n_workers, threads)
    parent = os.getpid()
    processes = [context.Process(target=_child, args=(work, i, per_worker, parent), name=f"autoopt-worker-{i}")
                 for i in range(n_workers)]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            for process in processes:
                process.join(timeout=0.5)  # wake up now and then to refresh the progress bar
            on_wait()
    except KeyboardInterrupt:
        for process in processes:  # the terminal sent SIGINT to the workers too; let them record it
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        raise
    on_wait()
    failed = [(p.name, p.exitcode) for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"worker process(es) failed: {failed}; their finished trials are in the storage.")


#: Linux's prctl option that sends the calling process a signal when the thread that forked it dies.
PR_SET_PDEATHSIG = 1
#: How often a worker without prctl (macOS) checks that its parent is still alive.
ORPHAN_CHECK_SECONDS = 1.0


def die_with_parent(parent: int) -> None:
    """Make this (forked) process die when ``parent`` does: a worker must never outlive its study.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent did not die before
    that call (the process would then already be re-parented). Elsewhere: a daemon thread that
    polls ``getppid()``. The death signal fires when the *thread* that forked exits, so forking is
    left to the thread that runs the study.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _watch_parent(parent)  # prctl refused (a sandbox): fall back to polling
    else:
        _watch_parent(parent)
    if os.getppid() != parent:
        os._exit(1)  # the parent died between fork and prctl


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="autoopt-orphan-check", daemon=True).start()


def _child(work: Callable[[int], None], index: int, threads: int, parent: int) -> None:
    die_with_parent(parent)
    torch.set_num_threads(threads)
    code = 0
    try:
        work(index)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # reported here: the parent only sees the exit code
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    # skip the atexit handlers inherited from the parent (its MLflow and tqdm state are not ours)
    os._exit(code)
