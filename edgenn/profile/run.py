"""`edgenn profile`: choose runtime and accelerator, measure each model in isolation, check limits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import UsageError

RUNTIMES = ("auto", "litert", "tflite-runtime", "onnxruntime")


def pick_runtime(model: Path, requested: str, device=None) -> str:
    """The runtime for a model: by file type, the device's default, and what is installed."""
    suffix = model.suffix.lower()
    if requested != "auto":
        if suffix == ".onnx" and requested != "onnxruntime":
            raise UsageError(f"{model} is ONNX; runtime {requested} runs .tflite",
                             "use --runtime onnxruntime (or auto)")
        if suffix == ".tflite" and requested == "onnxruntime":
            raise UsageError(f"{model} is TFLite; onnxruntime runs .onnx", "use --runtime litert")
        return requested
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix != ".tflite":
        raise UsageError(f"profile measures .tflite and .onnx files; received {model}",
                         "convert the model first: edgenn convert MODEL --to tflite -o m.tflite")
    preferred = "litert"
    if device is not None and device.runtime.value != "onnxruntime":
        preferred = device.runtime.value
    module = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}
    if importlib.util.find_spec(module[preferred]) is None:
        other = "tflite-runtime" if preferred == "litert" else "litert"
        return other
    return preferred


ACCELERATORS = ("cpu", "xnnpack", "gpu", "edgetpu", "nnapi")


def check_accelerator(requested: str) -> str:
    """Refuse an accelerator name that is none of the known ones or delegate:PATH / ep:NAME."""
    kind, _, rest = requested.partition(":")
    if requested in ACCELERATORS or (kind in ("delegate", "ep") and rest.strip()):
        return requested
    raise UsageError(f"unknown accelerator {requested!r}",
                     f"use one of {', '.join(ACCELERATORS)}, delegate:PATH or ep:NAME")


def check_cpus(cpus: list[int]) -> list[int]:
    """Refuse CPU numbers this process may not run on (before a child fails to pin itself)."""
    import os

    allowed = sorted(os.sched_getaffinity(0))
    bad = [c for c in cpus if c not in allowed]
    if bad:
        raise UsageError(f"--cpus {','.join(map(str, cpus))}: CPU {bad[0]} is not available here",
                         f"use CPUs from {','.join(map(str, allowed))}")
    return cpus


def check_model_file(path: Path) -> None:
    """Refuse a missing, empty, truncated or corrupt model before a runtime is started on it."""
    from ..errors import InputFileError

    if not path.is_file():
        raise InputFileError(f"model not found: {path}", "check the path")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path} is empty (0 bytes)", "pass a .tflite or .onnx file")
    if path.suffix.lower() == ".tflite":
        from ..runtime.tflite_info import describe

        describe(path)  # parses every table: a corrupt file is one line, exit 2
    elif path.suffix.lower() == ".onnx" and importlib.util.find_spec("onnx") is not None:
        from ..models.formats import detect

        detect(path)


def pick_accelerator(runtime: str, requested: str | None, device=None) -> str:
    if requested:
        check_accelerator(requested)
        if runtime == "onnxruntime" and requested in ("xnnpack", "gpu", "edgetpu"):
            raise UsageError(f"accelerator {requested} is a LiteRT option; ONNX Runtime takes ep:NAME",
                             "e.g. --accelerator ep:CUDAExecutionProvider")
        return requested
    if runtime == "onnxruntime":
        return "cpu"
    if device is not None:
        return device.accelerator.value
    return "xnnpack"


def check_device(result: dict, device) -> list[dict]:
    """The device profile's limits against a measurement."""
    checks = []
    c = device.constraints
    if c.max_model_bytes is not None and "model_bytes" in result:
        checks.append({"name": "max_model_bytes", "limit": c.max_model_bytes,
                       "value": result["model_bytes"], "ok": result["model_bytes"] <= c.max_model_bytes})
    if c.max_ram_mb is not None and "peak_rss_mb" in result:
        checks.append({"name": "max_ram_mb", "limit": c.max_ram_mb, "value": result["peak_rss_mb"],
                       "ok": result["peak_rss_mb"] <= c.max_ram_mb})
    return checks


UNSTABLE_CV = 0.05


def stability(result: dict) -> str | None:
    """A one-line warning when the timed runs spread too much to trust the mean, else None.

    Latency noise on a shared or busy machine shows up as a coefficient of variation (std/mean)
    over 5%; the p50 is then still a fair figure, the mean and std are not.
    """
    cv, lat, runs = result.get("cv"), result.get("latency_ms") or {}, result.get("runs", 0)
    if cv is None or runs < 10 or cv <= UNSTABLE_CV:
        return None
    return (f"{result['model']}: unstable timing, CV {cv:.1%} over {runs} runs (p50 "
            f"{lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, max {lat['max']:.3f} ms); quote the p50, "
            "or pin with --cpus, stop other work on the machine and raise --runs")
