"""Describe an .onnx model: opset, ops, initializers, inputs and outputs. No TensorFlow."""

from __future__ import annotations

import math
import re
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


def element_type(kind: str):
    """The numpy type of an ONNX value of type ``kind`` ("tensor(double)"), or None.

    None for what cannot be fed as a numpy array: strings, sequences, maps, optionals and
    element types numpy lacks (float8, int4; bfloat16 unless ml_dtypes is loaded).
    profile/agent.py keeps the same rule (it stands alone on devices); a test in
    tests/test_foreign_onnx.py checks that the two agree.
    """
    base = kind[len("tensor("):-1] if kind.startswith("tensor(") and kind.endswith(")") else None
    base = {"float": "float32", "double": "float64"}.get(base, base)
    if base is None or base == "string":
        return None
    try:
        return np.dtype(base)
    except TypeError:
        return None


def peak_activations(model: str | Path | bytes) -> tuple[str | None, int]:
    """(op, bytes): the node whose input and output tensors take the most memory at once.

    From onnx's shape inference, for one sample (a symbolic or open size counts as 1; a batch
    the file fixes counts as it is); initializers (weights) are left out. A lower bound on
    what ONNX Runtime needs for one run. (None, 0) where onnx is missing or cannot infer.
    """
    try:
        import onnx
        from onnx import helper, shape_inference

        proto = (onnx.load_from_string(bytes(model)) if isinstance(model, (bytes, bytearray))
                 else onnx.load(str(model), load_external_data=False))
        graph = shape_inference.infer_shapes(proto).graph
    except Exception:  # noqa: BLE001 - no bound is no worse than before
        return None, 0
    weights = {i.name for i in graph.initializer}
    sizes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        if value.name in weights or not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
        except (KeyError, TypeError):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                for d in tensor.shape.dim]
        sizes[value.name] = math.prod(dims) * itemsize
    best = (None, 0)
    for node in graph.node:
        total = sum(sizes.get(name, 0) for name in {*node.input, *node.output} if name)
        if total > best[1]:
            best = (node.op_type, total)
    return best


_NO_KERNEL = re.compile(r"Could not find an implementation for ([\w.]+)\((\d+)\)")
_ORT_PREFIX = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
OLDEST_OPSET = 7  # ONNX Runtime registers kernels from opset 7 on


def runtime_message(message: str) -> str:
    """ONNX Runtime's error text on one line, without its "[ONNXRuntimeError] : 9 : CODE :"."""
    return " ".join(_ORT_PREFIX.sub("", str(message)).split())


def runtime_hint(message: str) -> str | None:
    """The fix for an ONNX Runtime error that edgenn recognizes, else None.

    A node at an opset older than 7 (PyTorch 0.3's and Caffe2's exporters wrote opset 6) has
    no kernel in ONNX Runtime: onnx's version converter brings the file to a current opset.
    """
    found = _NO_KERNEL.search(str(message))
    if found is None:
        return None
    op, version = found.group(1), int(found.group(2))
    if version < OLDEST_OPSET:
        return (f"{op} is at opset {version}, older than ONNX Runtime runs ({OLDEST_OPSET} on): "
                "upgrade the file, e.g. python -c \"import onnx, onnx.version_converter as v; "
                "onnx.save(v.convert_version(onnx.load('IN.onnx'), 17), 'OUT.onnx')\", "
                "or export it again")
    return (f"ONNX Runtime has no {op} kernel for the element types this file gives it "
            f"(opset {version}): export the model again with float32 tensors at that node")


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

