"""The import paths of the flat package (before the folders) still work, with a DeprecationWarning."""

from __future__ import annotations

import json
import subprocess
import sys

from autoopt.old_paths import MOVED


def test_every_old_module_path_imports_and_warns_naming_its_new_home():
    # a fresh interpreter: an old path already imported by another test would not warn again
    code = ("import importlib, json, warnings\n"
            "from autoopt.old_paths import MOVED\n"
            "out = {}\n"
            "for old in sorted(MOVED):\n"
            "    with warnings.catch_warnings(record=True) as caught:\n"
            "        warnings.simplefilter('always')\n"
            "        module = importlib.import_module('autoopt.' + old)\n"
            "    out[old] = [module.__name__, [str(w.message) for w in caught if w.category is DeprecationWarning]]\n"
            "print(json.dumps(out))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert set(out) == set(MOVED)
    for old, (name, messages) in out.items():
        home = f"autoopt.{MOVED[old][0]}"
        assert name == (home if len(MOVED[old]) == 1 else f"autoopt.{old}"), old  # one home: that very module
        assert len(messages) == 1 and home in messages[0], (old, messages)


def test_old_names_are_the_new_objects():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from autoopt.muon import MuonWithAdamW as old_muon
        from autoopt.registry import LogUniform, get_spec, with_space
        from autoopt.storage import enqueue_once, journal_file
    from autoopt.config import journal_file as new_journal_file
    from autoopt.optimizers.muon import MuonWithAdamW
    from autoopt.optimizers.registry import get_spec as new_get_spec
    from autoopt.optimizers.space import with_space as new_with_space
    from autoopt.optimizers.spec import LogUniform as NewLogUniform
    from autoopt.study.storage import enqueue_once as new_enqueue_once

    assert old_muon is MuonWithAdamW and get_spec is new_get_spec and with_space is new_with_space
    assert LogUniform is NewLogUniform and enqueue_once is new_enqueue_once and journal_file is new_journal_file


def test_the_public_api_is_unchanged():
    import autoopt

    assert autoopt.__all__ == sorted([
        "Candidate", "EpochRecord", "LogUniform", "Measurement", "MuonWithAdamW", "Objective", "OptimizerSpec",
        "Recommendation", "Report", "StudyConfig", "TrialRecord", "Uniform", "dense_state", "get_spec",
        "list_optimizers", "load_report", "prepare_data", "recipe", "recommend", "register_optimizer",
        "select_device", "tune"])
    for name in autoopt.__all__:
        assert getattr(autoopt, name) is not None
    assert callable(autoopt.recommend) and callable(autoopt.tune)
