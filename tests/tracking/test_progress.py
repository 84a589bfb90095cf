from __future__ import annotations

import io

from autoopt.config import StudyConfig
from autoopt.records import Candidate, EpochRecord, Measurement, TrialRecord
from autoopt.tracking.progress import ProgressBar


def _record(epochs: int, outcome: str = "completed", loss: float = 0.5) -> TrialRecord:
    m = Measurement(outcome, epochs=[EpochRecord(e, 1.0, loss, None, 0.1, 0.1 * e) for e in range(1, epochs + 1)])
    return TrialRecord(0, Candidate("adam", {"lr": 1e-3}), "adam", 0, "search", m)


def test_a_study_bar_counts_epochs_against_the_budget_and_ends_at_it():
    bar = ProgressBar.for_study(StudyConfig(epochs=5, budget=3.0, reevaluate_top=1), spent=0, enabled=False)
    assert (bar.total, bar.unit, bar.n) == (15, "epoch", 0)
    bar.update(_record(1, "pruned"))
    bar.update(_record(5))
    assert bar.n == 6
    bar.update(_record(5))
    bar.update(_record(5))  # a promoted run past the budget: the bar stops at its total
    assert bar.n == 15
    bar.finish()
    assert bar.n == 15


def test_pruning_leaves_room_that_finish_fills():
    bar = ProgressBar.for_study(StudyConfig(epochs=4, n_trials=3, reevaluate_top=1, seeds=2), spent=0,
                                enabled=False)
    assert bar.total == (3 + 1) * 4
    for epochs in (1, 1, 4, 4):
        bar.update(_record(epochs))
    assert bar.n == 10
    bar.finish()
    assert bar.n == 16


def test_a_resume_that_trains_nothing_starts_full_not_at_zero():
    bar = ProgressBar.for_study(StudyConfig(epochs=5, budget=3.0, reevaluate_top=1), spent=17, enabled=False)
    assert bar.n == 15


def test_a_timeout_alone_has_no_total_and_the_trial_bar_still_counts_trials():
    bar = ProgressBar.for_study(StudyConfig(epochs=5, timeout=10.0), spent=2, enabled=False)
    assert bar.total is None and bar.n == 2
    trials = ProgressBar(4, enabled=False)
    trials.update(_record(3))
    assert trials.n == 1


def test_the_bar_shows_its_total_in_epochs():
    stream = io.StringIO()
    config = StudyConfig(epochs=5, budget=3.0, reevaluate_top=1)
    bar = ProgressBar.for_study(config, spent=0, enabled=True)
    bar = ProgressBar(bar.total, True, "epochs", unit="epoch", file=stream)
    bar.update(_record(5))
    bar.finish()
    bar.close()
    assert "15/15" in stream.getvalue() and "epoch" in stream.getvalue()


def test_the_best_so_far_is_the_studys_objective_and_whole_epochs_show_as_integers():
    stream = io.StringIO()
    from autoopt.objective import VAL_ACCURACY

    bar = ProgressBar(10, True, "epochs", unit="epoch", file=stream, objective=VAL_ACCURACY, initial=0.0)
    for loss, accuracy in ((0.2, 0.6), (0.9, 0.8)):  # the higher loss has the higher accuracy
        m = Measurement("completed", epochs=[EpochRecord(1, 1.0, loss, accuracy, 0.1, 0.1)])
        bar.update(TrialRecord(0, Candidate("adam", {"lr": 1e-3}), "adam", 0, "search", m))
    bar.close()
    shown = stream.getvalue()
    # by loss the first trial would be best (and shown as val_loss=0.2); by accuracy the second is
    assert "val_accuracy=0.8" in shown and "val_loss" not in shown
    assert "2/10" in shown and "2.0/10" not in shown


def test_a_warning_while_the_bar_is_drawn_prints_on_a_line_of_its_own():
    """The first warning of a lost MLflow server comes mid-bar: it must start its own line, and the bar
    is drawn again below it (a real process, since pytest records warnings instead of printing them)."""
    import subprocess
    import sys
    from pathlib import Path

    import autoopt

    script = ("import warnings\n"
              "from autoopt.tracking.progress import ProgressBar\n"
              "bar = ProgressBar(10, True)\n"
              "warnings.warn('MLflow logging failed')\n"
              "bar.close()\n"
              "warnings.warn('after the bar')\n")
    env = {"PYTHONPATH": str(Path(autoopt.__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"}
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120).stderr
    lines = err.split("\n")
    warned = next(line for line in lines if "UserWarning: MLflow logging failed" in line)
    assert warned.split("\r")[-1].startswith("<string>:4: UserWarning"), repr(err)  # the bar cleared first
    assert "trials:" in err.split("MLflow logging failed", 1)[1]  # ... and drawn again after it
    after = next(line for line in lines if "after the bar" in line)
    assert after.startswith("<string>:6: UserWarning"), repr(err)  # a closed bar leaves warnings alone
