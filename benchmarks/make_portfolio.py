"""Make ``autoopt/search/portfolio.json`` from the reference grids of the development problems (never by hand).

Two lists, both greedy as in Auto-sklearn 2.0's portfolios:

- ``entries``, trained to the end one by one: the first is the grid configuration with the lowest mean
  regret over the development problems; each next one the configuration that most lowers the mean of
  each problem's best regret among the entries so far (regret capped at 100%, so one hopeless problem
  cannot dictate the order);
- ``probe_entries``, a list learned for races (autoopt's races start from ``entries``, ``race.RACE_POOL``:
  on the development fold the probe list helped only with half a run more to spend): each next one the configuration that most
  lowers the mean (capped) regret of "the entry whose loss is lowest after the race's first rung", what a
  race keeps (``early_budget.probe_portfolio``);
- ``pretrained_entries``, what a short race starts from when the model's weights are already trained
  (``autoopt.training.initialization.looks_trained``): ``entries`` learned on the development fold's
  fine-tuning problems only. On the development fold (``first_answers.py``, learned leave-fold-out) it
  lowered mean regret at 1 TRE from 46.4% to 41.2% (paired -5.2 +- 4.1 points: better on all 3
  fine-tuning problems, by 30-125 points, no other problem changes) and at 1.5 TRE by 5.7 points; at 2
  TRE, where the race is successive halving, it was worse (+1.2 points, 3 problems), so it is used below
  ``race.SHORT_BELOW`` only.

Only configurations inside the registry's learning-rate range of their optimizer are eligible, so the
study's search space contains every entry exactly.

    python benchmarks/make_portfolio.py            # writes autoopt/search/portfolio.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DEV, FOLD_RULE  # noqa: E402
from grids import load, lr_of  # noqa: E402
from early_budget import Context, load_grids, pretrained_portfolio, probe_portfolio  # noqa: E402
from simulate import greedy_portfolio  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "autoopt" / "search" / "portfolio.json"
SIZE = 16
PROBE_SIZE = 27  # as many as a race ever starts (autoopt.search.race.RACE_MAX)
FIRST_RUNG = 1  # the race's first rung, in epochs (autoopt.search.race.SHORT_RUNG)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    grids = list(load_grids(list(DEV)).values())
    if len(grids) < len(DEV):
        parser.error(f"{len(DEV) - len(grids)} development problems have no complete grid yet: run grids.py first")
    entries = greedy_portfolio(grids, args.size)
    probes = probe_portfolio(Context(grids, entries), FIRST_RUNG, PROBE_SIZE)
    pretrained = pretrained_portfolio(Context(grids, entries), args.size)
    record = {
        "made_by": "benchmarks/make_portfolio.py",
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus": {"fold": "development", "fold_rule": FOLD_RULE, "problems": list(DEV),
                   "grid_versions": {n: load(n)["version"] for n in DEV}},
        "entries": [{"optimizer": o, "lr": lr_of(k)} for o, k in entries],
        "probe_entries": [{"optimizer": o, "lr": lr_of(k)} for o, k in probes],
        "probe_first_rung": FIRST_RUNG,
        "pretrained_entries": [{"optimizer": o, "lr": lr_of(k)} for o, k in pretrained],
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for i, (o, k) in enumerate(entries, 1):
        print(f"{i:2d}. {o:<9} lr {lr_of(k):.3g}")
    print("race entries:", ", ".join(f"{o} {lr_of(k):.3g}" for o, k in probes))
    print("pretrained models' race entries:", ", ".join(f"{o} {lr_of(k):.3g}" for o, k in pretrained))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
