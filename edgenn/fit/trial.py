"""One trial of `edgenn fit`: a recipe run by `edgenn compress` in its own process, then costed.

The trial is a child process, so a trial that crashes, is killed or runs out of memory is one
failed row and the search goes on. Its accuracy is what compress measured on the exported file
(LiteRT) on the split the recipe names; latency and RAM are the device estimate of that file
(`edgenn estimate`: MACs over the profile's throughput, the tensor-arena peak), which is the
same whatever else runs on this machine, so trials running side by side do not disturb it.

Runs in a Ray worker (or the driver): no TensorFlow import here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# Error lines longer than this are cut in the journal (the trial's log keeps all of it).
_ERROR_CHARS = 400


def compress_command(job: dict) -> list[str]:
    cmd = [sys.executable, "-m", "edgenn", "compress", job["model"], "--recipe", job["recipe"],
           *job["data_args"], "-o", job["out"], "--json", "--quiet", "--overwrite"]
    if job.get("epochs_scale", 1.0) != 1.0:
        cmd += ["--epochs-scale", repr(job["epochs_scale"])]
    if job.get("allow_unsafe"):
        cmd.append("--allow-unsafe")
    if job.get("custom_objects"):
        cmd += ["--custom-objects", job["custom_objects"]]
    return cmd


def explain(job: dict) -> dict:
    """The input model's layers ranked by how much int8 quantization error each one adds.

    `edgenn convert --quantize int8 --explain` on the search's data; the fidelity bar is off
    (the ranking is wanted whatever the agreement).
    """
    started = time.monotonic()
    out = Path(job["out"])
    cmd = [sys.executable, "-m", "edgenn", "convert", job["model"], "--to", "tflite",
           "--quantize", "int8", *job["data_args"], "--explain", "--threshold", "0",
           "-o", str(out), "--json", "--quiet"]
    if job.get("allow_unsafe"):
        cmd.append("--allow-unsafe")
    if job.get("custom_objects"):
        cmd += ["--custom-objects", job["custom_objects"]]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=job.get("timeout"),
                          preexec_fn=_die_with_parent)
    doc = _json(proc.stdout) or {}
    rows = (doc.get("explain") or {}).get("layers") or []
    if proc.returncode != 0 or not rows:
        why = (doc.get("error") or {}).get("message") or (doc.get("explain") or {}).get("skipped") \
            or f"exit {proc.returncode}"
        return _failed(job, started, why, proc.returncode)
    # First the starved tensors (an int8 step too coarse for their signal), each with the
    # layers that read it: kept float together ("a+b"); then the layers whose error grows most.
    starved = (doc.get("explain") or {}).get("starved") or []
    groups = ["+".join(g) for g in starved]
    taken = {n for g in starved for n in g}
    ranked = sorted((r for r in rows if r["growth"] > 0 and r["layer"] not in taken),
                    key=lambda r: -r["growth"])
    return {"status": "complete", "layers": groups + [r["layer"] for r in ranked],
            "growth": [None] * len(groups) + [r["growth"] for r in ranked],
            "agreement": (doc.get("fidelity") or {}).get("value"),
            "seconds": round(time.monotonic() - started, 1)}


def run(job: dict) -> dict:
    """Run ``job`` (see `edgenn.fit.search`) and return its measurements or why it failed."""
    started = time.monotonic()
    out = Path(job["out"])
    # The recipe pins TensorFlow's threads (`threads:`), as `compress --recipe front/NN.yaml`
    # will run it again; nothing else differs from a user's compress.
    threads = str(job.get("threads") or 1)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = out.with_name(out.name + ".log")
    try:
        with open(log, "wb") as stderr:
            proc = subprocess.run(compress_command(job), stdout=subprocess.PIPE, stderr=stderr,
                                  env=env, timeout=job.get("timeout"),
                                  preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        return _failed(job, started, f"stopped after {job.get('timeout')} s (--trial-timeout)")
    code = proc.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
        why = "out of memory (killed)" if name == "SIGKILL" else f"killed by {name}"
        return _failed(job, started, why, code)
    doc = _json(proc.stdout)
    if code not in (0, 4) or doc is None or "artifacts" not in doc:
        message = (doc or {}).get("error", {}).get("message") or _last_line(log) or f"exit {code}"
        return _failed(job, started, message, code)
    return _measure(job, doc, started)


def _measure(job: dict, doc: dict, started: float) -> dict:
    from .. import devices
    from ..errors import UsageError
    from ..profile.estimate import estimate

    exported = [a for a in doc["artifacts"] if a.get("format") != "keras"]
    keras = [a for a in doc["artifacts"] if a.get("format") == "keras"]
    device = devices.load(job["device"])
    exports = []
    shape = (doc.get("data") or {}).get("sample_shape")
    for artifact in exported:
        try:
            est = estimate(artifact["path"], device)
        except UsageError:  # an open input size: estimated at the size of the data's samples
            if not shape:
                raise
            est = estimate(artifact["path"], device, input_shapes=[(None, [1, *shape])])
        paired = artifact["metrics"].get("vs_input") or {}
        exports.append({"quantization": artifact.get("quantization"),
                        "accuracy": artifact["metrics"]["accuracy"],
                        "drop_se_pt": paired.get("drop_se_pt"),
                        "latency_ms": est.latency_ms, "ram_mb": est.ram_mb,
                        "bytes": artifact["bytes"], "gzip_bytes": artifact["gzip_bytes"],
                        "macs": est.macs, "tflite": artifact["path"]})
    result = {"status": "complete", **exports[0], "exports": exports,
              "baseline": doc["metrics"]["baseline"]["accuracy"],
              "layer_classes": (doc.get("model") or {}).get("layer_classes"),
              "keras": keras[0]["path"] if keras else None, "notes": doc.get("notes", []),
              "seconds": round(time.monotonic() - started, 1)}
    cache = job.get("cache_to")
    if cache and result["keras"] and Path(result["keras"]).is_file():
        target = Path(cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(result["keras"], tmp)
        os.replace(tmp, target.with_suffix(Path(result["keras"]).suffix))
    return result


def _die_with_parent() -> None:
    """In the child: SIGKILL when the worker that started it dies.

    A cancelled or stopped search must not leave trainings running. Linux's
    prctl(PR_SET_PDEATHSIG); elsewhere nothing.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _failed(job: dict, started: float, message: str, code: int | None = None) -> dict:
    text = " ".join(str(message).split())
    return {"status": "failed", "error": text[:_ERROR_CHARS], "exit_code": code,
            "seconds": round(time.monotonic() - started, 1)}


def _json(text: bytes) -> dict | None:
    try:
        return json.loads(text.decode("utf-8", "replace"))
    except ValueError:
        return None


def _last_line(log: Path) -> str | None:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    errors = [ln for ln in lines if ln.startswith("error: ")]
    return (errors or lines or [None])[-1]
