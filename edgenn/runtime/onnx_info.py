"""Describe an .onnx model: opset, ops, initializers, inputs and outputs. No TensorFlow."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputFileError, MissingDependencyError


def tensor_dims(value_info) -> list:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def type_name(proto, helper) -> str:
    """A value's type: numpy's name for a tensor, ``seq(map(int64,float32))`` for the rest."""
    kind = proto.WhichOneof("value")
    if kind == "tensor_type":
        try:
            return np.dtype(helper.tensor_dtype_to_np_dtype(proto.tensor_type.elem_type)).name
        except (KeyError, TypeError):
            return "undefined"
    if kind == "sequence_type":
        return f"seq({type_name(proto.sequence_type.elem_type, helper)})"
    if kind == "map_type":
        key = np.dtype(helper.tensor_dtype_to_np_dtype(proto.map_type.key_type)).name
        return f"map({key},{type_name(proto.map_type.value_type, helper)})"
    if kind == "optional_type":
        return f"optional({type_name(proto.optional_type.elem_type, helper)})"
    return str(kind or "undefined")


def describe(path: str | Path) -> dict:
    """A JSON-able description of an ONNX model."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise MissingDependencyError("reading .onnx files needs onnx",
                                     "pip install 'edgenn[onnx]'") from None
    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as err:
        raise InputFileError(f"{p} is not a valid ONNX model ({type(err).__name__})",
                             "export it again") from None
    try:
        return _describe(p, model, helper)
    except (KeyError, ValueError, TypeError, OverflowError, IndexError, AttributeError) as err:
        raise InputFileError(f"{p} is not a valid ONNX model ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:100]})", "export it again") from None


def _describe(p: Path, model, helper) -> dict:
    graph = model.graph
    ops = Counter(n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}.{n.op_type}"
                  for n in graph.node)
    init_names = {i.name for i in graph.initializer}
    init_bytes: Counter = Counter()
    params = 0
    for init in graph.initializer:
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        count = math.prod(int(d) for d in init.dims) if init.dims else 1
        params += count
        init_bytes[np.dtype(dtype).name] += count * np.dtype(dtype).itemsize

    def io(values):
        return [{"name": v.name, "shape": tensor_dims(v) if v.type.HasField("tensor_type") else [],
                 "dtype": type_name(v.type, helper)}
                for v in values if v.name not in init_names]

    return {
        "format": "onnx",
        "path": str(p),
        "bytes": p.stat().st_size,
        "ir_version": int(model.ir_version),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": io(graph.input),
        "outputs": io(graph.output),
        "ops": dict(ops.most_common()),
        "op_count": int(sum(ops.values())),
        "params": params,
        "initializer_bytes": dict(init_bytes),
        "metadata": {m.key: m.value for m in model.metadata_props},
        "quantized": any(op in ops for op in ("QuantizeLinear", "QLinearConv", "MatMulInteger",
                                              "ConvInteger", "DynamicQuantizeLinear")),
    }

