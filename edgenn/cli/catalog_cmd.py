"""`list`, `show` and `validate` for a YAML catalogue (recipes, devices), built once."""

from __future__ import annotations

from collections.abc import Callable

import click

from .output import common_options, console, emit, emit_failure, info


def catalog_group(name: str, help_text: str, catalog: Callable, columns: list[str],
                  summarize: Callable[[str, object], dict]) -> click.Group:
    """A click group with list/show/validate for the catalogue returned by ``catalog()``.

    ``catalog`` is called lazily (it imports pydantic schemas); ``summarize(name, obj)`` gives
    one row of `list`.
    """

    @click.group(name, help=help_text)
    def group() -> None:
        pass

    @group.command("list")
    @common_options
    def list_cmd() -> None:
        cat = catalog()
        rows = [summarize(n, cat.load(str(p))) for n, p in cat.builtin().items()]

        def human():
            from rich.table import Table

            table = Table(*columns, box=None)
            for row in rows:
                table.add_row(*(str(row[c]) for c in columns))
            console().print(table)

        emit({name: rows}, human)

    list_cmd.__doc__ = f"List the built-in {name}."

    @group.command("show")
    @click.argument("item")
    @common_options
    def show_cmd(item: str) -> None:
        import yaml

        document = catalog().load(item).model_dump(mode="json")
        emit(document, lambda: click.echo(yaml.safe_dump(document, sort_keys=False).rstrip()))

    show_cmd.__doc__ = "Show one (by name or path) with every default filled in."

    @group.command("validate")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @common_options
    def validate_cmd(files: tuple[str, ...]) -> None:
        from ..errors import ConfigError

        cat = catalog()
        results, failed = [], []
        for f in files:
            try:
                cat.load(f)
                results.append({"file": f, "valid": True, "problems": []})
            except ConfigError as err:
                results.append({"file": f, "valid": False,
                                "problems": getattr(err, "problems", [err.one_line()])})
                failed.append(f)

        def human():
            for r in results:
                if r["valid"]:
                    info(f"{r['file']}: ok")
                for p in r["problems"]:
                    click.echo(p, err=True)

        if failed:
            first = next(r["problems"][0] for r in results if not r["valid"])
            more = f" ({len(failed)} of {len(files)} files invalid)" if len(files) > 1 else ""
            emit_failure({"results": results}, human, ConfigError(f"invalid {cat.kind}: {first}{more}"))
        emit({"results": results}, human)

    validate_cmd.__doc__ = "Validate files; every problem is reported with its key path and line."
    return group
