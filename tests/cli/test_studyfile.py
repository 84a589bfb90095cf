"""Study files: every shipped one validates; a bad one is a StudyFileError naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoopt.cli.recipes import Recipe, load_recipe
from autoopt.cli.studyfile import (
    COMMAND_LINE_ONLY,
    FILE_KEYS,
    StudyFileError,
    default_storage,
    load_study_file,
    parse_study,
)
from autoopt.config import StudyConfig

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_study_file_validates_and_finds_its_recipe(path):
    study = load_study_file(path)
    recipe = load_recipe(study.recipe, study.base_dir)
    config = study.resolve(recipe)
    assert isinstance(config, StudyConfig)
    assert config.study_name == path.stem
    assert config.storage == f"sqlite:///{path.stem}.db"
    assert "verbose" not in study.given and "device" not in study.given


def test_there_is_a_quickstart_and_a_study_per_shipped_recipe():
    names = {p.stem for p in SHIPPED}
    assert "quickstart" in names
    for recipe in (REPO / "recipes").glob("*.py"):
        if not recipe.stem.startswith("_"):
            assert recipe.stem in names, f"no studies/{recipe.stem}.toml"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_flat_keys_become_a_validated_config(tmp_path):
    study = load_study_file(write(tmp_path, """
recipe = "digits_mlp"
optimizers = ["sgd", "adam"]
epochs = 3
timeout = 30
memory_budget = "2 MB"
policy = { loss = 1.0, speed = 0.5 }
tracking = false
"""))
    s = study.settings
    assert study.recipe == "digits_mlp" and study.path == tmp_path / "s.toml"
    assert s.optimizers == ("sgd", "adam") and s.epochs == 3 and s.timeout == 30
    assert s.memory_budget == 2_000_000 and s.policy == {"loss": 1.0, "speed": 0.5} and s.tracking is False
    assert s.study_name == "s"
    assert study.given == {"optimizers", "epochs", "timeout", "memory_budget", "policy", "tracking"}


def test_resolve_layers_defaults_recipe_file_and_overrides():
    recipe = Recipe("r", build=lambda: None, epochs=7, batch_size=16)
    bare = parse_study({"recipe": "r"}, "x/bare.toml")
    assert (bare.resolve(recipe).epochs, bare.resolve(recipe).batch_size) == (7, 16)  # the recipe's
    assert bare.resolve().epochs == StudyConfig().epochs  # without a recipe: StudyConfig's default
    study = parse_study({"recipe": "r", "epochs": 2, "study_name": "mine"}, "x/s.toml")
    config = study.resolve(recipe)
    assert (config.epochs, config.batch_size) == (2, 16)  # the file beats the recipe
    assert config.study_name == "mine" and config.storage == "sqlite:///mine.db"
    over = study.resolve(recipe, epochs=5, n_trials=None, study_name="other", tracking=False)
    assert (over.epochs, over.n_trials, over.study_name, over.tracking) == (5, None, "other", False)
    assert over.storage == "sqlite:///other.db"  # the default storage follows the final study name
    assert study.resolve(recipe, storage="sqlite:///elsewhere.db").storage == "sqlite:///elsewhere.db"


def test_an_override_is_validated_like_the_file():
    study = parse_study({"recipe": "r"})
    with pytest.raises(ValueError, match="n_trials must be a positive integer"):
        study.resolve(n_trials=0)


def test_default_storage_keeps_the_file_name_safe():
    assert default_storage("quickstart") == "sqlite:///quickstart.db"
    assert default_storage("a/b c") == "sqlite:///a_b_c.db"


@pytest.mark.parametrize("text, message", [
    ('recipe = "digits_mlp"\nepochs = \n', "not valid TOML"),
    ('recipe = "digits_mlp"\nn_trial = 5\n',
     "unknown key 'n_trial' (did you mean 'n_trials'?); valid keys are recipe, "),
    ('[study]\nrecipe = "digits_mlp"\n', "unknown key 'study' (a study file has no [sections]"),
    ('recipe = "digits_mlp"\ndevice = "cuda"\n', "'device' is a command-line option (--device)"),
    ('recipe = "digits_mlp"\nverbose = false\n', "'verbose' is a command-line option (--quiet)"),
    ('epochs = 3\n', "no 'recipe' key"),
    ('recipe = 3\n', "recipe must be a non-empty string"),
    ('recipe = "r"\noptimizers = ["adam", "adamm"]\n', "unknown optimizer(s) ['adamm']"),
    ('recipe = "r"\noptimizers = "adam"\n', "optimizers must be a list of strings"),
    ('recipe = "r"\nepochs = "ten"\n', "epochs must be an integer, got 'ten'"),
    ('recipe = "r"\nepochs = 2.5\n', "epochs must be an integer"),
    ('recipe = "r"\ntracking = "no"\n', "tracking must be true or false"),
    ('recipe = "r"\nmemory_budget = true\n', "memory_budget must be an integer or a string"),
    ('recipe = "r"\nmemory_budget = "lots"\n', "is not a size"),
    ('recipe = "r"\npolicy = "fastest"\n', "unknown policy 'fastest'"),
    ('recipe = "r"\npolicy = 1\n', "policy must be a string or a table"),
    ('recipe = "r"\nsampler = "grid"\n', "unknown sampler 'grid'"),
    ('recipe = "r"\ntolerance = 2\n', "tolerance must be in [0, 1)"),
])
def test_bad_study_files(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(StudyFileError) as info:
        load_study_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_a_missing_file_is_a_study_file_error(tmp_path):
    with pytest.raises(StudyFileError, match="no such study file"):
        load_study_file(tmp_path / "nope.toml")


def test_the_file_keys_are_the_config_fields_minus_the_command_line_ones():
    assert set(FILE_KEYS) == {"recipe"} | set(StudyConfig.field_names()) - set(COMMAND_LINE_ONLY)


def test_the_cli_doc_mentions_every_study_file_key():
    doc = (REPO / "docs" / "usage.md").read_text()  # the study-file reference (the README links it)
    missing = [key for key in FILE_KEYS if f"`{key}`" not in doc]
    assert not missing, f"docs/usage.md's study-file keys do not describe {missing}"


def test_the_objective_key_names_what_the_search_optimizes():
    from autoopt.objective import VAL_ACCURACY, VAL_LOSS

    assert parse_study({"recipe": "digits_mlp", "objective": "val_accuracy"}).settings.objective is VAL_ACCURACY
    assert parse_study({"recipe": "digits_mlp"}).settings.objective is VAL_LOSS
    with pytest.raises(StudyFileError, match=r"x.toml: unknown objective 'accuracy'; use 'val_loss' \(the default\), "
                                             r"'val_accuracy', or autoopt.Objective"):
        parse_study({"recipe": "digits_mlp", "objective": "accuracy"}, "x.toml")
    with pytest.raises(StudyFileError, match=r"x.toml: objective must be a string, got 1"):
        parse_study({"recipe": "digits_mlp", "objective": 1}, "x.toml")
