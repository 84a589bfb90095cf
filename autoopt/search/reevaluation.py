"""Re-evaluation: the best configurations retrained on extra seeds (``reevaluate_top``), so that the
recommendation compares means, not single draws. Off by default: on the development fold, for real on
held-out seeds, it raised mean regret at 10 and 20 TRE (``benchmarks/results/compare-dev-reeval.md``).
"""

from __future__ import annotations

import pandas as pd

from ..recommendation.table import trials_table
from ..records import Candidate
from ..study.stored import read_records
from .runner import StudyRunner


def enqueue_reevaluations(runner: StudyRunner, extra_seeds: list[int]) -> None:
    """Queue the top configurations on the seeds they have not been trained on yet (once)."""
    study, config = runner.study, runner.config
    table = trials_table(read_records(study, runner.specs), config.objective)
    done = table[(table["outcome"] == "completed") & (table["purpose"] != "reevaluation")]
    # the best configuration of each of the best optimizers first (near-copies of one configuration at
    # the edge of stability tend to fail together on a new seed), then the next best configurations
    done = done.assign(_score=config.objective.score(done["objective"]))
    ranked = done.sort_values("_score").drop_duplicates("config")
    leaders = ranked.drop_duplicates("optimizer")
    top = pd.concat([leaders, ranked.drop(leaders.index)]).head(config.reevaluate_top)
    seen = set(zip(table["config"], table["seed"]))
    queued = {(t.user_attrs.get("key"), t.user_attrs.get("seed")) for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("purpose") == "reevaluation"}
    for _, row in top.iterrows():
        candidate = Candidate(row["optimizer"], dict(row["params"]))
        for seed in extra_seeds:
            if (row["config"], seed) not in seen and (candidate.key(), seed) not in queued:
                runner.enqueue(candidate, "reevaluation", seed, once=f"reevaluation:{candidate.key()}:{seed}")
