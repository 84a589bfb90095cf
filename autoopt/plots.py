"""Three charts of a study, drawn from the trials table (``Report.trials``).

- ``plot_curves``: how fast the best configuration of each optimizer learned;
- ``plot_lr_sensitivity``: how forgiving each optimizer is about its learning rate;
- ``plot_tradeoff``: what the recommendation weighed, loss against time and against memory.

Figures are built with matplotlib's object API on the Agg canvas, never through ``pyplot``: no
global figure list to leak, no GUI backend, and safe to draw from the tracker's writer thread.
A notebook still shows a returned Figure; elsewhere, ``fig.savefig("curves.png")``.

>>> import pandas as pd
>>> from autoopt.results import trials_table
>>> fig = plot_curves(trials_table([]))  # an empty study gives a figure that says so
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .recommend import format_bytes
from .results import TARGET_TOLERANCE, best_per_optimizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .recommend import Recommendation

__all__ = ["plot_curves", "plot_lr_sensitivity", "plot_tradeoff"]

_PALETTE = "tab10"


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
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


def plot_curves(trials: pd.DataFrame) -> Figure:
    """Validation loss per epoch of the best completed trial of each optimizer, on one chart.

    >>> # fig = report.plot_curves(); fig.savefig("curves.png")
    """
    fig, (ax,) = _figure(7.5, 4.5)
    best = best_per_optimizer(trials)
    ax.set_title("Validation loss of the best trial of each optimizer")
    if best.empty:
        _empty(ax, "no completed trial")
        return fig
    colors = _colors(list(trials["optimizer"]))
    positive = True
    for _, row in best.iterrows():
        curve = [float(v) for v in row["val_curve"]]
        epochs = list(range(1, len(curve) + 1))
        label = f"{row['optimizer']} (lr={row['lr']:.2g}, final {row['final_val_loss']:.4g})"
        ax.plot(epochs, curve, marker="o", markersize=3, color=colors[row["optimizer"]], label=label)
        positive = positive and all(v > 0 for v in curve if math.isfinite(v))
    target = trials.attrs.get("target_loss", math.nan)
    if isinstance(target, float) and math.isfinite(target):
        ax.axhline(target, color="0.5", linestyle="--", linewidth=1, label=f"target loss {target:.4g} (best + {TARGET_TOLERANCE:.0%})")
    finite = [v for c in best["val_curve"] for v in c if math.isfinite(v)]
    if positive and finite and max(finite) / max(min(finite), 1e-300) > 20:
        ax.set_yscale("log")  # losses spanning decades: a linear axis flattens the end of training
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_lr_sensitivity(trials: pd.DataFrame) -> Figure:
    """Final validation loss against learning rate (log scale), one series per optimizer.

    Completed trials are filled dots, pruned ones hollow (their loss is from an earlier epoch),
    diverged ones a cross pinned to the top of the chart (their loss has no finite value).

    >>> # fig = report.plot_lr_sensitivity()
    """
    fig, (ax,) = _figure(7.5, 4.5)
    ax.set_title("Learning-rate sensitivity: final validation loss of every trial")
    lr_ok = _finite(trials["lr"]) & (pd.to_numeric(trials["lr"], errors="coerce") > 0)
    trials = trials[lr_ok]
    trained = trials[trials["outcome"].isin(("completed", "pruned")) & _finite(trials["final_val_loss"])]
    diverged = trials[trials["outcome"] == "diverged"]
    if trained.empty and diverged.empty:
        _empty(ax, "no trial with a learning rate and a loss")
        return fig
    colors = _colors(list(trials["optimizer"]))
    for name, group in trained.groupby("optimizer", sort=True):
        # dots only: re-evaluations share a learning rate, and a line through them would mislead
        done = group[group["outcome"] == "completed"]
        pruned = group[group["outcome"] == "pruned"]
        ax.scatter(done["lr"], done["final_val_loss"], color=colors[name], label=name)
        if not pruned.empty:
            ax.scatter(pruned["lr"], pruned["final_val_loss"], facecolors="none", edgecolors=[colors[name]])
    if not trained.empty:
        low, high = trained["final_val_loss"].min(), trained["final_val_loss"].max()
        ceiling = high + 0.1 * max(high - low, abs(high), 1e-12)
    else:
        ceiling = 1.0
    for name, group in diverged.groupby("optimizer", sort=True):
        ax.scatter(group["lr"], [ceiling] * len(group), marker="x", s=50, color=colors[name])
    # legend entries for the marker kinds, once each
    if not trained[trained["outcome"] == "pruned"].empty:
        ax.scatter([], [], facecolors="none", edgecolors="0.3", label="pruned (loss at the epoch it stopped)")
    if not diverged.empty:
        ax.scatter([], [], marker="x", color="0.3", label="diverged (no finite loss)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("final validation loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def plot_tradeoff(trials: pd.DataFrame, recommendation: Recommendation | None) -> Figure:
    """Two panels: loss against seconds to the target loss, and loss against optimizer memory.

    One dot per completed trial; the recommendation (its mean loss over seeds) is a star.

    >>> # fig = report.plot_tradeoff()
    """
    fig, axes = _figure(11.0, 4.5, ncols=2)
    fig.suptitle("What the recommendation weighed: loss against time and memory")
    done = trials[(trials["outcome"] == "completed") & _finite(trials["final_val_loss"])]
    target = trials.attrs.get("target_loss", math.nan)
    panels = [
        (axes[0], "seconds_to_target", "training seconds to reach the target loss (s)",
         "Loss vs. time to target", None),
        (axes[1], "optimizer_state_bytes", "optimizer state memory", "Loss vs. optimizer memory",
         FuncFormatter(lambda v, _pos: format_bytes(v))),
    ]
    if done.empty:
        for ax, *_ in panels:
            _empty(ax, "no completed trial")
        return fig
    colors = _colors(list(trials["optimizer"]))
    for ax, column, xlabel, title, formatter in panels:
        shown = done[_finite(done[column])]
        for name, group in shown.groupby("optimizer", sort=True):
            ax.scatter(group[column], group["final_val_loss"], color=colors[name], alpha=0.8, label=name)
        missing = len(done) - len(shown)
        if missing:  # never reached the target: no x value, so say so instead of dropping them silently
            title += f"\n({missing} trial(s) never reached the target loss: not shown)"
        if isinstance(target, float) and math.isfinite(target):
            ax.axhline(target, color="0.5", linestyle="--", linewidth=1, label="target loss")
        rec_x = _rec_value(recommendation, column)
        if recommendation is not None and rec_x is not None and math.isfinite(recommendation.val_loss):
            ax.scatter([rec_x], [recommendation.val_loss], marker="*", s=320, facecolors="gold",
                       edgecolors="black", linewidths=1.2, zorder=5,
                       label=f"recommended: {recommendation.optimizer}")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("final validation loss")
        if formatter is not None:
            ax.xaxis.set_major_formatter(formatter)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def _rec_value(recommendation: Recommendation | None, column: str) -> float | None:
    if recommendation is None:
        return None
    value = float(getattr(recommendation, column))
    return value if math.isfinite(value) else None
