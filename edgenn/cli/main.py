"""The `edgenn` command. Sub-commands are imported only when run, so `--help` stays fast.

This module is the one place where errors become messages and exit codes.
"""

from __future__ import annotations

import importlib
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
    "demo": ("edgenn.cli.demo_cmd:demo_cmd", "Run the whole pipeline on a small built-in example."),
    "profile": ("edgenn.cli.profile_cmd:profile_cmd", "Measure latency and memory, here or over SSH."),
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
            if STATE.debug:
                raise
            click.secho(f"error: {err.one_line()}", err=True, fg="red")
            ctx.exit(err.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as err:  # the last resort: one line, the traceback behind --debug
            if STATE.debug:
                raise
            text = " ".join(str(err).split())[:300]
            click.secho(
                f"error: internal error ({type(err).__name__}: {text}); "
                "rerun with --debug for the traceback and report it",
                err=True,
                fg="red",
            )
            ctx.exit(1)


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

    Exit codes: 0 ok, 2 bad input or usage, 3 conversion or runtime failure,
    4 a recipe or device constraint not met.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="edgenn")


if __name__ == "__main__":  # pragma: no cover
    main()
