"""Edge TPU pre-flight: which ops will map, where mapping stops, and the compiler when present.

The op table and limits follow Coral's "TensorFlow models on the Edge TPU" documentation
(supported operations). The compiler maps ops in order until the first one it cannot run;
from there on, everything runs on the CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from ..runtime.tflite_ops import OpView, read_ops
from .preflight import FirstUnsupported, OpCheck, ParameterMemory, Preflight

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


# The Edge TPU caches parameters in on-chip SRAM (about 8 MB); a model whose parameters do not
# fit streams the rest from the host on every inference (Coral's "parameter data caching").
ON_CHIP_BYTES = 8 * 2**20


def analyse(path: str | Path) -> Preflight:
    """Predict which ops map to the Edge TPU, where mapping stops, and on-chip memory use."""
    ops, facts = read_ops(path)
    rows, first_stop = [], None
    for op in ops:
        problem = _op_problem(op)
        if problem and first_stop is None and op.name not in ("QUANTIZE", "DEQUANTIZE"):
            first_stop = op
        rows.append(OpCheck(op.index, op.name, op.layer, problem is None and first_stop is None,
                            problem))
    io_ops = {"QUANTIZE", "DEQUANTIZE"}
    compute = [r for r in rows if r.op not in io_ops]
    problems = [r for r in rows if r.problem]
    if facts["subgraphs"] > 1:
        problems.append(OpCheck(-1, "-", "-", False,
                                "more than one subgraph: the compiler maps only the first"))
    first = None
    if first_stop is not None:
        first = FirstUnsupported(first_stop.index, first_stop.name, first_stop.layer,
                                 _op_problem(first_stop),
                                 len([r for r in compute if r.index >= first_stop.index]))
    return Preflight("edgetpu", str(path), len(compute), sum(r.maps for r in compute),
                     first_stop is None and facts["subgraphs"] == 1, tuple(problems), tuple(rows),
                     first_unsupported=first, parameter_memory=parameter_memory(ops))


def parameter_memory(ops: list[OpView]) -> ParameterMemory:
    """Parameter bytes of the mapped graph against the Edge TPU's on-chip memory."""
    seen, total = set(), 0
    for op in ops:
        for t in op.inputs:
            if t.constant and t.name not in seen:
                seen.add(t.name)
                size = {"int8": 1, "uint8": 1, "int16": 2, "float16": 2}.get(t.dtype, 4)
                count = 1
                for d in t.shape:
                    count *= max(int(d), 1)
                total += count * size
    mb, limit = total / 2**20, ON_CHIP_BYTES / 2**20
    if total <= ON_CHIP_BYTES:
        note = f"parameters {mb:.2f} MB fit in the Edge TPU's ~{limit:.0f} MB of on-chip memory"
    else:
        note = (f"parameters {mb:.2f} MB exceed the Edge TPU's ~{limit:.0f} MB of on-chip memory: "
                f"about {mb - limit:.2f} MB stream from the host on every inference, which slows "
                "it; prune, cluster or use a smaller model to fit")
    return ParameterMemory(total, ON_CHIP_BYTES, total <= ON_CHIP_BYTES, note)


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


@dataclass(frozen=True)
class CompilerRun:
    """What edgetpu_compiler did, or why it did not run."""

    ran: bool
    message: str | None = None
    returncode: int | None = None
    log: str = ""
    ops: tuple[dict, ...] = ()
    mapped: int | None = None
    total: int | None = None
    output: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ops"] = list(out["ops"])
        return out

    def summary(self) -> str:
        if not self.ran:
            return self.message or "edgetpu_compiler did not run"
        return f"edgetpu_compiler mapped {self.mapped} of {self.total} ops (exit {self.returncode})"


def compile_model(path: Path, out_dir: Path, timeout: float = 600) -> CompilerRun:
    """Run edgetpu_compiler on ``path``; write <name>_edgetpu.tflite into ``out_dir``."""
    exe = compiler()
    if exe is None:
        return CompilerRun(False, NOT_FOUND)
    proc = subprocess.run([exe, "-s", "-o", str(out_dir), str(path)], capture_output=True,
                          text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    parsed = parse_compiler_log(log)
    compiled = out_dir / f"{path.stem}_edgetpu.tflite"
    return CompilerRun(True, None, proc.returncode, log[-4000:], tuple(parsed["ops"]),
                       parsed["mapped"], parsed["total"],
                       str(compiled) if compiled.is_file() else None)
