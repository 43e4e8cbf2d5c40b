"""Locate the built-in data folders (recipes, devices) in a wheel or in a source checkout."""

from __future__ import annotations

from pathlib import Path


def builtin_dir(name: str) -> Path:
    """The folder ``name`` packed into the wheel, else the checkout's top-level one."""
    package = Path(__file__).resolve().parent
    packed = package / "_builtin" / name
    if packed.is_dir():
        return packed
    return package.parent / name
