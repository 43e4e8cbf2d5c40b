"""`edgenn convert`: one exporter for every target, then pre-flight and fidelity checks."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..artifacts import atomic_path, refuse_overwrite, sha256
from ..errors import ConversionError, UsageError
from ..fidelity import DEFAULT_THRESHOLDS, compare_outputs, verdict
from ..recipe import IOType, Quantization

TARGETS = ("cpu", "gpu", "edgetpu")


def resolve_quantization(to: str, target: str, quantize: str) -> Quantization:
    """The quantization a target gets when the user says "auto", and what it refuses."""
    if quantize == "auto":
        quantize = {"cpu": "none", "gpu": "float16" if to == "tflite" else "none",
                    "edgetpu": "int8"}[target]
    q = Quantization.float32 if quantize == "none" else Quantization(quantize)
    if target == "edgetpu" and (to != "tflite" or q is not Quantization.int8):
        raise UsageError(f"the Edge TPU runs full-integer int8 TFLite only; received --to {to} "
                         f"--quantize {quantize}", "use --to tflite --quantize int8 (or auto)")
    if to == "onnx" and q in (Quantization.float16, Quantization.int16x8):
        raise UsageError(f"--to onnx supports --quantize none, dynamic or int8; received {quantize}",
                         "use --quantize int8 (static QDQ) or dynamic")
    return q


def convert(model_path: str, output: str, *, to: str, target: str, quantize: str = "auto",
            data_spec=None, io: str = "auto", opset: int = 17, calibration: str = "minmax",
            samples: int = 500, threshold: float | None = None, allow_flex: bool = False,
            allow_unsafe: bool = False, custom_objects_file: str | None = None,
            explain: bool = False, trainable: bool = False, train_layers: str = "all",
            batch_size: int = 32, momentum: float = 0.0, log=lambda m: None) -> dict:
    """Convert a Keras model, write the artifact atomically, and check it. Returns the report.

    Raises ConversionError (exit 3) when fidelity falls below the threshold; the artifact is
    written first so it can be inspected.
    """
    from ..data import load, match_model
    from ..evaluate import keras_predict
    from ..models.bridge import random_inputs
    from ..models.load import load_keras

    out = Path(output)
    suffix = ".tflite" if to == "tflite" else ".onnx"
    if out.suffix != suffix:
        raise UsageError(f"--to {to} writes a {suffix} file; received -o {output}",
                         f"name the output *{suffix}")
    refuse_overwrite(out, model_path)
    if trainable and (to != "tflite" or quantize not in ("auto", "none") or target != "cpu"):
        raise UsageError("--trainable exports a float32 TFLite model for the CPU",
                         "use --to tflite --target cpu without --quantize")
    q = resolve_quantization(to, target, quantize)
    io_type = IOType("int8" if target == "edgetpu" else "float32") if io == "auto" else IOType(io)

    log(f"loading {model_path} ...")
    loaded = load_keras(model_path, allow_unsafe=allow_unsafe,
                        custom_objects_file=custom_objects_file)
    model = loaded.tf_keras_model
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError(f"convert handles single-input, single-output models; {model_path} has "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs",
                         "export each head as its own model for now")
    splits = None
    if data_spec is not None:
        splits = match_model(load(data_spec), model.input_shape, None)
    needs_calibration = q in (Quantization.int8, Quantization.int16x8)
    if needs_calibration and splits is None:
        raise UsageError(f"{q.value} quantization calibrates on real data", "pass --data")
    x_calib = splits.x_calib if splits is not None else None
    if splits is not None:
        x_check, source = splits.x_test[:samples], f"{data_spec.source} test split"
    else:
        x_check = random_inputs(model, seed=0, batch=min(samples, 64))[0]
        source = "random inputs"

    report = {"model": str(model_path), "output": str(out), "to": to, "target": target,
              "quantization": q.value, "io": io_type.value, "edgenn": __version__}
    if loaded.bridge is not None:
        report["bridge_max_abs_diff"] = loaded.bridge.max_abs_diff
    if trainable:
        from ..federated.trainable import export_trainable
        from ..runtime.tflite_info import describe
        from ..runtime.trainable import TrainableRunner

        log(f"exporting a trainable TFLite model (train layers: {train_layers}) ...")
        blob = export_trainable(model, batch_size, train_layers, momentum)
        with atomic_path(out) as tmp:
            tmp.write_bytes(blob)
        info = describe(out)
        report.update({"trainable": True, "train_layers": train_layers, "batch_size": batch_size,
                       "momentum": momentum, "signatures": [s["key"] for s in info["signatures"]],
                       "flex_ops": info["flex_ops"], "ops": info["ops"]})
        candidate = [TrainableRunner(out).predict(x_check)]
    elif to == "tflite":
        _export_tflite(model, out, q, io_type, x_calib, allow_flex, target, report, log)
        from ..runtime.litert import TFLiteRunner

        candidate = TFLiteRunner(out).predict(x_check)
    else:
        _export_onnx(model, out, q, target, x_calib, opset, calibration, model_path, report, log)
        from ..runtime.onnx_runner import ONNXRunner

        candidate = ONNXRunner(out).predict(x_check)
    report["bytes"] = out.stat().st_size
    report["sha256"] = sha256(out)

    reference = [keras_predict(model, x_check)]
    per_output = compare_outputs(reference, candidate)
    limit = threshold if threshold is not None else DEFAULT_THRESHOLDS[q.value]
    passed, worst = verdict(per_output, limit)
    report["fidelity"] = {"samples": int(len(x_check)), "data": source, "threshold": limit,
                          "passed": passed, "top1_agreement": worst, "outputs": per_output}
    if explain:
        if to == "tflite" and q in (Quantization.int8, Quantization.int16x8):
            from .explain import explain_tflite

            report["explain"] = explain_tflite(model, out, x_check[:64])
        else:
            report["explain"] = {"skipped": "--explain compares layers of int8/int16x8 TFLite models"}
    if not passed:
        error = ConversionError(
            f"fidelity check failed: top-1 agreement {worst:.4f} < {limit} on {len(x_check)} "
            f"samples ({source}); {out} was written for inspection",
            "try --explain to find the layers that lose accuracy, exclude them from quantization, "
            "or set --threshold")
        error.report = report
        raise error
    return report


def _export_tflite(model, out, q, io_type, x_calib, allow_flex, target, report, log):
    from ..runtime.tflite_info import describe
    from .tflite import to_tflite

    log(f"converting to TFLite ({q.value}) ...")
    blob = to_tflite(model, q, io_type, x_calib, allow_flex=allow_flex,
                     batch_size=1 if target == "edgetpu" else None)
    with atomic_path(out) as tmp:
        tmp.write_bytes(blob)
    info = describe(out)
    report["ops"] = info["ops"]
    report["flex_ops"] = info["flex_ops"]
    report["custom_ops"] = info["custom_ops"]
    report["preflight"] = preflight(out, target)
    if target == "edgetpu":
        from .edgetpu import compile_model

        log("running edgetpu_compiler ...")
        report["compiler"] = compile_model(out, out.parent)
    if target == "gpu":
        from ..runtime.accelerators import probe_gpu

        report["gpu_runtime"] = probe_gpu(out)


def _export_onnx(model, out, q, target, x_calib, opset, calibration, model_path, report, log):
    import onnx

    from .onnx import add_metadata, quantize, to_onnx

    log(f"converting to ONNX (opset {opset}) ...")
    proto = to_onnx(model, opset)
    if q is Quantization.dynamic or q is Quantization.int8:
        log(f"quantizing with ONNX Runtime ({q.value}) ...")
        proto, info = quantize(proto, "dynamic" if q is Quantization.dynamic else "int8", target,
                               x_calib, calibration)
        report["onnx_quantization"] = info
    report["opset"] = opset
    report["execution_providers"] = {
        "cpu": ["CPUExecutionProvider"],
        "gpu": ["CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
                "CoreMLExecutionProvider"]}[target] if target in ("cpu", "gpu") else []
    source = Path(model_path)
    add_metadata(proto, {"edgenn.version": __version__, "edgenn.source": source.name,
                         "edgenn.source_sha256": sha256(source) if source.is_file() else "",
                         "edgenn.quantization": q.value, "edgenn.target": target})
    with atomic_path(out) as tmp:
        onnx.save(proto, tmp)


def preflight(path: Path, target: str) -> dict:
    """The target's static compatibility analysis of a .tflite file."""
    if target == "edgetpu":
        from .edgetpu import analyse
    elif target == "gpu":
        from .gpu import analyse
    else:
        from .cpu import analyse
    return analyse(path)


