"""YAML files validated against frozen pydantic schemas, with errors that give key path and line."""

from __future__ import annotations

import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class Strict(BaseModel):
    """A frozen schema node; an unknown key is an error (see ``format_errors`` for the message)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    @classmethod
    def valid_keys(cls) -> list[str]:
        return sorted((f.alias or name) for name, f in cls.model_fields.items())


def enum_values(enum: type[Enum]) -> str:
    """The allowed values of a str enum, for error messages."""
    return ", ".join(str(m.value) for m in enum)


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _line_map(item, path + (i,), out)
    return out


def read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file safely; return the data and a key-path -> line map."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if node is None:
        raise ConfigError(f"{path} is empty", "write a YAML mapping (see recipes/README.md)")
    return data, _line_map(node)


def format_errors(
    err: ValidationError, lines: dict[tuple, int], source: str, root: type[BaseModel]
) -> list[str]:
    """One line per schema error: ``file:line: key.path: message``."""
    messages = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not _is_union_tag(p))
        # The closest ancestor that exists in the file gives the line.
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            parent = _schema_at(root, loc[:-1])
            valid = f"; valid keys: {', '.join(parent.valid_keys())}" if parent else ""
            msg = f"unknown key {loc[-1]!r}{valid}"
        scalar = e.get("input")
        if e["type"] != "extra_forbidden" and isinstance(scalar, (str, int, float, bool)):
            msg = f"{msg}; received {scalar!r}"
        where = f"{source}:{line}" if line else source
        messages.append(f"{where}: {key}: {msg}")
    return messages


def _schema_at(model: type[BaseModel], loc: tuple) -> type[Strict] | None:
    """The schema class that validates the mapping at ``loc`` (list indices are stepped over)."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, Strict) else None


def _unwrap(annotation: object) -> object:
    # Optional[X], list[X], X | None -> X
    while typing.get_args(annotation):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0]
    return annotation


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator value or the member type in the path of union errors.
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def load_model_file(cls: type[T], path: Path, kind: str) -> T:
    """Read ``path`` as YAML and validate it as ``cls``; every error is reported, with lines."""
    data, lines = read_yaml(path)
    return validate(cls, data, lines, str(path), kind)


def validate(cls: type[T], data: Any, lines: dict[tuple, int], source: str, kind: str) -> T:
    """Validate parsed data; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a {kind} must be a YAML mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        problems = format_errors(err, lines, source, cls)
        error = ConfigError(
            f"invalid {kind} ({len(problems)} problem{'s' * (len(problems) != 1)}): "
            + "; ".join(problems)
        )
        error.problems = problems
        raise error from None
