"""Candidate-epochs per second: fused trials (autoopt.training.fused.loop.train_fused) against sequential ones.

For each recipe model and each group size K, K candidates (the registry's optimizers at their
defaults, in the order ROTATION, repeated past 13) are trained for ``--epochs`` epochs by one
``train_fused`` call, and the same optimizers by ``train_candidate`` one after another. Both are
whole calls timed on the wall clock (model copies, evaluation and set-up included). Sequential and
fused runs are interleaved in every round, in the same process, and the ratio of each round is
taken against that round's own sequential times; the table reports the median ratio over rounds.
The sequential time of a group is the sum of its members' sequential times (each configuration is
run once per round, right before the group's fused run; a repeated one is counted again), so both
sides train the same mix. ``--mix adam-lrs`` makes every group an lr sweep of Adam instead.

Targets (issue 9): on CPU at K=16, >= 4x the sequential throughput for models under 100k
parameters; at K=1, fused no slower than 1.05x sequential (train_fused trains one member with
train_candidate). On CUDA, when there is one, the same and a mid-size CNN (target >= 10x at K=16).

    python benchmarks/fused_throughput.py                       # CPU, one torch thread, 4 recipes
    python benchmarks/fused_throughput.py --rounds 2 --recipes digits_mlp --ks 1 16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoopt.cli.recipes import load_recipe  # noqa: E402
from autoopt.optimizers.registry import get_spec, list_optimizers  # noqa: E402
from autoopt.records import Candidate  # noqa: E402
from autoopt.training.fused.eligibility import fusable
from autoopt.training.fused.loop import train_fused  # noqa: E402
from autoopt.training.intake import prepare_data  # noqa: E402
from autoopt.training.loop import train_candidate
from autoopt.training.setup import TrainingSetup  # noqa: E402
from autoopt.training.task import infer_task  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = ["digits_mlp", "deep_tanh", "digits_cnn", "sequence"]
# Adam first, so that K=1 and K=4 are the Adam family (costly steps), not plain SGD (cheap ones).
ROTATION = ["adam", "adamw", "nadam", "radam", "adamax", "muon", "sgd", "momentum", "nesterov", "adagrad",
            "rmsprop", "adadelta", "adafactor"]


def mid_cnn(seed: int = 0):
    """A mid-size CNN on synthetic 3x32x32 images (CUDA only): about 0.3M parameters."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(128 * 4 * 4, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=2048)
    return model, (X, y), 128


def make_setup(name: str, device: torch.device, epochs: int) -> TrainingSetup:
    if name == "mid_cnn":
        model, data, batch_size = mid_cnn()
    else:
        recipe = load_recipe(name)
        model, data = recipe.make(seed=0)
        batch_size = recipe.batch_size or 64
    split = prepare_data(data, seed=0, device=device)
    model = model.to(device)
    return TrainingSetup(model, split, infer_task(model, split), device, epochs, batch_size, seed=0)


def members(k: int, mix: str = "rotation"):
    """K members: the registry's optimizers at their defaults (ROTATION), or Adam at K learning rates."""
    if mix == "adam-lrs":  # an lr sweep of one optimizer: 1e-4 ... 1e-1, log-spaced
        lrs = np.logspace(-4, -1, k) if k > 1 else [1e-3]
        return [(get_spec("adam"), Candidate("adam", {**get_spec("adam").defaults, "lr": float(lr)})) for lr in lrs]
    names = [n for n in ROTATION if n in list_optimizers()]
    return [(get_spec(names[i % len(names)]), Candidate(names[i % len(names)], dict(get_spec(names[i % len(names)]).defaults)))
            for i in range(k)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(setup: TrainingSetup, ks: list[int], rounds: int, mix: str) -> dict:
    """Per K: the median over rounds of fused / sequential candidate-epochs per second, and both rates.

    Every member of a group is also trained sequentially in the same round (a repeated configuration
    once, its time counted for each repeat), right before the group's fused run.
    """
    for spec, candidate in members(min(13, max(ks)), mix):  # warm-up: first calls pay one-off costs
        train_candidate(setup, spec, candidate, 0)
    train_fused(setup, members(min(4, max(ks)), mix), 0)
    per_k: dict[int, dict[str, list[float]]] = {k: {"ratio": [], "seq": [], "fused": []} for k in ks}
    for _ in range(rounds):
        for k in ks:
            group = members(k, mix)
            # K=1 is one short run each way: alternate a few pairs so that one noisy run decides less
            pairs = 5 if k == 1 else 1
            seq = fused = 0.0
            for _ in range(pairs):
                times = {c.key(): timed(lambda s=s, c=c: train_candidate(setup, s, c, 0))
                         for s, c in {c.key(): (s, c) for s, c in group}.values()}
                seq += sum(times[c.key()] for _, c in group)
                fused += timed(lambda g=group: train_fused(setup, g, 0))
            per_k[k]["ratio"].append(seq / fused)
            per_k[k]["seq"].append(pairs * k * setup.epochs / seq)
            per_k[k]["fused"].append(pairs * k * setup.epochs / fused)
    return {str(k): {"speedup": statistics.median(v["ratio"]), "speedups": v["ratio"],
                     "sequential_candidate_epochs_per_s": statistics.median(v["seq"]),
                     "fused_candidate_epochs_per_s": statistics.median(v["fused"])} for k, v in per_k.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mix", choices=["rotation", "adam-lrs"], default="rotation",
                        help="rotation: every registry optimizer at its defaults; adam-lrs: Adam at K learning rates")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped where absent")
    parser.add_argument("--out", type=Path, default=RESULTS / "fused_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # autoopt's choice for models under 1M parameters (config.SMALL_MODEL)

    results = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "epochs": args.epochs, "rounds": args.rounds,
               "mix": args.mix, "rotation": ROTATION, "runs": []}
    for device_name in args.devices:
        if device_name == "cuda" and not torch.cuda.is_available():
            print("cuda: not available here, skipped")
            continue
        device = torch.device(device_name)
        names = args.recipes + (["mid_cnn"] if device.type == "cuda" else [])
        for name in names:
            setup = make_setup(name, device, args.epochs)
            reason = fusable(setup)
            n_params = sum(p.numel() for p in setup.template.parameters())
            if reason is not None:
                print(f"{device_name} {name}: not fusable: {reason}")
                results["runs"].append({"device": device_name, "recipe": name, "params": n_params, "fusable": reason})
                continue
            start = time.perf_counter()
            per_k = measure(setup, args.ks, args.rounds, args.mix)
            results["runs"].append({"device": device_name, "recipe": name, "params": n_params, "per_k": per_k,
                                    "seconds": time.perf_counter() - start})
            cells = "  ".join(f"K={k}: {v['speedup']:.2f}x ({v['fused_candidate_epochs_per_s']:.1f} vs "
                              f"{v['sequential_candidate_epochs_per_s']:.1f})" for k, v in per_k.items())
            print(f"{device_name} {name} ({n_params} params): {cells}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
