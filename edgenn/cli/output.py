"""Output conventions shared by every command: --json, --quiet, --debug and progress on stderr.

Kept free of heavy imports: `edgenn --help` loads this module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass

import click


@dataclass
class Options:
    """What the common flags asked for."""

    json: bool = False
    quiet: bool = False
    debug: bool = False


# The CLI's error handler reads this to decide between one line and a traceback.
STATE = Options()


def _set(field: str):
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            setattr(STATE, field, True)
            if field == "debug":
                os.environ["EDGENN_DEBUG"] = "1"
        return value

    return callback


def common_options(func):
    """Add --json, --quiet and --debug to a command; they are read from ``STATE``."""
    func = click.option(
        "--debug", is_flag=True, expose_value=False, callback=_set("debug"), is_eager=True,
        help="Show tracebacks and library logs.",
    )(func)
    func = click.option(
        "--quiet", "-q", is_flag=True, expose_value=False, callback=_set("quiet"),
        help="Print nothing but errors (and the --json document).",
    )(func)
    func = click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=_set("json"),
        help="Print one JSON document on stdout and nothing else there.",
    )(func)
    return func


def info(message: str) -> None:
    """A human-readable line on stderr (silenced by --quiet or --json)."""
    if not (STATE.quiet or STATE.json):
        click.echo(message, err=True)


def warn(message: str) -> None:
    """A warning on stderr, shown unless --quiet."""
    if not STATE.quiet:
        click.secho(f"warning: {message}", err=True, fg="yellow")


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to fd 1 (TensorFlow's C++ logs, library prints) to stderr.

    With --json, stdout carries the JSON document alone; this keeps libraries from writing
    there while a command runs. Yields a writer for the real stdout.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    real = os.fdopen(os.dup(saved), "w", closefd=True)
    os.dup2(2, 1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        real.flush()
        real.close()


def emit(document: dict, human) -> None:
    """Print a command's result: JSON on stdout with --json, else ``human()`` renders it."""
    if STATE.json:
        text = json.dumps(document, indent=2, default=_json_default)
        with _real_stdout() as out:
            out.write(text + "\n")
    elif not STATE.quiet:
        with _real_stdout() as out, contextlib.redirect_stdout(out):
            human()


def emit_failure(document: dict, human, error: Exception):
    """Raise ``error`` after showing a partial result.

    People see the result rendered; with --json it travels inside the one error document, so
    stdout never holds two documents.
    """
    if STATE.json:
        error.document = document
    else:
        emit(document, human)
    raise error


def finish(result, human) -> None:
    """Print a command's typed result and end as its ``exit_code`` says (the one place)."""
    if result.exit_code == 0:
        emit(result.to_dict(), human)
        return
    from ..errors import ResultFailure

    emit_failure(result.to_dict(), human, ResultFailure(result.exit_code, result.failure))


_REAL_STDOUT: list = []


@contextlib.contextmanager
def _real_stdout():
    if _REAL_STDOUT:
        yield _REAL_STDOUT[-1]
    else:
        yield sys.stdout


def guarded_stdout(func):
    """Run a command with fd 1 pointed at stderr; ``emit`` still reaches the real stdout."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with stdout_to_stderr() as real:
            _REAL_STDOUT.append(real)
            try:
                return func(*args, **kwargs)
            finally:
                _REAL_STDOUT.pop()

    return wrapper


def _json_default(value):
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a base dependency
        np = None
    if np is not None:
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.ndarray):
            return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def console():
    """A rich console on stderr for tables and progress (imported lazily: rich costs ~60 ms)."""
    import shutil

    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a wide page rather than rich's 80 columns.
    width = shutil.get_terminal_size((140, 24)).columns if sys.stdout.isatty() else 140
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)


def progress(description: str, total: int | None = None):
    """A rich progress bar on stderr; silent with --quiet or --json."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    class LazyProgress(Progress):
        """Starts drawing at the first task, so a run that fails first prints nothing."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            if self.live.is_started:
                self.stop()

        def add_task(self, *args, **kwargs):
            if not self.live.is_started:
                self.start()
            return super().add_task(*args, **kwargs)

    disabled = STATE.quiet or STATE.json
    bar = LazyProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=disabled,
        transient=False,
    )
    return bar


def fidelity_lines(fid) -> list[str]:
    """One line per output compared (named, with its own verdict where each has one)."""
    lines = []
    for o in fid.outputs:
        head = f"output {o.name!r}" if o.name else "fidelity"
        verdict = ""
        if o.verdict:
            v = o.verdict
            verdict = f" - {v['task']}: {'ok' if v['passed'] else 'FAILED'}"
        lines.append(f"  {head} on {fid.on}: {o.summary()}{verdict}")
    return lines
