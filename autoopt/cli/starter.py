"""``autoopt init``: a study file and a recipe to start from, written into a folder.

The recipe is a copy of the shipped ``digits_mlp`` recipe (a model and data that train in a few
seconds) with a note on what to replace; the study file names it and runs a short search. Both are
found by ``autoopt run studies/NAME.toml`` from that folder: a study looks for its recipe in the
``recipes/`` folder beside its own.

>>> import tempfile
>>> paths = write_starter(tempfile.mkdtemp(), "mine")
>>> [p.name for p in paths]
['mine.toml', 'mine.py']
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from .output import EXIT_OK
from .recipes import PACKAGED_RECIPES

#: The shipped recipe a new one starts from.
TEMPLATE_RECIPE = "digits_mlp"

_STUDY = '''\
# A study to start from: `autoopt run studies/{name}.toml` (run it again to resume).
# Every setting is optional; see the README's "Study files" for all of them.

recipe = "{name}"                       # recipes/{name}.py: edit its build() to return your model and data
optimizers = ["sgd", "momentum", "rmsprop", "adam", "adamw"]   # omit for every registered optimizer
epochs = 10                             # training budget of one trial
n_trials = 15                           # search trials in all (a total: a rerun resumes)
reevaluate_top = 2                      # retrain the best 2 configurations ...
seeds = 2                               # ... on 1 extra seed before recommending
policy = "default"                      # lowest loss, then fastest to the target, then least memory
'''

_NOTE = '''\
# Written by `autoopt init` from the shipped {template!r} recipe: replace the data and the model in
# build() with yours. build(seed) must return (model, data), the data as (X, y) arrays or tensors,
# a torch Dataset or a DataLoader (see `autoopt.tune`).
'''


def write_starter(folder: str | Path, name: str = "my_study") -> list[Path]:
    """Write ``studies/NAME.toml`` and ``recipes/NAME.py`` under ``folder``; never overwrites.

    Returns the two paths written. Raises ValueError for a bad name or a file that exists.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name {name!r} must be a Python identifier (letters, digits, '_'), e.g. 'my_study'.")
    folder = Path(folder)
    study = folder / "studies" / f"{name}.toml"
    recipe = folder / "recipes" / f"{name}.py"
    existing = [str(p) for p in (study, recipe) if p.exists()]
    if existing:
        raise ValueError(f"{', '.join(existing)} already exist(s); choose another name (--name) or folder.")
    source = (PACKAGED_RECIPES / f"{TEMPLATE_RECIPE}.py").read_text(encoding="utf-8")
    study.parent.mkdir(parents=True, exist_ok=True)
    recipe.parent.mkdir(parents=True, exist_ok=True)
    study.write_text(_STUDY.format(name=name), encoding="utf-8")
    recipe.write_text(_NOTE.format(template=TEMPLATE_RECIPE) + source, encoding="utf-8")
    return [study, recipe]


def init_command(args: argparse.Namespace, argv: list[str]) -> int:
    from .starter import write_starter

    study, recipe = write_starter(args.folder, args.name)
    print(f"wrote {study} and {recipe}; edit the recipe's build(), then run: autoopt run {shlex.quote(str(study))}")
    return EXIT_OK
