"""A study as stored: created or reopened (with its sampler, pruner and direction), what it keeps beside
its trials (its objective, where MLflow records it, its wall-time unit), and its trials read back as
records.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..objective import VAL_LOSS, Objective
from ..optimizers.spec import OptimizerSpec
from ..records import Candidate, Measurement, TrialRecord
from .storage import is_storage_error, open_storage


def make_sampler(kind: str | optuna.samplers.BaseSampler, seed: int) -> optuna.samplers.BaseSampler:
    if isinstance(kind, optuna.samplers.BaseSampler):
        return kind
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group=True: each optimizer's dimensions form their own subspace of the conditional space
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5)


def make_pruner(kind: str | optuna.pruners.BasePruner, epochs: int) -> optuna.pruners.BasePruner:
    if isinstance(kind, optuna.pruners.BasePruner):
        return kind
    if kind == "successive_halving":
        # Asynchronous SH: a trial goes past epoch 1, 3, 9 ... only while it is among the best third
        # at that epoch (the best so far while few trials have reached it).
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if kind == "percentile":
        # Against finished runs only: a trial goes on while its curve stays in the best quarter of the
        # completed curves at the same epoch (from the first completed run on).
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=1, n_warmup_steps=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def create_study(
    *,
    study_name: str | None,
    storage: str | Path | optuna.storages.BaseStorage | None,
    sampler: str | optuna.samplers.BaseSampler,
    pruner: str | optuna.pruners.BasePruner,
    seed: int,
    epochs: int,
    objective: Objective = VAL_LOSS,
) -> optuna.Study:
    """A new study, or the stored one of the same name (resume), in ``objective``'s direction.

    A storage that cannot be opened (a server that does not answer, a database that is not Optuna's)
    is one ValueError naming it, not the database library's exception; a stored study made for
    another objective is a ValueError too (its trial values mean something else).
    """
    try:
        opened = open_storage(storage)
        study = optuna.create_study(
            study_name=study_name,
            storage=opened,
            sampler=make_sampler(sampler, seed),
            pruner=make_pruner(pruner, epochs),
            direction=objective.direction,
            load_if_exists=True,
        )
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"storage={_describe(storage)} cannot be opened: {type(exc).__name__}: {first}") from None
    _check_stored_objective(study, objective)
    return study


#: The study user attribute naming its objective: {"name": ..., "direction": ...}.
OBJECTIVE_ATTR = "autoopt:objective"


def in_memory_copy(study: optuna.Study) -> optuna.Study:
    """The study copied into memory, trials and attributes, with its sampler and pruner: what a Report
    keeps of a study whose storage was scratch (``tune(n_jobs=2)``'s journal, removed after the study)."""
    memory = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=memory)
    return optuna.load_study(study_name=study.study_name, storage=memory, sampler=study.sampler, pruner=study.pruner)


def _check_stored_objective(study: optuna.Study, objective: Objective) -> None:
    """Record the study's objective; refuse to resume a study made for another one."""
    stored = study.user_attrs.get(OBJECTIVE_ATTR)
    if stored is None and study.trials:  # made before objectives had a name: the validation loss
        stored = {"name": VAL_LOSS.name, "direction": study.direction.name.lower()}
    wanted = {"name": objective.name, "direction": objective.direction}
    if stored is not None and stored != wanted:
        raise ValueError(f"study {study.study_name!r} was made to {stored['direction']} {stored['name']!r}, not to "
                         f"{wanted['direction']} {wanted['name']!r}; run it with objective={stored['name']!r}, or "
                         "give this objective a new study_name.")
    if stored is None:
        study.set_user_attr(OBJECTIVE_ATTR, wanted)


def load_objective(study: optuna.Study) -> Objective:
    """The objective a stored study was made for (its values are in the trials' records)."""
    stored = study.user_attrs.get(OBJECTIVE_ATTR) or {"name": VAL_LOSS.name, "direction": "minimize"}
    return Objective.recorded(stored["name"], stored["direction"])


def _describe(storage: Any) -> str:
    return repr(str(storage)) if isinstance(storage, (str, Path)) else type(storage).__name__


def read_records(study: optuna.Study, specs: Sequence[OptimizerSpec]) -> list[TrialRecord]:
    """Every finished trial of the study as a TrialRecord, read back from the storage."""
    families = {s.name: s.family for s in specs}
    records = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.RUNNING, TrialState.WAITING) or "measurement" not in t.user_attrs:
            continue
        if t.user_attrs["measurement"].get("outcome") == "cancelled":
            continue  # never trained: only a queue entry that its phase did not reach
        cand = t.user_attrs["candidate"]
        records.append(
            TrialRecord(
                number=t.number,
                candidate=Candidate(cand["optimizer"], dict(cand["params"])),
                family=families.get(cand["optimizer"], "unknown"),
                seed=int(t.user_attrs.get("seed", 0)),
                purpose=str(t.user_attrs.get("purpose", "search")),
                measurement=Measurement.from_dict(t.user_attrs["measurement"]),
                race_list=t.user_attrs.get("race_list"),
            )
        )
    return records


#: The study user attribute naming the study's candidate optimizers, so that a stored study can say
#: which of them a small budget never reached.
CANDIDATES_ATTR = "autoopt:candidates"


def save_candidates(study: optuna.Study, names: Sequence[str]) -> None:
    if study.user_attrs.get(CANDIDATES_ATTR) != list(names):
        study.set_user_attr(CANDIDATES_ATTR, list(names))


def load_candidates(study: optuna.Study) -> list[str]:
    """The candidates a study was run with; empty for a study stored before they were kept."""
    return list(study.user_attrs.get(CANDIDATES_ATTR) or [])


def save_tracking(study: optuna.Study, tracking_uri: str | None, parent_run_id: str | None) -> None:
    """Where MLflow records this study, so that a stored study can say where its record is."""
    if tracking_uri and parent_run_id:
        study.set_user_attr("mlflow", {"tracking_uri": tracking_uri, "parent_run_id": parent_run_id})


def load_tracking(study: optuna.Study) -> tuple[str | None, str | None]:
    record = study.user_attrs.get("mlflow") or {}
    return record.get("tracking_uri"), record.get("parent_run_id")


#: The study user attribute, shown on optuna-dashboard's study page ("Study User Attributes"), that
#: holds the answer: "trial 11: adam (lr=0.0277, ...): validation loss ..." (the whole explanation).
RECOMMENDATION_ATTR = "autoopt:recommendation"


def save_recommendation(study: optuna.Study, recommendation: Any) -> None:
    """The answer where optuna-dashboard shows it, beside its "Best Trial" card (Optuna's lowest single
    value, which the choice may pass over): one attribute, the recommended trial's number (the first of
    its seeds) then the explanation. Each run of the study writes it again: a resumed study shows its
    latest answer."""
    numbers = sorted(recommendation.trial_numbers)
    trial = f"trial {numbers[0]}" if numbers else "no trial"
    study.set_user_attr(RECOMMENDATION_ATTR, f"{trial}: {recommendation.explanation}")


def quiet_optuna() -> int:
    """Silence Optuna's per-trial INFO lines (we show our own progress); returns the old level."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return level


def restore_optuna_verbosity(level: int) -> None:
    optuna.logging.set_verbosity(level)


#: The study user attribute holding Muon's split of the model (``tune.muon_groups_of``), for reports
#: rebuilt from the storage without the model.
MUON_GROUPS_ATTR = "autoopt:muon_groups"


def save_muon_groups(study: optuna.Study, groups: dict[str, Any] | None) -> None:
    if groups is not None and study.user_attrs.get(MUON_GROUPS_ATTR) != groups:
        study.set_user_attr(MUON_GROUPS_ATTR, groups)


def load_muon_groups(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(MUON_GROUPS_ATTR)
