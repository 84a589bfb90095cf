"""How every chart marks what it shows: one colour per optimizer, the same in every chart autoopt
draws and in MLflow (``mlflow.runColor``), and one mark for the recommendation (``CHOICE_MARK``: a gold
star in the PNGs, the start of the recommended run's name in MLflow).

The shipped optimizers have fixed colours, so that Adam is the same blue in every study, every PNG and
every MLflow chart, and the optimizers a study usually compares get clearly different hues (tab10's
ten first); another name takes a colour none of the fixed ones uses.

>>> optimizer_color("adam"), optimizer_colors(["sgd", "my_opt"])["my_opt"]
('#1f77b4', '#393b79')
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

CHOICE_MARK = "★"

#: The shipped optimizers, the commonest first on tab10's clearly distinct hues.
FIXED = {
    "adam": "#1f77b4", "adamw": "#ff7f0e", "sgd": "#2ca02c", "momentum": "#d62728", "rmsprop": "#9467bd",
    "nesterov": "#8c564b", "adagrad": "#e377c2", "adadelta": "#7f7f7f", "adamax": "#bcbd22", "muon": "#17becf",
    "nadam": "#003f5c", "radam": "#a05195", "adafactor": "#665191", "schedulefree_adamw": "#f95d6a",
    "prodigy": "#2f4b7c",
}
#: For optimizers of your own: darker and lighter hues that none of the fixed colours is.
SPARE = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a",
         "#a55194", "#6b6ecf", "#b5cf6b"]


def optimizer_color(name: str) -> str:
    """The colour of ``name`` on its own (MLflow's run colour is set when a run is created, before the
    study knows its other optimizers): fixed, or a spare one picked by the name's hash."""
    if name in FIXED:
        return FIXED[name]
    return SPARE[int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(SPARE)]


def optimizer_colors(names: Iterable[str]) -> dict[str, str]:
    """The colours of a study's optimizers: fixed ones, and for the others spare colours in name order,
    each used once while there are spare ones left (so that no two optimizers of the study share one)."""
    unique = sorted(set(names))
    colors = {name: FIXED[name] for name in unique if name in FIXED}
    spare = iter(SPARE)
    for name in unique:
        if name not in colors:
            colors[name] = next(spare, None) or optimizer_color(name)
    return colors
