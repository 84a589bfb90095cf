"""The recommendation: loss, speed and memory weighed after the search by a stated policy.

Trials of the same configuration on several seeds are averaged first, and only configurations that
trained on every seed they were given count: one that diverged on any seed is never recommended.
When some configurations were re-evaluated on extra seeds, only those compete, so a lucky seed
cannot win.

Configurations are then compared by their loss **averaged with their learning-rate neighbours'**
(``selection``: half the configuration's own, half the mean of it and the same configuration's runs a
line-search step up and down, where those were trained). Loss is a smooth function of log lr, and one
seed's loss is noisy (5-30% on small problems): the more configurations a study trains, the more
likely the lowest single loss is a lucky draw, often just below a rate that diverges. On the corpus's
development problems, judged on the grid seed that the search did not see (``benchmarks/simulate.py
--score other-seed``), this cut mean regret from 25% to 17% at 10 TRE and from 21% to 15% at 20 TRE
(paired over 24 problems: -8.0% +- 4.7% and -5.7% +- 4.2%), and changed nothing at 5 TRE or less,
where no neighbours are trained.

Before that smoothing, where 5 or more configurations were trained, each one's loss is shrunk toward
the study's mean by its own noise, measured on its validation curve (``shrinkage.py``, and why): the
lowest of many draws is most often a jumpy run's lucky one.

A winner trained on one seed, with no learning-rate neighbour, whose curve ended on a dip (its last
epochs' mean well above its last loss) gives way to the next configuration that sits lower over its
last epochs (``steadiness.py``, and why).

A race's winner (a study of under 3 runs) whose validation loss turned up in the last third of its run
is recommended one learning-rate step lower (``shading.py``, and why).

What the policies call "loss" is the study's objective (``objective=``): the validation loss unless it
says otherwise, compared as a score where lower is better (``Objective.score``), so that a maximized
objective such as ``"val_accuracy"`` is weighed the same way.

Policies (``policy=``):
- ``"default"``: the lowest mean validation loss; among configurations within ``tolerance`` (1%)
  of it, the fastest to reach the target loss (in epochs: a count, the same however busy the machine);
  then the least optimizer memory.
- ``"loss"``: the lowest mean validation loss, nothing else.
- ``"speed"``: the fastest to the target among configurations within 5% of the best loss.
- ``"memory"``: the least memory among configurations within 5% of the best loss, then the loss.
- a dict of weights, e.g. ``{"loss": 1, "speed": 0.2, "memory": 0.1}``: the lowest weighted sum of
  each criterion divided by its best value.
"""

from __future__ import annotations

import pandas as pd

from ..objective import VAL_LOSS, Objective
from .configs import summarize_configs
from .expected_loss import expected_at_lower_rate
from .explain import explain, passed_over
from .policies import Policy, check_policy, pick
from .record import Recommendation
from .shading import shaded_params
from .steadiness import erratic_winner, gave_way_line, steadier


def recommend(trials: pd.DataFrame, policy: Policy = "default", tolerance: float = 0.01,
              objective: Objective = VAL_LOSS) -> Recommendation:
    """Choose from a trials table (``Report.trials``) by ``policy``, weighing ``objective`` as its loss.

    >>> import pandas as pd
    >>> # see tests/recommendation/test_choose.py for hand-built tables
    """
    check_policy(policy)
    configs = summarize_configs(trials, objective)
    if configs.empty or not configs["ok"].any():
        raise RuntimeError(
            "no configuration trained cleanly (each diverged or failed): "
            "there is nothing to recommend; report.trials has every run and its error."
        )
    pool = configs[configs["ok"]]
    note = ""
    if not pool["learned"].any():
        note = (" Warning: no run ended below its starting validation loss, so this is the least bad of what "
                "was tried: the model overfits within these epochs, or every rate tried was too high for its "
                "(pretrained?) weights. Try fewer epochs, lower learning rates or a larger budget.")
    elif (pool["n_seeds"] > 1).any():
        pool = pool[pool["n_seeds"] > 1]
    elif (configs["n_seeds"] > 1).any():
        note = " Every re-evaluated configuration failed on some seed; this one was trained on one seed only."
    chosen = pick(pool, policy, tolerance)
    gave_way = ""
    if objective.name == VAL_LOSS.name and erratic_winner(chosen, configs, trials):
        steady = steadier(chosen, pool, lambda left: pick(left, policy, tolerance))
        if steady is not None:
            gave_way, chosen = gave_way_line(chosen, steady), steady
    shaded = shaded_params(chosen, trials) if objective.name == VAL_LOSS.name else None
    rec = Recommendation(
        optimizer=chosen["optimizer"],
        params=dict(shaded[0] if shaded else chosen["params"]),
        family=chosen["family"],
        val_loss=float(chosen["val_loss"]),
        val_loss_std=float(chosen["val_loss_std"]),
        expected_val_loss=_expected(chosen, trials, bool(shaded)),
        n_seeds=int(chosen["n_seeds"]),
        val_accuracy=float(chosen["val_accuracy"]),
        epochs_to_target=float(chosen["epochs_to_target"]),
        seconds_to_target=float(chosen["seconds_to_target"]),
        optimizer_state_bytes=int(chosen["optimizer_state_bytes"]),
        peak_memory_bytes=int(chosen["peak_memory_bytes"]),
        objective=str(objective.name),
        objective_direction=objective.direction,
        objective_value=float(chosen["objective"]),
        objective_std=float(chosen["objective_std"]),
        policy=policy if isinstance(policy, str) else "weights " + str(dict(policy)),
        trial_numbers=list(chosen["trial_numbers"]),
    )
    lines = explain(rec, configs, trials, tolerance, objective, float(chosen["noise_var"]), bool(shaded)).split("\n")
    passed = passed_over(pool, chosen, objective)
    lines[2:2] = [passed] if passed else []  # after the rule it was chosen by
    if shaded:
        lines.insert(1, shaded[1])
    if gave_way:
        lines.insert(1, gave_way)
    rec.explanation = "\n".join(lines) + note
    settings = rec.training_settings
    if not settings.is_default:  # one line of code for each training setting the choice includes
        rec.explanation += "\nWith its training settings:\n" + "\n".join(
            "  " + line for line in rec.code().splitlines()[1:])
    return rec


def _expected(chosen: pd.Series, trials: pd.DataFrame, shaded: bool) -> float:
    """What a fresh seed of the recommendation is expected to reach (``expected_loss.py``): the chosen
    configuration's own, or for a race winner shaded a step lower, read from the winner's run."""
    if not shaded:
        return float(chosen["expected_val_loss"])
    run = trials[trials["number"].isin(chosen["trial_numbers"])]
    return expected_at_lower_rate(run["val_curve"].iloc[0])
