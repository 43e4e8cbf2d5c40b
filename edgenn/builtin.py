"""Built-in YAML catalogues (recipes, devices): found in the wheel or in a source checkout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


def builtin_dir(name: str) -> Path:
    """The folder ``name`` packed into the wheel, else the checkout's top-level one."""
    package = Path(__file__).resolve().parent
    packed = package / "_builtin" / name
    if packed.is_dir():
        return packed
    return package.parent / name


@dataclass(frozen=True)
class Catalog:
    """Named YAML files of one kind, loadable by built-in name or by path."""

    folder: str  # "recipes" or "devices"
    kind: str  # "recipe" or "device profile", for messages
    schema: type

    def builtin(self) -> dict[str, Path]:
        """Built-in names and their files."""
        return {p.stem: p for p in sorted(builtin_dir(self.folder).glob("*.yaml"))}

    def resolve(self, name_or_path: str) -> Path:
        """A file from a built-in name or a path."""
        path = Path(name_or_path)
        if path.suffix in (".yaml", ".yml") or path.exists():
            if not path.is_file():
                raise ConfigError(f"{self.kind} file not found: {name_or_path}")
            return path
        known = self.builtin()
        if name_or_path in known:
            return known[name_or_path]
        word = self.kind.split()[0]
        raise ConfigError(
            f"unknown {word} {name_or_path!r}",
            f"use a path to a YAML file or one of: {', '.join(known)} (edgenn {self.folder} list)",
        )

    def load(self, name_or_path: str):
        """Load and validate by built-in name or path."""
        from .yamlio import load_model_file

        return load_model_file(self.schema, self.resolve(name_or_path), self.kind)
