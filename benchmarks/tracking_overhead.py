"""What MLflow tracking costs a study: the same study with tracking off and on, interleaved.

The study: an MLP (64-w-w-10) on scikit-learn's digits (1797 8x8 images, no download), a handful of
optimizers, a fixed seed, so both modes train exactly the same trials. Tracking goes to a fresh
temporary sqlite store (MLflow's default kind of store) and/or a local ``mlflow server`` started
here on 127.0.0.1. Runs alternate off/on and on/off so that drift in the machine's load falls on
both sides; the ratio of medians is the headline number.

Two times per tracked study: ``tune()`` (until the report is in hand: trials, tags and summary are
recorded) and "all recorded" (the charts drawn and uploaded in the background too). One-time costs
are reported apart, because a person pays them once per process or per store: importing MLflow,
and creating a new ``mlflow.db`` (MLflow runs its schema migrations).

Targets (issue 10): tracked / untracked <= 1.05 on a ~30 s study, and at most +1.5 s on a ~5 s study.

    python benchmarks/tracking_overhead.py --preset 5s --store both
    python benchmarks/tracking_overhead.py --preset 30s --store both
    python benchmarks/tracking_overhead.py --transports     # the recorder process vs MLflow's async logging
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

import autoopt

OPTIMIZERS = ["adam", "adamw", "sgd", "momentum", "rmsprop"]


def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    X = ((data.data - data.data.mean(0)) / (data.data.std(0) + 1e-6)).astype(np.float32)
    return X, data.target.astype(np.int64)


def model(width: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, 10))


PRESETS = {  # (width, epochs, trials): untracked study times on a 2-core CPU, torch on 1 thread
    "5s": (512, 10, 10),
    "30s": (1024, 25, 10),
}


SERVER_PIDS: list[int] = []  # the local server's process group, whose CPU time a tracked study also costs


def cpu_seconds() -> float:
    """CPU time of this process (every thread), of autoopt's MLflow recorder process and of the local
    server's processes: unlike wall time, barely moved by other jobs on a shared machine, so it shows
    what tracking itself costs."""
    from autoopt import mlflow_writer

    total = time.process_time()
    recorder = [mlflow_writer._RECORDER.process.pid] if mlflow_writer._RECORDER is not None else []
    for pid in SERVER_PIDS + recorder:
        for child in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                pass
    return total


def _children(pid: int) -> list[int]:
    try:
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return found + [g for c in found for g in _children(c)]


def run(data, args, *, tracking_uri: str | None, name: str) -> tuple[float, float, autoopt.Report]:
    """(seconds until tune() returned, seconds until everything was recorded, report); the CPU
    seconds it took (process + server) are in ``report.cpu_seconds``."""
    from autoopt.tracking.mlflow.transport import wait_for_background

    cpu = cpu_seconds()
    start = time.perf_counter()
    report = autoopt.tune(model(args.width), data, optimizers=OPTIMIZERS, epochs=args.epochs, n_trials=args.trials,
                          seeds=2, reevaluate_top=2, seed=0, verbose=False, study_name=name,
                          tracking=tracking_uri is not None, tracking_uri=tracking_uri)
    returned = time.perf_counter() - start
    wait_for_background(120)
    report.cpu_seconds = cpu_seconds() - cpu
    return returned, time.perf_counter() - start, report


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A local ``mlflow server`` (sqlite backend) on a free port of 127.0.0.1, once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([shutil.which("mlflow") or "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{folder / 'server.db'}", "--default-artifact-root", str(folder / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.3)  # polling pace; the loop ends on the answer
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("mlflow server did not start within 180 s")


def measure(data, args, uri: str, label: str) -> dict[str, float]:
    times: dict[str, list[float]] = {"off": [], "on": [], "recorded": [], "cpu-off": [], "cpu-on": [],
                                     "train-off": [], "train-on": []}
    for pair in range(args.pairs):
        order = ("off", "on") if pair % 2 == 0 else ("on", "off")
        for mode in order:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned, recorded, report = run(data, args, tracking_uri=uri if mode == "on" else None,
                                                 name=f"bench-{label}-{mode}-{pair}-{time.time():.0f}")
            times[mode].append(returned)
            times[f"cpu-{mode}"].append(report.cpu_seconds)
            times[f"train-{mode}"].append(float(report.trials["seconds"].sum()))
            if mode == "on":
                times["recorded"].append(recorded)
            print(f"  [{label}] pair {pair + 1}/{args.pairs} tracking {mode:>3}: {returned:6.2f} s, "
                  f"{report.cpu_seconds:6.2f} CPU s"
                  + (f" (all recorded after {recorded:.2f} s)" if mode == "on" else ""), flush=True)
    off, on, rec, cpu_off, cpu_on = (statistics.median(times[k]) for k in ("off", "on", "recorded", "cpu-off", "cpu-on"))
    ratios = [b / a for a, b in zip(times["off"], times["on"])]
    paired = statistics.median(ratios)
    # the trials' own training seconds: what a writer sharing the study's process would slow down
    train = statistics.median(b / a for a, b in zip(times["train-off"], times["train-on"]))
    print(f"[{label}] median off {off:.2f} s, on {on:.2f} s: ratio {on / off:.3f}, paired {paired:.3f} "
          f"({on - off:+.2f} s; per-pair "
          f"{', '.join(f'{r:.3f}' for r in ratios)}); all recorded {rec:.2f} s ({rec - off:+.2f} s); "
          f"CPU {cpu_off:.2f} s off, {cpu_on:.2f} s on (ratio {cpu_on / cpu_off:.3f}, {cpu_on - cpu_off:+.2f} s, "
          f"charts included); the trials' training seconds on / off {train:.3f} (paired)")
    return {"off": off, "on": on, "recorded": rec, "cpu_off": cpu_off, "cpu_on": cpu_on, "paired": paired,
            "train": train}


def compare_transports(folder: Path, runs: int = 20, epochs: int = 5) -> None:
    """How long a training thread is blocked by 20 runs x 5 epochs of logging: plain MLflow calls,
    MLflow's asynchronous logging (``synchronous=False``), and autoopt's recorder process."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from autoopt.records import Candidate, EpochRecord, Measurement, TrialRecord
    from autoopt.tracking.mlflow.tracker import MlflowTracker
    from autoopt.tracking.mlflow.transport import wait_for_background

    uri = f"sqlite:///{folder / 'transports.db'}"
    client = MlflowClient(uri)
    client.search_experiments(max_results=1)  # create the schema outside the timing
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

    def metrics(e: int) -> list[Metric]:
        return [Metric(k, 1.0 / e, int(time.time() * 1000), e) for k in ("val_loss", "train_loss", "epoch_seconds")]

    for mode in ("plain", "mlflow-async", "autoopt-recorder"):
        blocked, start = 0.0, time.perf_counter()
        if mode == "autoopt-recorder":
            tracker = MlflowTracker(tracking_uri=uri)
            tracker.start_study(f"transport-{mode}-{time.time()}", {})
            start = time.perf_counter()
            for number in range(runs):
                records = [EpochRecord(e, 1.0 / e, 1.2 / e, 0.5, 0.01, 0.01 * e) for e in range(1, epochs + 1)]
                t = time.perf_counter()
                tracker.start_trial(number, Candidate("sgd", {"lr": 0.1}), "sgd", 0, "search")
                for record in records:
                    tracker.log_epoch(number, record)
                tracker.end_trial(TrialRecord(number, Candidate("sgd", {"lr": 0.1}), "sgd", 0, "search",
                                              Measurement("completed", records, steps=4 * epochs, seconds=0.05)))
                blocked += time.perf_counter() - t
            tracker.close()
            wait_for_background(120)
        else:
            experiment = client.create_experiment(f"transport-{mode}-{time.time()}")
            for _ in range(runs):
                t = time.perf_counter()
                run_id = client.create_run(experiment).info.run_id
                for e in range(1, epochs + 1):
                    client.log_batch(run_id, metrics=metrics(e), synchronous=mode == "plain")
                client.set_terminated(run_id, "FINISHED")
                blocked += time.perf_counter() - t
        print(f"transport {mode:>16}: training thread blocked {blocked:6.3f} s; all written after "
              f"{time.perf_counter() - start:5.2f} s ({runs} runs x {epochs} epochs, sqlite)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs to time per store (default 3)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a study size: 5s or 30s untracked")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    parser.add_argument("--trials", type=int, default=10, help="search trials; 2 re-runs come on top (default 10)")
    parser.add_argument("--width", type=int, default=64, help="hidden width of the 64-w-w-10 MLP (default 64)")
    parser.add_argument("--store", choices=("sqlite", "server", "both"), default="sqlite")
    parser.add_argument("--transports", action="store_true", help="only compare the transports, then exit")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a small shared machine, torch threads competing "
                             "for the cores make epoch times swing by 10x and drown what is measured)")
    args = parser.parse_args()
    if args.preset:
        args.width, args.epochs, args.trials = PRESETS[args.preset]
    torch.set_num_threads(args.threads)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch threads {torch.get_num_threads()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, mlflow {metadata.version('mlflow')}; "
          f"load average {os.getloadavg()[0]:.1f} (timings are only as steady as the machine)")
    with tempfile.TemporaryDirectory(prefix="autoopt-bench-") as tmp:
        if args.transports:
            compare_transports(Path(tmp))
            return
        data = digits()
        start = time.perf_counter()
        import mlflow  # noqa: F401  (what the first tracked study of a process pays)
        import_seconds = time.perf_counter() - start
        stores: dict[str, str] = {}
        server = None
        if args.store in ("sqlite", "both"):
            stores["sqlite"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        if args.store in ("server", "both"):
            server, stores["server"] = start_server(Path(tmp))
            SERVER_PIDS.append(server.pid)
        try:
            for label, uri in stores.items():  # warm-up: schema creation, first imports, torch's lazy set-up
                first, _, _ = run(data, args, tracking_uri=uri, name=f"warmup-{label}")
                print(f"one-time: first tracked study on {label}: {first:.1f} s (new store, imports)")
            baseline, _, report = run(data, args, tracking_uri=None, name="warmup-off")
            trials, epochs = len(report.trials), int(report.trials["epochs"].sum())
            print(f"study: digits, MLP 64-{args.width}-{args.width}-10, {len(OPTIMIZERS)} optimizers, "
                  f"{args.epochs} epochs per trial, {trials} trials ({epochs} epochs trained), fixed seed; "
                  f"untracked {baseline:.1f} s; import mlflow {import_seconds:.1f} s once")
            results = {label: measure(data, args, uri, label) for label, uri in stores.items()}
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
    for label, r in results.items():
        # the verdict is on the paired ratios (each tracked study against the untracked one beside it in
        # time), whose median drift in the machine's load moves least; the ratio of medians is shown too
        ratio, extra = r["paired"], r["on"] - r["off"]
        verdict = (f"paired ratio {ratio:.3f} <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'} (ratio of medians "
                   f"{r['on'] / r['off']:.3f})" if r["off"] >= 15
                   else f"extra {extra:+.2f} s <= 1.5 s: {'met' if extra <= 1.5 else 'NOT met'}")
        print(f"target [{label}, {r['off']:.1f} s study]: {verdict} (tune() until the report; all recorded "
              f"{r['recorded'] - r['off']:+.2f} s); in CPU time: ratio {r['cpu_on'] / r['cpu_off']:.3f}, "
              f"{r['cpu_on'] - r['cpu_off']:+.2f} s; training seconds {r['train']:.3f}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
