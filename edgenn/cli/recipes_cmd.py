"""`edgenn recipes list|show|validate`."""

from __future__ import annotations

import click

from .output import common_options, console, emit, info


@click.group("recipes")
def recipes_group() -> None:
    """List, show and validate compression recipes."""


@recipes_group.command("list")
@common_options
def list_cmd() -> None:
    """List the built-in recipes."""
    from .. import recipe as rc

    rows = []
    for name, path in rc.builtin_recipes().items():
        r = rc.load(str(path))
        rows.append({
            "name": name,
            "steps": [s.technique for s in r.steps],
            "export": [f"{e.format.value}:{e.quantization.value}" for e in r.export],
            "description": r.description,
        })

    def human():
        from rich.table import Table

        table = Table("name", "steps", "export", "description", box=None)
        for row in rows:
            table.add_row(row["name"], " > ".join(row["steps"]) or "-", ", ".join(row["export"]),
                          row["description"])
        console().print(table)

    emit({"recipes": rows}, human)


@recipes_group.command("show")
@click.argument("recipe")
@common_options
def show_cmd(recipe: str) -> None:
    """Show a recipe (by name or path) with every default filled in."""
    import yaml

    from .. import recipe as rc

    r = rc.load(recipe)
    document = r.model_dump(mode="json")
    emit(document, lambda: click.echo(yaml.safe_dump(document, sort_keys=False).rstrip()))


@recipes_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@common_options
def validate_cmd(files: tuple[str, ...]) -> None:
    """Validate recipe files; every problem is reported with its key path and line."""
    from .. import recipe as rc
    from ..errors import ConfigError

    results, failed = [], []
    for f in files:
        try:
            rc.load_model_file(rc.Recipe, rc.resolve(f), "recipe")
            results.append({"file": f, "valid": True, "problems": []})
        except ConfigError as err:
            problems = getattr(err, "problems", [err.one_line()])
            results.append({"file": f, "valid": False, "problems": problems})
            failed.append(f)

    def human():
        for r in results:
            if r["valid"]:
                info(f"{r['file']}: ok")
            for p in r["problems"]:
                click.echo(p, err=True)

    emit({"results": results}, human)
    if failed:
        raise ConfigError(f"{len(failed)} of {len(files)} recipe file(s) invalid: {', '.join(failed)}")
