"""``autoopt ui``: MLflow's UI on 127.0.0.1 for the store studies record to, stopped with its workers."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any, NoReturn

from .output import EXIT_OK


def ui_command(args: argparse.Namespace, argv: list[str]) -> int:
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.startswith(("http:", "https:", "databricks")):
        print(f"{uri} is a tracking server already: open it in a browser.")
        return EXIT_OK
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535 but got {args.port}.")
    # without --backend-store-uri, mlflow ui uses the same default store as MLflow's client
    # one worker and no job runner: it starts in about half the time and a local UI needs no more
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(args.port),
               "--workers", "1"]
    if uri:
        command += ["--backend-store-uri", uri]
    print(f"MLflow UI for {uri or 'the default store (./mlflow.db or ./mlruns)'} at "
          f"http://127.0.0.1:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    return _serve(command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def _serve(command: list[str], env: dict[str, str]) -> int:
    """Run a server until it exits or this process is stopped (Ctrl-C, SIGTERM, SIGHUP); then stop it.

    The server runs in its own process group, so that stopping it also stops the workers it started
    (mlflow ui runs uvicorn in a child process), whatever signal stopped this process.
    """
    import signal

    def stop(signum: int, frame: Any) -> NoReturn:
        raise KeyboardInterrupt

    handled = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, stop) for s in handled}
    server = subprocess.Popen(command, env=env, start_new_session=os.name == "posix")
    try:
        return server.wait()
    except KeyboardInterrupt:  # the normal way to stop a server
        return EXIT_OK
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after 10 s."""
    import signal

    if os.name != "posix":
        server.terminate()
        server.wait()
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; its workers may not be yet
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            break
