"""The ``autoopt`` command: run a study written in a TOML file, and look at what is registered or stored.

    autoopt run studies/quickstart.toml     # search, re-evaluate, recommend; run again to resume
    autoopt show quickstart                 # the recommendation of a stored study, nothing trained
    autoopt optimizers                      # the registry: families, state sizes, search spaces
    autoopt recipes                         # the recipes a study file can name
    autoopt ui                              # MLflow's UI on 127.0.0.1 for the default store
    autoopt init                            # studies/my_study.toml + recipes/my_study.py to start from
    autoopt sync quickstart                 # write what MLflow missed (server down) from the storage

Exit codes: 0 success, 1 a failure at run time, 2 bad usage or a bad study file / recipe, 130 Ctrl-C.
Errors are one line on stderr (``autoopt: error: ...``); ``--debug`` shows the traceback instead.
Results go to stdout, progress and notes to stderr. A reader that stops reading (``autoopt show
quickstart | head -1``) ends the command quietly, with exit code 1 as Python itself uses for a closed
pipe: no error line, since nothing went wrong that the user did not ask for.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .listing import optimizers_command, recipes_command
from .output import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, error
from .run import add_worker_parser, run_command
from .starter import init_command
from .stored import show_command, sync_command
from .ui import ui_command

# torch, Optuna, MLflow and pandas are imported by the commands that need them (each command's module
# imports them inside its handler), so that --help and the listings start at once (importing torch
# alone takes seconds on a busy machine).

#: Exceptions that mean the user asked for something wrong (exit 2, no traceback): validation errors
#: of settings and data are ValueError / TypeError; a bad study file (StudyFileError) or recipe
#: (RecipeError) subclasses ValueError.
USER_ERRORS = (ValueError, TypeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``autoopt`` command line; returns the exit code instead of exiting.

    >>> main(["optimizers"])   # doctest: +SKIP
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.handler(args, argv)
    except BrokenPipeError:
        # stdout's reader went away; Python flushes stdout again at exit, so point it at nothing first
        # (the recipe of Python's signal module documentation, "Note on SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        if args.debug:
            raise
        error("interrupted.", kind="")
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if args.debug:
            raise
        error(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        if args.debug:
            raise
        error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_FAILURE


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``autoopt: error: ...``, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        error(f"{message} (see '{self.prog} --help')")
        self.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autoopt", description="Choose a PyTorch optimizer and its learning rate by "
                     "measuring them on your model: an Optuna search, a recommendation, an MLflow record.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    # --debug after the command too; SUPPRESS keeps a subcommand from resetting the top-level value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run", parents=[common], help="run (or resume) the study defined in a TOML file",
        description="Run the study defined in STUDY_FILE: search, re-evaluate the best configurations, "
                    "recommend. Running the same command again resumes the study from its storage "
                    "(n_trials is a total budget). Flags override the file.")
    run.add_argument("study_file", metavar="STUDY_FILE", help="a study file, e.g. studies/quickstart.toml")
    run.add_argument("--trials", type=int, help="total search trials (overrides n_trials)")
    run.add_argument("--timeout", type=float, help="seconds for the search (overrides timeout)")
    run.add_argument("--budget", type=float,
                     help="total training cost in training-run equivalents, re-runs included (overrides budget)")
    run.add_argument("--epochs", type=int, help="epochs per trial (overrides epochs and the recipe's EPOCHS)")
    run.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<study_name>.db here)")
    run.add_argument("--study-name", help="study name (default: the file's study_name, else its stem)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own default)")
    run.add_argument("--no-tracking", action="store_true", help="do not record the study in MLflow")
    run.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best one available)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or notes; results only")
    run.set_defaults(handler=run_command)

    optimizers = commands.add_parser(
        "optimizers", parents=[common], help="list the registered optimizers",
        description="The optimizer registry: family, optimizer state per parameter (from each "
                    "optimizer's state-size rule, at its default settings) and search space.")
    optimizers.set_defaults(handler=optimizers_command)

    recipes = commands.add_parser(
        "recipes", parents=[common], help="list the recipes a study file can name",
        description="Recipes found in ./recipes/ and in the recipes/ shipped with autoopt (a study "
                    "file also looks in the recipes/ folder beside its own folder).")
    recipes.set_defaults(handler=recipes_command)

    show = commands.add_parser(
        "show", parents=[common], help="the recommendation and results of a stored study",
        description="Rebuild a stored study's recommendation and per-optimizer table; trains nothing.")
    show.add_argument("study", metavar="STUDY", help="a study name, or a study file (its study name and storage)")
    show.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<STUDY>.db here)")
    show.set_defaults(handler=show_command)

    add_worker_parser(commands, common)

    ui = commands.add_parser(
        "ui", parents=[common], help="open MLflow's UI on 127.0.0.1",
        description="Start 'mlflow ui' on 127.0.0.1 for the tracking store studies record to "
                    "(MLflow's default store, or --tracking-uri). Ctrl-C stops it.")
    ui.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    ui.add_argument("--tracking-uri", help="the store to show (default: $MLFLOW_TRACKING_URI, else MLflow's default)")
    ui.set_defaults(handler=ui_command)

    init = commands.add_parser(
        "init", parents=[common], help="write a study file and a recipe to start from",
        description="Write studies/NAME.toml and recipes/NAME.py (a copy of the digits_mlp recipe to "
                    "edit) into FOLDER; then: autoopt run studies/NAME.toml. Nothing is overwritten.")
    init.add_argument("folder", metavar="FOLDER", nargs="?", default=".", help="where to write (default: here)")
    init.add_argument("--name", default="my_study", help="the study's and the recipe's name (default: my_study)")
    init.set_defaults(handler=init_command)
    sync = commands.add_parser(
        "sync", parents=[common], help="write what MLflow is missing of a stored study",
        description="Make the study's MLflow record match its Optuna storage: every trained trial "
                    "gets its child run (with its own start and end times), the summary, tags and files "
                    "are refreshed. Safe to run again: a second sync writes nothing new.")
    sync.add_argument("study", metavar="STUDY", help="a study name, or a study file (its study name and storage)")
    sync.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<STUDY>.db here)")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: where the study was recorded)")
    sync.set_defaults(handler=sync_command)
    return parser
