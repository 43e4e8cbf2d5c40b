"""Self-contained profiling agent: runs one model and prints one JSON document.

This file imports nothing from edgenn (only the standard library, numpy and one runtime), so
the same file runs in a local child process and, copied over SSH, on a device.

    python agent.py CONFIG_JSON        (or the JSON on stdin with "-")

Config keys: model, runtime (litert | tflite-runtime | onnxruntime), accelerator (cpu | xnnpack
| gpu | edgetpu | delegate:PATH | ep:NAME), threads, warmup, runs, duration, inputs (.npy, or
none for random inputs), op_profile, keep_times.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import numpy as np


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def random_input(shape, dtype, rng):
    """Random values a model accepts.

    Quantized (8/16-bit) inputs take their whole range. 32/64-bit integers are ids (an
    Embedding's token ids, a lookup's keys), where only 0 is sure to be a valid index (random
    int32 ids failed an Embedding's GATHER).
    """
    dtype = np.dtype(dtype)
    shape = [d if d and d > 0 else 1 for d in shape]
    check_size(shape, dtype)
    if np.issubdtype(dtype, np.integer) and dtype.itemsize >= 4:
        return np.zeros(shape, dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.random(shape, dtype=np.float32).astype(dtype, copy=False)


def check_size(shape, dtype) -> None:
    """Refuse an input too large to make up here: over a quarter of the memory available.

    A file can declare any shape ([1, 40000, 40000, 3] is 19 GB). A quarter, where edgenn's
    own made-up inputs (limits.made_up_batch) get an eighth: here one sample goes through one
    runtime, there a batch goes through the model and its converted file.
    """
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    free = None
    try:
        with open("/proc/meminfo") as fh:
            free = next((int(line.split()[1]) * 1024 for line in fh
                         if line.startswith("MemAvailable:")), None)
    except (OSError, ValueError):
        pass
    if free is not None and need > max(free // 4, 256 << 20):
        err = RuntimeError(f"an input of shape {list(shape)} ({np.dtype(dtype).name}) takes "
                           f"{need / 2**30:.1f} GiB, more than a quarter of the "
                           f"{free / 2**30:.1f} GiB of memory available here")
        err.hint = "profile it at a smaller size (--input-shape, where the file leaves it open)"
        raise err


def element_type(name, kind):
    """The numpy type of an ONNX input of type ``kind`` ("tensor(double)"), or a clear refusal.

    Strings, sequences, maps and optionals cannot be made up at random. The rule is
    runtime/onnx_info.element_type's, kept here because this file stands alone (a test checks
    that the two agree on every ONNX type).
    """
    base = kind[len("tensor("):-1] if kind.startswith("tensor(") and kind.endswith(")") else None
    base = {"float": "float32", "double": "float64"}.get(base, base)
    try:
        if base is None or base == "string":
            raise TypeError
        return np.dtype(base)
    except TypeError:
        err = RuntimeError(f"input {name!r} takes {kind}, which the profiler cannot make up "
                           "(it feeds numbers and booleans)")
        err.hint = ("profile a model whose inputs are numeric tensors (move text or other "
                    "preprocessing out of the model)")
        raise err from None


class LiteRT:
    def __init__(self, cfg):
        runtime, accel = cfg["runtime"], cfg["accelerator"]
        if runtime == "tflite-runtime":
            from tflite_runtime import interpreter as mod
        else:
            from ai_edge_litert import interpreter as mod
        kwargs = {"model_path": cfg["model"], "num_threads": cfg.get("threads")}
        if accel == "cpu":  # the builtin kernels, without the default XNNPACK delegate
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif accel == "edgetpu" or accel.startswith("delegate:"):
            lib = "libedgetpu.so.1" if accel == "edgetpu" else accel.split(":", 1)[1]
            try:
                kwargs["experimental_delegates"] = [mod.load_delegate(lib)]
            except (ValueError, OSError) as err:
                hint = ("install the Edge TPU runtime (libedgetpu1-std) and plug in the accelerator"
                        if accel == "edgetpu" else "check the delegate path")
                raise RuntimeError(f"cannot load delegate {lib}: {err}; {hint}") from None
        elif accel == "gpu":
            raise RuntimeError("the GPU accelerator runs through LiteRT's CompiledModel API; "
                               "use runtime litert with accelerator gpu")
        self.interp = mod.Interpreter(**kwargs)
        for detail, shape in zip(self.interp.get_input_details(), cfg.get("input_shapes") or ()):
            self.interp.resize_tensor_input(detail["index"], shape, strict=False)
        for detail in self.interp.get_input_details():  # before the arena is allocated
            check_size(detail["shape"].tolist(), detail["dtype"])
        self.interp.allocate_tensors()
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def input_specs(self):
        return [(d["shape"].tolist(), d["dtype"]) for d in self.inputs]

    def set_inputs(self, arrays):
        for d, a in zip(self.inputs, arrays):
            self.interp.set_tensor(d["index"], a)

    def run(self):
        self.interp.invoke()

    def op_profile(self):
        return None  # the Python interpreter API exposes no per-op timings


@contextlib.contextmanager
def _native_stderr_silenced():
    """Silence fd 2 (LiteRT's C++ logs) for the block; this file imports nothing of edgenn."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class LiteRTCompiled:
    """LiteRT's CompiledModel API: the path to its GPU (WebGPU/OpenCL/Vulkan) accelerator."""

    def __init__(self, cfg, hardware: str = "gpu"):
        import gc

        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator

        accel = HardwareAccelerator.GPU if hardware == "gpu" else HardwareAccelerator.CPU
        error = None
        with _native_stderr_silenced():
            try:
                self.model = CompiledModel.from_file(cfg["model"], hardware_accel=accel)
            except RuntimeError as err:
                error = " ".join(str(err).split())  # a string: the traceback would keep LiteRT alive
            gc.collect()  # LiteRT logs its accelerators' destruction: here, silenced
        if error is not None:
            # LiteRT's message is C++ source locations ("ERROR: [./litert/...:1961] └ ..."):
            # keep only words, if any are left.
            import re

            reason = re.sub(r"ERROR:\s*\[[^\]]*\]\s*", "", error).strip(" \u2514\u251c\u2502:")
            detail = f": {reason[:200]}" if re.search(r"[A-Za-z]{3}", reason) else ""
            missing = RuntimeError(f"LiteRT could not create its {hardware.upper()} accelerator "
                                   f"(no GPU adapter found?){detail}")
            missing.hint = ("profile on the device that has the GPU (--host USER@ADDRESS), or "
                            "use --accelerator xnnpack here")
            raise missing
        key = self.model.get_signature_by_index(0)["key"]
        self.details = list(self.model.get_input_tensor_details(key).values())
        self.inputs_buf = self.model.create_input_buffers(0)
        self.outputs_buf = self.model.create_output_buffers(0)

    def input_specs(self):
        return [(d["shape"], np.dtype(d["dtype"])) for d in self.details]

    def set_inputs(self, arrays):
        for buf, a in zip(self.inputs_buf, arrays):
            buf.write(a)

    def run(self):
        self.model.run_by_index(0, self.inputs_buf, self.outputs_buf)

    def op_profile(self):
        return None


class ORT:
    def __init__(self, cfg):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if cfg.get("threads"):
            options.intra_op_num_threads = cfg["threads"]
            options.inter_op_num_threads = 1
        self.profiling = bool(cfg.get("op_profile"))
        if self.profiling:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(cfg.get("workdir", "."), "ort_profile")
        accel = cfg["accelerator"]
        provider = accel.split(":", 1)[1] if accel.startswith("ep:") else "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise RuntimeError(f"ONNX Runtime has no {provider} here (available: "
                               f"{', '.join(ort.get_available_providers())})")
        self.session = ort.InferenceSession(cfg["model"], options, providers=[provider])
        self.inputs = self.session.get_inputs()
        self.shapes = cfg.get("input_shapes")
        self.feed = {}

    def input_specs(self):
        shapes = self.shapes or [[d if isinstance(d, int) else 1 for d in i.shape]
                                 for i in self.inputs]
        return [(shape, element_type(i.name, i.type)) for shape, i in zip(shapes, self.inputs)]

    def set_inputs(self, arrays):
        self.feed = {i.name: a for i, a in zip(self.inputs, arrays)}

    def run(self):
        self.session.run(None, self.feed)

    def op_profile(self):
        if not self.profiling:
            return None
        path = self.session.end_profiling()
        with open(path) as fh:
            events = json.load(fh)
        os.unlink(path)
        totals = {}
        for e in events:
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                op = e.get("args", {}).get("op_name", "?")
                node = e["name"][: -len("_kernel_time")]
                key = (node, op)
                totals[key] = totals.get(key, 0.0) + e.get("dur", 0) / 1000.0
        rows = [{"node": n, "op": o, "total_ms": round(t, 4)} for (n, o), t in totals.items()]
        return sorted(rows, key=lambda r: r["total_ms"], reverse=True)[:50]


def pick_runtime(cfg):
    if cfg["runtime"] == "onnxruntime":
        return ORT(cfg)
    if cfg["accelerator"] == "gpu":
        return LiteRTCompiled(cfg, "gpu")
    return LiteRT(cfg)


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def measure(cfg) -> dict:
    baseline = rss_mb()
    t0 = time.perf_counter()
    runner = pick_runtime(cfg)
    init_ms = (time.perf_counter() - t0) * 1000
    rng = np.random.default_rng(cfg.get("seed", 0))
    if cfg.get("inputs"):
        arrays = [np.load(p) for p in cfg["inputs"]]
    else:
        arrays = [random_input(shape, dtype, rng) for shape, dtype in runner.input_specs()]
    runner.set_inputs(arrays)
    t0 = time.perf_counter()
    runner.run()
    first_ms = (time.perf_counter() - t0) * 1000
    warm = []
    for _ in range(cfg.get("warmup", 10)):
        t0 = time.perf_counter()
        runner.run()
        warm.append((time.perf_counter() - t0) * 1000)
    times = []
    runs, duration = cfg.get("runs"), cfg.get("duration")
    import gc

    gc.collect()
    gc.disable()  # as timeit does: no collector pauses inside the timed loop
    deadline = time.perf_counter() + duration if duration else None
    while True:
        t0 = time.perf_counter()
        runner.run()
        times.append((time.perf_counter() - t0) * 1000)
        if deadline is not None:
            if time.perf_counter() >= deadline and len(times) >= 3:
                break
        elif len(times) >= (runs or 100):
            break
    gc.enable()
    s = sorted(times)
    mean = sum(times) / len(times)
    std = (sum((t - mean) ** 2 for t in times) / len(times)) ** 0.5
    peak = peak_rss_mb()
    result = {
        "model": cfg["model"], "runtime": cfg["runtime"], "accelerator": cfg["accelerator"],
        "threads": cfg.get("threads"), "model_bytes": os.path.getsize(cfg["model"]),
        "init_ms": round(init_ms, 3), "first_ms": round(first_ms, 3),
        "warmup_mean_ms": round(sum(warm) / len(warm), 3) if warm else None,
        "runs": len(times),
        "latency_ms": {"mean": mean, "std": std, "min": s[0], "p50": percentile(s, 50),
                       "p90": percentile(s, 90), "p95": percentile(s, 95),
                       "p99": percentile(s, 99), "max": s[-1]},
        "cv": std / mean if mean else None,
        "throughput_per_s": 1000.0 / mean if mean else None,
        "peak_rss_mb": round(peak, 2), "rss_growth_mb": round(peak - baseline, 2),
        "baseline_rss_mb": round(baseline, 2),
        "op_profile": runner.op_profile(),
        "input_shapes": [list(np.shape(a)) for a in arrays],
    }
    result["latency_ms"] = {k: round(v, 4) for k, v in result["latency_ms"].items()}
    if cfg.get("keep_times"):
        result["times_ms"] = [round(t, 4) for t in times]
    return result


def main(argv) -> int:
    raw = sys.stdin.read() if argv[1:] == ["-"] else argv[1]
    cfg = json.loads(raw)
    try:
        result = measure(cfg)
    except Exception as err:  # reported as data: the parent turns it into an error for this model
        text = " ".join(str(err).split())  # LiteRT may raise with no message at all
        result = {"model": cfg.get("model"), "error": f"{type(err).__name__}: {text}" if text
                  else f"{type(err).__name__} (the runtime gave no message)"}
        if getattr(err, "hint", None):  # the agent's own message: no type name needed
            result["error"] = str(err)
            result["hint"] = err.hint
    sys.stdout.write("EDGENN-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
