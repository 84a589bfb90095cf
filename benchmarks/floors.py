"""What no search can beat on the test fold, measured: the floors behind issue 20's "blocked" rows.

1. **Reproduction.** A study that reports one seed's loss reproduces ("the score-seed mean within 25%
   of the reported loss") at most as often as one seed of a *fixed* configuration lands within 25% of
   its own mean over other seeds; choosing among several single-seed losses only lowers that. Measured
   on the reference configurations' 5 score seeds (each seed against the mean of the 5) and, on both
   folds, the grid's best configuration's two grid seeds against each other.
2. **Seed noise per problem**: the reference's spread over its score seeds (std / mean), which bounds
   how well any choice made on other seeds can do there.
3. **The worst problem of the exhaustive grid**: the grid's own choice (196 runs, 2 seeds each) against
   the reference, per problem (from ``results/compare-test.json``).

    python benchmarks/floors.py        # seconds, from the cached grids and the last test-fold table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, TEST  # noqa: E402
GRID_FLOOR = "exhaustive_grid"  # compare.py's row of the grid's own choice
from simulate import Grid  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "compare-test.json"


def within(a: np.ndarray, b: np.ndarray, tol: float = 0.25) -> np.ndarray:
    """Whether ``b`` is within ``tol`` of ``a`` (the reproduction test: |mean - reported| <= tol x reported)."""
    return np.abs(b - a) <= tol * a


def main() -> int:
    result = json.loads(RESULT.read_text())
    singles = []
    print("Seed noise of the test fold's references (std / mean over the 5 score seeds):")
    for name, ref in result["references"].items():
        losses = np.array(ref["losses"], float)
        singles += list(within(losses, np.full_like(losses, losses.mean())))
        print(f"  {name:<28} {losses.std() / losses.mean():5.1%}")
    print(f"1. one score seed of the reference within 25% of its 5-seed mean: {np.mean(singles):.0%} of {len(singles)}")
    for fold, names in (("development", DEV), ("test", TEST)):
        pairs = []
        for name in names:
            grid = Grid.load(name)
            o, k = min(grid.means, key=grid.means.get)
            a, b = (grid.runs[(o, k, s)]["curve"][-1] for s in (0, 1))
            pairs += [within(np.array(a), np.array(b)), within(np.array(b), np.array(a))]
        print(f"   {fold} fold: the grid's best configuration, one grid seed reproducing the other: {np.mean(pairs):.0%}")
    grid = sorted(((r["score"]["regret"], r["problem"]) for r in result["runs"] if r["method"] == GRID_FLOOR), reverse=True)
    print("3. the exhaustive grid's worst problems (regret against the reference):",
          ", ".join(f"{n} {v:+.1%}" for v, n in grid[:3]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
