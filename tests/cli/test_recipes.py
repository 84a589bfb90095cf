"""Recipe loading: by name along the search path, by file, by module; errors name what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from autoopt.cli.recipes import PACKAGED_RECIPES, RecipeError, list_recipes, load_recipe, recipe_dirs


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch):
    """Loading a module reference may put the current folder on sys.path; keep that to each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


SHIPPED = ["digits_mlp", "digits_cnn", "breast_cancer", "diabetes", "ill_conditioned", "sequence",
           "autoencoder", "deep_tanh"]


def write_recipe(path: Path, doc: str = "A test recipe.", body: str = "", epochs: int | None = 3,
                 function: str = "build") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f'"""{doc}', "", "More text that is not the description.", '"""', "import torch", ""]
    if epochs is not None:
        lines += [f"EPOCHS = {epochs}", "BATCH_SIZE = 8", ""]
    lines += [f"def {function}(seed: int = 0):", f"    {body or 'pass'}", "    torch.manual_seed(seed)",
              "    return torch.nn.Linear(2, 1), (torch.randn(8, 2), torch.randn(8, 1))", ""]
    path.write_text("\n".join(lines))
    return path


def test_a_shipped_recipe_loads_by_name_with_its_defaults_and_description():
    recipe = load_recipe("digits_mlp")
    assert recipe.name == "digits_mlp" and recipe.source == str(PACKAGED_RECIPES / "digits_mlp.py")
    assert isinstance(recipe.epochs, int) and isinstance(recipe.batch_size, int)  # its EPOCHS, BATCH_SIZE
    assert recipe.description.startswith("Handwritten digits")
    model, (X, y) = recipe.make(seed=0)
    assert isinstance(model, torch.nn.Module) and len(X) == len(y)


def test_list_recipes_has_every_shipped_recipe_with_its_first_docstring_line():
    listing = {r.name: r for r in list_recipes()}
    for name in SHIPPED:
        if (PACKAGED_RECIPES / f"{name}.py").exists():
            assert listing[name].description and "\n" not in listing[name].description


def test_the_study_files_neighbour_folder_comes_before_cwd_and_the_packaged_recipes(tmp_path, monkeypatch):
    project = tmp_path / "project"
    write_recipe(project / "recipes" / "digits_mlp.py", doc="Beside the studies.")
    write_recipe(tmp_path / "recipes" / "digits_mlp.py", doc="In the current folder.")
    (project / "studies").mkdir()
    assert load_recipe("digits_mlp", project / "studies").description == "Beside the studies."
    assert load_recipe("digits_mlp").description == "In the current folder."  # cwd is tmp_path
    assert recipe_dirs(project / "studies")[:2] == [(project / "recipes").resolve(), (tmp_path / "recipes").resolve()]


def test_a_file_reference_is_relative_to_the_study_files_folder(tmp_path):
    write_recipe(tmp_path / "lib" / "mine.py", function="make_it", epochs=None)
    (tmp_path / "studies").mkdir()
    recipe = load_recipe("../lib/mine.py:make_it", tmp_path / "studies")
    assert (recipe.name, recipe.epochs, recipe.batch_size) == ("mine", None, None)
    assert recipe.description == "A test recipe."
    absolute = load_recipe(f"{tmp_path / 'lib' / 'mine.py'}:make_it")
    assert isinstance(absolute.make()[0], torch.nn.Linear)


def test_a_file_reference_without_a_function_uses_build(tmp_path):
    write_recipe(tmp_path / "r.py")
    assert load_recipe("r.py", tmp_path).epochs == 3


def test_a_module_reference_imports_from_the_current_folder(tmp_path):
    write_recipe(tmp_path / "my_recipes_pkg" / "models.py", doc="From a package.")
    marked = (tmp_path / "my_recipes_pkg" / "models.py").read_text() + "\nAUTOOPT_RECIPE = True\n"
    (tmp_path / "my_recipes_pkg" / "models.py").write_text(marked)
    (tmp_path / "my_recipes_pkg" / "__init__.py").write_text("")
    try:
        recipe = load_recipe("my_recipes_pkg.models:build")
        assert (recipe.name, recipe.description) == ("models", "From a package.")
    finally:
        for name in ("my_recipes_pkg", "my_recipes_pkg.models"):
            sys.modules.pop(name, None)


def test_build_gets_the_seed_only_when_it_takes_one(tmp_path):
    (tmp_path / "noseed.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Linear(1, 1), (torch.ones(4, 1), torch.ones(4, 1))\n")
    assert isinstance(load_recipe("noseed.py", tmp_path).make(seed=5)[0], torch.nn.Linear)
    write_recipe(tmp_path / "seeded.py")
    a, b = load_recipe("seeded.py", tmp_path).make(seed=1)[0], load_recipe("seeded.py", tmp_path).make(seed=1)[0]
    assert torch.equal(a.weight, b.weight)


def test_listing_runs_no_recipe_code(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "loud.py").write_text('"""Would exit if run."""\nraise SystemExit(3)\n')
    (tmp_path / "recipes" / "broken.py").write_text("def (:\n")
    listing = {r.name: r.description for r in list_recipes()}
    assert listing["loud"] == "Would exit if run."
    assert listing["broken"].startswith("(unreadable")


@pytest.mark.parametrize("ref, message", [
    ("no_such_recipe", "unknown recipe 'no_such_recipe'"),
    ("has space", "is not a recipe name"),
    ("missing.py:build", "does not exist"),
    ("no_such_module_xyz:build", "cannot import 'no_such_module_xyz'"),
    ("", "recipe must be"),
])
def test_bad_references_are_recipe_errors(ref, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(ref)


def test_unknown_recipe_error_lists_the_known_ones(tmp_path):
    write_recipe(tmp_path / "recipes" / "alpha.py")
    with pytest.raises(RecipeError, match=r"known recipes are \[.*'alpha'"):
        load_recipe("alpha2")


def test_missing_function_lists_the_functions_there(tmp_path):
    write_recipe(tmp_path / "r.py")
    with pytest.raises(RecipeError, match=r"no function 'make'; its functions are \['build'\]"):
        load_recipe("r.py:make", tmp_path)


def test_a_recipe_that_fails_to_import_or_build_or_returns_the_wrong_thing(tmp_path):
    (tmp_path / "imp.py").write_text("import torch\n1 / 0\n")
    with pytest.raises(RecipeError, match="failed to import: ZeroDivisionError"):
        load_recipe("imp.py", tmp_path)
    write_recipe(tmp_path / "boom.py", body="raise RuntimeError('no data here')")
    recipe = load_recipe("boom.py", tmp_path)  # loading builds nothing ...
    with pytest.raises(RecipeError, match="raised while building: RuntimeError: no data here"):
        recipe.make()  # ... building does
    (tmp_path / "wrong.py").write_text("def build():\n    return 3\n")
    with pytest.raises(RecipeError, match=r"must return \(model, data\)"):
        load_recipe("wrong.py", tmp_path).make()
    (tmp_path / "badepochs.py").write_text("EPOCHS = 'ten'\ndef build():\n    pass\n")
    with pytest.raises(RecipeError, match="EPOCHS must be a positive integer"):
        load_recipe("badepochs.py", tmp_path)


def test_an_edited_recipe_is_read_again(tmp_path):
    write_recipe(tmp_path / "r.py", doc="First.")
    assert load_recipe("r.py", tmp_path).description == "First."
    write_recipe(tmp_path / "r.py", doc="Second.")
    assert load_recipe("r.py", tmp_path).description == "Second."


# --- recipes are the only code a study file runs -----------------------------------------------------

def _cli(project: Path, recipe_ref: str, *, subprocess_run: bool = False) -> tuple[int, str]:
    """``autoopt run`` on a study file in project/studies naming ``recipe_ref``: (exit code, stderr)."""
    import contextlib
    import io
    import os
    import subprocess

    from autoopt.cli.command import main

    (project / "studies").mkdir(exist_ok=True)
    study = project / "studies" / "s.toml"
    study.write_text(f"recipe = {recipe_ref!r}\nn_trials = 1\ntracking = false\n")
    if subprocess_run:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done = subprocess.run([sys.executable, "-m", "autoopt.cli", "run", str(study)], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(study)])
    return code, err.getvalue()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoopt: error: "), err
    return lines[0]


@pytest.mark.parametrize("ref, message", [
    ("sys:exit", "sys.exit is not marked as a recipe"),
    ("os:abort", "os.abort is not marked as a recipe"),
    ("../../outside.py", "is outside the study's project"),
])
def test_the_real_command_refuses_what_is_not_a_recipe(tmp_path, ref, message):
    project = tmp_path / "project"
    project.mkdir()
    write_recipe(tmp_path / "outside.py")  # exists, but outside the project
    (project / "recipes").mkdir()  # marks the project's root
    code, err = _cli(project, ref, subprocess_run=True)
    assert code == 2, err
    assert message in _one_line(err)


def test_unmarked_modules_imported_functions_and_escaping_paths_are_refused(tmp_path):
    project = tmp_path / "project"
    write_recipe(project / "recipes" / "ok.py")
    (project / "recipes" / "borrowed.py").write_text("from os import getcwd\n")
    (tmp_path / "unmarked_mod.py").write_text("import sys\nsys.exit(7)\ndef build():\n    pass\n")  # cwd: importable
    write_recipe(tmp_path / "elsewhere" / "r.py")
    (project / "studies").mkdir()
    (project / "link.py").symlink_to(tmp_path / "elsewhere" / "r.py")
    cases = {
        "../recipes/borrowed.py:getcwd": "'getcwd' is not defined in",
        "unmarked_mod:build": "unmarked_mod.build is not marked as a recipe",  # refused before it is imported
        "../../elsewhere/r.py": "outside the study's project",
        str(tmp_path / "elsewhere" / "r.py"): "outside the study's project",
        "../link.py": "outside the study's project",  # a symlink that leaves the project
        "json:loads": "json.loads is not marked as a recipe",
    }
    for ref, message in cases.items():
        code, err = _cli(project, ref)
        assert code == 2 and message in _one_line(err), (ref, err)
    assert load_recipe("ok", project / "studies").name == "ok"  # a recipe in the project's recipes/ still loads
    assert load_recipe("../recipes/ok.py:build", project / "studies").name == "ok"


def test_a_marked_module_function_is_a_recipe(tmp_path):
    write_recipe(tmp_path / "decorated.py", body="pass")
    text = (tmp_path / "decorated.py").read_text().replace("def build", "import autoopt\n\n@autoopt.recipe\ndef build")
    (tmp_path / "decorated.py").write_text(text)
    (tmp_path / "flagged.py").write_text("AUTOOPT_RECIPE = True\n" + text.replace("@autoopt.recipe\n", ""))
    try:
        for ref in ("decorated:build", "flagged:build"):
            assert isinstance(load_recipe(ref).make()[0], torch.nn.Linear)
    finally:
        sys.modules.pop("decorated", None)
        sys.modules.pop("flagged", None)


@pytest.mark.parametrize("body, message", [
    ("raise SystemExit(3)", "called sys.exit(3) while building"),
    ("import sys; sys.exit()", "called sys.exit(None) while building"),
    ("raise RuntimeError('no data')", "raised while building: RuntimeError: no data"),
])
def test_a_recipe_that_raises_or_exits_is_reported_with_exit_2(tmp_path, body, message):
    write_recipe(tmp_path / "recipes" / "bad.py", body=body)
    code, err = _cli(tmp_path, "bad")
    assert code == 2 and message in _one_line(err), err


def test_a_recipe_that_exits_on_import_is_reported_with_exit_2(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "quits.py").write_text('"""Quits."""\nimport sys\nsys.exit(5)\n')
    code, err = _cli(tmp_path, "quits")
    assert code == 2 and "called sys.exit(5) while importing" in _one_line(err), err
