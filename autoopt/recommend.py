"""The recommendation: loss, speed and memory weighed after the search by a stated policy.

Trials of the same configuration on several seeds are averaged first, and only configurations that
trained on every seed they were given count: one that diverged on any seed is never recommended.
When some configurations were re-evaluated on extra seeds, only those compete, so a lucky seed
cannot win.

Configurations are then compared by their loss **averaged with their learning-rate neighbours'**
(``selection``: half the configuration's own, half the mean of it and the same configuration's runs a
line-search step up and down, where those were trained). Loss is a smooth function of log lr, and one
seed's loss is noisy (5-30% on small problems): the more configurations a study trains, the more
likely the lowest single loss is a lucky draw, often just below a rate that diverges. On the corpus's
development problems, judged on the grid seed that the search did not see (``benchmarks/simulate.py
--score other-seed``), this cut mean regret from 25% to 17% at 10 TRE and from 21% to 15% at 20 TRE
(paired over 24 problems: -8.0% +- 4.7% and -5.7% +- 4.2%), and changed nothing at 5 TRE or less,
where no neighbours are trained.

What the policies call "loss" is the study's objective (``objective=``): the validation loss unless it
says otherwise, compared as a score where lower is better (``Objective.score``), so that a maximized
objective such as ``"val_accuracy"`` is weighed the same way.

Policies (``policy=``):
- ``"default"``: the lowest mean validation loss; among configurations within ``tolerance`` (1%)
  of it, the fastest to reach the target loss; then the least optimizer memory.
- ``"loss"``: the lowest mean validation loss, nothing else.
- ``"speed"``: the fastest to the target among configurations within 5% of the best loss.
- ``"memory"``: the least memory among configurations within 5% of the best loss, then the loss.
- a dict of weights, e.g. ``{"loss": 1, "speed": 0.2, "memory": 0.1}``: the lowest weighted sum of
  each criterion divided by its best value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .objective import VAL_LOSS, Objective

if TYPE_CHECKING:  # torch and the registry are imported where used: the MLflow recorder process
    import torch  # unpickles recommendations and draws charts without them (180 MB, 1 s less)

POLICIES = ("default", "loss", "speed", "memory")
CRITERIA = ("loss", "speed", "memory")
#: How far from the best loss the "speed" and "memory" policies may go to save time or memory.
WIDE_TOLERANCE = 0.05
BAD_OUTCOMES = ("diverged", "oom", "failed")

Policy = str | Mapping[str, float]


def check_policy(policy: Policy) -> None:
    """Raise ValueError for a policy that is neither a known name nor a dict of criterion weights."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; use one of {list(POLICIES)} or a dict of weights over {list(CRITERIA)}.")
        return
    if not isinstance(policy, Mapping) or not policy:
        raise ValueError(f"policy must be one of {list(POLICIES)} or a dict of weights over {list(CRITERIA)}, got {policy!r}.")
    unknown = sorted(set(policy) - set(CRITERIA))
    if unknown or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
                      for w in policy.values()):
        raise ValueError(f"policy weights must be finite non-negative numbers over {list(CRITERIA)}, "
                         f"got {dict(policy)!r}.")
    if not any(w > 0 for w in policy.values()):
        raise ValueError(f"policy weights must include a positive one (all zero weigh nothing), got {dict(policy)!r}.")


@dataclass
class Recommendation:
    """The chosen optimizer and settings, what was measured for them, and why.

    >>> rec = Recommendation(optimizer="sgd", params={"lr": 0.1})
    >>> rec.build(torch.nn.Linear(2, 1).parameters()).__class__.__name__
    'SGD'
    """

    optimizer: str
    params: dict[str, Any]
    family: str = ""
    val_loss: float = math.nan  # mean final validation loss over the seeds it was trained on
    val_loss_std: float = math.nan
    n_seeds: int = 0
    val_accuracy: float = math.nan
    epochs_to_target: float = math.nan
    seconds_to_target: float = math.nan
    optimizer_state_bytes: int = 0
    peak_memory_bytes: int = 0
    objective: str = "val_loss"  # what was optimized: "val_loss", "val_accuracy" or your metric's name
    objective_direction: str = "minimize"
    objective_value: float = math.nan  # its mean final value over the seeds (val_loss's is val_loss)
    objective_std: float = math.nan
    policy: str = "default"
    explanation: str = ""
    trial_numbers: list[int] = field(default_factory=list)

    def build(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """The recommended torch optimizer over ``params``: ``opt = rec.build(model.parameters())``."""
        from .registry import get_spec

        return get_spec(self.optimizer).build(params, self.params)

    @property
    def training_settings(self) -> Any:
        """The recommended schedule, warm-up and clipping norm (``autoopt.schedules.TrainingSettings``)."""
        from .schedules import split_params

        return split_params(self.params)[1]

    @property
    def clip_norm(self) -> float | None:
        """The gradient clipping norm to use (``torch.nn.utils.clip_grad_norm_``), None for no clipping."""
        return self.training_settings.clip_norm

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """The recommended schedule over ``total_steps`` optimizer steps, as a torch LambdaLR (a constant
        one when none was recommended): call ``scheduler.step()`` after each ``optimizer.step()``.

        >>> rec = Recommendation("sgd", {"lr": 0.1, "schedule": "cosine"})
        >>> opt = rec.build(torch.nn.Linear(2, 1).parameters())
        >>> rec.build_scheduler(opt, 100).__class__.__name__
        'LambdaLR'
        """
        from .schedules import build_scheduler

        return build_scheduler(optimizer, self.training_settings, total_steps)

    def constructor(self) -> str:
        """The optimizer as a Python call, e.g. ``torch.optim.Adam(model.parameters(), lr=0.001)``."""
        import torch

        from .registry import get_spec

        spec = get_spec(self.optimizer)
        cls = spec.optimizer_class
        name = (f"torch.optim.{cls.__name__}" if getattr(torch.optim, cls.__name__, None) is cls
                else f"{cls.__module__}.{cls.__qualname__}")
        kwargs = ", ".join(f"{k}={_literal(v)}" for k, v in spec.kwargs(self.params).items())
        return f"{name}(model.parameters(), {kwargs})"

    def code(self) -> str:
        """The recommendation as lines of Python: the optimizer, then its schedule and clipping if any."""
        lines = [f"optimizer = {self.constructor()}"]
        settings = self.training_settings
        if settings.schedule != "constant" or settings.warmup_fraction > 0:
            lines.append(f"scheduler = recommendation.build_scheduler(optimizer, total_steps)  # {settings.schedule}"
                         f", warm-up {settings.warmup_fraction:.0%}; scheduler.step() after each optimizer.step()")
        if settings.clip_norm is not None:
            lines.append(f"torch.nn.utils.clip_grad_norm_(model.parameters(), {settings.clip_norm:.4g})"
                         "  # after loss.backward(), before optimizer.step()")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return self.explanation or f"{self.optimizer} {self.params}"


def summarize_configs(trials: pd.DataFrame, objective: Objective = VAL_LOSS) -> pd.DataFrame:
    """One row per configuration: its seeds averaged; ``ok`` is False if any seed went wrong.

    ``score`` is the mean final objective where lower is better: what the policies weigh as loss.
    """
    runs = trials[trials["outcome"].isin(("completed",) + BAD_OUTCOMES)]
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for config, group in runs.groupby("config", sort=False):
        good = group[group["outcome"] == "completed"]
        losses = good["final_val_loss"].to_numpy(dtype=float)
        values = (good["objective"] if "objective" in good else good["final_val_loss"]).to_numpy(dtype=float)
        # a run that ends no better than it started learned nothing, whatever the other runs did
        start = good["initial_val_loss"] if "initial_val_loss" in good else pd.Series(math.nan, index=good.index)
        learned = bool((start.isna() | (good["final_val_loss"] < start)).all())  # NaN: start unknown
        if objective.name != VAL_LOSS.name:
            learned = True  # the objective judges, not the loss (a loss that rises while accuracy does is common)
        rows.append({
            "config": config,
            "optimizer": group["optimizer"].iloc[0],
            "family": group["family"].iloc[0],
            "params": group["params"].iloc[0],
            "n_seeds": len(group),
            "ok": bool(len(good) == len(group) and np.isfinite(losses).all() and np.isfinite(values).all()
                       and learned),
            "val_loss": float(losses.mean()) if len(losses) else math.nan,
            "val_loss_std": float(losses.std(ddof=1)) if len(losses) > 1 else math.nan,
            "objective": float(values.mean()) if len(values) else math.nan,
            "objective_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "score": float(objective.score(values.mean())) if len(values) else math.nan,
            "val_accuracy": float(good["final_val_accuracy"].mean()) if len(good) else math.nan,
            "epochs_to_target": float(good["epochs_to_target"].mean()) if len(good) else math.nan,
            "seconds_to_target": float(good["seconds_to_target"].mean()) if len(good) else math.nan,
            "optimizer_state_bytes": int(group["optimizer_state_bytes"].max()),
            "peak_memory_bytes": int(group["peak_memory_bytes"].max()),
            "trial_numbers": [int(n) for n in group["number"].dropna()],
        })
    table = pd.DataFrame(rows)
    table["selection"] = smoothed_scores(table)
    return table


#: A learning-rate neighbour: the same configuration at a rate this factor up or down (the line
#: search's step, ``strategy.LR_STEP``), within ``NEIGHBOUR_SLACK``.
NEIGHBOUR_STEP = 10 ** (1 / 3)
NEIGHBOUR_SLACK = 1.1
#: Weight of the neighbourhood's mean against the configuration's own score (chosen on the dev fold).
NEIGHBOUR_WEIGHT = 0.5


def smoothed_scores(configs: pd.DataFrame) -> pd.Series:
    """Each configuration's score averaged with its learning-rate neighbours' (see the module's doc).

    A neighbour that diverged, failed or never learned counts as 3x worse than the configuration itself:
    a rate just below one that blows up is a risky recommendation.

    >>> t = pd.DataFrame({"optimizer": ["sgd"] * 3, "params": [{"lr": 0.1}, {"lr": 0.215}, {"lr": 0.464}],
    ...                   "score": [1.0, 0.8, 1.2], "ok": [True, True, True]})
    >>> [round(v, 3) for v in smoothed_scores(t)]
    [0.95, 0.9, 1.1]
    """
    if configs.empty:
        return pd.Series(dtype=float)
    rows = [(_lr_of(row["params"]), _lineage(row), float(row["score"]), bool(row["ok"])) for _, row in configs.iterrows()]
    lineages: dict[tuple, list[tuple[float, float, bool]]] = {}
    for lr, lineage, score, ok in rows:
        if lr is not None:
            lineages.setdefault(lineage, []).append((lr, score, ok))
    out = []
    for lr, lineage, own, _ in rows:
        values = [own]
        if lr is not None and math.isfinite(own):
            for target in (lr * NEIGHBOUR_STEP, lr / NEIGHBOUR_STEP):
                near = [(abs(math.log(other / target)), score, ok) for other, score, ok in lineages[lineage]
                        if abs(math.log(other / target)) <= math.log(NEIGHBOUR_SLACK)]
                if near:
                    _, score, ok = min(near)
                    values.append(score if ok and math.isfinite(score) else own + 2 * abs(own))
        out.append((1 - NEIGHBOUR_WEIGHT) * own + NEIGHBOUR_WEIGHT * float(np.mean(values)))
    return pd.Series(out, index=configs.index, dtype=float)


def _lr_of(params: dict[str, Any]) -> float | None:
    lr = params.get("lr")
    return float(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 else None


def _lineage(row: pd.Series) -> tuple:
    """What a configuration shares with its learning-rate neighbours: the optimizer and every other setting."""
    return row["optimizer"], tuple(sorted((k, repr(v)) for k, v in row["params"].items() if k != "lr"))


def _within(losses: pd.Series, best: float, tolerance: float) -> pd.Series:
    return losses <= best + tolerance * abs(best)


def _pick(pool: pd.DataFrame, policy: Policy, tolerance: float) -> pd.Series:
    """The chosen row; "loss" is the objective's score smoothed over learning-rate neighbours
    (``selection``; lower is better, whatever the objective's direction)."""
    pool = pool.assign(score=pool["selection"]) if "selection" in pool else pool
    best = pool["score"].min()
    speed = pool["seconds_to_target"].fillna(math.inf)
    if policy == "loss":
        return pool.loc[pool["score"].idxmin()]
    if policy in ("default", "speed"):
        near = pool[_within(pool["score"], best, tolerance if policy == "default" else max(tolerance, WIDE_TOLERANCE))]
        order = near.assign(_speed=speed[near.index]).sort_values(["_speed", "optimizer_state_bytes", "score"])
        return order.iloc[0]
    if policy == "memory":
        near = pool[_within(pool["score"], best, max(tolerance, WIDE_TOLERANCE))]
        return near.sort_values(["peak_memory_bytes", "score"]).iloc[0]
    weights = dict(policy)  # type: ignore[arg-type]
    score = (
        weights.get("loss", 0.0) * pool["score"] / max(abs(best), 1e-12)
        + weights.get("speed", 0.0) * speed / max(speed.min(), 1e-9)
        + weights.get("memory", 0.0) * pool["peak_memory_bytes"] / max(pool["peak_memory_bytes"].min(), 1)
    )
    return pool.loc[score.idxmin()]


def recommend(trials: pd.DataFrame, policy: Policy = "default", tolerance: float = 0.01,
              objective: Objective = VAL_LOSS) -> Recommendation:
    """Choose from a trials table (``Report.trials``) by ``policy``, weighing ``objective`` as its loss.

    >>> import pandas as pd
    >>> from autoopt.results import trials_table
    >>> # see tests/test_recommend.py for hand-built tables
    """
    check_policy(policy)
    configs = summarize_configs(trials, objective)
    if configs.empty or not configs["ok"].any():
        raise RuntimeError(
            "no configuration trained cleanly (each diverged, failed, or ended no better than it started): "
            "there is nothing to recommend; report.trials has every run and its error."
        )
    pool = configs[configs["ok"]]
    note = ""
    if (pool["n_seeds"] > 1).any():
        pool = pool[pool["n_seeds"] > 1]
    elif (configs["n_seeds"] > 1).any():
        note = " Every re-evaluated configuration failed on some seed; this one was trained on one seed only."
    chosen = _pick(pool, policy, tolerance)
    rec = Recommendation(
        optimizer=chosen["optimizer"],
        params=dict(chosen["params"]),
        family=chosen["family"],
        val_loss=float(chosen["val_loss"]),
        val_loss_std=float(chosen["val_loss_std"]),
        n_seeds=int(chosen["n_seeds"]),
        val_accuracy=float(chosen["val_accuracy"]),
        epochs_to_target=float(chosen["epochs_to_target"]),
        seconds_to_target=float(chosen["seconds_to_target"]),
        optimizer_state_bytes=int(chosen["optimizer_state_bytes"]),
        peak_memory_bytes=int(chosen["peak_memory_bytes"]),
        objective=str(objective.name),
        objective_direction=objective.direction,
        objective_value=float(chosen["objective"]),
        objective_std=float(chosen["objective_std"]),
        policy=policy if isinstance(policy, str) else "weights " + str(dict(policy)),
        trial_numbers=list(chosen["trial_numbers"]),
    )
    lines = explain(rec, configs, trials, tolerance, objective).split("\n")
    passed = passed_over(pool, chosen, objective)
    lines[2:2] = [passed] if passed else []  # after the rule it was chosen by
    rec.explanation = "\n".join(lines) + note
    settings = rec.training_settings
    if not settings.is_default:  # one line of code for each training setting the choice includes
        rec.explanation += "\nWith its training settings:\n" + "\n".join(
            "  " + line for line in rec.code().splitlines()[1:])
    return rec


def _literal(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _speed_text(epochs: float, seconds: float) -> str:
    if not math.isfinite(epochs):
        return "never reached the target"
    return f"target in {epochs:.0f} epochs / {seconds:.2f} s"


_REASONS = {
    "default": "the lowest mean validation loss, then the fastest to converge among configurations within {tol:.0%} of it, then the least memory",
    "loss": "the lowest mean validation loss",
    "speed": "the fastest to converge among configurations within {wide:.0%} of the best loss",
    "memory": "the least memory among configurations within {wide:.0%} of the best loss",
}


def _reason(policy: str, objective: Objective) -> str:
    """The policy's rule in words, with the objective in place of "validation loss" where it is another."""
    reason = _REASONS.get(policy, "the lowest weighted score ({policy})")
    if objective.name == VAL_LOSS.name:
        return reason
    return (reason.replace("the lowest mean validation loss", f"the best mean {objective.describe()}")
            .replace("the best loss", f"the best {objective.name}")
            .replace("the lowest weighted score (", f"the lowest weighted score, {objective.name} as loss ("))


def passed_over(pool: pd.DataFrame, chosen: pd.Series, objective: Objective = VAL_LOSS) -> str:
    """A line naming the configuration with the best unsmoothed loss when the learning-rate smoothing
    ranked it below ``chosen`` (else ""): a user comparing runs sees that lower loss and asks why.

    >>> t = pd.DataFrame({"optimizer": ["adam"] * 2, "params": [{"lr": 0.05}, {"lr": 0.03}],
    ...                   "score": [0.09, 0.10], "selection": [0.11, 0.10], "val_loss": [0.09, 0.10]})
    >>> passed_over(t, t.iloc[1]).split(":")[0]
    'Passed over'
    """
    if pool.empty or "selection" not in pool:
        return ""
    lowest = pool.loc[pool["score"].idxmin()]
    if lowest.name == chosen.name or not lowest["selection"] > chosen["selection"]:
        return ""
    by_loss = objective.name == VAL_LOSS.name
    what, value = ("validation loss", lowest["val_loss"]) if by_loss else (objective.name, lowest["objective"])
    numbers = (f": averaged with theirs it scores {lowest['selection']:.4g}, the choice {chosen['selection']:.4g}"
               if by_loss else "")
    return (f"Passed over: {lowest['optimizer']} ({format_params(lowest['params'])}) has the best single {what}, "
            f"{value:.4g}, but its learning-rate neighbours trained worse{numbers} (a low loss between worse "
            "neighbours is often a lucky seed).")


def explain(rec: Recommendation, configs: pd.DataFrame, trials: pd.DataFrame, tolerance: float,
            objective: Objective = VAL_LOSS) -> str:
    """A few lines comparing the choice with the best configuration of every other optimizer."""
    reason = _reason(rec.policy, objective).format(tol=tolerance, wide=max(tolerance, WIDE_TOLERANCE),
                                                   policy=rec.policy)
    spread = f" ± {rec.val_loss_std:.4g}" if math.isfinite(rec.val_loss_std) else ""
    accuracy = f", accuracy {rec.val_accuracy:.1%}" if math.isfinite(rec.val_accuracy) else ""
    by_loss = objective.name == VAL_LOSS.name
    if not by_loss:  # the objective first, then the loss
        std = f" ± {rec.objective_std:.4g}" if math.isfinite(rec.objective_std) else ""
        accuracy = "" if objective.name == "val_accuracy" else accuracy
        spread = f"{spread}, {objective.name} {rec.objective_value:.4g}{std}"
    lines = [
        f"{rec.optimizer} ({format_params(rec.params)}): validation loss {rec.val_loss:.4g}{spread} "
        f"over {rec.n_seeds} seed(s){accuracy}; {_speed_text(rec.epochs_to_target, rec.seconds_to_target)}; "
        f"optimizer state {format_bytes(rec.optimizer_state_bytes)}.",
        f"Chosen by policy '{rec.policy}': {reason}.",
    ]
    ok = configs[configs["ok"]]
    others = ok[ok["optimizer"] != rec.optimizer]
    if not others.empty:
        lines.append("Best of each other optimizer" + ("" if by_loss else f" (by {objective.name})") + ":")
        chosen = rec.val_loss if by_loss else rec.objective_value
        for _, row in others.loc[others.groupby("optimizer")["score"].idxmin()].sort_values("score").iterrows():
            value = row["val_loss"] if by_loss else row["objective"]
            delta = (value - chosen) / max(abs(chosen), 1e-12)
            lines.append(
                f"  {row['optimizer']:<10} {value:.4g} ({delta:+.1%}), "
                f"{_speed_text(row['epochs_to_target'], row['seconds_to_target'])}, "
                f"state {format_bytes(row['optimizer_state_bytes'])} (lr={row['params'].get('lr', math.nan):.3g})"
            )
    trained = set(ok["optimizer"])
    bad = trials[trials["outcome"].isin(BAD_OUTCOMES + ("infeasible",))]
    for outcome, group in bad.groupby("outcome"):
        names = sorted(set(group["optimizer"]) - (trained if outcome != "infeasible" else set()))
        if names:
            lines.append(f"  {outcome}: {', '.join(names)} (no configuration of theirs trained cleanly)")
    return "\n".join(lines)
