"""`edgenn convert` and `edgenn check`: the exporter, then the proof that the artifact agrees.

``convert`` loads a model, exports it through ``export.export`` and runs the artifact (LiteRT or
ONNX Runtime) against the Keras model; ``check`` exports in memory and reports the target's
pre-flight alone. Both return typed results whose ``exit_code`` the CLI obeys.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import refuse_overwrite, sha256
from ..errors import RuntimeFailure, UsageError
from ..fidelity import Fidelity, Task, detect_task, detect_tasks, judge, output_names
from ..recipe import ExportFormat
from .export import EXECUTION_PROVIDERS, Artifact, ExportSpec, export


@dataclass(frozen=True)
class TrainableExport:
    """The on-device training export's settings and the signatures it carries."""

    train_layers: str
    batch_size: int
    momentum: float
    signatures: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"trainable": True, "train_layers": self.train_layers, "batch_size": self.batch_size,
                "momentum": self.momentum, "signatures": list(self.signatures)}


@dataclass(frozen=True)
class ConvertResult:
    """What `convert` made and how closely it agrees with the source model."""

    model: str
    artifact: Artifact
    fidelity: Fidelity
    bridge_max_abs_diff: float | None = None
    explain: object | None = None  # explain.Explanation
    trainable: TrainableExport | None = None
    front_end: tuple = ()  # export.FrontLayer: front layers int8 quantized although they lose
    head: tuple = ()  # the layer that produces each output (what --keep-float names), or None
    scopes_only: bool = False  # a SavedModel signature: --keep-float names tensor-name scopes

    @property
    def exit_code(self) -> int:
        """3 when the artifact disagrees with its source past the threshold, else 0."""
        return 0 if self.fidelity.passed else 3

    @property
    def failure(self) -> str | None:
        if self.fidelity.passed:
            return None
        advice = f"set {self.fidelity.override_flag} if this is close enough"
        spec = self.artifact.spec
        if spec.quantization.value == "int8" and self.artifact.format == "tflite" \
                and spec.target.value != "edgetpu":
            # error spread over many layers (EfficientNet's swish and squeeze-excite): 16-bit
            # activations keep it where keeping a few layers float does not; TFLite has no
            # 16x8 fused LSTM kernel, so a model with one gets the weight-only modes instead
            advice = ("try --quantize dynamic or float16 (the fused LSTM kernels have no 16x8 "
                      "version), or " if self.artifact.stateful_ops else
                      "try --quantize int16x8 (16-bit activations, int8 weights: the same size, "
                      "slower kernels), or ") + advice
        if self.front_end:
            first = self.front_end[0]
            names = ", ".join(f.name for f in self.front_end if f.kind == first.kind)
            why, fix = (("the Edge TPU runs int8 only", "target cpu")
                        if spec.target.value == "edgetpu" else
                        ("sparse weights quantize every layer", "drop --sparse-weights")
                        if spec.sparse_weights else
                        ("an int8 input is quantized before it", "use --io float32"))
            advice = (f"the {first.kind} ({names}) {first.loss}, and {why}: {first.outside}, or "
                      f"{fix} (which keeps it float); or " + advice)
        elif (tied := self._tied_heads()) and not set(tied) <= set(spec.keep_float):
            heads = ",".join(tied)
            values = (",".join(f"{h}=regression" for h in tied)
                      if len(self.head) > 1 else "regression")
            advice = ("the changed answers are near-ties, closer than one step of the int8 "
                      f"output: keep the output layer float with --keep-float {heads} (an "
                      "unconfident model's scores need finer steps than 1/256), or, if the "
                      "scores are used as a distribution (an expected value), judge them by "
                      f"their values with --task {values}; or " + advice)
        elif self.scopes_only and self.artifact.spec.needs_calibration:
            advice = ("keep the front end in float with --keep-float SCOPE[,SCOPE] (this "
                      "SavedModel has no Keras layers: its tensor-name scopes stand in, and an "
                      "unknown name lists them), or " + advice)
        elif self.explain is None and self.artifact.spec.needs_calibration:
            advice = "rerun with --explain to find the layers that lose accuracy, or " + advice
        elif self.explain is not None and getattr(self.explain, "starved", None):
            starved = self.explain.starved[0]
            layers = ",".join(starved.keep_together)
            advice = (f"{starved.layer}'s int8 output keeps too little of its signal "
                      f"({starved.quant_snr_db:g} dB): keep it and its readers in float with "
                      f"--keep-float {layers}, or " + advice)
        elif self.explain is not None and getattr(self.explain, "worst", None):
            layers = ",".join(self.explain.worst)
            advice = (f"the layers that lose most are {', '.join(self.explain.worst)}: keep them in "
                      f"float with --keep-float {layers} (or export.keep_float in a recipe), or "
                      + advice)
        return self.fidelity.failure(self.artifact.path, advice)

    def _tied_heads(self) -> list[str]:
        """The output layers whose changed answers are (nearly) all near-ties.

        Those an int8 TFLite output can keep float (a flat 101-class age softmax beside a
        gender head); [] if another failing output changed otherwise, or a head is unknown.
        """
        spec = self.artifact.spec
        if (not self.head or self.artifact.format != "tflite" or spec.target.value == "edgetpu"
                or spec.quantization.value != "int8"):
            return []
        changed = [o for o in self.fidelity.outputs if o.changed  # failing on top-1 agreement
                   and ((o.verdict or {}).get("task") or self.fidelity.task) == "classification"
                   and (o.verdict is None or not o.verdict.get("passed", False))]
        if not changed or not all(o.near_ties is not None and o.near_ties >= 0.9 * o.changed
                                  for o in changed):
            return []
        heads = [self.head[o.output] if o.output < len(self.head) else None for o in changed]
        return [] if None in heads else list(dict.fromkeys(heads))

    def to_dict(self) -> dict:
        a = self.artifact
        out = {"model": self.model, "output": a.path, "to": a.format, "target": a.spec.target.value,
               "quantization": a.spec.quantization.value, "io": a.spec.io.value, "edgenn": __version__,
               **{k: v for k, v in a.to_dict().items() if k not in ("path", "format", "quantization",
                                                                    "io", "target")},
               "fidelity": self.fidelity.to_dict()}
        if a.format == "onnx":
            out["opset"] = a.spec.opset
            out["execution_providers"] = EXECUTION_PROVIDERS.get(a.spec.target.value, [])
        if self.bridge_max_abs_diff is not None:
            out["bridge_max_abs_diff"] = self.bridge_max_abs_diff
        if self.explain is not None:
            out["explain"] = self.explain.to_dict()
        if self.trainable is not None:
            out.update(self.trainable.to_dict())
        return out

    def to_markdown(self) -> str:
        a, f = self.artifact, self.fidelity
        lines = [f"# edgenn convert: {Path(self.model).name} -> {Path(a.path).name}", "",
                 f"- {a.format} {a.spec.quantization.value} for {a.spec.target.value}, "
                 f"{a.bytes:,} bytes ({a.gzip_bytes:,} gzipped), sha256 `{a.sha256[:12]}`",
                 f"- fidelity on {f.on}: "
                 + "; ".join(o.summary() for o in f.outputs)
                 + f" - {'passed' if f.passed else 'FAILED'}: {f.summary()}"]
        lines += [f"- note: {caveat}" for caveat in f.caveats()]
        if a.usage_note:
            lines.append(f"- note: {a.usage_note}")
        if a.preflight is not None:
            lines += ["", a.preflight.to_markdown()]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CheckResult:
    """`check`: a target's pre-flight, and how the Keras model was converted to get it."""

    preflight: object  # preflight.Preflight
    converted_with: dict | None = None  # quantization and io, when a Keras model was converted
    compiler: object | None = None  # edgetpu.CompilerRun

    exit_code = 0
    failure = None

    def to_dict(self) -> dict:
        out = self.preflight.to_dict()
        if self.converted_with is not None:
            out["converted_with"] = self.converted_with
        if self.compiler is not None:
            out["compiler"] = self.compiler.to_dict()
        return out

    def to_markdown(self) -> str:
        return self.preflight.to_markdown()


def load_for_export(model_path: str, data_spec, allow_unsafe: bool, custom_objects_file,
                    log=lambda m: None, samples: int = 1):
    """The Keras model (as saved: Keras 3 or tf_keras) and its prepared splits, or None.

    A model with several inputs reads an .npz with one ``x_<input name>`` array per input
    (``data.multi``); its splits hold a list of arrays, one per input, in the model's order.
    """
    from ..data import load_for
    from ..data.multi import load_multi
    from ..models.load import load_model

    log(f"loading {model_path} ...")
    loaded = load_model(model_path, allow_unsafe=allow_unsafe, custom_objects_file=custom_objects_file)
    model = loaded.original  # Keras 3 first: converted as it is, no bridge
    from ..models.load import refuse_text_inputs

    refuse_text_inputs(model, "conversion")
    splits = None
    if data_spec is not None and len(model.inputs) > 1:
        splits = load_multi(data_spec, model, inputs_only=True)
    elif data_spec is not None:
        splits = load_for(data_spec, tuple(model.inputs[0].shape), None, model.inputs[0].dtype,
                          check_samples=samples)  # inputs only: calibration and the check
        from ..models.describe import data_warnings

        for warning in data_warnings(model, splits.x_calib):
            log(f"warning: {warning}")
            splits.notes.append(warning)
    return loaded, model, splits


def convert(model_path: str, output: str, spec: ExportSpec, *, data_spec=None, samples: int = 500,
            threshold: float | None = None, min_snr: float | None = None, task: str = "auto",
            allow_unsafe: bool = False, custom_objects_file: str | None = None,
            explain: bool = False, trainable=None, log=lambda m: None) -> ConvertResult:
    """Convert a Keras model as ``spec`` asks, write it to ``output``, and check it.

    ``trainable`` (``(train_layers, batch_size, momentum)``) exports the on-device training
    model instead. The artifact is written before the fidelity check, so a failing one can be
    inspected; the result's ``exit_code`` is 3 then.
    """
    from ..models.bridge import random_inputs

    out = Path(output)
    if out.suffix != spec.suffix:
        raise UsageError(f"--to {spec.format.value} writes a {spec.suffix} file; received -o {output}",
                         f"name the output *{spec.suffix}")
    refuse_overwrite(out, model_path)
    if trainable is not None and (spec.format is not ExportFormat.tflite or spec.target.value != "cpu"
                                  or spec.quantization.value != "float32"):
        raise UsageError("--trainable exports a float32 TFLite model for the CPU",
                         "use --to tflite --target cpu without --quantize")
    loaded, model, splits = load_for_export(model_path, data_spec, allow_unsafe, custom_objects_file,
                                            log, samples)
    if spec.needs_calibration and splits is None:
        raise UsageError(f"{spec.quantization.value} quantization calibrates on real data", "pass --data")
    from ..data.multi import as_list, take

    if splits is not None:
        x_check, source = take(splits.x_test, slice(0, samples)), f"{data_spec.source} test split"
    else:
        x_check = random_inputs(model, seed=0, batch=min(samples, 64),
                                hint="check it on real samples of a smaller size (--data), or "
                                "convert on a machine with more memory")
        source = "random inputs"
        x_check = x_check if len(x_check) > 1 else x_check[0]
    if trainable is not None and len(as_list(x_check)) > 1:
        raise UsageError("--trainable exports single-input models", "drop --trainable")
    provenance = _provenance(model_path)
    x_calib = splits.x_calib if splits is not None else None
    bridge = loaded.bridge.max_abs_diff if loaded.bridge is not None else None

    from ..evaluate import keras_predict
    from ..outdir import staged_file

    # Written and checked in a staging folder beside -o: a run that fails or is killed during
    # the check leaves nothing there. A Flex artifact (Unchecked) is kept, as its error says.
    with staged_file(out, keep=Unchecked) as staged:
        if trainable is not None:
            artifact, candidate, info = _export_trainable(model, spec, staged, trainable,
                                                          provenance, x_check, log)
        else:
            artifact = export(model, spec, staged, x_calib, provenance=provenance, log=log)
            candidate, info = _checked_run(artifact, x_check, out), None
        named = task if isinstance(task, dict) else {}  # --task OUTPUT=TASK
        judged, names = Task("auto" if named else task), None
        if named and loaded.flavour == "savedmodel":
            raise UsageError("--task OUTPUT=TASK names a Keras model's outputs; this SavedModel "
                             "has no output layers", "pass one TASK for every output")
        if named or (loaded.flavour != "savedmodel" and len(model.outputs) > 1):
            names = output_names(model)  # each head by its own task
            unknown = [n for n in named if n not in names]
            if unknown:
                raise UsageError(f"--task names output {unknown[0]!r}, which the model does not "
                                 f"have (its outputs: {', '.join(names)})", "name an output as "
                                 "`edgenn inspect` lists its output layers")
            judged = [Task(named[n]) if named.get(n, "auto") != "auto" else t for n, t in zip(
                names, detect_tasks(model, loaded.info.loss))] if named or judged is Task.auto \
                else [judged] * len(names)
        elif judged is Task.auto:
            if loaded.flavour == "savedmodel":  # no output layer to read: read its answers
                judged = Task.classification if model.looks_like_probabilities(x_check) else Task.regression
            else:
                judged = detect_task(model, loaded.info.loss)
        fidelity = judge(keras_predict(model, x_check, every_output=True), candidate, judged,
                         spec.quantization.value, source, threshold, min_snr, names,
                         samples=len(as_list(x_check)[0]))
        explanation = None
        if explain:
            from .explain import Explanation, explain_tflite

            if loaded.flavour == "savedmodel":
                explanation = Explanation(0, (), (), skipped="--explain compares Keras layers; a "
                                                            "SavedModel without Keras metadata has none")
            elif spec.format is ExportFormat.tflite and spec.needs_calibration:
                explanation = explain_tflite(model, staged, take(x_check, slice(0, 64)))
            else:
                explanation = Explanation(0, (), (), skipped="--explain compares layers of int8/int16x8 "
                                                            "TFLite models")
        from .export import lost_front

        front_end, head = lost_front(model, spec), _head(model)
    return ConvertResult(str(model_path), _placed(artifact, out), fidelity, bridge, explanation,
                         info, front_end=front_end, head=head,
                         scopes_only=loaded.flavour == "savedmodel")


def _placed(artifact: Artifact, out: Path) -> Artifact:
    """``artifact`` as it is after its staging folder moved into place at ``out``."""
    from dataclasses import replace

    staging = str(Path(artifact.path).parent)
    compiler = artifact.compiler
    if compiler is not None:
        compiler = replace(compiler, log=compiler.log.replace(staging, str(out.parent)),
                           output=compiler.output and str(out.parent / Path(compiler.output).name))
    return replace(artifact, path=str(out), compiler=compiler)


def _head(model) -> tuple:
    """The name of the Keras layer that produces each of the model's outputs (None: unknown)."""
    from ..fidelity import _producer

    if not getattr(model, "layers", None):
        return ()
    return tuple(getattr(_producer(t), "name", None) for t in model.outputs)


def _provenance(model_path: str) -> dict:
    source = Path(model_path)
    return {"source": source.name, "source_sha256": sha256(source) if source.is_file() else None}


def _run(artifact: Artifact, x: np.ndarray) -> list[np.ndarray]:
    if artifact.format == "onnx":
        from ..data.multi import as_list
        from ..runtime.onnx_runner import ONNXRunner

        return ONNXRunner(artifact.path).predict(*as_list(x))
    from ..data.multi import as_list
    from ..runtime.litert import TFLiteRunner

    return TFLiteRunner(artifact.path).predict(*as_list(x))


class Unchecked(RuntimeFailure):
    """An artifact written as asked that cannot be run here: it is kept, and said so."""


def _checked_run(artifact, x, out: Path):
    """The artifact's outputs on ``x``; an artifact its runtime cannot run is not left behind.

    One with Select TF (Flex) ops is kept at ``out``, as asked for, and the error says its
    agreement is unchecked: the LiteRT here has no Flex delegate.
    """
    try:
        return _run(artifact, x)
    except RuntimeFailure as err:
        if artifact.flex_ops:
            raise Unchecked(f"{out} was written with Select TF (Flex) ops "
                                 f"({', '.join(artifact.flex_ops)}), which this LiteRT cannot run, "
                                 "so its agreement with the model is unchecked",
                                 "check it where the Flex delegate is linked (edgenn profile "
                                 "--accelerator delegate:PATH on that device)") from None
        raise RuntimeFailure(f"{err.message}; nothing was written", err.hint) from None


def _export_trainable(model, spec, out: Path, trainable, provenance, x_check, log):
    from ..artifacts import atomic_path
    from ..runtime.tflite_info import describe
    from ..runtime.trainable import TrainableRunner
    from .export import gzip_size
    from .trainable import export_trainable

    train_layers, batch_size, momentum = trainable
    log(f"exporting a trainable TFLite model (train layers: {train_layers}) ...")
    blob = export_trainable(model, batch_size, train_layers, momentum)
    with atomic_path(out) as tmp:
        tmp.write_bytes(blob)
    info = describe(out)
    artifact = Artifact(str(out), "tflite", len(blob), gzip_size(blob), sha256(out), spec,
                        provenance, ops=info["ops"], flex_ops=tuple(info["flex_ops"]),
                        custom_ops=tuple(info["custom_ops"]))
    export_info = TrainableExport(train_layers, batch_size, momentum,
                                  tuple(s["key"] for s in info["signatures"]))
    return artifact, [TrainableRunner(out).predict(x_check)], export_info


def check(model_path: str, target: str, *, data_spec=None, allow_unsafe: bool = False,
          custom_objects_file: str | None = None, log=lambda m: None) -> CheckResult:
    """A target's pre-flight, of a .tflite as it is or of a Keras model converted for it.

    A Keras model is converted as `convert --target` would (int8 for the Edge TPU, calibrated
    on ``data_spec``) into a temporary file that is gone when this returns: the result names
    the Keras model, and the compiler's report (when it ran) without its output file.
    """
    from ..models.formats import ModelFormat, detect
    from .targets import preflight

    fmt = detect(model_path)
    if fmt.format is ModelFormat.tflite:
        return CheckResult(preflight(fmt.path, target))
    if fmt.format is ModelFormat.onnx:
        raise UsageError(f"check analyses .tflite files and Keras models (the delegates it "
                         f"checks for run .tflite files); {model_path} is an ONNX model",
                         "check the Keras model it came from; measure the ONNX model with "
                         "`edgenn profile`")
    spec = ExportSpec.resolve("tflite", target)
    _, model, splits = load_for_export(model_path, data_spec, allow_unsafe, custom_objects_file, log)
    if spec.needs_calibration and splits is None:
        raise UsageError(f"the {target} pre-flight converts to {spec.quantization.value}, which "
                         "calibrates on real data", "pass --data")
    with tempfile.TemporaryDirectory(prefix="edgenn-check-") as tmp:
        name = Path(model_path).stem or "model"
        artifact = export(model, spec, Path(tmp) / f"{name}.tflite",
                          splits.x_calib if splits is not None else None, log=log)
    from dataclasses import replace

    compiler = artifact.compiler
    if compiler is not None and compiler.output:
        compiler = replace(compiler, output=None)
    return CheckResult(replace(artifact.preflight, model=str(model_path)),
                       {"quantization": spec.quantization.value, "io": spec.io.value,
                        "converted": "in a temporary file, as `convert --target` would"}, compiler)
