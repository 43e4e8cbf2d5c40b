"""Flags shared by every command that loads a user's model or data files."""

from __future__ import annotations

import click


def _set_limit(ctx, param, value):
    if value is not None:
        from ..limits import set_max_unpacked

        set_max_unpacked(value)
    return value


def limit_option(func):
    """--max-unpacked-mb: how far a compressed model or dataset file may unpack."""
    return click.option(
        "--max-unpacked-mb", type=click.IntRange(min=1), default=None, expose_value=False,
        callback=_set_limit,
        help="Let a .keras/.h5/.npz/.gz file unpack to this many MiB (default: 100x its size "
             "on disk, at least 256 MiB; more is refused as an archive bomb).")(func)


def model_options(func):
    """--allow-unsafe, --custom-objects and --max-unpacked-mb; the command receives the first two."""
    func = limit_option(func)
    func = click.option(
        "--custom-objects", type=click.Path(), default=None,
        help="A Python file whose classes/functions are registered for loading (it runs).")(func)
    func = click.option(
        "--allow-unsafe", is_flag=True,
        help="Load a model whose file would run code or touch files (Lambda layers, unknown "
             "objects, op layers outside pure tensor math, SavedModel ops with side effects). "
             "Only for files you trust.")(func)
    return func


def overwrite_option(func):
    """--overwrite for commands that write an output folder."""
    return click.option(
        "--overwrite", is_flag=True,
        help="Write into an output folder that holds other files, replacing those with the "
             "same names (a folder from an earlier run of the same command is always replaced)."
    )(func)


def bridge_option(func):
    """--bridge-tolerance for commands that may bridge a Keras 3 model to tf_keras."""
    return click.option(
        "--bridge-tolerance", type=click.FloatRange(min=0, min_open=True), default=None,
        help="Relative error the Keras 3 -> tf_keras bridge accepts (default 1e-4); only "
             "prune, cluster and QAT need the bridge.")(func)


TASKS = ("auto", "classification", "multilabel", "regression")


def parse_tasks(ctx, param, value: str):
    """``--task``: one task for every output, or {output name: task} for those named."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) == 1 and "=" not in parts[0]:
        if parts[0] not in TASKS:
            raise click.BadParameter(f"{parts[0]!r} is not one of {', '.join(TASKS)}")
        return parts[0]
    named = {}
    for part in parts:
        name, eq, task = part.rpartition("=")
        if not eq or not name or task not in TASKS:
            raise click.BadParameter(f"expected TASK or OUTPUT=TASK[,OUTPUT=TASK] with a task "
                                     f"among {', '.join(TASKS)}; received {value!r}")
        named[name] = task
    return named
