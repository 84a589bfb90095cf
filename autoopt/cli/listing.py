"""``autoopt optimizers`` and ``autoopt recipes``: what is registered, as tables (without importing torch)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .output import EXIT_FAILURE, EXIT_OK, error
from .recipes import list_recipes, recipe_dirs

if TYPE_CHECKING:
    from ..optimizers.spec import OptimizerSpec


def optimizers_command(args: argparse.Namespace, argv: list[str]) -> int:
    from ..optimizers.registry import get_spec, list_optimizers

    rows = []
    for name in list_optimizers():
        spec = get_spec(name)
        rows.append([name, spec.family, state_per_parameter(spec), _space(spec), spec.description])
    _print_table(["optimizer", "family", "state per parameter", "search space", "description"], rows)
    return EXIT_OK


def _space(spec: OptimizerSpec) -> str:
    from ..optimizers.spec import Categorical, LogUniform

    return ", ".join(f"{d.name} {'|'.join(map(str, d.choices))}" if isinstance(d, Categorical)
                     else f"{d.name} {d.low:g}..{d.high:g}{' log' if isinstance(d, LogUniform) else ''}"
                     for d in spec.space)


def state_per_parameter(spec: OptimizerSpec) -> str:
    """The optimizer's state at its defaults, in parameter sizes, from its state-size rule.

    The rule is probed with parameters of several shapes (``ParameterShape`` stand-ins, so that the
    listing needs no torch; real tensors for a rule that needs them) and fitted as ``k x params +
    r x (rows + cols) + s scalars``; when matrices and vectors differ, both are shown.

    >>> from autoopt.optimizers.registry import get_spec
    >>> state_per_parameter(get_spec("adam"))
    '2x params + step'
    >>> state_per_parameter(get_spec("adafactor"))
    'rows + cols + step (matrices), 1x params + step (vectors)'
    """
    matrices = _fit_state(spec, [(3, 5), (7, 2), (16, 16), (40, 9)])
    vectors = _fit_state(spec, [(5,), (17,), (64,)])
    return matrices if matrices == vectors else f"{matrices} (matrices), {vectors} (vectors)"


def _predict_state(spec: OptimizerSpec, shape: tuple[int, ...]) -> int:
    """The rule's bytes for one parameter of ``shape`` in torch's default float dtype."""
    from ..optimizers.spec import ParameterShape, default_float_bytes

    try:
        return spec.predict_state_bytes([ParameterShape(shape, default_float_bytes())], spec.defaults)
    except (AttributeError, TypeError):  # a user's rule that needs a real tensor
        import torch

        return spec.predict_state_bytes([torch.empty(shape)], spec.defaults)


def _fit_state(spec: OptimizerSpec, shapes: list[tuple[int, ...]]) -> str:
    import math

    from ..optimizers.spec import default_float_bytes

    size = scalar = default_float_bytes()  # a parameter's element and the registry's unit for "step"-like 0-d state
    rows, sizes = [], []
    for shape in shapes:
        lines = (shape[0] + shape[1]) if len(shape) == 2 else 0
        rows.append([math.prod(shape) * size, lines * size, scalar])
        sizes.append(_predict_state(spec, shape))
    # the (rows + cols) column is all zeros for vectors: a free unknown, 0 in the solution
    k, r, s = (round(c) for c in _solve(rows, sizes))
    if any(k * a + r * b + s * c != n for (a, b, c), n in zip(rows, sizes)):
        # not of that form: say how big it is on one large matrix
        ratio = _predict_state(spec, (1024, 1024)) / (1024 * 1024 * size)
        return f"~{ratio:.3g}x params (1024x1024)"
    terms = [f"{k}x params" if k else "", f"{r}x (rows + cols)" if r > 1 else ("rows + cols" if r else ""),
             {0: "", 1: "step"}.get(s, f"{s} scalars")]
    return " + ".join(t for t in terms if t) or "none"


def _solve(rows: list[list[int]], values: list[int]) -> list[float]:
    """A solution of ``rows @ x = values`` by Gauss-Jordan elimination in exact fractions, the
    unknowns of columns without a pivot set to 0 (numpy's import would cost the listing a third of its time).

    >>> _solve([[1, 0, 1], [2, 0, 1], [3, 0, 1]], [3, 5, 7])
    [2.0, 0.0, 1.0]
    """
    from fractions import Fraction

    m = [[Fraction(a) for a in row] + [Fraction(v)] for row, v in zip(rows, values)]
    n, pivots, top = len(rows[0]), [], 0
    for col in range(n):
        pivot = next((i for i in range(top, len(m)) if m[i][col] != 0), None)
        if pivot is None:
            continue
        m[top], m[pivot] = m[pivot], m[top]
        m[top] = [a / m[top][col] for a in m[top]]
        for i in range(len(m)):
            if i != top and m[i][col] != 0:
                m[i] = [a - m[i][col] * b for a, b in zip(m[i], m[top])]
        pivots.append(col)
        top += 1
    x = [0.0] * n
    for row, col in enumerate(pivots):
        x[col] = float(m[row][-1])
    return x


def recipes_command(args: argparse.Namespace, argv: list[str]) -> int:
    listings = list_recipes()
    if not listings:
        searched = ", ".join(str(d) for d in recipe_dirs()) or "no recipes/ folder here or beside autoopt"
        error(f"no recipes found ({searched}).")
        return EXIT_FAILURE
    _print_table(["recipe", "description"], [[r.name, r.description] for r in listings])
    return EXIT_OK


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
