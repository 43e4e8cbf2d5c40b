"""`edgenn report`: several runs' results on one page (HTML, self-contained; or Markdown).

Reads the folders edgenn writes: `compress` (report.json and its .tflite/.onnx), `fit`
(front.json: its front points and the shipped recipes it compared) and `federated simulate`
(history.json: the accuracy curve and global.tflite). For every artifact it adds the device
estimates (`edgenn estimate`, no TensorFlow) and, unless asked not to, a latency measured here by
the profiling agent. The HTML page has no scripts and no external resources: tables, inline SVG
charts, and each run's details, so it opens from a file anywhere.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UsageError


@dataclass
class Row:
    """One model file from one run."""

    run: str
    kind: str
    label: str
    path: str | None
    accuracy: float | None = None
    baseline: float | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    estimates: dict = field(default_factory=dict)  # device -> {"latency_ms", "ram_mb"}
    host_p50_ms: float | None = None
    notes: list = field(default_factory=list)

    @property
    def drop_pt(self) -> float | None:
        if self.accuracy is None or self.baseline is None:
            return None
        return round((self.baseline - self.accuracy) * 100, 3)


@dataclass
class Overview:
    rows: list[Row]
    curves: dict  # run -> [(round, accuracy)]
    details: dict  # run -> dict of facts
    devices: list[str]
    exit_code = 0
    failure = None

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) | {"drop_pt": r.drop_pt} for r in self.rows],
                "curves": self.curves, "devices": self.devices, "details": self.details}


def _local(run: Path, recorded: str | None) -> Path | None:
    """A file a report names, found in the run folder (the folder may have moved since)."""
    if not recorded:
        return None
    here = run / Path(recorded).name
    if here.is_file():
        return here
    return Path(recorded) if Path(recorded).is_file() else None


def read_run(folder: Path) -> tuple[list[Row], list | None, dict]:
    """The rows, the federated curve (or None) and the details of one run folder."""
    if not folder.is_dir() and not (folder.is_file() and folder.suffix.lower() in (".tflite",
                                                                                  ".onnx")):
        raise UsageError(f"{folder} is not a folder or a .tflite/.onnx file",
                         "pass the output folders of compress, fit or federated simulate, or "
                         "model files")
    name = folder.name
    if folder.is_file() and folder.suffix.lower() in (".tflite", ".onnx"):
        return ([Row(name, "file", name, str(folder), bytes=folder.stat().st_size)], None,
                {"file": str(folder)})
    if (folder / "report.json").is_file():
        doc = _read_json(folder / "report.json")
        rows = []
        base = (doc.get("metrics") or {}).get("baseline", {}).get("accuracy")
        for a in doc.get("artifacts", []):
            if a.get("format") not in ("tflite", "onnx"):
                continue
            path = _local(folder, a.get("path"))
            rows.append(Row(name, "compress", (doc.get("recipe") or {}).get("name", name),
                            str(path) if path else None,
                            (a.get("metrics") or {}).get("accuracy"), base, a.get("bytes"),
                            a.get("gzip_bytes")))
        details = {"command": "compress", "recipe": (doc.get("recipe") or {}).get("name"),
                   "model": (doc.get("model") or {}).get("path"),
                   "data": (doc.get("data") or {}).get("source"),
                   "steps": [s.get("name") for s in doc.get("steps", [])],
                   "constraints": [f"{c['name']}: {c['value']} (limit {c['limit']}) "
                                   f"{'met' if c['ok'] else 'NOT met'}"
                                   for c in doc.get("constraints", [])],
                   "notes": doc.get("notes", []), "seconds": doc.get("seconds")}
        return rows, None, details
    if (folder / "front.json").is_file():
        doc = _read_json(folder / "front.json")
        trials = {t["number"]: t for t in doc.get("trials", []) if t.get("kind") == "search"}
        base = (doc.get("test") or {}).get("reference", {}).get("accuracy")
        rows = []
        for number in doc.get("front", []):
            t = trials.get(number, {})
            test = (doc.get("test") or {}).get(str(number), {}).get("accuracy")
            path = folder / "best.tflite" if number == doc.get("best") else None
            rows.append(Row(name, "fit", f"#{number} {t.get('label', '')}"
                            + (" (best)" if number == doc.get("best") else ""),
                            str(path) if path and path.is_file() else None, test, base,
                            t.get("bytes"), t.get("gzip_bytes"),
                            {doc["settings"]["device"]: {"latency_ms": t.get("latency_ms"),
                                                         "ram_mb": t.get("ram_mb")}}
                            if "settings" in doc else {}))
        details = {"command": "fit", "device": (doc.get("settings") or {}).get("device"),
                   "trials": len(trials), "front": len(doc.get("front", [])),
                   "best": doc.get("best")}
        return rows, None, details
    if (folder / "history.json").is_file():
        doc = _read_json(folder / "history.json")
        rounds = doc.get("rounds", [])
        curve = [(r["round"], r["accuracy"]) for r in rounds]
        tflite = folder / "global.tflite"
        model = (doc.get("config") or {}).get("model", "")
        row = Row(name, "federated", f"federated global model ({model})".replace(" ()", ""),
                  str(tflite) if tflite.is_file() else None,
                  rounds[-1]["accuracy"] if rounds else None, None,
                  tflite.stat().st_size if tflite.is_file() else None)
        ref = doc.get("centralized_reference") or {}
        details = {"command": "federated simulate", "rounds": len(rounds),
                   "strategy": (doc.get("server") or {}).get("strategy"),
                   "centralized_reference": ref.get("accuracy"), "seconds": doc.get("seconds")}
        return [row], curve, details
    raise UsageError(f"{folder} holds no edgenn results (report.json, front.json or "
                     "history.json)", "pass the output folders of compress, fit or federated "
                                      "simulate")


_MAX_JSON_BYTES = 64 * 2**20  # edgenn's own results are kilobytes


def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise UsageError(f"{path} is {path.stat().st_size / 2**20:,.0f} MB, not an edgenn "
                             "result", "pass a folder an edgenn command wrote")
        doc = json.loads(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError, RecursionError) as err:
        raise UsageError(f"{path} is not readable JSON ({type(err).__name__})",
                         "pass a folder an edgenn command wrote") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path} is not an edgenn result", "pass a folder an edgenn command wrote")
    return doc


def build(folders: list[Path], devices: list[str], measure: bool, log=lambda m: None) -> Overview:
    from . import devices as dv
    from .profile.estimate import estimate

    profiles = [dv.load(d) for d in devices]  # unknown names fail before any work
    rows, curves, details = [], {}, {}
    for folder in folders:
        try:
            r, curve, facts = read_run(Path(folder))
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as err:
            raise UsageError(f"{folder} holds a result edgenn cannot read ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:80]})", "pass a folder an edgenn "
                             "command wrote, as it wrote it") from None
        rows += r
        details[Path(folder).name] = facts
        if curve:
            curves[Path(folder).name] = curve
    for row in rows:
        if row.path and row.gzip_bytes is None:
            import gzip

            row.gzip_bytes = len(gzip.compress(Path(row.path).read_bytes(), 9))
        if not row.path or not row.path.endswith(".tflite"):
            continue
        for device in profiles:
            if device.name in row.estimates:
                continue
            try:
                e = estimate(row.path, device)
                row.estimates[device.name] = {"latency_ms": e.latency_ms, "ram_mb": e.ram_mb}
            except UsageError as err:
                row.notes.append(f"{device.name}: {err.one_line()}")
    if measure:
        from .profile.run import profile_models

        paths = [Path(r.path) for r in rows if r.path]
        if paths:
            log(f"measuring {len(paths)} model(s) here ...")
            report = profile_models(paths, runs=50, warmup=5, threads=1)
            by_path = {str(Path(run.model)): run for run in report.runs}
            for row in rows:
                run = by_path.get(str(Path(row.path))) if row.path else None
                if run is not None and run.ok:
                    row.host_p50_ms = round(run.measurement.latency_ms.p50, 4)
                elif run is not None:
                    row.notes.append(f"not measured: {run.error}")
    return Overview(rows, curves, details, devices)


# --- Markdown ------------------------------------------------------------------------------

def _num(value, fmt="{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def markdown(ov: Overview) -> str:
    head = ["run", "model", "accuracy", "drop (pt)", "bytes", "gzip"] \
        + [f"{d} ms (est.)" for d in ov.devices] + ["here p50 ms"]
    lines = ["# edgenn report", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ov.rows:
        cells = [r.run, r.label, _num(r.accuracy, "{:.4f}"), _num(r.drop_pt, "{:.2f}"),
                 _num(r.bytes), _num(r.gzip_bytes)]
        cells += [_num(r.estimates.get(d, {}).get("latency_ms"), "{:.4g}") for d in ov.devices]
        cells.append(_num(r.host_p50_ms, "{:.4g}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2330;background:#fff;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
.scroll{overflow-x:auto}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6ec;text-align:right;white-space:nowrap}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
th{background:#f4f6fa}tr.best td{font-weight:600}
.muted{color:#6b7385;font-size:.85rem}
details{margin:.4rem 0;border:1px solid #e3e6ec;border-radius:6px;padding:.4rem .8rem}
summary{cursor:pointer;font-weight:600}
svg text{font-size:11px;fill:#1d2330}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _scatter(rows: list[Row], x_of, x_label: str) -> str:
    points = [(x_of(r), r.accuracy * 100, r.gzip_bytes or r.bytes or 1, r)
              for r in rows if x_of(r) is not None and r.accuracy is not None]
    if not points:
        return "<p class='muted'>No model has both an accuracy and a latency to plot.</p>"
    w, h, pad = 760, 420, 60
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = 0.0, max(xs) * 1.1 or 1.0
    y0, y1 = math.floor(min(ys) - 1), math.ceil(max(ys) + 1)
    biggest = max(p[2] for p in points)

    def sx(v):
        return pad + (v - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(v):
        return h - pad - (v - y0) / ((y1 - y0) or 1) * (h - 2 * pad)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
             f"viewBox='0 0 {w} {h}' role='img' aria-label='accuracy against latency'>",
             f"<rect x='0' y='0' width='{w}' height='{h}' fill='#fbfcfe'/>",
             f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#444'/>",
             f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#444'/>"]
    for i in range(6):
        xv = x0 + (x1 - x0) * i / 5
        yv = y0 + (y1 - y0) * i / 5
        parts.append(f"<text x='{sx(xv):.1f}' y='{h - pad + 16}' text-anchor='middle'>{xv:.3g}</text>")
        parts.append(f"<text x='{pad - 8}' y='{sy(yv) + 4:.1f}' text-anchor='end'>{yv:.1f}</text>")
        parts.append(f"<line x1='{pad}' y1='{sy(yv):.1f}' x2='{w - pad}' y2='{sy(yv):.1f}' "
                     "stroke='#e3e6ec'/>")
    parts.append(f"<text x='{w / 2}' y='{h - 14}' text-anchor='middle'>{_e(x_label)}</text>")
    parts.append(f"<text x='16' y='{h / 2}' transform='rotate(-90 16 {h / 2})' "
                 "text-anchor='middle'>accuracy (%)</text>")
    palette = ["#2f6fdf", "#e0662f", "#2a9d5c", "#9b51e0", "#d4a017", "#c2185b", "#00838f"]
    runs = sorted({p[3].run for p in points})
    for x, y, size, r in points:
        color = palette[runs.index(r.run) % len(palette)]
        radius = 4 + 16 * math.sqrt(size / biggest)
        parts.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='{radius:.1f}' fill='{color}' "
                     f"fill-opacity='0.55' stroke='{color}'><title>{_e(r.run)}: {_e(r.label)}"
                     f"</title></circle>")
        parts.append(f"<text x='{sx(x) + radius + 3:.1f}' y='{sy(y) + 4:.1f}'>{_e(r.run)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _curves(curves: dict) -> str:
    if not curves:
        return ""
    w, h, pad = 760, 320, 56
    rounds = max(max(r for r, _ in c) for c in curves.values()) or 1
    accs = [a for c in curves.values() for _, a in c]
    y0, y1 = math.floor(min(accs) * 100 - 1), math.ceil(max(accs) * 100 + 1)

    def sx(v):
        return pad + v / rounds * (w - 2 * pad)

    def sy(v):
        return h - pad - (v * 100 - y0) / ((y1 - y0) or 1) * (h - 2 * pad)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
             f"viewBox='0 0 {w} {h}' role='img' aria-label='federated accuracy per round'>",
             f"<rect x='0' y='0' width='{w}' height='{h}' fill='#fbfcfe'/>",
             f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#444'/>",
             f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#444'/>",
             f"<text x='{w / 2}' y='{h - 12}' text-anchor='middle'>round</text>",
             f"<text x='{pad - 8}' y='{sy(y0 / 100) + 4:.1f}' text-anchor='end'>{y0}%</text>",
             f"<text x='{pad - 8}' y='{sy(y1 / 100) + 4:.1f}' text-anchor='end'>{y1}%</text>"]
    palette = ["#2f6fdf", "#e0662f", "#2a9d5c", "#9b51e0"]
    for i, (run, curve) in enumerate(sorted(curves.items())):
        pts = " ".join(f"{sx(r):.1f},{sy(a):.1f}" for r, a in curve)
        color = palette[i % len(palette)]
        parts.append(f"<polyline points='{pts}' fill='none' stroke='{color}' stroke-width='2'/>")
        parts.append(f"<text x='{w - pad}' y='{pad + 14 * i}' text-anchor='end' fill='{color}'>"
                     f"{_e(run)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def to_html(ov: Overview) -> str:
    devices = ov.devices
    head = ["run", "model", "accuracy", "drop", "size", "gzip"] \
        + [f"{_e(d)}<br>ms (estimate)" for d in devices] + [f"{_e(devices[0])}<br>RAM MB"
                                                               if devices else "RAM"] \
        + ["here<br>p50 ms"]
    body = []
    for r in ov.rows:
        first = r.estimates.get(devices[0], {}) if devices else {}
        cells = [_e(r.run), _e(r.label),
                 "-" if r.accuracy is None else f"{r.accuracy * 100:.2f}%",
                 "-" if r.drop_pt is None else f"{r.drop_pt:+.2f} pt",
                 "-" if r.bytes is None else f"{r.bytes / 1024:,.1f} KB",
                 "-" if r.gzip_bytes is None else f"{r.gzip_bytes / 1024:,.1f} KB"]
        cells += ["-" if r.estimates.get(d, {}).get("latency_ms") is None
                  else f"{r.estimates[d]['latency_ms']:.4g}" for d in devices]
        cells.append("-" if first.get("ram_mb") is None else f"{first['ram_mb']:.2f}")
        cells.append("-" if r.host_p50_ms is None else f"{r.host_p50_ms:.4g}")
        klass = " class='best'" if "(best)" in r.label else ""
        body.append(f"<tr{klass}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    x_label, x_of = "latency measured here, p50 (ms)", (lambda r: r.host_p50_ms)
    if not any(r.host_p50_ms for r in ov.rows) and devices:
        x_label = f"latency on {devices[0]} (estimate, ms)"

        def x_of(r):
            return r.estimates.get(devices[0], {}).get("latency_ms")

    details = []
    for run, facts in ov.details.items():
        items = "".join(f"<tr><td>{_e(k)}</td><td style='text-align:left'>"
                        f"{_e(', '.join(map(str, v)) if isinstance(v, list) else v)}</td></tr>"
                        for k, v in facts.items() if v not in (None, [], ""))
        notes = [n for r in ov.rows if r.run == run for n in r.notes]
        items += "".join(f"<tr><td>note</td><td style='text-align:left'>{_e(n)}</td></tr>"
                         for n in notes)
        details.append(f"<details><summary>{_e(run)}</summary><table>{items}</table></details>")
    curves = _curves(ov.curves)
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>edgenn report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>edgenn report</h1>",
        f"<p class='muted'>{len(ov.rows)} model file(s) from {len(ov.details)} run(s). Accuracy "
        "is each run's own (compress: the exported file on LiteRT/ONNX Runtime; fit: the test "
        "split of its front points; federated: the global model's last round). Device columns are "
        "estimates (MACs over the device profile's throughput), not measurements.</p>",
        "<h2>Comparison</h2>",
        "<div class='scroll'><table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>",
        "<h2>Accuracy against latency</h2>",
        "<p class='muted'>Marker area: gzip size. Hover a point for its run.</p>",
        _scatter(ov.rows, x_of, x_label),
        *(["<h2>Federated training</h2>", curves] if curves else []),
        "<h2>Runs</h2>", *details,
        "</body></html>", ""])
