"""Where a default study's wall time goes: epoch-TRE, wall-TRE and a breakdown (issues 8, 9 and 20).

Targets: the default study's wall-TRE <= 1.5x its budget where a bare run takes a second or more, and
under a second of wall time beyond its epochs (at the bare loop's speed) where it takes less (issue 20). For each problem (corpus problems, called
the way ``benchmarks/compare.py::run_autoopt`` calls ``tune``, and the recipes) and each budget, one
default study with tracking off; printed: epoch-TRE (``report.cost``), wall-TRE (``report.wall_cost``),
their ratio, and the study's wall seconds split into

- ``setup``: ``tune`` before the strategy starts (data intake, task inference, the Optuna study);
- ``train``: the trials' training epochs (``Measurement.seconds``, summed over trials);
- ``val``: validation passes inside trials (the initial one and one per epoch);
- ``trial``: the rest of each trial (model copy, optimizer build, memory measurement ...);
- ``search``: the strategy outside trials (Optuna, the queue, budget checks, the progress bar);
- ``after``: reading the records back, the table, the recommendation, the Report.

The unit, ``bare ms``, is a bare epoch timed by this script in the same process right after each
study (the median of 5 warm epochs of forward, backward and a no-op SGD step, and a validation pass; the
same code for every version of autoopt): a study decides nothing by the clock, so it no longer times
one itself. ``beyond s`` is the study's wall time beyond its epochs at that speed, ``vs B`` its wall-TRE
over its budget.

Each part is also given in bare runs (seconds / (epochs x bare epoch)), so the parts add up to the
wall-TRE. Runs trained at once in threads (successive halving, budgets < 3) overlap: their ``train``,
``val`` and ``trial`` are thread-seconds and ``search`` (what is left of the strategy's wall time)
can be negative there. ``train`` above the epoch-TRE is the optimizers' own cost over a bare SGD step.

A fingerprint of every study (its trial sequence with losses, and the recommendation) is written
beside the numbers, and ``--check FILE`` compares it with an earlier run's: a change of the overhead
must not change a result.

    python benchmarks/wall_overhead.py                            # a handful of test problems + recipes
    python benchmarks/wall_overhead.py --problems mlp_wine --budgets 3 --repeats 3
    python benchmarks/wall_overhead.py --out results/wall_overhead.json --check /tmp/before.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import PROBLEMS, TEST, split_of  # noqa: E402

import autoopt  # noqa: E402
from autoopt.search import trial_runners  # noqa: E402
from autoopt.training import loop as training  # noqa: E402

tune_module = importlib.import_module("autoopt.tune")  # the module; ``autoopt.tune`` is the function

DEFAULT_PROBLEMS = ("logreg_digits_raw", "mlp_wine", "deep_relu_classif", "cnn_waveforms", "lstm_sine",
                    "emb_topics")
DEFAULT_RECIPES = ("digits_mlp", "breast_cancer", "deep_tanh", "digits_cnn", "sequence", "autoencoder")
BUDGETS = (1, 3, 5)
PARTS = ("setup", "train", "val", "trial", "search", "after")


class Timers:
    """Seconds spent in wrapped functions, by name; a wrapper replaces a module attribute for a while."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self.captured: dict[str, Any] = {}

    @contextlib.contextmanager
    def wrap(self, module: Any, attr: str, name: str, mark: bool = False):
        """Count the seconds spent in ``module.attr`` as ``name``; ``mark``: keep its start and end too."""
        original = getattr(module, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            if mark:
                self.marks[f"{name}_start"] = start
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.seconds[name] += end - start
                if mark:
                    self.marks[f"{name}_end"] = end

        setattr(module, attr, timed)
        try:
            yield
        finally:
            setattr(module, attr, original)

    @contextlib.contextmanager
    def capture(self, module: Any, attr: str):
        """Keep the positional arguments of the last call of ``module.attr`` in ``captured[attr]``."""
        original = getattr(module, attr)

        def keep(*args: Any, **kwargs: Any) -> Any:
            self.captured[attr] = args
            return original(*args, **kwargs)

        setattr(module, attr, keep)
        try:
            yield
        finally:
            setattr(module, attr, original)


FUSED_SETTING = {"auto": None, "on": True, "off": False}


def corpus_study(name: str, budget: float, seed: int = 0, fused: str = "auto") -> tuple[Any, int]:
    problem, split = PROBLEMS[name], split_of(name)
    report = autoopt.tune(problem.model(seed), (split.train.X, split.train.y), val_data=(split.val.X, split.val.y),
                          epochs=problem.epochs, batch_size=problem.batch_size, budget=budget, seed=seed,
                          device="cpu", tracking=False, verbose=False, fused=FUSED_SETTING[fused])
    return report, problem.epochs


def recipe_study(name: str, budget: float, seed: int = 0, fused: str = "auto") -> tuple[Any, int]:
    from autoopt.cli.recipes import load_recipe

    recipe = load_recipe(name)
    model, data = recipe.make(seed=seed)
    settings = {k: v for k, v in (("epochs", recipe.epochs), ("batch_size", recipe.batch_size)) if v}
    report = autoopt.tune(model, data, budget=budget, seed=seed, device="cpu", tracking=False, verbose=False,
                          fused=FUSED_SETTING[fused], **settings)
    return report, report.config.epochs


def reference_epoch(setup: Any, repeats: int = 5) -> float:
    """The median of ``repeats`` warm bare epochs (after one untimed), timed here, the same way for every
    version of autoopt: a unit to check the study's own against (it is noisier on shared cores)."""
    def epoch() -> float:
        model = setup.fresh_model(setup.seed)
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        generator = torch.Generator().manual_seed(setup.seed)
        start = time.perf_counter()
        for xb, yb in setup.split.train.batches(setup.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            setup.task.batch_loss(model, xb, yb)[0].backward()
            optimizer.step()
        training.evaluate(model, setup.split.val, setup.task)
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the studies' trials train with (models this small)
    try:
        with torch.random.fork_rng(devices=[]):
            epoch()
            return statistics.median(epoch() for _ in range(repeats))
    finally:
        torch.set_num_threads(threads)


def measure(study: Any, name: str, budget: float, fused: str = "auto") -> dict[str, Any]:
    """One study with every part timed; its numbers and its fingerprint."""
    timers = Timers()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(timers.wrap(tune_module, "run_strategy", "strategy", mark=True))
        stack.enter_context(timers.wrap(training, "evaluate", "val"))
        stack.enter_context(timers.wrap(trial_runners, "train_candidate", "trials"))
        stack.enter_context(timers.wrap(trial_runners, "train_fused", "trials"))  # a fused group: its members' trials
        stack.enter_context(timers.capture(tune_module, "run_strategy"))  # its setup: the unit's model and data
        report, epochs = study(name, budget, fused=fused)
    end = time.perf_counter()
    reference = reference_epoch(timers.captured["run_strategy"][2])
    s, m = timers.seconds, timers.marks
    wall = report.wall_seconds
    # report.wall_seconds is tune()'s own clock, which starts just inside our `start`
    setup = m["strategy_start"] - start - (end - start - wall)
    train = float(report.trials["seconds"].sum())
    val = s["val"]
    parts = {"setup": setup, "bare": s["bare"], "train": train, "val": val,
             "trial": s["trials"] - train - val, "search": s["strategy"] - s["trials"],
             "after": end - m["strategy_end"]}
    unit = epochs * reference
    fingerprint = {
        "recommendation": {"optimizer": report.recommendation.optimizer,
                           "params": {k: float(v) if isinstance(v, float) else v
                                      for k, v in report.recommendation.params.items()}},
        "trials": sorted([r.purpose, r.optimizer, repr(float(r.lr)), r.outcome, int(r.epochs),
                          repr(float(r.final_val_loss))] for r in report.trials.itertuples()),
    }
    return {"problem": name, "budget": budget, "fused": fused, "epoch_tre": report.cost, "wall_tre": wall / unit,
            "ratio": wall / unit / report.cost, "wall_s": wall, "bare_epoch_s": reference, "bare_run_s": unit,
            "vs_budget": wall / unit / budget, "beyond_s": wall - report.cost * unit,
            "epochs": epochs, "seconds": parts, "tre": {k: v / unit for k, v in parts.items()},
            "fingerprint": fingerprint}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=list(DEFAULT_PROBLEMS),
                        help=f"corpus problems (test fold: {', '.join(TEST)}); 'test' for the whole test fold")
    parser.add_argument("--recipes", nargs="*", default=list(DEFAULT_RECIPES))
    parser.add_argument("--budgets", nargs="*", type=float, default=list(BUDGETS))
    parser.add_argument("--repeats", type=int, default=2, help="studies per problem and budget; medians shown")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers and fingerprints here (JSON)")
    parser.add_argument("--check", type=Path, default=None, help="compare fingerprints with this earlier output")
    parser.add_argument("--fused", choices=("auto", "on", "off", "both"), default="auto",
                        help="the default study (auto: fused on CUDA only), fused=True (on), fused=False (off), "
                             "or off and on interleaved, with the wall-time speed-up of on over off (issue 9)")
    args = parser.parse_args()
    modes = ["off", "on"] if args.fused == "both" else [args.fused]
    problems = list(TEST) if args.problems == ["test"] else args.problems

    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    corpus_study(problems[0] if problems else "mlp_wine", 1)  # imports and first-call costs, not a study's
    jobs = [(corpus_study, n) for n in problems] + [(recipe_study, n) for n in args.recipes]
    rows = []
    header = (f"{'problem':22} {'B':>3} {'fused':>5} {'epochTRE':>8} {'wallTRE':>8} {'ratio':>6} {'bare ms':>8} "
              f"{'vs B':>5} {'beyond s':>8} | "
              + " ".join(f"{p:>6}" for p in PARTS) + "   (bare runs)")
    print(header)
    for study, name in jobs:
        for budget in args.budgets:
            # modes interleaved (off, auto, auto, off, ...) so that drift in the machine's load falls on both
            order = [mode for i in range(args.repeats) for mode in (modes if i % 2 == 0 else modes[::-1])]
            measured = [(mode, measure(study, name, budget, mode)) for mode in order]
            walls = {}
            for mode in modes:
                runs = [r for m, r in measured if m == mode]
                walls[mode] = statistics.median(r["wall_s"] for r in runs)
                ratios = [r["ratio"] for r in runs]
                mid = sorted(runs, key=lambda r: r["ratio"])[(len(runs) - 1) // 2]  # the median study (lower)
                mid = {**mid, "ratios": ratios, "ratio_median": statistics.median(ratios),
                       "fingerprints_equal": all(r["fingerprint"] == runs[0]["fingerprint"] for r in runs)}
                rows.append(mid)
                print(f"{name:22} {budget:>3g} {mode:>5} {mid['epoch_tre']:8.2f} {mid['wall_tre']:8.2f} {mid['ratio_median']:6.2f} "
                  f"{mid['bare_epoch_s'] * 1e3:8.2f} {mid['vs_budget']:5.2f} {mid['beyond_s']:8.2f} | " + " ".join(f"{mid['tre'][p]:6.2f}" for p in PARTS)
                      + f"   ratios {' '.join(f'{r:.2f}' for r in ratios)}", flush=True)
            if len(modes) == 2:
                speedup = walls["off"] / walls["on"]
                rows[-1]["speedup_vs_off"] = speedup
                print(f"{'':22} {budget:>3g} wall time off / on (medians): {speedup:.2f}x", flush=True)
    by_budget = defaultdict(list)
    for r in rows:
        by_budget[(r["budget"], r["fused"])].append(r)
    for (budget, mode), group in sorted(by_budget.items()):
        e = statistics.mean(r["epoch_tre"] for r in group)
        w = statistics.mean(r["wall_tre"] for r in group)
        speedups = [r["speedup_vs_off"] for r in group if "speedup_vs_off" in r]
        print(f"mean at budget {budget:g}, fused {mode}: epoch-TRE {e:.2f}, wall-TRE {w:.2f}, ratio of means {w / e:.2f}, "
              f"worst ratio {max(r['ratio_median'] for r in group):.2f}; where a bare run takes >= 1 s, worst wall-TRE / "
              f"budget {max([r['vs_budget'] for r in group if r['bare_run_s'] >= 1] or [math.nan]):.2f} (target <= 1.5); "
              f"elsewhere, most seconds beyond the epochs {max([r['beyond_s'] for r in group if r['bare_run_s'] < 1] or [math.nan]):.2f} "
              f"(target < 1)"
              + (f"; wall time off / on: mean {statistics.mean(speedups):.2f}x, min {min(speedups):.2f}x"
                 if speedups else ""))
    if args.check is not None:
        before = {(r["problem"], r["budget"], r.get("fused", "off")): r["fingerprint"]
                  for r in json.loads(args.check.read_text())["rows"]}
        changed = [(r["problem"], r["budget"], r["fused"]) for r in rows if (r["problem"], r["budget"], r["fused"]) in before
                   and before[(r["problem"], r["budget"], r["fused"])] != r["fingerprint"]]
        compared = sum((r["problem"], r["budget"], r["fused"]) in before for r in rows)
        print(f"fingerprints: {compared - len(changed)}/{compared} studies identical to {args.check}"
              + (f"; changed: {changed}" if changed else ""))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                   "load_average": os.getloadavg()}
        args.out.write_text(json.dumps({"made": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine,
                                        "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
