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
Results go to stdout, progress and notes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from .recipes import list_recipes, load_recipe, recipe_dirs

# torch, Optuna, MLflow and pandas are imported by the commands that need them, so that --help and
# the listings start at once (importing torch alone takes seconds on a busy machine).
if TYPE_CHECKING:
    from .registry import OptimizerSpec

#: Exceptions that mean the user asked for something wrong (exit 2, no traceback): validation errors
#: of settings and data are ValueError / TypeError; a bad study file (StudyFileError) or recipe
#: (RecipeError) subclasses ValueError.
USER_ERRORS = (ValueError, TypeError)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    except KeyboardInterrupt:
        if args.debug:
            raise
        _error("interrupted.", kind="")
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if args.debug:
            raise
        _error(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        if args.debug:
            raise
        _error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_FAILURE


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``autoopt: error: ...``, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        _error(f"{message} (see '{self.prog} --help')")
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
    run.set_defaults(handler=_run)

    optimizers = commands.add_parser(
        "optimizers", parents=[common], help="list the registered optimizers",
        description="The optimizer registry: family, optimizer state per parameter (from each "
                    "optimizer's state-size rule, at its default settings) and search space.")
    optimizers.set_defaults(handler=_optimizers)

    recipes = commands.add_parser(
        "recipes", parents=[common], help="list the recipes a study file can name",
        description="Recipes found in ./recipes/ and in the recipes/ shipped with autoopt (a study "
                    "file also looks in the recipes/ folder beside its own folder).")
    recipes.set_defaults(handler=_recipes)

    show = commands.add_parser(
        "show", parents=[common], help="the recommendation and results of a stored study",
        description="Rebuild a stored study's recommendation and per-optimizer table; trains nothing.")
    show.add_argument("study", metavar="STUDY", help="a study name, or a study file (its study name and storage)")
    show.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<STUDY>.db here)")
    show.set_defaults(handler=_show)

    _add_worker_parser(commands, common)

    ui = commands.add_parser(
        "ui", parents=[common], help="open MLflow's UI on 127.0.0.1",
        description="Start 'mlflow ui' on 127.0.0.1 for the tracking store studies record to "
                    "(MLflow's default store, or --tracking-uri). Ctrl-C stops it.")
    ui.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    ui.add_argument("--tracking-uri", help="the store to show (default: $MLFLOW_TRACKING_URI, else MLflow's default)")
    ui.set_defaults(handler=_ui)

    init = commands.add_parser(
        "init", parents=[common], help="write a study file and a recipe to start from",
        description="Write studies/NAME.toml and recipes/NAME.py (a copy of the digits_mlp recipe to "
                    "edit) into FOLDER; then: autoopt run studies/NAME.toml. Nothing is overwritten.")
    init.add_argument("folder", metavar="FOLDER", nargs="?", default=".", help="where to write (default: here)")
    init.add_argument("--name", default="my_study", help="the study's and the recipe's name (default: my_study)")
    init.set_defaults(handler=_init)
    sync = commands.add_parser(
        "sync", parents=[common], help="write what MLflow is missing of a stored study",
        description="Make the study's MLflow record match its Optuna storage: every trained trial "
                    "gets its child run (with its own start and end times), the summary, tags and files "
                    "are refreshed. Safe to run again: a second sync writes nothing new.")
    sync.add_argument("study", metavar="STUDY", help="a study name, or a study file (its study name and storage)")
    sync.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<STUDY>.db here)")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: where the study was recorded)")
    sync.set_defaults(handler=_sync)
    return parser


# --- run ---------------------------------------------------------------------------------------------

def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from .device import select_device
    from .studyfile import load_study_file
    from .tune import tune  # looked up when called, so that a test can stand in for it

    study = load_study_file(args.study_file)
    recipe = load_recipe(study.recipe, study.base_dir)
    config = study.resolve(
        recipe,
        n_trials=args.trials, timeout=args.timeout, budget=args.budget, epochs=args.epochs, storage=args.storage,
        study_name=args.study_name, tracking_uri=args.tracking_uri, device=args.device,
        tracking=False if args.no_tracking else None, verbose=False if args.quiet else None,
    )
    select_device(config.device)  # a bad --device is a usage error before anything is built
    model, data = recipe.make(seed=config.seed)  # before any output, so that its error is the only line
    notes = None if args.quiet else sys.stderr
    done = _finished_trials(config.storage, config.study_name)
    _say(notes, f"study '{config.study_name}' in {config.storage}"
                + (f": resuming, {done} search trial(s) already done" if done else ""))
    _say(notes, f"  recipe {recipe.name}: {recipe.description or recipe.source}")
    _say(notes, f"  {_plan(config)}")
    # Optuna logs each failed trial with its traceback, Ctrl-C included. Here a failure is recorded with
    # its error in the study and named in the report, and Ctrl-C gets its own line: spare the terminal.
    optimize_log = logging.getLogger("optuna.study._optimize")
    level = optimize_log.level
    if not args.debug:
        optimize_log.setLevel(logging.ERROR)
    try:
        report = tune(model, data, config=config)
    except KeyboardInterrupt:
        kept = _finished_trials(config.storage, config.study_name)
        _error(f"interrupted; {kept} finished search trial(s) are kept in {config.storage}. "
               f"Resume with: {shlex.join(['autoopt', *argv])}", kind="")
        return EXIT_INTERRUPTED
    finally:
        optimize_log.setLevel(level)

    out = sys.stdout
    _print_report(report, config.study_name, config.storage, out)
    if not config.tracking:
        print("MLflow: not recorded (tracking off).", file=out)
    elif report.tracking_uri:
        flag = f" --tracking-uri {shlex.quote(report.tracking_uri)}" if config.tracking_uri else ""
        where = f"parent run {report.parent_run_id} in {report.tracking_uri}"
        opener = (f"open {report.tracking_uri} in a browser" if report.tracking_uri.startswith(("http:", "https:"))
                  else f"autoopt ui{flag}")
        print(f"MLflow: {where}. See it with: {opener}", file=out)
    print("Run the same command again to resume the study (raise --trials or --budget to search longer).", file=out)
    return EXIT_OK


def _plan(config: Any) -> str:
    """What the run will do, in one line."""
    names = ", ".join(config.optimizers) if config.optimizers else "every registered optimizer"
    limits = []
    if config.trial_budget is not None:
        limits.append(f"{config.trial_budget} search trials in all")
    if config.timeout is not None:
        limits.append(f"at most {config.timeout:g} s")
    if config.total_budget is not None:
        limits.append(f"a budget of {config.total_budget:g} training runs")
    plan = f"{names}; {' or '.join(limits)}; {config.epochs} epochs of batch {config.batch_size} per trial"
    if config.reevaluate_top and config.seeds > 1:
        plan += f"; then the top {config.reevaluate_top} on {config.seeds - 1} more seed(s)"
    return plan


def _finished_trials(storage: str, study_name: str) -> int:
    """Search trials already in the storage (0 when there is no such study yet)."""
    path = _sqlite_path(storage)
    if path is not None and not path.exists():
        return 0  # do not let a look create the database file
    try:
        import optuna

        from .search import finished_trials
        from .storage import open_storage

        return finished_trials(optuna.load_study(study_name=study_name, storage=open_storage(storage)))
    except Exception:  # no such study yet, or an unreachable storage that tune() will report properly
        return 0


def _print_report(report: Any, study_name: str, storage: str, out: TextIO) -> None:
    from .records import OUTCOMES

    print("Best configuration of each optimizer:", file=out)
    print(report.table().to_string(index=False), file=out)
    print(file=out)
    print("Recommendation:", file=out)
    print(report.recommendation.explanation, file=out)
    print(f"In code: {report.recommendation.constructor()}", file=out)
    print(file=out)
    counts = report.trials["outcome"].value_counts()
    outcomes = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if o in counts)
    print(f"Study '{study_name}': {len(report.trials)} trials ({outcomes}) in {storage}.", file=out)


# --- worker ------------------------------------------------------------------------------------------

def _add_worker_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    worker = commands.add_parser(
        "worker", parents=[common], help="join a study from this machine (a shared storage)",
        description="Train trials of the study defined in STUDY_FILE in a storage that other machines share "
                    "(PostgreSQL: postgresql://user@host/db). Start one per machine (or several); the budget "
                    "is the study's total, however many workers join. Trains nothing once it is spent.")
    worker.add_argument("study_file", metavar="STUDY_FILE", help="the same study file on every machine")
    worker.add_argument("--storage", help="the shared Optuna storage URL (default: the file's storage)")
    worker.add_argument("--tracking-uri", help="MLflow tracking URI (default: the file's, else MLflow's default)")
    worker.add_argument("--no-tracking", action="store_true", help="do not record in MLflow")
    worker.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best one here)")
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace, argv: list[str]) -> int:
    """One more process on a shared study: the study's own run, without the report."""
    from .device import select_device
    from .studyfile import load_study_file
    from .tune import tune

    study = load_study_file(args.study_file)
    storage = args.storage or study.settings.storage
    if storage is None:
        raise ValueError("worker needs a storage every worker can reach: pass --storage "
                         "postgresql://user@host/db (or set storage in the study file).")
    recipe = load_recipe(study.recipe, study.base_dir)
    config = study.resolve(recipe, storage=storage, tracking_uri=args.tracking_uri, device=args.device,
                           tracking=False if args.no_tracking else None, verbose=False)
    select_device(config.device)
    model, data = recipe.make(seed=config.seed)
    before = _finished_trials(config.storage, config.study_name)
    print(f"worker: joined study '{config.study_name}' in {config.storage} ({before} search trial(s) done)",
          file=sys.stderr)
    try:
        report = tune(model, data, config=config)
    except KeyboardInterrupt:
        _error("worker interrupted; its finished trials are in the storage.", kind="")
        return EXIT_INTERRUPTED
    after = _finished_trials(config.storage, config.study_name)
    print(f"worker: study '{config.study_name}' has {after} search trial(s) done; recommended "
          f"{report.recommendation.optimizer} (see: autoopt show {shlex.quote(args.study_file)} --storage ...)")
    return EXIT_OK


# --- show --------------------------------------------------------------------------------------------

def _show(args: argparse.Namespace, argv: list[str]) -> int:
    from .tune import load_report

    name, storage = _stored_study(args, "run the study first, or pass --storage")
    report = load_report(name, storage)
    _print_report(report, name, storage, sys.stdout)
    return EXIT_OK


def _stored_study(args: argparse.Namespace, hint: str) -> tuple[str, str]:
    """(study name, storage) from ``STUDY`` (a name or a study file) and ``--storage``; a sqlite file
    that does not exist is an error that ends with ``hint``."""
    from .studyfile import default_storage, load_study_file

    name, storage = args.study, args.storage
    if name.endswith(".toml"):
        config = load_study_file(name).resolve()
        name, storage = config.study_name, storage or config.storage
    storage = storage or default_storage(name)
    path = _sqlite_path(storage)
    if path is not None and not path.exists():
        raise ValueError(f"no study database {path} here; {hint}.")
    return name, storage


def _sqlite_path(storage: str) -> Path | None:
    """The file of a ``sqlite:///`` storage URL, None for anything else (or an in-memory database)."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix) or storage[len(prefix):] in ("", ":memory:"):
        return None
    return Path(storage[len(prefix):].split("?", 1)[0])


# --- sync --------------------------------------------------------------------------------------------

def _sync(args: argparse.Namespace, argv: list[str]) -> int:
    from .mlflow_sync import sync_study

    name, storage = _stored_study(args, "pass --storage")
    result = sync_study(name, storage, tracking_uri=args.tracking_uri)
    print(f"Study '{name}' in {result.tracking_uri}, parent run {result.parent_run_id}: "
          f"{result.trained_trials} trained trial(s); {result.created} run(s) written, "
          f"{result.rewritten} rewritten, the rest already there.")
    return EXIT_OK


# --- optimizers and recipes --------------------------------------------------------------------------

def _optimizers(args: argparse.Namespace, argv: list[str]) -> int:
    from .registry import get_spec, list_optimizers

    rows = []
    for name in list_optimizers():
        spec = get_spec(name)
        rows.append([name, spec.family, state_per_parameter(spec), _space(spec), spec.description])
    _print_table(["optimizer", "family", "state per parameter", "search space", "description"], rows)
    return EXIT_OK


def _space(spec: OptimizerSpec) -> str:
    from .registry import Categorical, LogUniform

    return ", ".join(f"{d.name} {'|'.join(map(str, d.choices))}" if isinstance(d, Categorical)
                     else f"{d.name} {d.low:g}..{d.high:g}{' log' if isinstance(d, LogUniform) else ''}"
                     for d in spec.space)


def state_per_parameter(spec: OptimizerSpec) -> str:
    """The optimizer's state at its defaults, in parameter sizes, from its state-size rule.

    The rule is probed with parameters of several shapes (``ParameterShape`` stand-ins, so that the
    listing needs no torch; real tensors for a rule that needs them) and fitted as ``k x params +
    r x (rows + cols) + s scalars``; when matrices and vectors differ, both are shown.

    >>> from autoopt.registry import get_spec
    >>> state_per_parameter(get_spec("adam"))
    '2x params + step'
    >>> state_per_parameter(get_spec("adafactor"))
    'rows + cols + step (matrices), 1x params + step (vectors)'
    """
    matrices = _fit_state(spec, [(3, 5), (7, 2), (16, 16), (40, 9)])
    vectors = _fit_state(spec, [(5,), (17,), (64,)])
    return matrices if matrices == vectors else f"{matrices} (matrices), {vectors} (vectors)"


def _predict_state(spec: OptimizerSpec, shape: tuple[int, ...]) -> int:
    """The rule's bytes for one parameter of ``shape`` in torch's default float dtype."""
    from .registry import ParameterShape, default_float_bytes

    try:
        return spec.predict_state_bytes([ParameterShape(shape, default_float_bytes())], spec.defaults)
    except (AttributeError, TypeError):  # a user's rule that needs a real tensor
        import torch

        return spec.predict_state_bytes([torch.empty(shape)], spec.defaults)


def _fit_state(spec: OptimizerSpec, shapes: list[tuple[int, ...]]) -> str:
    import math

    from .registry import default_float_bytes

    size = scalar = default_float_bytes()  # a parameter's element and the registry's unit for "step"-like 0-d state
    rows, sizes = [], []
    for shape in shapes:
        lines = (shape[0] + shape[1]) if len(shape) == 2 else 0
        rows.append([math.prod(shape) * size, lines * size, scalar])
        sizes.append(_predict_state(spec, shape))
    # the (rows + cols) column is all zeros for vectors: a free unknown, 0 in the solution
    k, r, s = (round(c) for c in _solve(rows, sizes))
    if any(k * a + r * b + s * c != n for (a, b, c), n in zip(rows, sizes)):
        # not of that form: say how big it is on one large matrix
        ratio = _predict_state(spec, (1024, 1024)) / (1024 * 1024 * size)
        return f"~{ratio:.3g}x params (1024x1024)"
    terms = [f"{k}x params" if k else "", f"{r}x (rows + cols)" if r > 1 else ("rows + cols" if r else ""),
             {0: "", 1: "step"}.get(s, f"{s} scalars")]
    return " + ".join(t for t in terms if t) or "none"


def _solve(rows: list[list[int]], values: list[int]) -> list[float]:
    """A solution of ``rows @ x = values`` by Gauss-Jordan elimination in exact fractions, the
    unknowns of columns without a pivot set to 0 (numpy's import would cost the listing a third of its time).

    >>> _solve([[1, 0, 1], [2, 0, 1], [3, 0, 1]], [3, 5, 7])
    [2.0, 0.0, 1.0]
    """
    from fractions import Fraction

    m = [[Fraction(a) for a in row] + [Fraction(v)] for row, v in zip(rows, values)]
    n, pivots, top = len(rows[0]), [], 0
    for col in range(n):
        pivot = next((i for i in range(top, len(m)) if m[i][col] != 0), None)
        if pivot is None:
            continue
        m[top], m[pivot] = m[pivot], m[top]
        m[top] = [a / m[top][col] for a in m[top]]
        for i in range(len(m)):
            if i != top and m[i][col] != 0:
                m[i] = [a - m[i][col] * b for a, b in zip(m[i], m[top])]
        pivots.append(col)
        top += 1
    x = [0.0] * n
    for row, col in enumerate(pivots):
        x[col] = float(m[row][-1])
    return x


def _recipes(args: argparse.Namespace, argv: list[str]) -> int:
    listings = list_recipes()
    if not listings:
        searched = ", ".join(str(d) for d in recipe_dirs()) or "no recipes/ folder here or beside autoopt"
        _error(f"no recipes found ({searched}).")
        return EXIT_FAILURE
    _print_table(["recipe", "description"], [[r.name, r.description] for r in listings])
    return EXIT_OK


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


# --- init --------------------------------------------------------------------------------------------

def _init(args: argparse.Namespace, argv: list[str]) -> int:
    from .starter import write_starter

    study, recipe = write_starter(args.folder, args.name)
    print(f"wrote {study} and {recipe}; edit the recipe's build(), then run: autoopt run {shlex.quote(str(study))}")
    return EXIT_OK


# --- ui ----------------------------------------------------------------------------------------------

def _ui(args: argparse.Namespace, argv: list[str]) -> int:
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.startswith(("http:", "https:", "databricks")):
        print(f"{uri} is a tracking server already: open it in a browser.")
        return EXIT_OK
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535 but got {args.port}.")
    # without --backend-store-uri, mlflow ui uses the same default store as MLflow's client
    # one worker and no job runner: it starts in about half the time and a local UI needs no more
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(args.port),
               "--workers", "1"]
    if uri:
        command += ["--backend-store-uri", uri]
    print(f"MLflow UI for {uri or 'the default store (./mlflow.db or ./mlruns)'} at "
          f"http://127.0.0.1:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    return _serve(command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def _serve(command: list[str], env: dict[str, str]) -> int:
    """Run a server until it exits or this process is stopped (Ctrl-C, SIGTERM, SIGHUP); then stop it.

    The server runs in its own process group, so that stopping it also stops the workers it started
    (mlflow ui runs uvicorn in a child process), whatever signal stopped this process.
    """
    import signal

    def stop(signum: int, frame: Any) -> NoReturn:
        raise KeyboardInterrupt

    handled = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, stop) for s in handled}
    server = subprocess.Popen(command, env=env, start_new_session=os.name == "posix")
    try:
        return server.wait()
    except KeyboardInterrupt:  # the normal way to stop a server
        return EXIT_OK
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after 10 s."""
    import signal

    if os.name != "posix":
        server.terminate()
        server.wait()
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; its workers may not be yet
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            break


# --- output ------------------------------------------------------------------------------------------

def _error(message: str, kind: str = "error: ") -> None:
    """One line on stderr, ``autoopt: error: ...``, whatever the message holds."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"autoopt: {kind}{line}", file=sys.stderr)


def _say(stream: TextIO | None, message: str) -> None:
    if stream is not None:
        print(message, file=stream)


if __name__ == "__main__":
    sys.exit(main())
