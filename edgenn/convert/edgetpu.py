"""Edge TPU pre-flight: which ops will map, where mapping stops, and the compiler when present.

The op table and limits follow Coral's "TensorFlow models on the Edge TPU" documentation
(supported operations). The compiler maps ops in order until the first one it cannot run;
from there on, everything runs on the CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .compat import OpView, read_ops

# op -> limitation text checked by _op_problem (None: no extra limit beyond int8 tensors)
SUPPORTED = {
    "ADD": None, "AVERAGE_POOL_2D": "no fused activation", "CONCATENATION": None,
    "CONV_2D": "same dilation in x and y", "DEPTHWISE_CONV_2D": "same dilation in x and y",
    "EXPAND_DIMS": None, "FULLY_CONNECTED": None, "L2_NORMALIZATION": None, "LOGISTIC": None,
    "LSTM": "unidirectional only", "MAXIMUM": None, "MAX_POOL_2D": "no fused activation",
    "MEAN": "no reduction over the batch", "MINIMUM": None, "MUL": None, "PACK": None, "PAD": None,
    "PRELU": None, "QUANTIZE": None, "DEQUANTIZE": None, "REDUCE_MAX": None, "REDUCE_MIN": None,
    "RELU": None, "RELU6": None, "RELU_N1_TO_1": None, "RESHAPE": None, "RESIZE_BILINEAR": None,
    "RESIZE_NEAREST_NEIGHBOR": None, "RSQRT": None, "SLICE": None, "SOFTMAX": "1-D, <= 16000",
    "SPACE_TO_DEPTH": None, "SPLIT": None, "SQUEEZE": None, "STRIDED_SLICE": None, "SUB": None,
    "SUM": None, "SQUARED_DIFFERENCE": None, "TANH": None, "TRANSPOSE": None,
    "TRANSPOSE_CONV": None, "HARD_SWISH": None,
}
_INT8 = {"int8", "uint8"}
_ALLOWED_CONST = {"int8", "uint8", "int32", "int64"}  # biases and shape operands
NOT_FOUND = ("edgetpu_compiler not found on PATH: it ships only for x86-64 Debian/Ubuntu "
             "(Coral's apt repository, package edgetpu-compiler); the int8 model was written and "
             "the compatibility prediction above stands in for the compiler's own report")


def _op_problem(op: OpView) -> str | None:
    if op.name not in SUPPORTED:
        return f"{op.name} is not an Edge TPU operation"
    if op.name in ("QUANTIZE", "DEQUANTIZE"):
        return None  # io conversions; the compiler maps the int8->int8 requantize form
    for t in op.inputs + op.outputs:
        if t.constant and t.dtype in _ALLOWED_CONST:
            continue
        if t.dtype not in _INT8:
            return f"{op.name} has a {t.dtype} tensor ({t.name or 'unnamed'}); the Edge TPU runs int8 only"
        dynamic = [d for d in t.signature[1:] if d < 0]
        if dynamic:
            return f"{op.name} has a dynamic shape {t.signature}; sizes must be fixed at compile time"
        big = [d for d in t.shape[:-3] if d > 1]
        if big:
            return f"{op.name} has tensor shape {t.shape}: only the 3 innermost dimensions may exceed 1"
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        dh, dw = op.options.get("dilation", (1, 1))
        if dh != dw:
            return f"{op.name} dilates {dh}x{dw}; x and y dilation must match"
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and op.options.get("fused_activation", 0):
        return f"{op.name} has a fused activation, which the Edge TPU does not support"
    if op.name == "SOFTMAX":
        shape = op.inputs[0].shape
        inner = [d for d in shape[1:] if d > 1]
        if len(inner) > 1 or (inner and inner[0] > 16000):
            return f"SOFTMAX over {shape}: only 1-D inputs of <= 16000 elements map"
    return None


def analyse(path: str | Path) -> dict:
    """Predict which ops map to the Edge TPU and where mapping stops."""
    ops, facts = read_ops(path)
    rows, first_stop = [], None
    for op in ops:
        problem = _op_problem(op)
        if problem and first_stop is None and op.name not in ("QUANTIZE", "DEQUANTIZE"):
            first_stop = op
        maps = problem is None and first_stop is None
        rows.append({"index": op.index, "op": op.name, "layer": op.layer,
                     "maps": maps, "problem": problem})
    io_ops = {"QUANTIZE", "DEQUANTIZE"}
    compute = [r for r in rows if r["op"] not in io_ops]
    mapped = sum(r["maps"] for r in compute)
    result = {
        "target": "edgetpu", "model": str(path), "ops": len(compute), "mapped": mapped,
        "whole_graph_maps": first_stop is None and facts["subgraphs"] == 1,
        "first_unsupported": None, "problems": [r for r in rows if r["problem"]],
        "per_op": rows,
    }
    if facts["subgraphs"] > 1:
        result["problems"].append({"op": "-", "layer": "-", "maps": False,
                                   "problem": "more than one subgraph: the compiler maps only the first"})
    if first_stop is not None:
        result["first_unsupported"] = {
            "index": first_stop.index, "op": first_stop.name, "layer": first_stop.layer,
            "problem": _op_problem(first_stop),
            "runs_on_cpu": len([r for r in compute if r["index"] >= first_stop.index]),
        }
    return result


def compiler() -> str | None:
    """The edgetpu_compiler executable, if installed."""
    return shutil.which("edgetpu_compiler")


_LOG_ROW = re.compile(r"^(?P<op>[A-Z][A-Z0-9_]+)\s+(?P<count>\d+)\s+(?P<status>.+?)\s*$")


def parse_compiler_log(text: str) -> dict:
    """Read the op table and the mapped count out of edgetpu_compiler's log."""
    rows, in_table = [], False
    for line in text.splitlines():
        if line.strip().startswith("Operator") and "Status" in line:
            in_table = True
            continue
        if in_table:
            m = _LOG_ROW.match(line.strip())
            if m:
                rows.append({"op": m["op"], "count": int(m["count"]), "status": m["status"]})
            elif line.strip() and not line.startswith("-"):
                in_table = False
    mapped = sum(r["count"] for r in rows if r["status"].startswith("Mapped to Edge TPU"))
    total = sum(r["count"] for r in rows)
    m = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", text)
    if m:
        mapped = int(m.group(1))
    return {"ops": rows, "mapped": mapped, "total": total}


def compile_model(path: Path, out_dir: Path, timeout: float = 600) -> dict:
    """Run edgetpu_compiler on ``path``; write <name>_edgetpu.tflite into ``out_dir``."""
    exe = compiler()
    if exe is None:
        return {"ran": False, "message": NOT_FOUND}
    proc = subprocess.run([exe, "-s", "-o", str(out_dir), str(path)], capture_output=True,
                          text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    result = {"ran": True, "returncode": proc.returncode, "log": log[-4000:],
              **parse_compiler_log(log)}
    compiled = out_dir / f"{path.stem}_edgetpu.tflite"
    result["output"] = str(compiled) if compiled.is_file() else None
    return result
