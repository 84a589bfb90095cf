"""Start-up and packaging: the CLI answers without importing the heavy libraries, and a wheel
(a non-editable install) carries the recipes and study files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "optuna", "mlflow", "pandas", "sklearn", "matplotlib")


def _python(code: str, cwd: Path, path: Path = ROOT) -> str:
    env = {**os.environ, "PYTHONPATH": str(path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_and_recipes_import_no_heavy_library(tmp_path):
    out = _python(
        "import sys, contextlib, io\n"
        "from autoopt.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--help']), main(['run', '--help']), main(['recipes']), main(['init', '--help'])]\n"
        f"print(codes, [m for m in {HEAVY!r} if m in sys.modules])\n", tmp_path)
    assert out.strip() == "[0, 0, 0, 0] []"


@pytest.mark.parametrize("command", ["--help", "optimizers", "recipes"])
def test_each_listing_command_alone_imports_no_heavy_library(command, tmp_path):
    # each in a fresh interpreter, so that one command cannot hide what another imports
    out = _python(
        "import sys, contextlib, io\n"
        "from autoopt.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as listing:\n"
        f"    code = main([{command!r}])\n"
        f"print(code, len(listing.getvalue().splitlines()) > 2, [m for m in {HEAVY!r} if m in sys.modules])\n",
        tmp_path)
    assert out.strip() == "0 True []"


def test_the_registry_lists_without_torch_and_imports_a_class_when_it_is_read(tmp_path):
    out = _python("import sys\n"
                  "from autoopt.optimizers.registry import get_spec, list_optimizers\n"
                  "spec = get_spec('adam')\n"
                  "listed = (len(list_optimizers()) > 10, spec.family, spec.space[0].high, 'torch' in sys.modules)\n"
                  "import torch\n"
                  "print(listed, spec.optimizer_class is torch.optim.Adam)\n", tmp_path)
    assert out.strip() == "(True, 'adam', 1.0, False) True"


def test_import_autoopt_is_lazy_and_its_names_still_resolve(tmp_path):
    out = _python("import sys, autoopt\n"
                  "before = 'torch' in sys.modules\n"
                  "import autoopt.recommend\n"  # the submodule of the same name must not hide the function
                  "print(before, callable(autoopt.recommend), autoopt.recommend.__name__, autoopt.Candidate.__name__)\n",
                  tmp_path)
    assert out.split() == ["False", "True", "recommend", "Candidate"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="copies the tracked files with git")
def test_a_non_editable_install_ships_the_recipes_and_studies(tmp_path):
    source, target = tmp_path / "source", tmp_path / "site"
    # the tracked files only, as a source distribution would hold them (no build/ or caches)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert (target / "autoopt" / "_recipes" / "digits_mlp.py").is_file()
    assert (target / "autoopt" / "_studies" / "quickstart.toml").is_file()
    elsewhere = tmp_path / "elsewhere"  # no recipes/ folder here: only the installed ones can be found
    elsewhere.mkdir()
    out = _python("import autoopt.cli.recipes as r, autoopt.cli as c\n"
                  "print(r.__file__.startswith(%r))\n"
                  "print(sorted(x.name for x in r.list_recipes()))\n"
                  "print(r.load_recipe('digits_mlp').source)\n"
                  "c.main(['init'])\n"
                  "print(r.load_recipe('my_study', 'studies').source)\n" % str(target), elsewhere, target)
    lines = out.splitlines()
    assert lines[0] == "True"
    assert "digits_mlp" in lines[1] and "quickstart" not in lines[1]
    assert lines[2].startswith(str(target / "autoopt" / "_recipes"))
    assert (elsewhere / "studies" / "my_study.toml").is_file()
    assert lines[-1] == str((elsewhere / "recipes" / "my_study.py").resolve())
