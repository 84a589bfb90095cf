"""The package's layout holds: imports point only down the layers, and each concern stays in its folder.

The layers, lowest first (a module may import its own layer and the ones below it, never above):
the records and the optimizers; the recommendation; the settings; the training; the tracking; the
Optuna study; the search; ``tune()`` and its report; the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import autoopt

PACKAGE = Path(autoopt.__file__).resolve().parent
LAYERS = [
    {"records", "objective", "optimizers", "old_paths"},
    {"recommendation"},
    {"config"},
    {"training"},
    {"tracking"},
    {"study"},
    {"search"},
    {"input_checks", "report", "tune"},
    {"cli"},
]


def _room(module: str) -> str:
    """``autoopt.search.halving`` -> ``search``; ``autoopt.tune`` -> ``tune``."""
    return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
    """Every autoopt module -> the autoopt modules it imports (anywhere in it, lazy imports included)."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if target.startswith("autoopt"):
                    found.add(target)
                    found.update(f"{target}.{a.name}" for a in node.names
                                 if (PACKAGE.parent / (f"{target}.{a.name}".replace(".", "/") + ".py")).exists())
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("autoopt"))
        out[name] = found
    return out


def test_imports_point_down_the_layers():
    rank = {room: i for i, layer in enumerate(LAYERS) for room in layer}
    upward = []
    for module, imported in _imports().items():
        if module == "autoopt":  # the package's face hands on the public names, lazily
            continue
        for target in imported:
            if target != "autoopt" and rank[_room(target)] > rank[_room(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))
    assert set(rank) >= {_room(m) for m in _imports() if m != "autoopt"}  # every module is on a layer


def test_the_training_loop_imports_neither_optuna_nor_mlflow_and_only_tracking_mlflow_imports_mlflow():
    for path in PACKAGE.rglob("*.py"):
        names = {a.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Import) for a in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("training/"):
            assert not names & {"optuna", "mlflow"}, where
        if "mlflow" in names:
            assert where.startswith("tracking/mlflow/"), where


def test_the_readmes_layout_table_names_every_module_of_the_tree():
    """The README's "Project layout" table is how a newcomer finds the room to open: it must not drift
    from the tree (it once named a halving.py that had become race.py)."""
    readme = (PACKAGE.parent / "README.md").read_text()
    table = readme[readme.index("## Project layout"):]
    modules = sorted(p.name for p in PACKAGE.rglob("*.py")
                     if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts)
    assert [m for m in modules if f"{m}`" not in table] == []  # `name.py` or `autoopt/name.py`
