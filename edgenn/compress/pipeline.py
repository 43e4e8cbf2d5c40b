"""`edgenn compress`: load -> steps -> export -> evaluate on LiteRT -> report, atomically."""

from __future__ import annotations

import gzip
import time
from dataclasses import replace
from pathlib import Path

from .. import __version__
from ..artifacts import refuse_overwrite, sha256
from ..errors import UsageError
from ..evaluate import keras_predict, metrics, tflite_predict, worst_class_drop
from ..outdir import OutputDir
from ..recipe import Metric, Recipe, Split
from ..report import Constraint, Report
from .registry import StepContext, get
from .train import check_augment


def gzip_size(data: bytes) -> int:
    """Bytes after gzip -9 (mtime fixed, so the figure is reproducible)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _versions() -> dict:
    import importlib.metadata as md

    out = {"edgenn": __version__}
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def run(model_path: str, recipe: Recipe, recipe_path: Path, data_spec, out_dir: str | Path, *,
        seed: int = 0, epochs_scale: float = 1.0, allow_unsafe: bool = False,
        custom_objects_file: str | None = None, progress=None, log=lambda msg: None,
        split_seed: int | None = None, overwrite: bool = False) -> Report:
    """Apply ``recipe`` to the model and write the artifacts and reports into ``out_dir``.

    ``seed`` seeds the train/val split and training; ``split_seed``, when given, seeds the split
    alone (to vary training while keeping the split a model was trained on).

    ``out_dir`` must be new, empty or a finished compress run (else ``overwrite``). Everything is
    written to a locked staging folder beside it and moved into place only when the run
    completes, so a failed, interrupted or killed run leaves nothing, and a second run into the
    same folder is refused while the first is writing.
    """
    outdir = OutputDir(out_dir, "compress", overwrite=overwrite)
    outdir.check()
    try:
        return _run(model_path, recipe, recipe_path, data_spec, outdir, Path(out_dir),
                    seed=seed, epochs_scale=epochs_scale, allow_unsafe=allow_unsafe,
                    custom_objects_file=custom_objects_file, progress=progress, log=log,
                    split_seed=split_seed)
    except BaseException:
        outdir.abort()
        raise


def _run(model_path, recipe, recipe_path, data_spec, outdir: OutputDir, out: Path, *, seed,
         epochs_scale, allow_unsafe, custom_objects_file, progress, log, split_seed) -> Report:
    from ..data import load, match_model
    from ..models.load import load_keras
    from ..models.safety import load_custom_objects

    started = time.perf_counter()
    if data_spec is None:
        raise UsageError("compress needs data to train, calibrate and evaluate on",
                         "pass --data (digits, fashion-mnist, a .npz, an IDX or image folder)")
    name = Path(model_path).stem if Path(model_path).suffix else Path(model_path).name
    planned = [out / f"{name}.keras"] + [out / _artifact_name(name, e, len(recipe.export))
                                         for e in recipe.export]
    for path in planned:
        refuse_overwrite(path, model_path)
    for export in recipe.export:
        if export.format.value == "onnx":
            from ..convert.run import resolve_quantization

            quant = "none" if export.quantization.value == "float32" else export.quantization.value
            resolve_quantization("onnx", export.target.value, quant)  # refuses what ONNX cannot do
    staging = outdir.open()

    log(f"loading {model_path} ...")
    loaded = load_keras(model_path, allow_unsafe=allow_unsafe,
                        custom_objects_file=custom_objects_file)
    model = loaded.tf_keras_model
    task = "regression" if recipe.evaluate.metric in (Metric.mse, Metric.mae) else "classification"
    data_spec = replace(data_spec, seed=seed if split_seed is None else split_seed, task=task,
                        calibration_samples=max(e.calibration_samples for e in recipe.export))
    log(f"loading data {data_spec.source} ...")
    splits = load(data_spec)
    classes = int(model.output_shape[-1]) if task == "classification" else None
    splits = match_model(splits, model.input_shape, classes)
    for step in recipe.steps:  # before any step trains, not in the middle
        check_augment(getattr(step.config, "augment", None), splits.x_train.shape,
                      f"the {step.technique}")
    x_eval, y_eval = ((splits.x_test, splits.y_test) if recipe.evaluate.split is Split.test
                      else (splits.x_val, splits.y_val))
    metric = recipe.evaluate.metric.value

    report = Report(command="compress", versions=_versions())
    report.model = {"path": str(model_path), "sha256": sha256(Path(model_path))
                    if Path(model_path).is_file() else None, "label": loaded.info.label,
                    "params": int(loaded.original.count_params())}
    if loaded.bridge is not None:
        report.model["bridge_max_abs_diff"] = loaded.bridge.max_abs_diff
    report.recipe = {"name": recipe.name, "path": str(recipe_path),
                     "sha256": sha256(recipe_path)}
    report.data = {**splits.summary(), "seed": seed, "split_seed": data_spec.seed,
                   "evaluated_on": recipe.evaluate.split.value}
    baseline = metrics(keras_predict(model, x_eval), y_eval, task)
    report.metrics = {"metric": metric, "baseline": baseline}

    from ..convert.tflite import to_tflite

    reference = to_tflite(model)
    report.reference = {"float32_tflite_bytes": len(reference),
                        "float32_tflite_gzip_bytes": gzip_size(reference)}

    ctx = StepContext(splits=splits, seed=seed, epochs_scale=epochs_scale, task=task,
                      progress=progress, custom_objects=load_custom_objects(custom_objects_file),
                      allow_unsafe=allow_unsafe)
    for index, step in enumerate(recipe.steps):
        log(f"step {index + 1}/{len(recipe.steps)}: {step.technique} ...")
        t0 = time.perf_counter()
        result = get(step.technique)(model, step.config, ctx)
        model = result.model
        ctx.done.append(step.technique)
        report.steps.append({
            "name": step.technique, "index": index,
            "metrics": metrics(keras_predict(model, x_eval), y_eval, task),
            "details": result.details, "notes": result.notes,
            "seconds": round(time.perf_counter() - t0, 2), "params": int(model.count_params()),
        })

    if recipe.steps:
        keras_path = staging / f"{name}.keras"
        model.save(keras_path)
        report.artifacts.append(_artifact(keras_path, out, "keras"))
    for export in recipe.export:
        log(f"exporting {export.format.value} ({export.quantization.value}) ...")
        path = staging / _artifact_name(name, export, len(recipe.export))
        if export.format.value == "onnx":
            report.artifacts.append(_export_onnx(model, export, splits, path, out, x_eval,
                                                 y_eval, task))
            continue
        blob = to_tflite(model, export.quantization, export.io, splits.x_calib,
                         export.calibration_samples)
        path.write_bytes(blob)
        entry = _artifact(path, out, "tflite", blob)
        entry.update({"quantization": export.quantization.value, "io": export.io.value,
                      "target": export.target.value,
                      "x_smaller_than_float32": round(len(reference) / len(blob), 3),
                      "gzip_x_smaller_than_float32": round(
                          report.reference["float32_tflite_gzip_bytes"] / entry["gzip_bytes"], 3)})
        entry["metrics"] = metrics(tflite_predict(blob, x_eval), y_eval, task)
        report.artifacts.append(entry)
    final = report.artifacts[-len(recipe.export)]["metrics"]
    report.metrics["final"] = final
    report.metrics["evaluated_by"] = "LiteRT interpreter (ai-edge-litert) on the .tflite"
    if task == "classification":
        report.metrics["worst_class"] = worst_class_drop(baseline, final)
    report.constraints = _check(recipe, report, task)
    report.seconds = round(time.perf_counter() - started, 2)
    (staging / "report.json").write_text(report.to_json())
    (staging / "report.md").write_text(report.to_markdown())
    outdir.commit()
    return report


def _artifact_name(name: str, export, count: int) -> str:
    ext = export.format.value
    if count == 1:
        return f"{name}.{ext}"
    suffix = export.quantization.value + (f"-{export.io.value}io" if export.io.value != "float32" else "")
    return f"{name}-{suffix}.{ext}"


def _export_onnx(model, export, splits, path: Path, out: Path, x_eval, y_eval, task) -> dict:
    """ONNX export (and ONNX Runtime quantization for the target), evaluated by ONNX Runtime."""
    import onnx

    from ..convert.onnx import add_metadata, quantize, to_onnx
    from ..runtime.onnx_runner import ONNXRunner

    proto = to_onnx(model)
    info = None
    if export.quantization.value in ("int8", "dynamic"):
        proto, info = quantize(proto, export.quantization.value, export.target.value,
                               splits.x_calib, samples=export.calibration_samples)
    add_metadata(proto, {"edgenn.version": __version__, "edgenn.quantization":
                         export.quantization.value, "edgenn.target": export.target.value})
    onnx.save(proto, path)
    entry = _artifact(path, out, "onnx")
    entry.update({"quantization": export.quantization.value, "target": export.target.value,
                  "onnx_quantization": info})
    entry["metrics"] = metrics(ONNXRunner(path).predict(x_eval)[0], y_eval, task)
    return entry


def _artifact(path: Path, out: Path, fmt: str, blob: bytes | None = None) -> dict:
    data = blob if blob is not None else path.read_bytes()
    return {"path": str(out / path.name), "format": fmt, "bytes": len(data),
            "gzip_bytes": gzip_size(data), "sha256": sha256(path)}


def _check(recipe: Recipe, report: Report, task: str) -> list[Constraint]:
    c = recipe.constraints
    exported = [a for a in report.artifacts if a["format"] in ("tflite", "onnx")]
    checks = []
    if c.max_bytes is not None:
        value = max(a["bytes"] for a in exported)
        checks.append(Constraint("max_bytes", c.max_bytes, value, value <= c.max_bytes, " B"))
    if c.max_gzip_bytes is not None:
        value = max(a["gzip_bytes"] for a in exported)
        checks.append(Constraint("max_gzip_bytes", c.max_gzip_bytes, value,
                                 value <= c.max_gzip_bytes, " B"))
    if c.max_accuracy_drop is not None and task == "classification":
        drop = round((report.metrics["baseline"]["accuracy"]
                      - report.metrics["final"]["accuracy"]) * 100, 3)
        checks.append(Constraint("max_accuracy_drop", c.max_accuracy_drop, drop,
                                 drop <= c.max_accuracy_drop, " pt"))
    if c.max_latency_ms is not None:
        report.notes.append("max_latency_ms is checked by `edgenn profile`, not by compress")
    return checks

