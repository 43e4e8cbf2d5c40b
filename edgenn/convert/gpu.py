"""GPU pre-flight: ops LiteRT's GPU accelerator (OpenCL/WebGPU/Vulkan delegate) runs.

The list follows LiteRT's GPU delegate documentation (supported ops, float32/float16). Ops
outside it fall back to the CPU, splitting the graph and costing copies.
"""

from __future__ import annotations

from pathlib import Path

from ..runtime.tflite_ops import read_ops
from .preflight import OpCheck, Preflight

SUPPORTED = {
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CONCATENATION", "CONV_2D", "COS",
    "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU", "EXP", "FLOOR",
    "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "LEAKY_RELU", "LOG", "LOGISTIC", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NEG", "PACK", "PAD", "PADV2", "POW", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SIN", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "CAST", "SELECT_V2",
}
_FLOAT = {"float32", "float16"}


def analyse(path: str | Path) -> Preflight:
    """Flag ops the GPU accelerator will not run, with the Keras layer they came from."""
    ops, facts = read_ops(path)
    rows = []
    for op in ops:
        problem = None
        if op.name not in SUPPORTED:
            problem = f"{op.name} is not supported by the GPU accelerator (runs on the CPU)"
        else:
            dtypes = {t.dtype for t in op.inputs + op.outputs if not t.constant}
            odd = dtypes - _FLOAT - {"int32"}
            if odd and op.name not in ("QUANTIZE", "DEQUANTIZE", "CAST"):
                problem = (f"{op.name} computes in {', '.join(sorted(odd))}; the GPU path runs "
                           "float32/float16 (export float16 for the GPU)")
        rows.append(OpCheck(op.index, op.name, op.layer, problem is None, problem))
    problems = tuple(r for r in rows if r.problem)
    return Preflight("gpu", str(path), len(rows), sum(r.maps for r in rows), not problems,
                     problems, tuple(rows))
