"""YAML files validated against frozen pydantic schemas, with errors that give key path and line."""

from __future__ import annotations

import typing
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


# Bounds on a config file: recipes and device profiles are a few KB with a few hundred nodes.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # counted with every alias expanded, as a consumer would walk them
MAX_YAML_DEPTH = 64


def read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file safely and within bounds; return the data and a key-path -> line map.

    Aliases are expanded only in the count: a file whose aliases would expand past
    ``MAX_YAML_NODES`` nodes ("billion laughs") or nest past ``MAX_YAML_DEPTH`` is refused
    before any of it is built, and so is a recursive alias.
    """
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path} is {size:,} bytes; edgenn reads config files up to "
                              f"{MAX_YAML_BYTES:,} bytes", "a recipe or profile is a few KB")
        with path.open("rb") as fh:
            text = fh.read(MAX_YAML_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a YAML file", "pass the YAML file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    _check_flow_depth(text, path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML nests too deeply to read",
                          f"a config nests at most {MAX_YAML_DEPTH} levels") from None
    if node is None:
        raise ConfigError(f"{path} is empty", "write a YAML mapping (see recipes/README.md)")
    _check_expansion(node, path)
    try:
        data = yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {getattr(err, 'problem', None) or err}") from None
    return data, _line_map(node)


def _check_flow_depth(text: str, path: Path) -> None:
    """Refuse deeply nested brackets before the (recursive) YAML composer meets them."""
    depth = 0
    quote = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{path}: the YAML nests deeper than {MAX_YAML_DEPTH} levels",
                                  "a recipe or profile is only a few levels deep")
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            quote = None


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Count nodes and depth with aliases expanded, in time linear in the file."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            open_nodes.discard(key)
            if size[key] > MAX_YAML_NODES:
                raise ConfigError(f"{path}: its aliases expand to more than {MAX_YAML_NODES:,} "
                                  "values (a YAML alias bomb?)", "write the values out instead")
            if depth[key] > MAX_YAML_DEPTH:
                raise ConfigError(f"{path}: the YAML nests deeper than {MAX_YAML_DEPTH} levels",
                                  "a recipe or profile is only a few levels deep")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise ConfigError(f"{path}: a YAML alias refers to itself", "remove the recursive alias")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
