"""Study files: a study written down as TOML, validated into a frozen record before anything runs.

The file is data only: flat top-level keys, ``recipe`` plus the ``StudyConfig`` settings that
describe a study (not ``device`` or ``verbose``, which describe the machine and the terminal and are
command-line flags). Nothing in it runs except the recipe function it names.

.. code-block:: toml

    recipe = "digits_mlp"                # a name in recipes/, "file.py:function" or "module:function"
    optimizers = ["sgd", "adam", "adamw"]
    n_trials = 12                        # a TOTAL budget: running the file again resumes the study
    policy = { loss = 1.0, speed = 0.2 } # or "default", "loss", "speed", "memory"

>>> study = load_study_file("studies/quickstart.toml")   # doctest: +SKIP
>>> study.recipe, study.settings.study_name               # doctest: +SKIP
('digits_mlp', 'quickstart')
"""

from __future__ import annotations

import difflib
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import StudyConfig
from .recipes import Recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: StudyConfig fields a study file may not set: they describe where and how it runs, not the study.
COMMAND_LINE_ONLY = {"device": "--device", "verbose": "--quiet"}
#: Where a file accepts more than the field's annotation says (StudyConfig converts the value).
_FILE_TYPES: dict[str, Any] = {"memory_budget": int | str,  # parse_bytes reads "512MB", "2 GiB"
                               "objective": str}  # a file names a measured value; a metric function is Python
#: Every key a study file may have.
FILE_KEYS = ("recipe", *(n for n in StudyConfig.field_names() if n not in COMMAND_LINE_ONLY))


class StudyFileError(ValueError):
    """A study file that cannot be read or does not validate; the message starts with its path."""


@dataclass(frozen=True)
class StudyFile:
    """A validated study file.

    ``settings`` holds the file's values on top of StudyConfig's defaults, with ``study_name``
    defaulting to the file's stem; ``given`` names the settings the file set, so that a recipe's
    EPOCHS / BATCH_SIZE fill only what the file left out (see ``resolve``).
    """

    path: Path
    recipe: str
    settings: StudyConfig
    given: frozenset[str]

    @property
    def base_dir(self) -> Path:
        """The folder relative recipe paths start from."""
        return self.path.resolve().parent

    def resolve(self, recipe: Recipe | None = None, **overrides: Any) -> StudyConfig:
        """The settings of a run: StudyConfig defaults < the recipe's EPOCHS / BATCH_SIZE < the file
        < ``overrides`` (command-line flags; None means not given). ``storage`` defaults to
        ``default_storage(study_name)``.

        >>> # load_study_file("studies/quickstart.toml").resolve(recipe, n_trials=20)
        """
        values: dict[str, Any] = {}
        if recipe is not None:
            if "epochs" not in self.given and recipe.epochs is not None:
                values["epochs"] = recipe.epochs
            if "batch_size" not in self.given and recipe.batch_size is not None:
                values["batch_size"] = recipe.batch_size
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = replace(self.settings, **values)  # re-validates in __post_init__
        if config.storage is None:
            config = replace(config, storage=default_storage(config.study_name or self.path.stem))
        return config


def default_storage(study_name: str) -> str:
    """A sqlite file named after the study in the current folder, so that a rerun finds it.

    >>> default_storage("quickstart")
    'sqlite:///quickstart.db'
    """
    return f"sqlite:///{re.sub(r'[^A-Za-z0-9._-]', '_', study_name)}.db"


def load_study_file(path: str | Path) -> StudyFile:
    """Read and validate a study file; every problem is a StudyFileError that names the file.

    >>> load_study_file("studies/quickstart.toml").recipe     # doctest: +SKIP
    'digits_mlp'
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise StudyFileError(f"{path}: no such study file.") from None
    except OSError as exc:
        raise StudyFileError(f"{path}: cannot read it: {exc.strerror or exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path}: not valid TOML: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise StudyFileError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a study file is "
                             "UTF-8 TOML.") from None
    return parse_study(data, path)


def parse_study(data: Mapping[str, Any], path: str | Path = "<study>") -> StudyFile:
    """Validate the parsed contents of a study file (a dict as ``tomllib`` returns it).

    >>> parse_study({"recipe": "digits_mlp", "epochs": 3}).settings.epochs
    3
    """
    path = Path(path)
    _check_keys(data, path)
    if "recipe" not in data:
        raise StudyFileError(f"{path}: no 'recipe' key; set it to a recipe name (see 'autoopt recipes'), "
                             "'path/to/file.py:function' or 'package.module:function'.")
    recipe = data["recipe"]
    if not isinstance(recipe, str) or not recipe.strip():
        raise StudyFileError(f"{path}: recipe must be a non-empty string, got {recipe!r}.")
    settings = {k: v for k, v in data.items() if k != "recipe"}
    hints = {**typing.get_type_hints(StudyConfig), **_FILE_TYPES}
    for key, value in settings.items():
        problem = _type_problem(value, hints[key])
        if problem:
            raise StudyFileError(f"{path}: {key} {problem}, got {value!r}.")
    if isinstance(settings.get("optimizers"), list):
        settings["optimizers"] = tuple(settings["optimizers"])
    settings.setdefault("study_name", path.stem)
    try:
        config = StudyConfig(**settings)
    except (ValueError, TypeError) as exc:
        raise StudyFileError(f"{path}: {exc}") from None
    return StudyFile(path, recipe.strip(), config, frozenset(data) - {"recipe"})


def _check_keys(data: Mapping[str, Any], path: Path) -> None:
    for key in data:
        if key in FILE_KEYS:
            continue
        if key in COMMAND_LINE_ONLY:
            raise StudyFileError(f"{path}: {key!r} is a command-line option ({COMMAND_LINE_ONLY[key]}), "
                                 "not a study file key.")
        if isinstance(data[key], dict):
            hint = " (a study file has no [sections]: write its keys at the top level)"
        else:
            close = difflib.get_close_matches(key, FILE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise StudyFileError(f"{path}: unknown key {key!r}{hint}; valid keys are {', '.join(FILE_KEYS)}.")


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` (from TOML) does not fit the annotation ``hint``, or None if it does.

    Only the shapes TOML can produce are checked here; StudyConfig checks the ranges.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        problems = [_type_problem(value, a) for a in options]
        if any(p is None for p in problems):
            return None
        return "must be " + " or ".join(dict.fromkeys(p.removeprefix("must be ") for p in problems if p))
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if origin is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    if origin is Mapping or hint is Mapping or origin is dict:
        return None if isinstance(value, dict) else "must be a table"
    return None  # an annotation this checker does not know (e.g. a sampler object): StudyConfig decides
