"""Three charts of a study, drawn from the trials table (``Report.trials``).

- ``plot_curves``: how fast the best trial of every optimizer that trained learned;
- ``plot_lr_sensitivity``: how forgiving each optimizer is about its learning rate, at equal epochs;
- ``plot_tradeoff``: what the recommendation weighed, loss against time and memory, every optimizer.

Figures are built with matplotlib's object API on the Agg canvas, never through ``pyplot``: no
global figure list to leak, no GUI backend, and safe to draw from the tracker's writer thread.
A notebook still shows a returned Figure; elsewhere, ``fig.savefig("curves.png")``.

>>> import pandas as pd
>>> from autoopt.recommendation.table import trials_table
>>> fig = plot_curves(trials_table([]))  # an empty study gives a figure that says so
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..recommendation.record import format_bytes
from ..recommendation.table import TARGET_TOLERANCE, best_trained_per_optimizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..recommendation.record import Recommendation

__all__ = ["plot_curves", "plot_lr_sensitivity", "plot_tradeoff"]

_PALETTE = "tab10"


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    # "tight" rather than "constrained" layout: the same look here at a third of the drawing time
    fig = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(fig)  # Agg explicitly: renders to PNG anywhere, no display needed
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _colors(names: list[str]) -> dict[str, tuple]:
    """One color per optimizer, the same in every chart (sorted names, so stable across studies)."""
    import matplotlib

    cmap = matplotlib.colormaps[_PALETTE]
    return {name: cmap(i % cmap.N) for i, name in enumerate(sorted(set(names)))}


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _finite(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").map(lambda v: math.isfinite(v) if pd.notna(v) else False)


def _loss_of(row: pd.Series) -> float:
    """The loss a trial is ranked by: final for a completed one, best epoch for one that stopped early."""
    return float(row["final_val_loss"] if row["outcome"] == "completed" else row["best_val_loss"])


def _shown_curve(row: pd.Series, ceiling: float) -> list[float]:
    """The epochs worth drawing: finite ones, without a diverged trial's diverging epoch (its loss
    is huge by definition and would squash every other curve)."""
    curve = [float(v) for v in row["val_curve"]]
    if row["outcome"] == "diverged":
        curve = curve[:-1]
    return [v if math.isfinite(v) and v <= ceiling else math.nan for v in curve]


def plot_curves(trials: pd.DataFrame) -> Figure:
    """Validation loss per epoch of the best trial of every optimizer that trained, on one chart.

    An optimizer none of whose trials completed is drawn by its best trial as far as it got (pruned
    or screened: hollow end marker; diverged: a cross at the last finite epoch), so that every
    optimizer is compared, not only those that ran to the end.

    >>> # fig = report.plot_curves(); fig.savefig("curves.png")
    """
    fig, (ax,) = _figure(7.5, 4.5)
    best = best_trained_per_optimizer(trials)
    ax.set_title("Validation loss of the best trial of each optimizer")
    if best.empty:
        _empty(ax, "no trial trained")
        return fig
    colors = _colors(list(trials["optimizer"]))
    start = pd.to_numeric(trials["initial_val_loss"], errors="coerce")
    start = start[start.map(math.isfinite)]
    # a curve above 4x the worst starting loss is off the chart (divergence), not worth the axis range
    ceiling = 4 * float(start.max()) if len(start) else math.inf
    drawn: list[float] = []
    for _, row in best.iterrows():
        curve = _shown_curve(row, ceiling)
        epochs = list(range(1, len(curve) + 1))
        status = "" if row["outcome"] == "completed" else f", {_stopped(row)}"
        label = f"{row['optimizer']} (lr={row['lr']:.2g}, {_loss_of(row):.4g}{status})"
        color = colors[row["optimizer"]]
        style = "-" if row["outcome"] == "completed" else "--"
        ax.plot(epochs, curve, style, marker="o", markersize=3, color=color, label=label)
        finite = [(e, v) for e, v in zip(epochs, curve) if math.isfinite(v)]
        if finite and row["outcome"] != "completed":
            e, v = finite[-1]
            if row["outcome"] == "diverged":
                ax.scatter([e], [v], marker="x", s=60, color=color, zorder=4)
            else:
                ax.scatter([e], [v], s=60, facecolors="white", edgecolors=[color], linewidths=1.5, zorder=4)
        drawn += [v for _, v in finite]
    target = trials.attrs.get("target_loss", math.nan)
    if isinstance(target, float) and math.isfinite(target):
        ax.axhline(target, color="0.5", linestyle=":", linewidth=1, label=f"target loss {target:.4g} (best + {TARGET_TOLERANCE:.0%})")
    if drawn and min(drawn) > 0 and max(drawn) / min(drawn) > 20:
        ax.set_yscale("log")  # losses spanning decades: a linear axis flattens the end of training
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title="dashed: stopped early", title_fontsize="small")
    return fig


def _stopped(row: pd.Series) -> str:
    if row["outcome"] == "pruned":
        return f"{'screened' if row['purpose'] == 'screen' else 'pruned'} at epoch {int(row['epochs'])}"
    if row["outcome"] == "diverged":
        return f"diverged at epoch {int(row['epochs'])}"
    return str(row["outcome"])


def comparison_epoch(trials: pd.DataFrame) -> int:
    """The latest epoch that some trial of every optimizer that trained has reached: the epoch at
    which the learning-rate sensitivity chart compares them all on equal terms."""
    trained = trials[(trials["epochs"] > 0) & trials["number"].notna()]
    if trained.empty:
        return 0
    # a diverged trial reached the epoch before its diverging one
    usable = trained["val_curve"].map(lambda c: sum(1 for v in c if math.isfinite(v))) \
        - (trained["outcome"] == "diverged").astype(int)
    reached = usable.clip(lower=0).groupby(trained["optimizer"]).max()
    return int(max(reached.min(), 1))


def plot_lr_sensitivity(trials: pd.DataFrame) -> Figure:
    """Validation loss at the same epoch against learning rate (log scale), one series per optimizer.

    Every trial is compared at one epoch (``comparison_epoch``: the latest that every optimizer
    reached), so a pruned trial stands beside completed ones on equal terms. Trials that stopped
    before that epoch are not shown (the title counts them); diverged ones are crosses at the top.

    >>> # fig = report.plot_lr_sensitivity()
    """
    fig, (ax,) = _figure(7.5, 4.5)
    epoch = comparison_epoch(trials)
    ax.set_title("Learning-rate sensitivity" + (f": validation loss at epoch {epoch}" if epoch else ""))
    lr = pd.to_numeric(trials["lr"], errors="coerce")
    usable = lr.map(lambda v: pd.notna(v) and math.isfinite(v) and v > 0).astype(bool) & (trials["epochs"] > 0)
    trials = trials.loc[usable]
    if trials.empty or not epoch:
        _empty(ax, "no trained trial with a learning rate")
        return fig
    at_epoch = trials["val_curve"].map(lambda c: float(c[epoch - 1]) if len(c) >= epoch else math.nan)
    diverged = (trials["outcome"] == "diverged") & (trials["epochs"] <= epoch)
    shown = trials[at_epoch.map(math.isfinite) & ~diverged].assign(loss=at_epoch)
    colors = _colors(list(trials["optimizer"]))
    for name, group in shown.groupby("optimizer", sort=True):
        group = group.sort_values("lr")
        ax.scatter(group["lr"], group["loss"], color=colors[name], label=name, zorder=3)
    if not shown.empty:
        low, high = shown["loss"].min(), shown["loss"].max()
        ceiling = high + 0.1 * max(high - low, abs(high), 1e-12)
    else:
        ceiling = 1.0
    for name, group in trials[diverged].groupby("optimizer", sort=True):
        ax.scatter(group["lr"], [ceiling] * len(group), marker="x", s=50, color=colors[name], zorder=3)
    if diverged.any():
        ax.scatter([], [], marker="x", color="0.3", label="diverged (no finite loss)")
    early = len(trials) - len(shown) - int(diverged.sum())
    if early:
        ax.set_title(ax.get_title() + f"\n({early} trial(s) stopped before epoch {epoch}: not shown)", fontsize="medium")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"validation loss at epoch {epoch}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def plot_tradeoff(trials: pd.DataFrame, recommendation: Recommendation | None) -> Figure:
    """Two panels: loss against training time per epoch, and loss against optimizer memory.

    One dot per trained trial, every optimizer (a pruned one is hollow: its loss is from the epoch it
    stopped at); the best trial of each optimizer is ringed; the recommendation is a star. Time per
    epoch compares trials of any length, where time to the target exists only for those that got there.

    >>> # fig = report.plot_tradeoff()
    """
    fig, axes = _figure(11.0, 4.5, ncols=2)
    fig.suptitle("What the recommendation weighed: loss against time and memory, every optimizer")
    trained = trials[(trials["epochs"] > 0) & trials["best_val_loss"].notna() & (trials["outcome"] != "diverged")]
    trained = trained.assign(loss=[_loss_of(row) for _, row in trained.iterrows()],
                             seconds_per_epoch=trained["seconds"] / trained["epochs"].clip(lower=1))
    panels = [
        (axes[0], "seconds_per_epoch", "training seconds per epoch", "Loss vs. time per epoch", None),
        (axes[1], "optimizer_state_bytes", "optimizer state memory", "Loss vs. optimizer memory",
         FuncFormatter(lambda v, _pos: format_bytes(v))),
    ]
    if trained.empty:
        for ax, *_ in panels:
            _empty(ax, "no trial trained")
        return fig
    colors = _colors(list(trials["optimizer"]))
    best = set(best_trained_per_optimizer(trials)["number"].dropna().astype(int))
    target = trials.attrs.get("target_loss", math.nan)
    for ax, column, xlabel, title, formatter in panels:
        for name, group in trained.groupby("optimizer", sort=True):
            done = group[group["outcome"] == "completed"]
            early = group[group["outcome"] != "completed"]
            ax.scatter(done[column], done["loss"], color=colors[name], alpha=0.85, label=name)
            ax.scatter(early[column], early["loss"], facecolors="none", edgecolors=[colors[name]], alpha=0.85,
                       label=None if len(done) else name)
            top = group[group["number"].isin(best)]
            ax.scatter(top[column], top["loss"], s=160, facecolors="none", edgecolors="black", linewidths=1)
        if isinstance(target, float) and math.isfinite(target):
            ax.axhline(target, color="0.5", linestyle=":", linewidth=1, label="target loss")
        rec_x = _rec_x(recommendation, trained, column)
        if recommendation is not None and rec_x is not None and math.isfinite(recommendation.val_loss):
            ax.scatter([rec_x], [recommendation.val_loss], marker="*", s=320, facecolors="gold",
                       edgecolors="black", linewidths=1.2, zorder=5,
                       label=f"recommended: {recommendation.optimizer}")
        ax.scatter([], [], facecolors="none", edgecolors="0.3", label="stopped early (hollow)")
        ax.scatter([], [], s=160, facecolors="none", edgecolors="black", label="best of its optimizer")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss")
        if formatter is not None:
            ax.xaxis.set_major_formatter(formatter)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def _rec_x(recommendation: Recommendation | None, trained: pd.DataFrame, column: str) -> float | None:
    """The recommendation's x: the mean over its trials (seconds per epoch), or its state memory."""
    if recommendation is None:
        return None
    if column == "optimizer_state_bytes":
        return _rec_value(recommendation, column)
    mine = trained[trained["number"].isin(recommendation.trial_numbers)]
    return float(mine[column].mean()) if len(mine) else None


def _rec_value(recommendation: Recommendation | None, column: str) -> float | None:
    if recommendation is None:
        return None
    value = float(getattr(recommendation, column))
    return value if math.isfinite(value) else None
