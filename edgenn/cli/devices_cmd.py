"""`edgenn devices list|show|validate`."""

from __future__ import annotations

import click

from .output import common_options, console, emit, info


@click.group("devices")
def devices_group() -> None:
    """List, show and validate device profiles."""


@devices_group.command("list")
@common_options
def list_cmd() -> None:
    """List the built-in device profiles."""
    from .. import devices as dv

    rows = []
    for name, path in dv.builtin_devices().items():
        d = dv.load(str(path))
        rows.append({
            "name": name, "arch": d.arch.value, "cores": d.cores, "memory_mb": d.memory_mb,
            "runtime": d.runtime.value, "accelerator": d.accelerator.value,
            "transport": d.transport.type.value, "description": d.description,
        })

    def human():
        from rich.table import Table

        table = Table("name", "arch", "cores", "memory", "runtime", "accelerator", "transport",
                      box=None)
        for r in rows:
            table.add_row(r["name"], r["arch"], str(r["cores"]), f"{r['memory_mb']} MB",
                          r["runtime"], r["accelerator"], r["transport"])
        console().print(table)

    emit({"devices": rows}, human)


@devices_group.command("show")
@click.argument("device")
@common_options
def show_cmd(device: str) -> None:
    """Show a device profile (by name or path)."""
    import yaml

    from .. import devices as dv

    d = dv.load(device)
    document = d.model_dump(mode="json")
    emit(document, lambda: click.echo(yaml.safe_dump(document, sort_keys=False).rstrip()))


@devices_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@common_options
def validate_cmd(files: tuple[str, ...]) -> None:
    """Validate device profile files; every problem is reported with its key path and line."""
    from .. import devices as dv
    from ..errors import ConfigError

    results, failed = [], []
    for f in files:
        try:
            dv.load_model_file(dv.DeviceProfile, dv.resolve(f), "device profile")
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

    emit({"results": results}, human)
    if failed:
        raise ConfigError(f"{len(failed)} of {len(files)} device file(s) invalid: {', '.join(failed)}")
