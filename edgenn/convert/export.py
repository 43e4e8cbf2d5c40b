"""The one road from a Keras model to an artifact: ``export(model, spec, path, x_calib)``.

``compress`` (each recipe export), ``convert``, ``check`` and ``federated`` all come here, so a
recipe with ``target: edgetpu`` gets what ``convert --target edgetpu`` gets: full-integer int8,
int8 input and output, a static batch of 1, the pre-flight and the compiler. An ``ExportSpec``
is the whole request (validated when built, "auto" resolved per target); an ``Artifact`` is the
whole answer. Only spec-derived facts are written into the file (ONNX metadata), so the same
model and spec give the same bytes whichever command asked; where the model came from is kept
in the Artifact's provenance.
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import atomic_path, sha256
from ..data.prepare import DEFAULT_CALIBRATION_SAMPLES
from ..errors import UsageError
from ..recipe import ExportFormat, IOType, Quantization, Target

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ONNX_QUANTIZATION = (Quantization.float32, Quantization.dynamic, Quantization.int8)


@dataclass(frozen=True)
class ExportSpec:
    """What to make of a model: format, quantization, io types, target, calibration."""

    format: ExportFormat = ExportFormat.tflite
    quantization: Quantization = Quantization.float32
    io: IOType = IOType.float32
    target: Target = Target.cpu
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    calibration: str = "minmax"  # activation ranges of static int8 (TFLite and ONNX)
    opset: int = 17
    allow_flex: bool = False
    fused_lstm: bool = True  # TFLite's fused LSTM kernel (stateful) rather than a WHILE loop
    keep_float: tuple[str, ...] = ()  # Keras layers left in float in an int8 TFLite model
    sparse_weights: bool = False  # pruned weights in TFLite's sparse storage

    def __post_init__(self):
        for name, enum in (("format", ExportFormat), ("quantization", Quantization),
                           ("io", IOType), ("target", Target)):
            object.__setattr__(self, name, enum(getattr(self, name)))
        q, fmt = self.quantization, self.format
        if self.target is Target.edgetpu and (fmt is not ExportFormat.tflite or q is not Quantization.int8):
            raise UsageError(f"the Edge TPU runs full-integer int8 TFLite only; received {fmt.value} "
                             f"{q.value}", "use --to tflite --quantize int8 (or auto)")
        if self.io is not IOType.float32 and (q is not Quantization.int8 or fmt is not ExportFormat.tflite):
            raise UsageError(f"io {self.io.value} needs int8 TFLite; received {fmt.value} {q.value}",
                             "use --quantize int8 --to tflite, or io float32")
        if fmt is ExportFormat.onnx and q not in ONNX_QUANTIZATION:
            raise UsageError(f"--to onnx supports --quantize none, dynamic or int8; received {q.value}",
                             "use --quantize int8 (static QDQ) or dynamic")
        if self.calibration not in CALIBRATION_METHODS:
            raise UsageError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}; "
                             f"received {self.calibration!r}", "use --calibration minmax")
        if self.calibration != "minmax" and q is not Quantization.int8:
            raise UsageError(f"--calibration sets the activation ranges of static int8; received "
                             f"{fmt.value} {q.value}", "drop --calibration, or use --quantize int8")
        if self.calibration == "entropy" and fmt is ExportFormat.tflite:
            raise UsageError("entropy calibration is ONNX Runtime's; TFLite int8 takes minmax or "
                             "percentile", "use --calibration percentile, or --to onnx")
        if self.calibration != "minmax" and self.sparse_weights:
            raise UsageError("sparse weights and percentile calibration cannot be combined (the "
                             "quantizer runs after the sparsity pass)", "drop one of them")
        if not 7 <= self.opset <= 21:
            raise UsageError(f"opset must be between 7 and 21; received {self.opset}", "use --opset 17")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if self.keep_float and (fmt is not ExportFormat.tflite or q is not Quantization.int8):
            raise UsageError(f"keeping layers in float applies to int8 TFLite; received "
                             f"{fmt.value} {q.value}", "use --to tflite --quantize int8, or drop "
                             "--keep-float")
        if self.keep_float and self.target is Target.edgetpu:
            raise UsageError("the Edge TPU runs full-integer models only; --keep-float leaves "
                             "layers in float", "drop --keep-float for --target edgetpu (or "
                             "target cpu, where float layers run)")
        if self.sparse_weights and (fmt is not ExportFormat.tflite or self.target is Target.edgetpu):
            raise UsageError(f"sparse weights are a TFLite format for the CPU and GPU; received "
                             f"{fmt.value} for {self.target.value}", "drop --sparse-weights")
        if self.calibration_samples < 1:
            raise UsageError(f"calibration samples must be positive; received {self.calibration_samples}",
                             "use --calibration-samples 200")

    @classmethod
    def resolve(cls, to: str = "tflite", target: str = "cpu", quantize: str = "auto",
                io: str = "auto", **kwargs) -> ExportSpec:
        """A spec from a command's flags: "auto" picks the target's natural choice.

        auto quantization: none on the CPU, float16 for a GPU .tflite, int8 for the Edge TPU;
        auto io: int8 for the Edge TPU, float32 elsewhere.
        """
        if quantize == "auto":
            quantize = {"cpu": "float32", "gpu": "float16" if to == "tflite" else "float32",
                        "edgetpu": "int8"}[target]
        if quantize == "none":
            quantize = "float32"
        if io == "auto":
            io = "int8" if target == "edgetpu" else "float32"
        return cls(ExportFormat(to), Quantization(quantize), IOType(io), Target(target), **kwargs)

    @classmethod
    def from_recipe(cls, export) -> ExportSpec:
        """The spec of a recipe's ``export`` entry (its io "auto" resolved as for a command)."""
        return cls.resolve(export.format.value, export.target.value, export.quantization.value,
                           export.io.value if export.io is not None else "auto",
                           calibration_samples=export.calibration_samples,
                           calibration=export.calibration,
                           fused_lstm=export.fused_lstm, keep_float=tuple(export.keep_float),
                           sparse_weights=export.sparse_weights)

    @property
    def needs_calibration(self) -> bool:
        return self.quantization in (Quantization.int8, Quantization.int16x8)

    @property
    def batch_size(self) -> int | None:
        """A static batch for targets that need one (the Edge TPU compiles fixed shapes)."""
        return 1 if self.target is Target.edgetpu else None

    @property
    def suffix(self) -> str:
        return f".{self.format.value}"

    def to_dict(self) -> dict:
        return {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Artifact:
    """A written model file and what is known about it."""

    path: str
    format: str
    bytes: int
    gzip_bytes: int
    sha256: str
    spec: ExportSpec
    provenance: dict = field(default_factory=dict)
    ops: dict | None = None
    flex_ops: tuple[str, ...] = ()
    custom_ops: tuple[str, ...] = ()
    preflight: object | None = None  # convert.preflight.Preflight
    compiler: object | None = None  # convert.edgetpu.CompilerRun
    gpu_runtime: object | None = None  # runtime.accelerators.GpuProbe
    onnx_quantization: object | None = None  # convert.onnx.OnnxQuantization
    metrics: dict | None = None  # set by whoever evaluates the file (compress)
    notes: tuple[str, ...] = ()  # what the conversion changed on its own (shared_scales)

    @property
    def quantization(self) -> str:
        return self.spec.quantization.value

    @property
    def stateful_ops(self) -> tuple[str, ...]:
        """Fused recurrent kernels, whose state persists from one invoke to the next."""
        from ..runtime.litert import STATEFUL_OPS

        return tuple(sorted(set(self.ops or {}) & STATEFUL_OPS))

    @property
    def usage_note(self) -> str | None:
        """What an app must do to run this file right, when it is more than set, invoke, get."""
        if not self.stateful_ops:
            return None
        return (f"{', '.join(self.stateful_ops)} keeps its state between invocations: call "
                "interpreter.reset_all_variables() (TFLite Micro: Reset()) before each independent "
                "sequence, or convert with --lstm loop for a stateless model")

    def to_dict(self) -> dict:
        out = {"path": self.path, "format": self.format, "bytes": self.bytes,
               "gzip_bytes": self.gzip_bytes, "sha256": self.sha256,
               "quantization": self.spec.quantization.value, "io": self.spec.io.value,
               "target": self.spec.target.value, "spec": self.spec.to_dict(),
               "provenance": self.provenance}
        if self.ops is not None:
            out.update({"ops": self.ops, "flex_ops": list(self.flex_ops),
                        "custom_ops": list(self.custom_ops)})
        if self.usage_note:
            out.update({"stateful_ops": list(self.stateful_ops), "usage": self.usage_note})
        for key in ("preflight", "compiler", "gpu_runtime", "onnx_quantization"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.to_dict()
        if self.metrics is not None:
            out["metrics"] = self.metrics
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def with_metrics(self, metrics: dict) -> Artifact:
        return replace(self, metrics=metrics)


def gzip_size(data: bytes) -> int:
    """Bytes after gzip -9 (mtime fixed, so the figure is reproducible)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


# Audio front ends inside a model: int8 spectrogram values lose the signal (a trained
# keyword model's top-1 agreement 0.0 in int8, 1.0 with the front end float).
FRONT_ENDS = ("MelSpectrogram", "STFTSpectrogram")
# An int8 input has one scale for all its features. A Normalization layer that reads the input
# says its features are at different scales (a tabular model: prices in the hundreds beside
# ratios under 1): one scale for them all leaves the narrow ones a few steps, or none (a
# regression model's int8 SNR 2.4 dB; 25.5 dB with the normalization float). A feature whose
# +-3 standard deviations get fewer steps than this counts as lost. A BatchNormalization that
# reads the input says the same through its moving statistics (sleepecg's sleep stager: HRV
# features from 0.01 to 1e6 behind Masking and BatchNormalization; ONNX int8 agreement 0.74).
MIN_FEATURE_STEPS = 16


@dataclass(frozen=True)
class FrontLayer:
    """A layer at the model's start that int8 robs of its signal, and what to do about it."""

    name: str
    kind: str  # "spectrogram front end", "input normalization"
    loss: str  # what int8 does to it
    outside: str  # how to take it out of the model, where it cannot stay float
    needs_float_input: bool = False  # keeping it float helps only while the input is float
    through: tuple[str, ...] = ()  # pass-through layers between the input and it (kept with it)

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers to keep float: the pass-through ones before it, then itself."""
        return self.through + (self.name,)


def front_layers(model) -> tuple[FrontLayer, ...]:
    """The model's layers that int8 robs of their signal unless they stay float."""
    from ..models.describe import input_normalizations, path_from_input

    norms = {id(layer): (through, mean, variance)
             for layer, through, mean, variance in input_normalizations(model)}
    behind_norms = {name for through, _, _ in norms.values() for name in through}
    out = []
    for layer in getattr(model, "layers", None) or ():
        pad = getattr(layer, "mask_value", 0)
        through = (path_from_input(layer) if type(layer).__name__ == "Masking" and pad
                   and layer.name not in behind_norms else None)
        if through is not None:
            # mhcnuggets pads peptides with -4,200,000: one int8 scale for its one-hot input
            # then held the padding, and every 0 and 1 fell into the same step (ONNX int8
            # label agreement 0.63). Kept float, the mask zeroes the padding before int8 starts.
            out.append(FrontLayer(layer.name, "padding mask", f"pads with {pad:g}, a value "
                                  "one int8 scale for the input must hold beside the data",
                                  "pad with 0 (Masking(0.0)), or with a value in the data's "
                                  "range", needs_float_input=True, through=through))
        elif type(layer).__name__ == "CategoryEncoding" and not _reads_integer_input(layer):
            # a table column bucketed by a Discretization, then one-hot encoded: its bucket ids
            # reach the encoding as float, and int8 rounded id 3 to 2.99, which counts as 2
            # (label agreement 0.94; kept float, 1.0)
            out.append(FrontLayer(layer.name, "id encoding", "reads integer ids computed in the "
                                  "model as float values, and int8's rounding of them turns ids "
                                  "into their neighbours", "compute the ids before the model and "
                                  "feed them as an integer input"))
        elif type(layer).__name__ in FRONT_ENDS:
            out.append(FrontLayer(layer.name, "spectrogram front end", "loses its signal in int8",
                                  "compute the spectrogram outside the model and feed it"))
        elif id(layer) in norms:
            through, mean, variance = norms[id(layer)]
            lost = _lost_feature(mean, variance)
            if lost:
                out.append(FrontLayer(layer.name, "input normalization", lost,
                                      "normalize the features before the model and drop the "
                                      "layer", needs_float_input=True, through=through))
    return tuple(out)


def _reads_integer_input(layer) -> bool:
    """Whether ``layer`` reads a model input of an integer type (ids int8 leaves alone)."""
    from ..data.prepare import exact_dtype
    from ..models.describe import inbound_layers

    before = inbound_layers(layer)
    return bool(before) and all(type(prev).__name__ == "InputLayer" and exact_dtype(
        getattr(prev, "dtype", None)) is not None for prev in before)


def _lost_feature(mean: np.ndarray, variance: np.ndarray) -> str | None:
    """Why one int8 scale for an input with these feature statistics loses a feature, or None."""
    std = np.sqrt(np.maximum(variance, 0))
    if mean.size < 2 or std.size != mean.size or not np.all(np.isfinite(mean + std)):
        return None
    lo = min(0.0, float((mean - 3 * std).min()))  # int8 ranges always hold zero
    hi = max(0.0, float((mean + 3 * std).max()))
    varying = std > 1e-6 * std.max()  # a constant feature carries nothing to lose
    if hi <= lo or not varying.any():
        return None
    steps = np.where(varying, 255 * 6 * std / (hi - lo), np.inf)
    worst = int(np.argmin(steps))
    if steps[worst] >= MIN_FEATURE_STEPS:
        return None
    return (f"reads {mean.size} features at unequal scales, and one int8 scale for the input "
            f"leaves feature {worst} (std {std[worst]:.3g}, against {std.max():.3g}) "
            f"{steps[worst]:.2g} of its 256 steps")


def kept_front(model, spec: ExportSpec) -> tuple[FrontLayer, ...]:
    """The front layers an int8 ``spec`` keeps float.

    Not on the Edge TPU (a float op at the start would leave the whole graph on the CPU), nor a
    normalization behind an int8 input.
    """
    if (spec.quantization is not Quantization.int8 or spec.target is Target.edgetpu
            or spec.sparse_weights):
        return ()
    return tuple(f for f in front_layers(model)
                 if not f.needs_float_input or spec.io is IOType.float32)


def lost_front(model, spec: ExportSpec) -> tuple[FrontLayer, ...]:
    """The front layers an int8 ``spec`` quantizes although they lose their signal."""
    if spec.quantization is not Quantization.int8:
        return ()
    kept = {f.name for f in kept_front(model, spec)}
    return tuple(f for f in front_layers(model) if f.name not in kept)


def front_end_float(model, spec: ExportSpec) -> ExportSpec:
    """``spec`` with the model's front layers kept float in an int8 TFLite file.

    Elsewhere (`kept_front` says where) they are quantized and the fidelity check judges them.
    """
    if spec.format is not ExportFormat.tflite:
        return spec
    names = [name for f in kept_front(model, spec) for name in f.layers
             if name not in spec.keep_float]
    return replace(spec, keep_float=spec.keep_float + tuple(names)) if names else spec


def tflite_bytes(model, spec: ExportSpec, x_calib: np.ndarray | None = None,
                 notes: list[str] | None = None) -> bytes:
    """The TFLite flatbuffer for ``spec`` in memory (the same conversion ``export`` writes).

    ``notes`` gets what the conversion changed on its own.
    """
    from .tflite import to_tflite

    if spec.format is not ExportFormat.tflite:
        raise UsageError(f"tflite_bytes makes TFLite; the spec asks for {spec.format.value}")
    _check_calibration(spec, x_calib)
    spec = front_end_float(model, spec)
    return to_tflite(model, spec.quantization, spec.io, x_calib, spec.calibration_samples,
                     allow_flex=spec.allow_flex, batch_size=spec.batch_size,
                     fused_lstm=spec.fused_lstm, keep_float=spec.keep_float,
                     sparse_weights=spec.sparse_weights, calibration=spec.calibration,
                     notes=notes, fills_float=spec.target.value != "edgetpu")


def _check_calibration(spec: ExportSpec, x_calib) -> None:
    from ..data.multi import count

    if spec.needs_calibration and count(x_calib) == 0:
        raise UsageError(f"{spec.quantization.value} quantization calibrates on real data",
                         "pass --data (calibration samples come from its training split)")


def export(model, spec: ExportSpec, path: str | Path, x_calib: np.ndarray | None = None, *,
           provenance: dict | None = None, log=lambda msg: None) -> Artifact:
    """Write ``model`` as ``spec`` asks to ``path`` (atomically) and check it for the target.

    ``x_calib`` holds calibration inputs (the first ``spec.calibration_samples`` are used).
    Returns the Artifact with the target's pre-flight (TFLite), the Edge TPU compiler's report
    or why it did not run, the GPU probe, or the ONNX quantization performed.
    """
    path = Path(path)
    if path.suffix != spec.suffix:
        raise UsageError(f"--to {spec.format.value} writes a {spec.suffix} file; received {path}",
                         f"name the output *{spec.suffix}")
    _check_calibration(spec, x_calib)
    provenance = {"edgenn": __version__, **(provenance or {})}
    if spec.format is ExportFormat.onnx:
        return _export_onnx(model, spec, path, x_calib, provenance, log)
    return _export_tflite(model, spec, path, x_calib, provenance, log)


def _export_tflite(model, spec, path: Path, x_calib, provenance, log) -> Artifact:
    from ..runtime.tflite_info import describe
    from .targets import preflight

    log(f"converting to TFLite ({spec.quantization.value}"
        + (f", {spec.io.value} io" if spec.io is not IOType.float32 else "")
        + (f", batch {spec.batch_size}" if spec.batch_size else "") + ") ...")
    kept = front_end_float(model, spec)
    if kept is not spec:  # the artifact's spec says what was done
        for f in kept_front(model, spec):
            if f.name not in spec.keep_float:
                log(f"keeping the {f.kind} ({', '.join(f.layers)}) in float: it {f.loss}")
        spec = kept
    notes: list[str] = []
    blob = tflite_bytes(model, spec, x_calib, notes)
    names = _named_inputs(model)
    if names:
        from .tflite import with_input_names

        blob = with_input_names(blob, names)
    for note in notes:
        log(f"{spec.quantization.value}: {note}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    info = describe(path)
    if spec.quantization is Quantization.int16x8:
        from ..runtime.tflite_info import float_ops

        left = float_ops(path)
        if left:
            log("int16x8: TFLite has no 16x8 kernel for "
                + ", ".join(f"{name} (x{n})" if n > 1 else name for name, n in sorted(left.items()))
                + "; those ops stay float32, the rest is int16x8")
    compiler = gpu = None
    if spec.target is Target.edgetpu:
        from .edgetpu import compile_model
        from .edgetpu import compiler as find_compiler

        log("running edgetpu_compiler ..." if find_compiler() else
            "edgetpu_compiler is not installed here: the pre-flight stands in for it")
        compiler = compile_model(path, path.parent)
    elif spec.target is Target.gpu:
        from ..runtime.accelerators import probe_gpu

        gpu = probe_gpu(path)
    return Artifact(str(path), "tflite", len(blob), gzip_size(blob), sha256(path), spec, provenance,
                    ops=info["ops"], flex_ops=tuple(info["flex_ops"]),
                    custom_ops=tuple(info["custom_ops"]), preflight=preflight(path, spec.target.value),
                    compiler=compiler, gpu_runtime=gpu, notes=tuple(notes))


def _export_onnx(model, spec, path: Path, x_calib, provenance, log) -> Artifact:
    import onnx

    from .onnx import add_metadata, quantize, to_onnx

    log(f"converting to ONNX (opset {spec.opset}) ...")
    proto = to_onnx(model, spec.opset)
    info = None
    if spec.quantization in (Quantization.dynamic, Quantization.int8):
        log(f"quantizing with ONNX Runtime ({spec.quantization.value}) ...")
        float_inputs = _inputs_read_by(model, [f.layers[0] for f in kept_front(model, spec)
                                               if f.needs_float_input])
        for f in kept_front(model, spec):
            if f.needs_float_input:
                log(f"keeping the {f.kind} ({', '.join(f.layers)}) in float: it {f.loss}")
        proto, info = quantize(proto, spec.quantization.value, spec.target.value, x_calib,
                               spec.calibration, spec.calibration_samples, float_inputs)
    add_metadata(proto, {"edgenn.version": __version__, "edgenn.quantization": spec.quantization.value,
                         "edgenn.target": spec.target.value})
    names = _named_inputs(model)
    if names:
        import json

        from ..runtime.tflite_info import INPUT_NAMES_KEY

        add_metadata(proto, {INPUT_NAMES_KEY: json.dumps(names)})
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)
    data = path.read_bytes()
    return Artifact(str(path), "onnx", len(data), gzip_size(data), sha256(path), spec, provenance,
                    onnx_quantization=info)


def _named_inputs(model) -> list[str] | None:
    """A several-input model's input names, for the converted file to record.

    The file's own inputs are numbered (input_0, input_1...); with the names recorded,
    `quantize` reads the model's .npz for the file too.
    """
    if len(getattr(model, "inputs", None) or []) < 2:
        return None
    from ..data.multi import input_names

    names = input_names(model)
    return None if names == [f"input_{i}" for i in range(len(names))] else names


def _inputs_read_by(model, names: list[str]) -> list[int]:
    """The positions of the model inputs that the layers ``names`` read directly."""
    if not names:
        return []
    from ..fidelity import _producer
    from ..models.describe import inbound_layers

    sources = {prev.name for name in names for prev in inbound_layers(model.get_layer(name))}
    return [i for i, t in enumerate(model.inputs)
            if getattr(_producer(t), "name", None) in sources]


EXECUTION_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
            "CoreMLExecutionProvider"],
}
