"""The three study charts, drawn from hand-built trials tables: labels, legends, markers, edge cases."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import matplotlib.colors
import pytest
from matplotlib.figure import Figure

import autoopt.tracking.plots
from autoopt.recommendation.choose import recommend
from autoopt.recommendation.table import trials_table
from autoopt.records import Candidate, EpochRecord, Measurement, TrialRecord
from autoopt.report import Report
from autoopt.tracking.plots import plot_curves, plot_lr_sensitivity, plot_tradeoff, uses_log_scale


def _trial(number, optimizer, lr, outcome, curve, state=0, seed=0):
    epochs = [EpochRecord(i + 1, v, v, 0.5, 0.1, 0.1 * (i + 1)) for i, v in enumerate(curve)]
    return TrialRecord(number, Candidate(optimizer, {"lr": lr}), optimizer, seed, "search",
                       Measurement(outcome, epochs, steps=10 * len(curve), seconds=0.1 * len(curve),
                                   optimizer_state_bytes=state, peak_memory_bytes=1000 + state))


@pytest.fixture
def trials():
    return trials_table([
        _trial(0, "adam", 1e-3, "completed", [1.0, 0.6, 0.40], state=800),
        _trial(1, "adam", 1e-2, "completed", [1.0, 0.5, 0.45], state=800),
        _trial(2, "sgd", 1e-1, "completed", [1.0, 0.8, 0.70]),
        _trial(3, "sgd", 1e-3, "pruned", [1.0]),
        _trial(4, "sgd", 5.0, "diverged", [math.inf]),
        _trial(5, "rmsprop", 1e-2, "pruned", [1.0, 0.9]),  # an optimizer that never completed
        _trial(6, "adamw", 1.0, "diverged", [1.0, 5e5]),  # ... and one that only diverged
        _trial(None, "muon", 0.02, "infeasible", [], state=10**9),
    ])


def _labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _outside(fig, ax) -> bool:
    """Whether the axes' legend lies right of the plot area, covering none of it."""
    fig.canvas.draw()
    legend = ax.get_legend() or fig.axes[-1].get_legend()
    return legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_curves_show_the_best_trial_of_every_optimizer_that_trained(trials):
    fig = plot_curves(trials)
    (ax,) = fig.axes
    assert isinstance(fig, Figure) and ax.get_title() and ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "validation loss"
    labels = _labels(ax)
    assert any(label.startswith("adam (lr=0.001)") for label in labels)  # adam's best is trial 0
    assert any(label.startswith("sgd (lr=0.1)") for label in labels)
    assert any(label.startswith("rmsprop (") and "pruned at epoch 2" in label for label in labels)
    assert any(label.startswith("adamw (") and "diverged at epoch 2" in label for label in labels)
    assert any(label.startswith("target") for label in labels)
    lines = {line.get_label().split(" ")[0]: line for line in ax.get_lines()}
    assert list(lines["adam"].get_xdata()) == [1, 2, 3] and list(lines["adam"].get_ydata()) == [1.0, 0.6, 0.4]
    assert lines["rmsprop"].get_linestyle() == "--" and list(lines["rmsprop"].get_ydata()) == [1.0, 0.9]
    assert list(lines["adamw"].get_ydata()) == [1.0]  # drawn until it diverged, the huge value left out
    assert ax.get_ylim()[1] < 10  # so the divergence does not flatten the other curves
    assert ax.get_yscale() == "linear"  # 0.4 to 1.0: less than a decade
    # a legend entry for each kind of mark drawn: dashed (rmsprop, adamw), a hollow end, a cross
    assert any(label.startswith("dashed") for label in labels)
    assert any(label.startswith("o: pruned") for label in labels) and any(label.startswith("x: diverged") for label in labels)
    assert _outside(fig, ax)


def test_the_recommended_run_is_drawn_and_marked_even_where_its_optimizer_has_a_lower_single_loss():
    """The choice passes over adam at 0.0464 (the lowest single loss between two worse neighbours):
    the chart draws the chosen run, thick and starred, not the passed-over one."""
    table = trials_table([
        _trial(0, "adam", 0.0464, "completed", [1.0, 0.3, 0.093]),
        _trial(1, "adam", 0.1, "completed", [1.0, 0.5, 0.188]),
        _trial(2, "adam", 0.0215, "completed", [1.0, 0.4, 0.120]),
        _trial(3, "adam", 0.0277, "completed", [1.0, 0.35, 0.107]),
        _trial(4, "sgd", 0.1, "completed", [1.0, 0.9, 0.8]),
    ])
    rec = recommend(table)
    assert rec.params == {"lr": 0.0277}
    fig = plot_curves(table, rec)
    (ax,) = fig.axes
    drawn = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    chosen = [line for label, line in drawn.items() if label.startswith("★ recommended: adam (lr=0.0277)")]
    assert len(chosen) == 1 and list(chosen[0].get_ydata()) == [1.0, 0.35, 0.107]
    assert chosen[0].get_linewidth() > 2 * drawn[next(k for k in drawn if k.startswith("sgd"))].get_linewidth()
    assert not any("0.0464" in label for label in drawn)  # the passed-over run is not the one drawn
    stars = [c for c in ax.collections if c.get_offsets().shape[0] and tuple(c.get_offsets()[0]) == (3, 0.107)]
    assert stars  # the gold star at its last epoch
    labels = _labels(ax)
    assert not any(label.startswith(("dashed", "o:", "x:")) for label in labels)  # nothing of the kind is drawn


def test_a_loss_axis_spanning_more_than_a_decade_is_logarithmic():
    table = trials_table([_trial(0, "adam", 1e-3, "completed", [2.3, 0.5, 0.08]),
                          _trial(1, "sgd", 1e-1, "completed", [2.3, 2.25, 2.2])])
    rec = recommend(table)
    for fig in (plot_curves(table, rec), plot_lr_sensitivity(table, rec), plot_tradeoff(table, rec)):
        assert all(ax.get_yscale() == "log" and "log scale" in ax.get_ylabel() for ax in fig.axes)
    assert uses_log_scale([0.08, 2.2]) and not uses_log_scale([0.08, 0.5]) and not uses_log_scale([0.0, 1.0])


def test_each_optimizer_has_its_own_colour_the_same_in_every_chart_and_in_mlflow(trials):
    from autoopt.tracking.marks import FIXED, optimizer_color, optimizer_colors

    rec = recommend(trials)
    colours = {}
    for ax in (plot_curves(trials, rec).axes[0], plot_lr_sensitivity(trials, rec).axes[0]):
        for line in ax.get_lines():
            name = line.get_label().split(" ")[0]
            if name in FIXED:
                colours.setdefault(name, set()).add(matplotlib.colors.to_hex(line.get_color()))
    assert colours and all(found == {FIXED[name]} for name, found in colours.items())
    assert len(set(FIXED.values())) == len(FIXED)  # every shipped optimizer distinct
    mine = optimizer_colors(["adam", "mine", "yours"])
    assert len(set(mine.values())) == 3 and optimizer_color("adam") == mine["adam"]


def test_lr_sensitivity_compares_every_optimizer_at_the_same_epoch(trials):
    fig = plot_lr_sensitivity(trials, recommend(trials))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()
    # rmsprop reached epoch 2 only, adamw epoch 1 before diverging: epoch 1 is where all can be compared
    assert ax.get_ylabel() == "validation loss at epoch 1"
    labels = _labels(ax)
    assert {"adam", "sgd", "rmsprop", "adamw"} <= set(labels)
    assert any(label.startswith("x: diverged") for label in labels)
    assert any(label.startswith("★ recommended: adam") for label in labels)
    points = {tuple(p) for c in ax.collections for p in c.get_offsets()}
    assert (1e-2, 1.0) in points and (1e-3, 1.0) in points  # a pruned trial beside completed ones
    top = ax.get_ylim()[1]
    crosses = [c for c in ax.collections if c.get_offsets().shape[0] and c.get_offsets()[0][0] == 5.0]
    assert crosses and crosses[0].get_offsets()[0][1] <= top  # the diverged trial is drawn, on the chart
    assert _outside(fig, ax)


def test_lr_sensitivity_says_when_each_optimizer_was_tried_at_one_rate():
    table = trials_table([_trial(0, "adam", 1e-3, "completed", [1.0, 0.5]), _trial(1, "sgd", 0.1, "completed", [1.0, 0.7])])
    (ax,) = plot_lr_sensitivity(table).axes
    assert "one learning rate per optimizer" in ax.get_title()
    table = trials_table([_trial(0, "adam", 1e-3, "completed", [1.0, 0.5]), _trial(1, "adam", 0.01, "completed", [1.0, 0.7])])
    assert "one learning rate" not in plot_lr_sensitivity(table).axes[0].get_title()


def test_tradeoff_shows_every_optimizer_and_highlights_the_recommendation(trials):
    rec = recommend(trials)
    fig = plot_tradeoff(trials, rec)
    left, right = fig.axes
    assert "per epoch" in left.get_xlabel() and "memory" in right.get_xlabel()
    for ax in (left, right):
        assert ax.get_ylabel() == "validation loss"
    labels = _labels(right)  # one legend, right of both panels
    assert left.get_legend() is None and _outside(fig, right)
    assert f"★ recommended: {rec.optimizer} ({rec.val_loss:.4g})" in labels
    assert {"adam", "sgd", "rmsprop"} <= set(labels)  # rmsprop never completed, and is still there
    assert any(label.startswith("hollow") for label in labels)  # pruned trials are drawn hollow
    assert right.xaxis.get_major_formatter()(800, 0) == "800 B"  # bytes read as bytes
    assert left.xaxis.get_major_formatter()(0.0175, 0) == "18 ms"
    fig.canvas.draw()
    for ax in (left, right):  # tick labels that do not run into each other
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))


def test_empty_or_unfinished_studies_still_draw(trials):
    nothing = trials_table([])
    for fig in (plot_curves(nothing), plot_lr_sensitivity(nothing), plot_tradeoff(nothing, None)):
        assert isinstance(fig, Figure) and fig.axes
    only_failures = trials[trials["outcome"].isin(["diverged", "infeasible"])]
    assert isinstance(plot_curves(only_failures), Figure)
    assert isinstance(plot_tradeoff(only_failures, None), Figure)


def test_figures_save_as_png_and_the_report_draws_them(trials, tmp_path):
    report = Report(recommend(trials), trials, study=None)
    for name, fig in {"curves": report.plot_curves(), "lr": report.plot_lr_sensitivity(),
                      "tradeoff": report.plot_tradeoff()}.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_plots_import_matplotlib_and_never_mlflow():
    tree = ast.parse(Path(autoopt.tracking.plots.__file__).read_text())
    modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.split(".")[0] == "mlflow" for m in modules)
    assert "matplotlib.pyplot" not in modules  # no global figure state
