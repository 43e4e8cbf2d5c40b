"""The `edgenn` command. Sub-commands are imported only when run, so `--help` stays fast.

This module is the one place where errors become messages and exit codes.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import sys

import click

from .. import __version__
from ..errors import EdgennError
from .output import STATE

# name -> (module:attribute, one-line help shown by `edgenn --help` without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "federated": ("edgenn.cli.federated_cmd:federated_group", "Simulate federated on-device training."),
    "estimate": ("edgenn.cli.estimate_cmd:estimate_cmd", "Estimate latency and RAM on a device."),
    "inspect": ("edgenn.cli.inspect_cmd:inspect_cmd", "Facts about a model: layers, params, MACs, ops."),
    "check": ("edgenn.cli.convert_cmd:check_cmd", "Pre-flight: which ops a target can run."),
    "convert": ("edgenn.cli.convert_cmd:convert_cmd", "Convert to TFLite/ONNX for a target; verify."),
    "compress": ("edgenn.cli.compress_cmd:compress_cmd", "Apply a compression recipe; export .tflite."),
    "fit": ("edgenn.cli.fit_cmd:fit_cmd", "Search recipes for the best model on a device budget."),
    "quantize": ("edgenn.cli.quantize_cmd:quantize_cmd", "Quantize a converted .tflite/.onnx; verify."),
    "demo": ("edgenn.cli.demo_cmd:demo_cmd", "Run the whole pipeline on a small built-in example."),
    "profile": ("edgenn.cli.profile_cmd:profile_cmd", "Measure latency and memory, here or over SSH."),
    "report": ("edgenn.cli.report_cmd:report_cmd", "Compare runs on one page (HTML or Markdown)."),
    "recipes": ("edgenn.cli.recipes_cmd:recipes_group", "List, show and validate compression recipes."),
    "devices": ("edgenn.cli.devices_cmd:devices_group", "List, show and validate device profiles."),
}


class LazyGroup(click.Group):
    """A group that imports a sub-command's module only when that command runs."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str):
        if cmd_name in self.lazy:
            target, _ = self.lazy[cmd_name]
            module_name, attr = target.split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgennError as err:
            fail(ctx, err.exit_code, err.one_line(), type(err).__name__,
                 getattr(err, "document", None), traceback=STATE.debug)
        except click.exceptions.Exit:
            raise
        except click.ClickException as err:  # bad flags and arguments of a sub-command
            fail(ctx, err.exit_code, _usage_line(err), "UsageError")
        except click.exceptions.Abort:
            fail(ctx, 130, "interrupted", "Interrupted")
        except KeyboardInterrupt:
            fail(ctx, 130, "interrupted", "Interrupted")
        except OSError as err:
            if err.errno not in _ENVIRONMENT_ERRNOS:
                _internal(ctx, err)
            name = f" {err.filename}" if err.filename else ""
            fail(ctx, 2, f"cannot write{name}: {os.strerror(err.errno)}: choose an output on a "
                 "writable file system with free space", "UsageError", traceback=STATE.debug)
        except MemoryError:
            fail(ctx, 3, "ran out of memory: use a smaller model or dataset (--limit), or a machine "
                 "with more memory", "ResourceError", traceback=STATE.debug)
        except Exception as err:  # the last resort: one line, the traceback behind --debug
            _internal(ctx, err)

    def main(self, args=None, prog_name=None, **extra):
        """Run the CLI; usage errors of the group itself are one line too."""
        args = list(sys.argv[1:] if args is None else args)
        if "--json" in args:
            STATE.json = True
        try:
            code = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.format_message())
            code = 0
        except click.ClickException as err:
            code = _print_failure(err.exit_code, _usage_line(err), "UsageError", None)
        except click.exceptions.Abort:
            code = _print_failure(130, "interrupted", "Interrupted", None)
        sys.exit(code if isinstance(code, int) else 0)


# Errors of the machine, not of edgenn: a read-only or full disk, a denied path.
_ENVIRONMENT_ERRNOS = {errno.EROFS, errno.EACCES, errno.ENOSPC, errno.EDQUOT, errno.EPERM}


def _usage_line(err: click.ClickException) -> str:
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "edgenn"
    message = " ".join(err.format_message().split())  # click lists choices on several lines
    return f"{message.rstrip('.')}: see `{command} --help`"


def _print_failure(code: int, message: str, kind: str, document: dict | None) -> int:
    """The one error line on stderr and, with --json, one document on stdout."""
    click.secho(f"error: {message}", err=True, fg="red")
    if STATE.json:
        doc = dict(document or {})
        doc["error"] = {"exit_code": code, "type": kind, "message": message}
        click.echo(json.dumps(doc, indent=2, default=str))
    return code


def fail(ctx: click.Context, code: int, message: str, kind: str, document: dict | None = None,
         traceback: bool = False):
    """Report a failure the way every command does, then exit with ``code``."""
    if traceback:
        import traceback as tb

        tb.print_exc()
    _print_failure(code, message, kind, document)
    ctx.exit(code)


def _internal(ctx: click.Context, err: Exception):
    text = " ".join(str(err).split())[:300]
    fail(ctx, 1, f"internal error ({type(err).__name__}: {text}); rerun with --debug for the "
         "traceback and report it", "InternalError", traceback=STATE.debug)


def _debug_flag(ctx: click.Context, _param, value: bool) -> bool:
    if value:
        STATE.debug = True
        os.environ["EDGENN_DEBUG"] = "1"
    return value


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="edgenn")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug_flag,
              help="Show tracebacks and library logs.")
def cli() -> None:
    """edgenn: take trained Keras models to edge devices.

    Compress with declarative recipes, convert to TFLite/LiteRT and ONNX, prove the result
    still agrees with the original, and profile it where it will run.
    Every command takes --json, --quiet and --debug.

    Exit codes: 0 ok, 1 internal error (a bug: please report it), 2 bad input or usage,
    3 conversion or runtime failure, 4 a recipe or device constraint not met. With --json a
    failure prints {"error": {"exit_code", "type", "message"}} on stdout.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="edgenn")


if __name__ == "__main__":  # pragma: no cover
    main()
