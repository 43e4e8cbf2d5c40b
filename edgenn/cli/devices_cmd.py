"""`edgenn devices list|show|validate`."""

from __future__ import annotations

from .catalog_cmd import catalog_group


def _catalog():
    from ..devices import CATALOG

    return CATALOG


def _row(name, d) -> dict:
    return {"name": name, "arch": d.arch.value, "cores": d.cores, "memory_mb": d.memory_mb,
            "runtime": d.runtime.value, "accelerator": d.accelerator.value,
            "transport": d.transport.type.value, "description": d.description}


devices_group = catalog_group("devices", "List, show and validate device profiles.", _catalog,
                              ["name", "arch", "cores", "memory_mb", "runtime", "accelerator",
                               "transport"], _row)
