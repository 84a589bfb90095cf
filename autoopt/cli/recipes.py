"""Recipes: small Python files that build ``(model, data)`` for a study, found by name or by reference.

A recipe module has a docstring (its first line describes it), optional ``EPOCHS`` and ``BATCH_SIZE``
constants (the study's defaults for ``epochs`` and ``batch_size``) and ``build(seed: int = 0)``
returning ``(model, data)`` in any form ``tune()`` accepts. A study file names it as

- ``"digits_mlp"``: a recipe name, looked up as ``recipes/digits_mlp.py`` in, in order, the folder next
  to the study file's folder (``studies/x.toml`` -> ``recipes/``), ``./recipes/``, and the
  ``recipes/`` folder shipped beside the autoopt package;
- ``"path/to/file.py:function"`` (``:build`` if left out): a file inside the study's project (see
  ``project_root``), relative to the study file's folder; the function must be defined in that file;
- ``"package.module:function"``: an importable module whose author marked it as a recipe, with
  ``AUTOOPT_RECIPE = True`` at module level or ``@autoopt.recipe`` on the function (the current
  folder is importable too).

Recipes are the only code a study file runs: ``"sys:exit"``, ``"os:abort"``, a path that leaves the
project, a function imported into a recipe file from elsewhere are refused before anything is
imported or called. A module reference is checked in its source (with ``ast``) before it is imported.
A recipe found by name that is a symlink to a file outside its project is refused too. A recipe that
calls ``sys.exit()`` or ``os._exit()`` while importing or building is reported, never a silent exit.
Listing recipes reads them without running them. (Over the package's 350-line guide: finding a recipe
and refusing what is not one are one job, since each way of naming a recipe has its own refusals.)

>>> recipe = load_recipe("digits_mlp")
>>> model, (X, y) = recipe.make(seed=0)
>>> recipe.epochs, recipe.batch_size
(20, 64)
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # torch is imported when a recipe is built, not when recipes are listed
    from torch import nn

#: Files or folders that mark a project's root folder (where file references must stay).
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git", "recipes")
#: The module-level flag that marks every function of an importable module as a recipe.
MARKER = "AUTOOPT_RECIPE"
#: The recipes shipped with autoopt: inside the package when installed from a wheel, the repo's
#: recipes/ in a source checkout or an editable install.
_PACKAGE = Path(__file__).resolve().parents[1]  # autoopt/
PACKAGED_RECIPES = next((p for p in (_PACKAGE / "_recipes", _PACKAGE.parent / "recipes") if p.is_dir()),
                        _PACKAGE.parent / "recipes")
DEFAULT_FUNCTION = "build"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class RecipeError(ValueError):
    """A recipe that cannot be found, imported or built; the message says which and why."""


class _HardExit(BaseException):
    """``os._exit(code)`` called by a recipe: raised instead, so that the process does not end silently."""

    def __init__(self, code: object) -> None:
        super().__init__(code)
        self.code = code


@contextlib.contextmanager
def _exits_reported() -> Iterator[None]:
    """Recipe code runs with ``os._exit`` raising _HardExit (which no ``except Exception`` catches); a
    reference the recipe kept to it (``from os import _exit``) raises whenever it is called."""
    real = os._exit

    def hard_exit(code: int) -> None:
        raise _HardExit(code)

    os._exit = hard_exit  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = real


def recipe(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``function`` as a recipe, so that a study file may name it as ``"module:function"``.

    >>> @recipe
    ... def build(seed: int = 0): ...
    >>> build.__autoopt_recipe__
    True
    """
    function.__autoopt_recipe__ = True  # type: ignore[attr-defined]
    return function


def project_root(base_dir: str | Path | None) -> Path:
    """The folder a study file's file references must stay in.

    The nearest folder at or above ``base_dir`` holding one of PROJECT_MARKERS (a ``recipes/`` folder,
    ``pyproject.toml``, ``.git`` ...), else the folder above ``base_dir`` (``studies/x.toml``: the
    folder that holds ``studies/``); without ``base_dir``, the current folder.
    """
    if base_dir is None:
        return Path.cwd().resolve()
    start = Path(base_dir).resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return start.parent


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe: ``make(seed)`` returns ``(model, data)``.

    ``epochs`` and ``batch_size`` are the module's ``EPOCHS`` / ``BATCH_SIZE`` (None when it has none).
    """

    name: str
    build: Callable[..., Any]
    epochs: int | None = None
    batch_size: int | None = None
    description: str = ""
    source: str = ""  # the file or module it was loaded from, for messages

    def make(self, seed: int = 0) -> tuple[nn.Module, Any]:
        """Call the recipe's function and check that it returned ``(model, data)``.

        Any exception it raises becomes a RecipeError naming the recipe (Ctrl-C passes through).
        """
        from torch import nn

        try:
            takes_seed = "seed" in inspect.signature(self.build).parameters
        except (TypeError, ValueError):  # builtins and some C callables have no signature
            takes_seed = False
        try:
            with _exits_reported():
                result = self.build(seed=seed) if takes_seed else self.build()
        except (SystemExit, _HardExit) as exc:
            raise RecipeError(f"recipe {self.name!r} ({self.source}) called {_exit_call(exc)} while building "
                              "instead of returning (model, data).") from None
        except Exception as exc:
            raise RecipeError(f"recipe {self.name!r} ({self.source}) raised while building: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)):
            raise RecipeError(f"recipe {self.name!r} ({self.source}) must return (model, data) with model a "
                              f"torch.nn.Module, but returned {type(result).__name__}.")
        return result


class RecipeListing(NamedTuple):
    """One recipe file found on the search path, read without running it."""

    name: str
    description: str
    path: Path


def recipe_dirs(base_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for a recipe name, in order, existing ones only.

    ``base_dir`` is the study file's folder: its parent's ``recipes/`` comes first.
    """
    candidates = []
    if base_dir is not None:
        candidates.append(Path(base_dir).resolve().parent / "recipes")
    candidates += [Path.cwd() / "recipes", PACKAGED_RECIPES]
    unique: list[Path] = []
    for folder in candidates:
        folder = folder.resolve()
        if folder.is_dir() and folder not in unique:
            unique.append(folder)
    return unique


def list_recipes(base_dir: str | Path | None = None) -> list[RecipeListing]:
    """Every recipe reachable by name, sorted; a name found twice is the first one on the path.

    >>> [r.name for r in list_recipes()][:2]    # doctest: +SKIP
    ['autoencoder', 'breast_cancer']
    """
    found: dict[str, RecipeListing] = {}
    for folder in recipe_dirs(base_dir):
        for path in sorted(folder.glob("*.py")):
            if path.stem.startswith("_") or path.stem in found:
                continue
            found[path.stem] = RecipeListing(path.stem, _read_description(path), path)
    return sorted(found.values())


def load_recipe(ref: str, base_dir: str | Path | None = None) -> Recipe:
    """Import the recipe ``ref`` (a name, ``file.py:function`` or ``module:function``); build nothing.

    ``base_dir`` is the study file's folder: relative file paths start there, and a name is looked
    up first in its parent's ``recipes/``.

    >>> load_recipe("digits_mlp").description
    'Handwritten digits with a small MLP (10-class classification).'
    """
    if not isinstance(ref, str) or not ref.strip():
        raise RecipeError(f"recipe must be a recipe name, 'path/file.py:function' or 'module:function', got {ref!r}.")
    ref = ref.strip()
    # rpartition, and a whole ref ending in .py is a file: a Windows path has a ':' of its own
    target, _, function = ("", "", "") if ref.endswith(".py") else ref.rpartition(":")
    if not target:
        target, function = ref, ""
    function = function or DEFAULT_FUNCTION
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = Path(base_dir or ".") / path
        root = project_root(base_dir)
        if not path.resolve().is_relative_to(root):
            raise RecipeError(f"recipe {ref!r}: {str(path.resolve())!r} is outside the study's project {str(root)!r}; "
                              "a recipe file must be inside it (or in a recipes/ folder, named by its name).")
        if not path.is_file():
            raise RecipeError(f"recipe file {str(path)!r} (from {ref!r}) does not exist.")
        module = _import_file(path.resolve())
        name = path.stem
    elif ":" in ref:
        if not _MODULE.fullmatch(target):
            raise RecipeError(f"recipe {ref!r}: {target!r} is not a module name like 'package.module'.")
        _check_marked_source(target, function, ref)
        module = _import_module(target, ref)
        if getattr(module, MARKER, False) is not True and not _is_marked(getattr(module, function, None)):
            raise RecipeError(_unmarked(ref, target, function))
        name = target.rsplit(".", 1)[-1]
    else:
        if not _NAME.fullmatch(target):
            raise RecipeError(f"recipe {ref!r} is not a recipe name (letters, digits, '_' and '-'), "
                              "'path/file.py:function' or 'module:function'.")
        path = _find_by_name(target, base_dir)
        module = _import_file(path)
        name = target
    return _recipe_from_module(module, name, function, ref)


def recipe_defaults(ref: str, base_dir: str | Path | None = None) -> Recipe | None:
    """The recipe ``ref``'s ``EPOCHS`` and ``BATCH_SIZE`` read from its source, without importing it
    (nor torch): a Recipe whose ``make`` is not loaded, enough to resolve a study's settings. None when
    they cannot be read so (a module reference, a value that is not a literal integer, a file that is
    not there or does not parse): then the recipe has to be loaded.
    """
    ref = ref.strip() if isinstance(ref, str) else ""
    target, _, _ = ("", "", "") if ref.endswith(".py") else ref.rpartition(":")
    target = target or ref
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target).expanduser()
            path = path if path.is_absolute() else Path(base_dir or ".") / path
        elif _NAME.fullmatch(target):
            path = _find_by_name(target, base_dir)
        else:
            return None
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (RecipeError, OSError, SyntaxError, ValueError):
        return None
    values: dict[str, int | None] = {"EPOCHS": None, "BATCH_SIZE": None}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for name in [t.id for t in targets if isinstance(t, ast.Name) and t.id in values]:
            value = getattr(node, "value", None)
            if isinstance(node, ast.AugAssign) or not isinstance(value, ast.Constant) \
                    or isinstance(value.value, bool) or not isinstance(value.value, int):
                return None  # computed: only importing the recipe tells
            values[name] = value.value
    return Recipe(Path(path).stem, _not_loaded, values["EPOCHS"], values["BATCH_SIZE"], source=str(path))


def _not_loaded(*_: Any, **__: Any) -> Any:
    raise RecipeError("this recipe was read for its EPOCHS and BATCH_SIZE, not loaded; use load_recipe().")


def _is_marked(function: Any) -> bool:
    return getattr(function, "__autoopt_recipe__", False) is True


def _unmarked(ref: str, target: str, function: str) -> str:
    return (f"recipe {ref!r}: {target}.{function} is not marked as a recipe, so a study file may not run it; "
            f"its author marks it with @autoopt.recipe or {MARKER} = True in the module, or name a recipe "
            "file (a name in recipes/ or 'path/file.py:function' inside the project).")


def _check_marked_source(target: str, function: str, ref: str) -> None:
    """Refuse an unmarked module before importing it: its source must set the marker or decorate ``function``.

    A built-in or compiled module (``sys``, ``posix``) has no source and is never a recipe. Finding a
    dotted module imports its parent packages (their ``__init__``), not the module itself.
    """
    top = target.split(".")[0]
    cwd = str(Path.cwd())
    importlib.invalidate_caches()  # a module written a moment ago (same directory mtime) is found too
    try:
        if importlib.util.find_spec(top) is None and cwd not in sys.path:
            sys.path.insert(0, cwd)  # as _import_module does: a console script does not put it there
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        raise RecipeError(f"recipe {ref!r}: cannot import {target!r}: {type(exc).__name__}: {exc}") from None
    if spec is None:
        raise RecipeError(f"recipe {ref!r}: cannot import {target!r}: no module named {target!r}.")
    origin = Path(spec.origin) if spec.origin and spec.has_location else None
    if origin is None or origin.suffix != ".py" or not origin.is_file():
        raise RecipeError(_unmarked(ref, target, function))
    try:
        tree = ast.parse(origin.read_text(encoding="utf-8"), str(origin))
    except (OSError, SyntaxError, ValueError) as exc:
        raise RecipeError(f"recipe {ref!r}: cannot read {str(origin)!r}: {type(exc).__name__}: {exc}") from None
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == MARKER for t in targets) \
                    and isinstance(node.value, ast.Constant) and node.value.value is True:
                return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            for decorator in node.decorator_list:
                name = decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", "")
                if name == "recipe":
                    return
    raise RecipeError(_unmarked(ref, target, function))


def _find_by_name(name: str, base_dir: str | Path | None) -> Path:
    folders = recipe_dirs(base_dir)
    for folder in folders:
        path = folder / f"{name}.py"
        if path.is_file():
            project = folder.resolve().parent  # the folder that holds recipes/
            if not path.resolve().is_relative_to(project):
                raise RecipeError(f"recipe {name!r}: {str(path)!r} is a link to {str(path.resolve())!r}, outside "
                                  f"its project {str(project)!r}; a recipe file must be inside it.")
            return path.resolve()
    known = [r.name for r in list_recipes(base_dir)]
    where = ", ".join(str(f) for f in folders) or "no recipes/ folder was found"
    raise RecipeError(f"unknown recipe {name!r}; searched {where}; known recipes are {known}.")


def _import_file(path: Path) -> ModuleType:
    # A name unique to the file, so that two recipes with the same stem in different folders do not
    # collide; registered in sys.modules because dataclasses and pickling look modules up there.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"_autoopt_recipe_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"cannot import recipe file {str(path)!r}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with _exits_reported():
            spec.loader.exec_module(module)  # always fresh: an edited recipe is re-read on the next load
    except (SystemExit, _HardExit) as exc:
        sys.modules.pop(module_name, None)
        raise RecipeError(f"recipe file {str(path)!r} called {_exit_call(exc)} while importing.") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise RecipeError(f"recipe file {str(path)!r} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def _exit_call(exc: SystemExit | _HardExit) -> str:
    return f"{'os._exit' if isinstance(exc, _HardExit) else 'sys.exit'}({exc.code!r})"


def _import_module(target: str, ref: str) -> ModuleType:
    top = target.split(".")[0]
    try:
        try:
            with _exits_reported():
                return importlib.import_module(target)
        except ModuleNotFoundError as exc:
            # a console script does not put the current folder on sys.path; a user's package there should import
            cwd = str(Path.cwd())
            if exc.name != top or cwd in sys.path:
                raise
            sys.path.insert(0, cwd)
            with _exits_reported():
                return importlib.import_module(target)
    except (SystemExit, _HardExit) as exc:
        raise RecipeError(f"recipe {ref!r}: importing {target!r} called {_exit_call(exc)}.") from None
    except Exception as exc:
        raise RecipeError(f"recipe {ref!r}: cannot import {target!r}: {type(exc).__name__}: {exc}") from exc


def _recipe_from_module(module: ModuleType, name: str, function: str, ref: str) -> Recipe:
    source = getattr(module, "__file__", None) or module.__name__
    build = getattr(module, function, None)
    functions = sorted(n for n, v in vars(module).items()
                       if inspect.isfunction(v) and not n.startswith("_") and v.__module__ == module.__name__)
    if not callable(build):
        raise RecipeError(f"recipe {ref!r}: {source} has no function {function!r}; its functions are {functions}.")
    if not (inspect.isfunction(build) and build.__module__ == module.__name__) and not _is_marked(build):
        raise RecipeError(f"recipe {ref!r}: {function!r} is not defined in {source} (it comes from "
                          f"{getattr(build, '__module__', None) or type(build).__name__}), so it is not a recipe; "
                          f"the functions defined there are {functions}.")
    epochs = _optional_int(module, "EPOCHS", ref)
    batch_size = _optional_int(module, "BATCH_SIZE", ref)
    description = _first_line(module.__doc__) or _first_line(build.__doc__)
    return Recipe(name, build, epochs, batch_size, description, str(source))


def _optional_int(module: ModuleType, attr: str, ref: str) -> int | None:
    value = getattr(module, attr, None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise RecipeError(f"recipe {ref!r}: {attr} must be a positive integer but is {value!r}.")
    return value


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def _read_description(path: Path) -> str:
    """The module docstring's first line, read with ``ast`` so that listing runs no recipe code."""
    try:
        return _first_line(ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), str(path))))
    except (OSError, SyntaxError, ValueError) as exc:
        return f"(unreadable: {type(exc).__name__})"
