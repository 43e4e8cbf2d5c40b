"""The result of a compress run: renders itself as JSON or Markdown and decides the exit code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Constraint:
    name: str
    limit: float
    value: float | None
    ok: bool
    unit: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StepRecord:
    """What one recipe step did and what the model measured after it (Keras)."""

    name: str
    index: int
    metrics: dict
    details: dict
    notes: tuple[str, ...]
    seconds: float
    params: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class KerasFile:
    """The compressed model in Keras form, as the run saved it."""

    path: str
    bytes: int
    gzip_bytes: int
    sha256: str
    format: str = "keras"
    metrics: dict | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Report:
    """What each stage of a compress run did and measured."""

    command: str
    model: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    artifacts: list = field(default_factory=list)  # KerasFile and convert.export.Artifact
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

    @property
    def failure(self) -> str | None:
        failed = [c for c in self.constraints if not c.ok]
        if not failed:
            return None
        return ("recipe constraint not met: " + "; ".join(
            f"{c.name} {c.value:g}{c.unit} > {c.limit:g}{c.unit}" for c in failed)
            + ": relax the constraint or change the recipe (report.md has the figures)")

    @property
    def exported(self) -> list:
        """The exported artifacts (TFLite and ONNX), in recipe order."""
        return [a for a in self.artifacts if a.format in ("tflite", "onnx")]

    def artifact_dict(self, artifact) -> dict:
        out = artifact.to_dict()
        ref = self.reference
        if artifact.format == "tflite" and ref:
            out["x_smaller_than_float32"] = round(ref["float32_tflite_bytes"] / artifact.bytes, 3)
            out["gzip_x_smaller_than_float32"] = round(
                ref["float32_tflite_gzip_bytes"] / artifact.gzip_bytes, 3)
        return out

    def to_dict(self) -> dict:
        return {"command": self.command, "model": self.model, "recipe": self.recipe,
                "data": self.data, "steps": [s.to_dict() for s in self.steps],
                "artifacts": [self.artifact_dict(a) for a in self.artifacts],
                "metrics": self.metrics, "reference": self.reference,
                "constraints": [c.to_dict() for c in self.constraints], "notes": self.notes,
                "versions": self.versions, "seconds": self.seconds, "exit_code": self.exit_code}

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
                  f"| input model (Keras) | {stage_value(base, metric)} |"]
        for step in self.steps:
            lines.append(f"| after {step.name} (Keras) | {stage_value(step.metrics, metric)} |")
        for art in self.exported:
            if art.metrics:
                runtime = "LiteRT" if art.format == "tflite" else "ONNX Runtime"
                lines.append(f"| {art.path.split('/')[-1]} ({runtime}) | "
                             f"{stage_value(art.metrics, metric)} |")
        if "outputs" in base:
            lines += ["", "Per output (test split):", "", "| output | metric | input model | "
                      + " | ".join(a.path.split("/")[-1] for a in self.exported if a.metrics)
                      + " |", "|---|---|---|" + "---|" * sum(1 for a in self.exported if a.metrics)]
            for out_name, m in base["outputs"].items():
                key = "accuracy" if "accuracy" in m else "mse"
                cells = [_fmt(a.metrics["outputs"][out_name].get(key))
                         for a in self.exported if a.metrics]
                lines.append(f"| {out_name} | {key} | {_fmt(m.get(key))} | " + " | ".join(cells)
                             + " |")
        elif final and metric == "accuracy" and base:
            lines += ["", f"Accuracy change: {(final['accuracy'] - base['accuracy']) * 100:+.2f} pt"]
            paired = final.get("vs_input")
            if paired:
                lines.append(f"Answers changed against the input model: {paired['lost']:.2%} "
                             f"right -> wrong, {paired['gained']:.2%} wrong -> right (standard "
                             f"error of the change {paired['drop_se_pt']:.2f} pt)")
            worst = self.metrics.get("worst_class")
            if worst:
                lines.append(f"Worst class: {worst['class']} ({-worst['drop_pt']:+.2f} pt)")
        lines += ["", "## Artifacts", "", "| file | format | target | bytes | gzip bytes | sha256 |",
                  "|---|---|---|---|---|---|"]
        for art in self.artifacts:
            target = getattr(getattr(art, "spec", None), "target", None)
            lines.append(f"| {art.path.split('/')[-1]} | {art.format} | "
                         f"{target.value if target else '-'} | {art.bytes:,} | "
                         f"{art.gzip_bytes:,} | `{art.sha256[:12]}` |")
        if self.reference:
            lines += ["", f"Reference float32 .tflite of the input model: "
                          f"{self.reference['float32_tflite_bytes']:,} bytes "
                          f"({self.reference['float32_tflite_gzip_bytes']:,} gzipped)."]
        for art in self.exported:
            if getattr(art, "preflight", None) is not None:
                lines += ["", art.preflight.to_markdown().rstrip()]
            if getattr(art, "compiler", None) is not None:
                lines += ["", f"- {art.compiler.summary()}"]
        if self.steps:
            lines += ["", "## Steps", ""]
            for step in self.steps:
                lines.append(f"### {step.name} ({step.seconds:.1f} s)")
                for key, value in step.details.items():
                    lines.append(f"- {key}: {_fmt_detail(value)}")
                for note in step.notes:
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


def stage_value(metrics: dict | None, metric: str) -> str:
    """A stage's figure: the metric, or each output's own.

    A model with several outputs, or several inputs and one output, is scored per output
    ("after prune: nan" before).
    """
    metrics = metrics or {}
    if metrics.get(metric) is not None or "outputs" not in metrics:
        return _fmt(metrics.get(metric))
    return "; ".join(f"{name} {key} {_fmt(m[key])}" for name, m in metrics["outputs"].items()
                     for key in ("accuracy", "mse") if key in m)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _fmt_detail(value) -> str:
    """A step detail for people: long lists of layer names are counted, not dumped."""
    if isinstance(value, list) and len(value) > 6:
        shown = ", ".join(str(v) for v in value[:5])
        return f"{len(value)} ({shown}, ...)"
    if isinstance(value, dict) and len(value) > 6:
        items = list(value.items())
        shown = ", ".join(f"{k}: {_fmt(v)}" for k, v in items[:5])
        return f"{len(value)} entries ({shown}, ...)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)
