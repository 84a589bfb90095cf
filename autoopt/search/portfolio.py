"""The portfolio: an ordered list of configurations that a study trains first, shipped as data.

``portfolio.json`` beside this file is made by ``benchmarks/make_portfolio.py`` from the reference
grids of the benchmark corpus's development problems, never edited by hand: each entry is the
configuration that most lowers the mean regret over those problems given the entries before it, so
the first entry is the best single choice and later ones cover the problems where it falls short.

>>> from autoopt.optimizers.registry import resolve_specs
>>> [c.optimizer for c in portfolio_candidates(resolve_specs(["sgd"]))][-1]
'sgd'
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..optimizers.spec import OptimizerSpec
from ..records import Candidate

if TYPE_CHECKING:
    from .runner import StudyRunner

PORTFOLIO_FILE = Path(__file__).with_name("portfolio.json")


@functools.lru_cache(maxsize=1)
def load_portfolio() -> dict[str, Any]:
    """The shipped portfolio: ``entries`` (optimizer and lr, in order) and how it was made."""
    return json.loads(PORTFOLIO_FILE.read_text())


def portfolio_candidates(specs: Sequence[OptimizerSpec], which: str = "entries") -> list[Candidate]:
    """The portfolio's entries among ``specs``, in order, then each other candidate at its defaults.

    ``which``: ``"entries"``, the configurations trained to the end one by one, or ``"probe_entries"``,
    those a race starts from (chosen for how well their first epochs predict the end). An entry sets the
    learning rate; every other hyperparameter is the optimizer's registry default. Entries whose optimizer
    is not a candidate are left out; a candidate the portfolio does not name (a registered optimizer of
    the user's) comes last at its defaults, so it is still tried.
    """
    by_name = {s.name: s for s in specs}
    out: list[Candidate] = []
    portfolio = load_portfolio()
    for entry in portfolio.get(which, portfolio["entries"]):
        spec = by_name.get(entry["optimizer"])
        if spec is not None:
            out.append(Candidate(spec.name, {**spec.defaults, "lr": float(entry["lr"])}))
    named = {c.optimizer for c in out}
    out += [Candidate(s.name, dict(s.defaults)) for s in specs if s.name not in named]
    return out


def run_portfolio(runner: StudyRunner, at_most: int | None) -> None:
    """Train the portfolio's entries in order until ``at_most`` of them (in all) have been queued.

    Entries are queued only when they are about to run (Optuna runs queued trials first in, first
    out, so a line-search step queued later must not wait behind the whole portfolio); each
    entry's index is stored with its trial, so none is queued twice, on resume or by a worker.
    """
    entries = [runner.within_space(c) for c in portfolio_candidates(runner.specs)]
    if at_most is not None:
        entries = entries[:at_most]
    # an entry that is an earlier one within the search space is the same configuration: trained once
    firsts = {}
    for i, entry in enumerate(entries):
        firsts.setdefault(entry.key(), i)
    while True:
        stored = runner.study.get_trials(deepcopy=False)
        queued = {t.user_attrs.get("portfolio_index") for t in stored}
        # a configuration already trained (or queued) on the study's seed, by a race or a line-search step,
        # is not trained again
        done = {t.user_attrs.get("key") for t in stored if t.user_attrs.get("seed") == runner.config.seed
                and t.user_attrs.get("portfolio_index") is None}
        todo = [i for i in range(len(entries))
                if i not in queued and firsts[entries[i].key()] == i and entries[i].key() not in done]
        n = int(min(len(todo), runner.runs_left()))
        if n <= 0:
            runner.run_queued("portfolio")  # entries queued by a run that was stopped
            return
        for i in todo[:n]:
            runner.enqueue(entries[i], "portfolio", extra={"portfolio_index": i}, once=f"portfolio:{i}")
        runner.run_queued("portfolio")
