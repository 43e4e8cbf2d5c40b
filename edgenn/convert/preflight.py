"""What a target's static check of a .tflite file finds: which ops it runs, where mapping stops.

The per-target rules live in ``cpu.py``, ``gpu.py`` and ``edgetpu.py``, each returning a
``Preflight``; ``targets.preflight`` picks one. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class OpCheck:
    """One op of the graph against the target's rules."""

    index: int
    op: str
    layer: str
    maps: bool
    problem: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class FirstUnsupported:
    """Where an in-order mapper (the Edge TPU compiler) stops."""

    index: int
    op: str
    layer: str
    problem: str
    runs_on_cpu: int


@dataclass(frozen=True)
class ParameterMemory:
    """The Edge TPU keeps parameters in about 8 MB of on-chip memory; beyond it they stream."""

    parameter_bytes: int
    on_chip_bytes: int
    fits: bool
    note: str


@dataclass(frozen=True)
class Preflight:
    """The result of a target's pre-flight on one .tflite file."""

    target: str
    model: str
    ops: int
    mapped: int
    whole_graph_maps: bool
    problems: tuple[OpCheck, ...]
    per_op: tuple[OpCheck, ...]
    first_unsupported: FirstUnsupported | None = None
    flex_ops: tuple[str, ...] = ()
    custom_ops: tuple[str, ...] = ()
    parameter_memory: ParameterMemory | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    exit_code = 0
    failure = None

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("problems", "per_op", "flex_ops", "custom_ops", "notes"):
            out[key] = list(out[key])
        return out

    def summary(self) -> str:
        """One line: how much of the graph the target runs."""
        whole = " (the whole graph)" if self.whole_graph_maps else ""
        return f"{self.mapped}/{self.ops} ops run on {self.target}{whole}"

    def to_markdown(self) -> str:
        lines = [f"### Pre-flight for {self.target}", "", self.summary()]
        if self.first_unsupported:
            f = self.first_unsupported
            lines.append(f"; mapping stops at op {f.index} {f.op} (layer `{f.layer}`): {f.problem}")
        for p in self.problems:
            lines.append(f"- op {p.index} {p.op} (layer `{p.layer}`): {p.problem}")
        if self.parameter_memory:
            lines.append(f"- {self.parameter_memory.note}")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
