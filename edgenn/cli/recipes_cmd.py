"""`edgenn recipes list|show|validate`."""

from __future__ import annotations

from .catalog_cmd import catalog_group


def _catalog():
    from ..recipe import CATALOG

    return CATALOG


def _row(name, r) -> dict:
    return {"name": name, "steps": " > ".join(s.technique for s in r.steps) or "-",
            "export": ", ".join(f"{e.format.value}:{e.quantization.value}" for e in r.export),
            "description": r.description}


recipes_group = catalog_group("recipes", "List, show and validate compression recipes.", _catalog,
                              ["name", "steps", "export", "description"], _row)
