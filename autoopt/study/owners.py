"""Which process runs a trial, and whether it is still alive: how the next run of a study knows at
once, without waiting for a heartbeat's grace period, that a trial on this host died with its process.

``mark_owner`` records host, pid and the process's start time when a trial starts; ``owner_gone`` says
whether that process is gone (the pid no longer names the same process). A trial of another host is
left to its heartbeat (``storage.stale_trials``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import optuna

#: The system attribute naming the process that runs a trial: {"host", "pid", "started"} (``process_identity``).
OWNER_ATTR = "autoopt:owner"


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """This host, ``pid`` (this process by default) and its start time (Linux's boot-relative clock
    ticks, so that a reused pid is a different process; None elsewhere)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "started": _started(pid)}


def _started(pid: int) -> int | None:
    """The start time of process ``pid`` from /proc (None without /proc, or if it is gone or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def mark_owner(trial: optuna.Trial) -> None:
    """Record which process runs ``trial`` (``OWNER_ATTR``), so that the next run of the study on this
    host knows at once when that process is gone."""
    trial.study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, process_identity())


def owner_gone(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's process is known dead: it ran on this host and that process is gone."""
    owner = trial.system_attrs.get(OWNER_ATTR)
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False  # another machine's trial: its heartbeat decides
    pid = int(owner["pid"])
    if Path("/proc").is_dir():
        return owner.get("started") is None or _started(pid) != owner["started"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
