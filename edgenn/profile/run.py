"""`edgenn profile`: choose runtime and accelerator, measure each model in isolation, check limits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import UsageError


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


def check_model_file(path: Path) -> dict | None:
    """Refuse a missing, empty, truncated or corrupt model before a runtime is started on it.

    Returns a .tflite file's description (``tflite_info.describe``), None for other files.
    """
    from ..errors import InputFileError

    if not path.is_file():
        raise InputFileError(f"model not found: {path}", "check the path")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path} is empty (0 bytes)", "pass a .tflite or .onnx file")
    if path.suffix.lower() == ".tflite":
        from ..runtime.tflite_info import describe

        return describe(path)  # parses every table: a corrupt file is one line, exit 2
    elif path.suffix.lower() == ".onnx" and importlib.util.find_spec("onnx") is not None:
        from ..models.formats import detect

        detect(path)
    return None


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


def check_device(measurement, device) -> tuple:
    """The device profile's limits against a measurement."""
    from .result import DeviceCheck

    checks = []
    c = device.constraints
    if c.max_model_bytes is not None:
        checks.append(DeviceCheck("max_model_bytes", c.max_model_bytes, measurement.model_bytes,
                                  measurement.model_bytes <= c.max_model_bytes))
    if c.max_ram_mb is not None:
        checks.append(DeviceCheck("max_ram_mb", c.max_ram_mb, measurement.peak_rss_mb,
                                  measurement.peak_rss_mb <= c.max_ram_mb))
    return tuple(checks)


def pin_cpus(cpus: list[int] | None, threads: int | None, remote) -> list[int] | None:
    """The CPUs a local measurement is pinned to: as asked, else the last ``threads`` CPUs.

    Pinned, the scheduler cannot move the run between cores mid-measurement (what made the
    coefficient of variation jump on this 2-core machine); a remote device pins itself.
    """
    import os

    if remote is not None:
        return cpus
    if cpus is not None:
        return check_cpus(cpus)
    if threads:
        allowed = sorted(os.sched_getaffinity(0))
        return allowed[-threads:] if threads < len(allowed) else None
    return None


def remote_for(host: str | None, device, identity=None, known_hosts=None, python="python3"):
    """Where to measure: --host, else the device profile's ssh transport when it names a host.

    A profile's ssh ``user`` and ``port`` fill in what --host leaves out.
    """
    from .ssh import Remote

    transport = device.transport if device is not None else None
    ssh = transport is not None and transport.type.value == "ssh"
    if host is None and ssh and transport.host:
        host = transport.host
    if host is None:
        return None
    kwargs = {"identity": identity, "known_hosts": known_hosts, "python": python}
    remote = Remote.parse(host, port=transport.port if ssh else 22, **kwargs)
    if remote.user is None and ssh and transport.user:
        remote = Remote.parse(f"{transport.user}@{host}", port=remote.port, **kwargs)
    return remote


def profile_models(paths: list[Path], *, device=None, remote=None, runtime: str = "auto",
                   accelerator: str | None = None, threads: int | None = None,
                   cpus: list[int] | None = None, warmup: int = 10, runs: int | None = None,
                   duration: float | None = None, timeout: float = 300,
                   memory_limit: int | None = None, op_profile: bool = False,
                   strict: bool = False, keep_times: bool = False,
                   input_shapes: list | None = None):
    """Measure each model in its own child process (or on the device), one at a time.

    A model that crashes its runtime is an error for that model; the others still report.
    """
    from .isolate import run_local
    from .result import Measurement, ProfileReport, ProfileRun

    if runs is not None and duration is not None:
        raise UsageError("--runs and --duration exclude each other", "pass one of them")
    if accelerator:
        check_accelerator(accelerator)
    pinned = pin_cpus(cpus, threads, remote)
    from ..runtime.layout import resolve_input_shapes

    feeds = {path: resolve_input_shapes(path, input_shapes, check_model_file(path))
             for path in paths}
    results = []
    for path in paths:
        rt = pick_runtime(path, runtime, device)
        config = {"model": str(path.resolve()), "runtime": rt,
                  "accelerator": pick_accelerator(rt, accelerator, device), "threads": threads,
                  "warmup": warmup, "runs": runs, "duration": duration, "op_profile": op_profile,
                  "keep_times": True}
        if feeds[path]:
            config["input_shapes"] = feeds[path]
        if remote is not None:
            from .ssh import run_remote

            doc = run_remote(remote, config, timeout=timeout)
        else:
            doc = run_local(config, timeout=timeout, memory_mb=memory_limit, cpus=pinned)
        where = {"cpus": tuple(pinned) if pinned else None, "host": doc.get("host")}
        if "error" in doc:
            from ..runtime.tflite_info import unresolved_custom_ops

            error, hint = unresolved_custom_ops(doc["error"]) or (doc["error"], doc.get("hint"))
            if rt == "onnxruntime":
                from ..runtime.onnx_info import runtime_hint, runtime_message

                error, hint = runtime_message(error), hint or runtime_hint(error)
            if hint is None and not feeds[path]:
                from ..runtime.layout import made_up_sizes

                hint = made_up_sizes(path)
            results.append(ProfileRun(str(path), error=error, hint=hint, **where))
            continue
        m = Measurement.from_agent(doc, str(path))
        results.append(ProfileRun(str(path), m, device=device.name if device is not None else None,
                                  device_checks=check_device(m, device) if device is not None else (),
                                  **where))
    return ProfileReport(tuple(results), device.name if device is not None else None, strict,
                         notes=tuple(slower_int8(results)))


def quantization_of(path: Path) -> str | None:
    """'int8' or 'float' for a .tflite/.onnx file (by its tensors / quantized nodes); else None."""
    if path.suffix.lower() == ".tflite":
        from ..runtime.tflite_info import describe

        dtypes = describe(path).get("tensor_dtypes", {})
        quantized = dtypes.get("int8", 0) + dtypes.get("uint8", 0)
        return "int8" if quantized > dtypes.get("float32", 0) else "float"
    if path.suffix.lower() == ".onnx" and importlib.util.find_spec("onnx") is not None:
        import onnx

        ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
        quantized = sum(o.startswith("QLinear") or o in ("QuantizeLinear", "ConvInteger",
                                                          "MatMulInteger") for o in ops)
        return "int8" if quantized else "float"
    return None


def slower_int8(runs) -> list[str]:
    """A note for each int8 model that ran slower here than a float model of the same shape.

    Models pair up by their input and output shapes (the same network exported two ways). The
    cause is named where the runtime tells: ONNX Runtime's op profile (--op-profile) gives the
    slowest nodes; for TFLite, the QUANTIZE/DEQUANTIZE ops the int8 file adds are counted.
    """
    from ..runtime.tflite_info import describe

    measured = []
    for run in runs:
        if not run.ok:
            continue
        path = Path(run.model)
        try:
            kind = quantization_of(path)
            info = describe(path) if path.suffix.lower() == ".tflite" else None
        except Exception:  # noqa: BLE001 - an unreadable file just is not compared
            continue
        shapes = None
        if info is not None:
            shapes = (tuple(tuple(t["shape"][1:]) for t in info["inputs"]),
                      tuple(tuple(t["shape"][1:]) for t in info["outputs"]), "tflite")
        measured.append((run, kind, shapes, info))
    notes = []
    for run, kind, shapes, info in measured:
        if kind != "int8":
            continue
        for other, other_kind, other_shapes, other_info in measured:
            if other_kind != "float" or (shapes is not None and other_shapes != shapes):
                continue
            if shapes is None and Path(other.model).suffix != Path(run.model).suffix:
                continue
            mine, theirs = run.measurement.latency_ms.p50, other.measurement.latency_ms.p50
            if mine <= theirs * 1.05:
                continue
            cause = ""
            if run.measurement.op_profile:
                top = sorted(run.measurement.op_profile, key=lambda r: -r["total_ms"])[:3]
                cause = " Slowest nodes: " + ", ".join(f"{r['node']} ({r['op']}, "
                                                       f"{r['total_ms']:.3g} ms)" for r in top) + "."
            elif info is not None:
                extra = {op: n for op, n in info["ops"].items()
                         if op in ("QUANTIZE", "DEQUANTIZE") and n > other_info["ops"].get(op, 0)}
                if extra:
                    cause = (" It adds " + ", ".join(f"{n} {op}" for op, n in extra.items())
                             + " op(s) (float islands or float input/output).")
            notes.append(f"{run.model} (int8) is slower here than {other.model} (float): p50 "
                         f"{mine:.4g} ms vs {theirs:.4g} ms.{cause} int8 pays off where the "
                         "runtime has fast int8 kernels (Arm NEON, VNNI); measure on the device "
                         "(--host) before choosing")
            break
    return notes
