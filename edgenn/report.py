"""The result of a pipeline run: renders itself as JSON or Markdown and decides the exit code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Constraint:
    name: str
    limit: float
    value: float | None
    ok: bool
    unit: str = ""


@dataclass
class Report:
    """What each stage did and measured."""

    command: str
    model: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    artifacts: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """4 when a constraint is not met, else 0."""
        return 4 if any(not c.ok for c in self.constraints) else 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["exit_code"] = self.exit_code
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_markdown(self) -> str:
        lines = [f"# edgenn {self.command}: {self.recipe.get('name', '')}", ""]
        if self.model:
            lines.append(f"- model: `{self.model.get('path')}` ({self.model.get('label', '')}, "
                         f"{self.model.get('params', '?'):,} params)")
        if self.data:
            lines.append(f"- data: {self.data.get('source')} (train {self.data.get('train')}, "
                         f"test {self.data.get('test')}, seed {self.data.get('seed')})")
        lines.append("")
        metric = self.metrics.get("metric", "accuracy")
        base = self.metrics.get("baseline", {})
        final = self.metrics.get("final", {})
        lines += ["## Metrics", "", f"| stage | {metric} |", "|---|---|",
                  f"| input model (Keras) | {_fmt(base.get(metric))} |"]
        for step in self.steps:
            lines.append(f"| after {step['name']} (Keras) | {_fmt(step['metrics'].get(metric))} |")
        for art in self.artifacts:
            if art.get("metrics"):
                lines.append(f"| {art['path'].split('/')[-1]} (LiteRT) | "
                             f"{_fmt(art['metrics'].get(metric))} |")
        if final and metric == "accuracy" and base:
            lines += ["", f"Accuracy change: {(final['accuracy'] - base['accuracy']) * 100:+.2f} pt"]
            worst = self.metrics.get("worst_class")
            if worst:
                lines.append(f"Worst class: {worst['class']} ({-worst['drop_pt']:+.2f} pt)")
        lines += ["", "## Artifacts", "", "| file | format | bytes | gzip bytes | sha256 |",
                  "|---|---|---|---|---|"]
        for art in self.artifacts:
            lines.append(f"| {art['path'].split('/')[-1]} | {art['format']} | {art['bytes']:,} | "
                         f"{art.get('gzip_bytes', 0):,} | `{art['sha256'][:12]}` |")
        if self.reference:
            lines += ["", f"Reference float32 .tflite of the input model: "
                          f"{self.reference['float32_tflite_bytes']:,} bytes "
                          f"({self.reference['float32_tflite_gzip_bytes']:,} gzipped)."]
        if self.steps:
            lines += ["", "## Steps", ""]
            for step in self.steps:
                lines.append(f"### {step['name']} ({step['seconds']:.1f} s)")
                for key, value in step.get("details", {}).items():
                    lines.append(f"- {key}: {value}")
                for note in step.get("notes", []):
                    lines.append(f"- note: {note}")
                lines.append("")
        if self.constraints:
            lines += ["## Constraints", "", "| constraint | limit | value | met |", "|---|---|---|---|"]
            for c in self.constraints:
                lines.append(f"| {c.name} | {c.limit:g}{c.unit} | {_fmt(c.value)}{c.unit} | "
                             f"{'yes' if c.ok else '**no**'} |")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        lines += ["", f"_{self.seconds:.1f} s; {', '.join(f'{k} {v}' for k, v in self.versions.items())}_"]
        return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
