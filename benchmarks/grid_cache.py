"""The corpus grids' cache: one compact JSON per problem, kept valid piece by piece, and how it is read.

``results/corpus/<problem>.json`` holds every grid run (optimizer, k, seed -> per-epoch validation
curve; lr = 10 ** (k / 3)) and the held-out runs of the grid's top configurations. It stays valid
while what decides its numbers is unchanged, measured rather than read from names:

- the problem's *fingerprint* (``version``): its data, the initial weights of seed 0, two short runs
  through autoopt's own loop (Adam and momentum SGD) and torch's version; a change drops the record;
- each family's fingerprint (``families``): its update rule on a fixed tensor, its registry defaults and,
  for an optimizer built over parameter groups (Muon), the split of this problem's model; a change
  drops that family's runs only, so that changing one optimizer recomputes one optimizer.

Two sets of held-out seeds, which no search trains on: the reference is the best of the grid's top
configurations on ``REFERENCE_SEEDS``, and it, every method's recommendation and the grid's own choice
are all scored on ``SCORE_SEEDS`` (a reference chosen and scored on the same seeds wins by luck that no
method can match).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from corpus import PROBLEMS, split_of

RESULTS = Path(__file__).resolve().parent / "results" / "corpus"
#: The shipped optimizers the grid trains (10 families of update rule; nesterov, radam and adafactor
#: are left out for cost: they are near-copies of momentum and Adam on problems of this size).
FAMILIES = ("sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam", "adamax", "muon")
#: The families of problems whose single run takes seconds (kind "large"): six update rules.
LARGE_FAMILIES = ("sgd", "momentum", "rmsprop", "adam", "adamw", "muon")
#: Where each family's window starts (k: lr = 10 ** (k / 3)) and how many rates it holds at first.
START = {"sgd": -9, "momentum": -10, "adagrad": -9, "rmsprop": -12, "adadelta": -3, "adam": -12, "adamw": -12,
         "nadam": -12, "adamax": -11, "muon": -9}
WINDOW = 10
K_RANGE = (-21, 9)  # 1e-7 .. 1e3: no family's best lies outside this on any sane problem
GRID_SEEDS = (0, 1)
REFERENCE_SEEDS = (1000, 1001, 1002, 1003, 1004)  # choose the reference among the grid's top configurations
SCORE_SEEDS = (2000, 2001, 2002, 2003, 2004)  # score the reference, every method and the grid's own choice
TOP = 3


def families_of(name: str) -> tuple[str, ...]:
    return LARGE_FAMILIES if PROBLEMS[name].kind == "large" else FAMILIES


def lr_of(k: int) -> float:
    return float(10.0 ** (k / 3.0))


def k_of(lr: float) -> int:
    """The grid step nearest ``lr`` (``lr_of``'s inverse): a third of a decade per step."""
    return round(3 * math.log10(lr))


def params_of(optimizer: str, lr: float) -> dict[str, Any]:
    from autoopt.optimizers.registry import get_spec

    return {**get_spec(optimizer).defaults, "lr": float(lr)}


def evaluate(name: str, optimizer: str, params: dict[str, Any], seed: int, epochs: int | None = None) -> dict[str, Any]:
    """Train ``optimizer(**params)`` on problem ``name`` from ``seed``'s weights with autoopt's own loop.

    Returns the outcome, the per-epoch validation curve (the last entry is the final loss), the epochs
    trained and the training seconds. The data order is seeded by ``seed``, as in a study.
    """
    from autoopt.optimizers.registry import get_spec
    from autoopt.records import Candidate
    from autoopt.training.loop import train_candidate
    from autoopt.training.setup import TrainingSetup
    from autoopt.training.task import infer_task

    problem = PROBLEMS[name]
    split = split_of(name)
    model = problem.model(seed)
    setup = TrainingSetup(template=model, split=split, task=infer_task(model, split), device=torch.device("cpu"),
                          epochs=epochs or problem.epochs, batch_size=problem.batch_size, seed=seed)
    m = train_candidate(setup, get_spec(optimizer), Candidate(optimizer, dict(params)), seed=seed)
    curve = [float(f"{v:.6g}") if math.isfinite(v) else None for v in m.val_losses]
    outcome = m.outcome if m.outcome != "completed" or curve[-1] is not None else "diverged"
    return {"outcome": outcome, "curve": curve, "epochs": len(m.epochs), "seconds": round(m.seconds, 4),
            "initial": float(f"{m.initial_val_loss:.6g}") if math.isfinite(m.initial_val_loss) else None}


def final_loss(run: dict[str, Any]) -> float | None:
    """The final validation loss of a run that completed, else None."""
    return run["curve"][-1] if run["outcome"] == "completed" else None


# --- fingerprints ----------------------------------------------------------------------------------

def _one_thread() -> Any:
    class _Threads:  # as the grid's workers: kernels on more threads sum in another order
        def __enter__(self) -> None:
            self.before = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc: Any) -> None:
            torch.set_num_threads(self.before)

    return _Threads()


def fingerprint(name: str) -> str:
    """A hash of what decides every run of problem ``name`` whatever the optimizer (see the module doc).

    The two short runs enter rounded to 4 significant digits: CPUs of other makes round the last bits
    of a sum differently, which moves no conclusion, while a change of the loop moves far more.
    """
    with _one_thread():
        digest = hashlib.sha256(torch.__version__.encode())
        X, y = PROBLEMS[name].make_data()
        digest.update(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes())
        for tensor in PROBLEMS[name].model(0).state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        for run in _short_runs(name):
            digest.update(repr((run["outcome"], _rounded(run["curve"], 4), _rounded([run["initial"]], 4))).encode())
        return digest.hexdigest()[:16]


def _short_runs(name: str) -> list[dict[str, Any]]:
    """Adam at 1e-3 and momentum SGD at 1e-2, seed 0, two epochs: grid configurations (k = -9, -6)."""
    epochs = min(2, PROBLEMS[name].epochs)
    return [evaluate(name, optimizer, params_of(optimizer, lr_of(k)), 0, epochs=epochs)
            for optimizer, k in (("adam", -9), ("momentum", -6))]


def _rounded(values: list[float | None], digits: int) -> list[str | None]:
    return [None if v is None else f"{v:.{digits}g}" for v in values]


def _update_rule(optimizer: str, seeded: bool = True, **build: Any) -> bytes:
    """The optimizer's update rule on a fixed 2-D and 1-D parameter, three steps, as bytes (``seeded``:
    the parameters drawn from seed 0; else from torch's random state as it is)."""
    from autoopt.optimizers.registry import get_spec

    if seeded:
        torch.manual_seed(0)
    w, b = torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True)
    opt = get_spec(optimizer).build([w, b], {**params_of(optimizer, 0.01), **build})
    for _ in range(3):
        opt.zero_grad()
        ((w.sin() @ b.cos()) ** 2).sum().backward()
        opt.step()
    return repr(_rounded(torch.cat([w.detach().flatten(), b.detach()]).tolist(), 5)).encode()


def family_fingerprint(name: str, optimizer: str) -> str:
    """A hash of what decides ``optimizer``'s runs on problem ``name`` beyond the problem's fingerprint."""
    from autoopt.optimizers.registry import get_spec

    spec = get_spec(optimizer)
    with _one_thread():
        digest = hashlib.sha256(_update_rule(optimizer) + repr(sorted(spec.defaults.items())).encode())
        if spec.groups is not None:  # the model's split into groups (Muon: which matrices are hidden)
            model = PROBLEMS[name].model(0)
            names = {id(p): n for n, p in model.named_parameters()}
            digest.update(repr([(g.get("use_muon"), [names[id(p)] for p in g["params"]])
                                for g in spec.parameters_of(model)]).encode())
        return digest.hexdigest()[:16]


# --- the cache -------------------------------------------------------------------------------------

def cache_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def run_key(optimizer: str, k: int, seed: int) -> str:
    return f"{optimizer}|{k}|{seed}"


def config_key(optimizer: str, params: dict[str, Any]) -> str:
    """An exact text key for a configuration (floats in full precision)."""
    return json.dumps([optimizer, sorted((key, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                                          else v) for key, v in params.items())])


def load(name: str) -> dict[str, Any]:
    """The cached record of ``name`` as it is on disk (an empty one when missing)."""
    try:
        return json.loads(cache_path(name).read_text())
    except (OSError, json.JSONDecodeError):
        return {"problem": name, "version": None, "families": {}, "runs": {}, "heldout": {}}


def load_valid(name: str, log: Any = print) -> dict[str, Any]:
    """The cached record of ``name`` with whatever today's code would compute differently dropped."""
    record = _migrated(load(name), log)
    version = fingerprint(name)
    if record.get("version") != version:
        if record["runs"]:
            log(f"{name}: the problem changed (data, weights or the training loop): its grid is recomputed")
        record = {"problem": name, "version": version, "families": {}, "runs": {}, "heldout": {}}
    families = record.setdefault("families", {})
    for optimizer in families_of(name):
        current = family_fingerprint(name, optimizer)
        if families.get(optimizer) != current:
            dropped = [k for k in record["runs"] if k.split("|")[0] == optimizer]
            if dropped:
                log(f"{name}: {optimizer} changed: its {len(dropped)} runs are recomputed")
            for key in dropped:
                del record["runs"][key]
            for key in [k for k in record["heldout"] if json.loads(k)[0] == optimizer]:
                del record["heldout"][key]
            families[optimizer] = current
    return record


def _migrated(record: dict[str, Any], log: Any = print) -> dict[str, Any]:
    """A record of the first corpus's format (one fingerprint over every family, exact to the last bit
    of the CPU that made it) in today's: its runs are kept if the two short runs of the fingerprint,
    trained here, match the cached runs of the same configurations to 4 significant digits; Muon's are
    dropped (its split of the model and its Newton-Schulz dtype changed: ``autoopt/optimizers/muon.py``).
    """
    if "families" in record or not record["runs"]:
        return record
    name = record["problem"]
    for (optimizer, k), run in zip((("adam", -9), ("momentum", -6)), _short_runs(name)):
        cached = record["runs"].get(run_key(optimizer, k, 0))
        if cached is None or _rounded(cached["curve"][:len(run["curve"])], 4) != _rounded(run["curve"], 4):
            log(f"{name}: the cached grid does not reproduce here: it is recomputed")
            return {**record, "version": None, "families": {}}
    families = {o: family_fingerprint(name, o) for o in FAMILIES if o != "muon"}
    return {**record, "version": fingerprint(name), "families": families}


def save(record: dict[str, Any]) -> None:
    path = cache_path(record["problem"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
    tmp.replace(path)


# --- reading a grid --------------------------------------------------------------------------------

def configs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (optimizer, k) of the grid with its runs on both grid seeds and their mean final loss."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for key, run in record["runs"].items():
        optimizer, k, seed = key.split("|")
        entry = out.setdefault((optimizer, int(k)), {"optimizer": optimizer, "k": int(k), "runs": {}})
        entry["runs"][int(seed)] = run
    for entry in out.values():
        finals = [final_loss(entry["runs"][s]) if s in entry["runs"] else None for s in GRID_SEEDS]
        entry["ok"] = all(f is not None for f in finals)
        entry["mean"] = float(np.mean(finals)) if entry["ok"] else math.inf
    return sorted(out.values(), key=lambda e: (e["optimizer"], e["k"]))


def best_configs(record: dict[str, Any], n: int = TOP) -> list[dict[str, Any]]:
    """The ``n`` grid configurations with the lowest mean final loss (diverged on any seed: out)."""
    return sorted((c for c in configs(record) if c["ok"]), key=lambda c: c["mean"])[:n]


def heldout_losses(record: dict[str, Any], optimizer: str, params: dict[str, Any],
                   seeds: tuple[int, ...] = SCORE_SEEDS) -> list[float | None] | None:
    """Final losses on ``seeds`` (None for a diverged seed), or None if not all evaluated yet."""
    runs = record["heldout"].get(config_key(optimizer, params), {})
    if not all(str(s) in runs for s in seeds):
        return None
    return [runs[str(s)] for s in seeds]


def reference(record: dict[str, Any]) -> dict[str, Any]:
    """The reference: of the grid's top configurations, the one with the lowest mean on REFERENCE_SEEDS,
    with its losses on SCORE_SEEDS (``mean``, ``losses``), the seeds every method is scored on."""
    best = None
    for c in best_configs(record):
        params = params_of(c["optimizer"], lr_of(c["k"]))
        chosen_on = heldout_losses(record, c["optimizer"], params, REFERENCE_SEEDS)
        scored_on = heldout_losses(record, c["optimizer"], params, SCORE_SEEDS)
        if chosen_on is None or scored_on is None or any(v is None for v in chosen_on + scored_on):
            continue
        if best is None or np.mean(chosen_on) < best["reference_seeds_mean"]:
            best = {"optimizer": c["optimizer"], "k": c["k"], "lr": lr_of(c["k"]), "mean": float(np.mean(scored_on)),
                    "losses": scored_on, "reference_seeds_mean": float(np.mean(chosen_on)), "grid_mean": c["mean"]}
    if best is None:
        raise RuntimeError(f"{record['problem']}: no top configuration completed on every held-out seed.")
    return best


def edge_extensions(record: dict[str, Any], problem: str) -> list[tuple[str, int]]:
    """(optimizer, k) to add: two rates beyond an edge where a family's best (or only finite) rate lies."""
    low, high = K_RANGE
    add = []
    for optimizer in families_of(problem):
        mine = [c for c in configs(record) if c["optimizer"] == optimizer]
        if not mine:
            continue
        ks = [c["k"] for c in mine]
        ok = [c for c in mine if c["ok"]]
        best = min(ok, key=lambda c: c["mean"])["k"] if ok else min(ks)  # all diverged: lower rates
        if best == min(ks) and min(ks) > low:
            add += [(optimizer, min(ks) - i) for i in (1, 2) if min(ks) - i >= low]
        if best == max(ks) and max(ks) < high:
            add += [(optimizer, max(ks) + i) for i in (1, 2) if max(ks) + i <= high]
    return add

