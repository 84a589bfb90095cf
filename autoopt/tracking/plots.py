"""Three charts of a study, drawn from the trials table (``Report.trials``), made to be read at a glance.

- ``plot_curves``: how fast each optimizer learned: the recommended run, marked, beside the best of
  every other optimizer (the runs of ``compared.compared_trials``);
- ``plot_lr_sensitivity``: how forgiving each optimizer is about its learning rate, at equal epochs;
- ``plot_tradeoff``: what the recommendation weighed, loss against time and memory, every optimizer.

What every chart does: a log loss axis where the drawn losses span more than a decade (else the
contenders are squeezed under one bad curve), the choice marked (a thick line or a gold star), the
legend outside the plot, legend entries only for what is drawn, one colour per optimizer
(``marks.py``, the same as in MLflow).

Figures are built with matplotlib's object API on the Agg canvas, never through ``pyplot``: no
global figure list to leak, no GUI backend, and safe to draw from the recorder process.
A notebook still shows a returned Figure; elsewhere, ``fig.savefig("curves.png")``.

>>> import pandas as pd
>>> from autoopt.recommendation.table import trials_table
>>> fig = plot_curves(trials_table([]))  # an empty study gives a figure that says so
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..recommendation.record import format_bytes
from ..recommendation.table import TARGET_TOLERANCE
from .marks import CHOICE_MARK as STAR
from .marks import optimizer_colors
from .compared import compared_trials

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..recommendation.record import Recommendation

__all__ = ["plot_curves", "plot_lr_sensitivity", "plot_tradeoff", "uses_log_scale"]

#: A loss axis is logarithmic once the largest drawn loss is this many times the smallest.
LOG_SPAN = 10.0
GOLD = "gold"


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    # "tight" rather than "constrained" layout: the same look here at a third of the drawing time; it
    # makes room for a legend placed outside the axes
    fig = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(fig)  # Agg explicitly: renders to PNG anywhere, no display needed
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def uses_log_scale(losses: Iterable[float]) -> bool:
    """Whether losses span more than a decade (all positive): then a log axis shows them all.

    >>> uses_log_scale([0.08, 0.2, 2.2]), uses_log_scale([0.5, 0.9])
    (True, False)
    """
    finite = [v for v in losses if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SPAN


def _loss_axis(ax: Axes, losses: Iterable[float], label: str) -> None:
    log = uses_log_scale(losses)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(label + (" (log scale)" if log else ""))


def _legend_outside(ax: Axes, **kwargs) -> None:
    """The legend right of the plot, where it covers no point; nothing when nothing is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize="small", frameon=False, **kwargs)


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


def _stopped(row: pd.Series) -> str:
    if row["outcome"] == "pruned":
        return f"{'screened' if row['purpose'] == 'screen' else 'pruned'} at epoch {int(row['epochs'])}"
    if row["outcome"] == "diverged":
        return f"diverged at epoch {int(row['epochs'])}"
    return str(row["outcome"])


def _target(trials: pd.DataFrame) -> float:
    target = trials.attrs.get("target_loss", math.nan)
    return float(target) if isinstance(target, float) and math.isfinite(target) else math.nan


def plot_curves(trials: pd.DataFrame, recommendation: Recommendation | None = None) -> Figure:
    """Validation loss per epoch: the recommended run (thick, starred) and the best run of every other
    optimizer that trained, on one chart.

    An optimizer none of whose trials completed is drawn by its best trial as far as it got (dashed;
    pruned or screened: hollow end marker; diverged: a cross at the last finite epoch), so that every
    optimizer is compared, not only those that ran to the end.

    >>> # fig = report.plot_curves(); fig.savefig("curves.png")
    """
    fig, (ax,) = _figure(9.5, 4.8)
    shown = compared_trials(trials, recommendation)
    ax.set_title("Validation loss: the recommended run and the best of each other optimizer")
    if shown.empty:
        _empty(ax, "no trial trained")
        return fig
    colors = optimizer_colors(trials["optimizer"])
    start = pd.to_numeric(trials["initial_val_loss"], errors="coerce")
    start = start[start.map(math.isfinite)]
    # a curve above 4x the worst starting loss is off the chart (divergence), not worth the axis range
    ceiling = 4 * float(start.max()) if len(start) else math.inf
    drawn: list[float] = []
    dashed = hollow = crossed = False
    for _, row in shown.iterrows():
        curve = _shown_curve(row, ceiling)
        epochs = list(range(1, len(curve) + 1))
        chosen = bool(row["recommended"])
        status = "" if row["outcome"] == "completed" else f", {_stopped(row)}"
        label = f"{row['optimizer']} (lr={row['lr']:.3g}): {_loss_of(row):.4g}{status}"
        if chosen:
            label = f"{STAR} recommended: {label}"
        color = colors[row["optimizer"]]
        style = "-" if row["outcome"] == "completed" else "--"
        dashed |= style == "--"
        ax.plot(epochs, curve, style, marker="o", markersize=4 if chosen else 3, linewidth=3.2 if chosen else 1.4,
                color=color, label=label, zorder=5 if chosen else 3)
        finite = [(e, v) for e, v in zip(epochs, curve) if math.isfinite(v)]
        if not finite:
            continue
        e, v = finite[-1]
        if chosen:
            ax.scatter([e], [v], marker="*", s=360, color=GOLD, edgecolors="black", linewidths=1.0, zorder=6)
        elif row["outcome"] == "diverged":
            crossed = True
            ax.scatter([e], [v], marker="x", s=60, color=color, zorder=4)
        elif row["outcome"] != "completed":
            hollow = True
            ax.scatter([e], [v], s=60, facecolors="white", edgecolors=[color], linewidths=1.5, zorder=4)
        drawn += [value for _, value in finite]
    target = _target(trials)
    if math.isfinite(target):
        ax.axhline(target, color="0.5", linestyle=":", linewidth=1,
                   label=f"target {target:.4g} (best final loss + {TARGET_TOLERANCE:.0%})")
    # what the markers mean, only for markers that are drawn
    if dashed:
        ax.plot([], [], "--", color="0.4", label="dashed: stopped before the last epoch")
    if hollow:
        ax.scatter([], [], s=60, facecolors="white", edgecolors="0.4", label="o: pruned (stopped by the pruner)")
    if crossed:
        ax.scatter([], [], marker="x", color="0.4", label="x: diverged after this epoch")
    _loss_axis(ax, drawn + ([target] if math.isfinite(target) else []), "validation loss")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    return fig


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


def plot_lr_sensitivity(trials: pd.DataFrame, recommendation: Recommendation | None = None) -> Figure:
    """Validation loss at the same epoch against learning rate (log scale), one series per optimizer,
    the rates of each optimizer joined in order; the recommended configuration is a gold star.

    Every trial is compared at one epoch (``comparison_epoch``: the latest that every optimizer
    reached), so a pruned trial stands beside completed ones on equal terms. Trials that stopped
    before that epoch are not shown (the title counts them); diverged ones are crosses at the top.
    Where each optimizer was tried at one rate only (a small budget), the title says so: the chart then
    compares optimizers, and says nothing yet about how forgiving each is.

    >>> # fig = report.plot_lr_sensitivity()
    """
    fig, (ax,) = _figure(9.0, 4.8)
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
    colors = optimizer_colors(trials["optimizer"])
    for name, group in shown.groupby("optimizer", sort=True):
        group = group.groupby("lr", as_index=False)["loss"].mean().sort_values("lr")  # seeds of one rate: their mean
        ax.plot(group["lr"], group["loss"], "-", color=colors[name], linewidth=1, alpha=0.6, zorder=2)
        ax.scatter(group["lr"], group["loss"], color=colors[name], label=name, zorder=3)
    losses = list(shown["loss"])
    log = uses_log_scale(losses)
    if not shown.empty:
        low, high = min(losses), max(losses)
        ceiling = high * 1.5 if log else high + 0.1 * max(high - low, abs(high), 1e-12)
    else:
        ceiling = 1.0
    for name, group in trials[diverged].groupby("optimizer", sort=True):
        ax.scatter(group["lr"], [ceiling] * len(group), marker="x", s=50, color=colors[name], zorder=3,
                   label=None if name in set(shown["optimizer"]) else name)
    if diverged.any():
        ax.scatter([], [], marker="x", color="0.3", label="x: diverged (no finite loss)")
    if recommendation is not None:
        mine = shown[shown["number"].isin(recommendation.trial_numbers)]
        if len(mine):
            ax.scatter([mine["lr"].iloc[0]], [mine["loss"].mean()], marker="*", s=360, color=GOLD,
                       edgecolors="black", linewidths=1.0, zorder=6, label=f"{STAR} recommended: {recommendation.optimizer}")
    notes = []
    early = len(trials) - len(shown) - int(diverged.sum())
    if early:
        notes.append(f"{early} trial(s) stopped before epoch {epoch}: not shown")
    rates = trials.groupby("optimizer")["lr"].nunique()
    if len(rates) and rates.max() <= 1:
        notes.append("one learning rate per optimizer so far: this compares optimizers, not rates")
    if notes:
        ax.set_title(ax.get_title() + "\n(" + "; ".join(notes) + ")", fontsize="medium")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    _loss_axis(ax, losses, f"validation loss at epoch {epoch}")
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    return fig


def plot_tradeoff(trials: pd.DataFrame, recommendation: Recommendation | None) -> Figure:
    """Two panels: loss against training time per epoch, and loss against optimizer memory.

    One dot per trained trial, every optimizer (a pruned one is hollow: its loss is from the epoch it
    stopped at); the run that stands for each optimizer is ringed; the recommendation is a gold star.
    Time per epoch compares trials of any length, where time to the target exists only for those that
    got there. One legend, right of both panels.

    >>> # fig = report.plot_tradeoff()
    """
    fig, axes = _figure(12.5, 4.6, ncols=2)
    fig.suptitle("What the recommendation weighed: loss against time and memory, every optimizer")
    trained = trials[(trials["epochs"] > 0) & trials["best_val_loss"].notna() & (trials["outcome"] != "diverged")]
    trained = trained.assign(loss=[_loss_of(row) for _, row in trained.iterrows()],
                             seconds_per_epoch=trained["seconds"] / trained["epochs"].clip(lower=1))
    panels = [
        (axes[0], "seconds_per_epoch", "training time per epoch", "Loss vs. time per epoch",
         FuncFormatter(lambda v, _pos: format_seconds(v))),
        (axes[1], "optimizer_state_bytes", "optimizer state memory", "Loss vs. optimizer memory",
         FuncFormatter(lambda v, _pos: format_bytes(v))),
    ]
    if trained.empty:
        for ax, *_ in panels:
            _empty(ax, "no trial trained")
        return fig
    colors = optimizer_colors(trials["optimizer"])
    ringed = set(compared_trials(trials, recommendation)["number"].dropna().astype(int))
    target = _target(trials)
    hollow = bool((trained["outcome"] != "completed").any())
    losses = list(trained["loss"])
    for ax, column, xlabel, title, formatter in panels:
        for name, group in trained.groupby("optimizer", sort=True):
            done = group[group["outcome"] == "completed"]
            early = group[group["outcome"] != "completed"]
            ax.scatter(done[column], done["loss"], color=colors[name], alpha=0.85)
            ax.scatter(early[column], early["loss"], facecolors="none", edgecolors=[colors[name]], alpha=0.85)
            top = group[group["number"].isin(ringed)]
            ax.scatter(top[column], top["loss"], s=160, facecolors="none", edgecolors="black", linewidths=1)
        if math.isfinite(target):
            ax.axhline(target, color="0.5", linestyle=":", linewidth=1)
        rec_x = _rec_x(recommendation, trained, column)
        if recommendation is not None and rec_x is not None and math.isfinite(recommendation.val_loss):
            ax.scatter([rec_x], [recommendation.val_loss], marker="*", s=360, color=GOLD,
                       edgecolors="black", linewidths=1.2, zorder=5)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        _loss_axis(ax, losses, "validation loss")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))  # "38.5 kB", "18 ms": wide labels
        ax.xaxis.set_major_formatter(formatter)
        ax.grid(alpha=0.3, which="both")
    # one legend for both panels, with an entry for each kind of mark that is drawn
    handles = [Line2D([], [], marker="o", linestyle="", color=colors[name], label=name)
               for name in sorted(set(trained["optimizer"]))]
    if hollow:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
                              label="hollow: stopped early (loss where it stopped)"))
    if ringed & set(trained["number"].dropna().astype(int)):
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=12, markerfacecolor="none",
                              markeredgecolor="black", label="ringed: the run shown for its optimizer"))
    if math.isfinite(target):
        handles.append(Line2D([], [], linestyle=":", color="0.5", label=f"target {target:.4g}"))
    if recommendation is not None and math.isfinite(recommendation.val_loss):
        handles.append(Line2D([], [], marker="*", linestyle="", markersize=16, markerfacecolor=GOLD,
                              markeredgecolor="black", label=f"{STAR} recommended: {recommendation.optimizer} "
                                                             f"({recommendation.val_loss:.4g})"))
    axes[1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                   fontsize="small", frameon=False)
    return fig


def format_seconds(seconds: float) -> str:
    """A tick label for a duration: ``18 ms``, ``1.2 s``.

    >>> format_seconds(0.0175), format_seconds(1.25)
    ('18 ms', '1.2 s')
    """
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 1 else f"{seconds:.2g} s"


def _rec_x(recommendation: Recommendation | None, trained: pd.DataFrame, column: str) -> float | None:
    """The recommendation's x: the mean over its trials (seconds per epoch), or its state memory."""
    if recommendation is None:
        return None
    if column == "optimizer_state_bytes":
        value = float(recommendation.optimizer_state_bytes)
        return value if math.isfinite(value) else None
    mine = trained[trained["number"].isin(recommendation.trial_numbers)]
    return float(mine[column].mean()) if len(mine) else None
