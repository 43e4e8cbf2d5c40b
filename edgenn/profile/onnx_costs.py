"""What an ONNX graph costs: MACs per compute dtype, the activation peak and the weights.

The counterpart of `estimate.tflite_costs` for .onnx files (foreign models: an OCR network from
a PyPI package was refused with "convert first", which edgenn cannot do for an ONNX file). The
shapes are the ones ONNX Runtime computes: the graph runs once on zeros with every node's output
exposed, at the file's size or at ``--input-shape``. MACs are counted for the ops whose cost is
a matrix product (Conv, ConvTranspose, MatMul, Gemm, their integer and QLinear forms, LSTM, GRU,
RNN); an op computes in int8 when it is an integer op or reads a DequantizeLinear (a QDQ file,
which ONNX Runtime runs as int8 kernels). Ops inside subgraphs (Loop, Scan, If) are not counted,
and the count says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .costs import Costs

_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm",
                "MatMulIntegerToFloat"}
_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3}  # the others: input 1
_SUBGRAPH_OPS = {"Loop", "Scan", "If"}


def onnx_costs(path: str | Path, input_shapes: list | None = None) -> Costs:
    """What the .onnx model at ``path`` costs at its size (or at ``input_shapes``)."""
    import onnx

    from ..runtime.layout import fit_shapes, input_signatures, resolve_input_shapes

    path = Path(path)
    shapes = resolve_input_shapes(path, input_shapes, purpose="estimate") or fit_shapes(
        str(path), input_signatures(path), None, purpose="estimate")
    model = onnx.load(str(path))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    tensors = _shapes_in_child(path, shapes)
    for name, t in weights.items():
        tensors[name] = (list(t.dims), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(
            t.data_type)).itemsize)
    producer = {o: node.op_type for node in graph.node for o in node.output}
    macs: dict[str, int] = {}
    skipped = []
    for node in graph.node:
        if node.op_type in _SUBGRAPH_OPS:
            skipped.append(node.op_type)
            continue
        n = _node_macs(node, {k: v[0] for k, v in tensors.items()})
        if n:
            int8 = node.op_type in _INTEGER_OPS or (
                node.input and producer.get(node.input[0]) == "DequantizeLinear")
            dtype = "int8" if int8 else "float32"
            macs[dtype] = macs.get(dtype, 0) + int(n)
    notes = ([f"{len(skipped)} op(s) holding subgraphs ({', '.join(sorted(set(skipped)))}) are "
              "not counted: their bodies run a number of times only a run knows"]
             if skipped else [])

    def nbytes(name: str) -> int:
        dims, itemsize = tensors.get(name, ([], 4))
        return math.prod(max(int(d), 1) for d in dims) * itemsize

    # activations live from the node that writes them to the last node that reads them
    first, last = {}, {}
    inputs = [i.name for i in graph.input if i.name not in weights]
    for name in inputs:
        first[name] = 0
    for i, node in enumerate(graph.node):
        for name in node.output:
            if name:
                first.setdefault(name, i)
                last[name] = i
        for name in node.input:
            if name and name not in weights:
                first.setdefault(name, i)
                last[name] = i
    events = sorted([(first[n], 0, nbytes(n)) for n in first]
                    + [(last.get(n, first[n]) + 1, -1, -nbytes(n)) for n in first])
    peak = live = 0
    for _, _, delta in events:
        live += delta
        peak = max(peak, live)
    weight_bytes = sum(nbytes(name) for name in weights)
    model_bytes = path.stat().st_size + sum(
        (path.parent / f).stat().st_size for f in {_location(t) for t in graph.initializer} - {None}
        if (path.parent / f).is_file())
    return Costs(macs, peak, weight_bytes, model_bytes, tuple(notes))


def _location(tensor) -> str | None:
    """The external data file a weight is stored in, if any."""
    for entry in tensor.external_data:
        if entry.key == "location":
            return entry.value
    return None


def _node_macs(node, shape: dict) -> int:
    """Multiply-accumulates of one node, from its tensors' shapes (0 for other ops)."""
    op = node.op_type
    ins = list(node.input)
    out = shape.get(node.output[0]) if node.output else None
    if not out:
        return 0
    outs = math.prod(max(int(d), 1) for d in out)
    w = shape.get(ins[_WEIGHT_INPUT.get(op, 1)]) if len(ins) > _WEIGHT_INPUT.get(op, 1) else None
    if op in ("Conv", "ConvInteger", "QLinearConv") and w and len(w) >= 3:
        return outs * math.prod(w[1:])
    if op == "ConvTranspose" and w and len(w) >= 3 and shape.get(ins[0]):
        return math.prod(shape[ins[0]]) * math.prod(w[1:])
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "MatMulIntegerToFloat") \
            and shape.get(ins[0]):
        return outs * int(shape[ins[0]][-1])
    if op in ("Gemm", "QGemm") and shape.get(ins[0]) and len(shape[ins[0]]) == 2:
        trans = next((a.i for a in node.attribute if a.name == "transA"), 0)
        return outs * int(shape[ins[0]][0 if trans else 1])
    if op in ("LSTM", "GRU", "RNN") and w and len(w) == 3 and shape.get(ins[0]):
        steps, batch, features = shape[ins[0]][:3]
        directions, gate_units = w[0], w[1]
        hidden = next((a.i for a in node.attribute if a.name == "hidden_size"), 0) or (
            gate_units // {"LSTM": 4, "GRU": 3, "RNN": 1}[op])
        return steps * batch * directions * gate_units * (features + hidden)
    return 0


def _shapes_in_child(path: Path, shapes: list[list[int]]) -> dict[str, tuple[list[int], int]]:
    """{tensor name: (shape, item size)} of every node output, from one run on zeros.

    In a child with an address-space limit (`isolate.run_child`): this run keeps every tensor.
    """
    import json

    from .isolate import run_child

    at = ",".join("x".join(map(str, s)) for s in shapes)
    doc = run_child("edgenn.profile.onnx_costs", [str(path), json.dumps(shapes)],
                    f"{path} run once at {at} to size its tensors",
                    "choose a size the model takes (--input-shape)")
    return {name: (shape, size) for name, (shape, size) in doc.items()}


def _run_once(model, shapes: list[list[int]]) -> dict[str, np.ndarray]:
    """Every node output of ``model`` after one ONNX Runtime run on zeros at ``shapes``."""
    import onnx
    import onnxruntime as ort

    from ..quiet import quiet_stderr

    graph = model.graph
    known = {o.name for o in graph.output}
    try:  # a sequence or map output cannot be exposed as a tensor: leave those out
        kinds = {v.name: v.type.WhichOneof("value")
                 for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except Exception:  # noqa: BLE001 - inference is a refinement; ORT decides
        kinds = {}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for node in graph.node:
        for name in node.output:
            if name and name not in known and kinds.get(name, "tensor_type") == "tensor_type":
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    feeds = {}
    for value, shape in zip(inputs, shapes):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = np.zeros(shape, dtype)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    with quiet_stderr():
        session = ort.InferenceSession(exposed.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        arrays = session.run(names, feeds)
    return {name: np.asarray(a) for name, a in zip(names, arrays) if isinstance(a, np.ndarray)}


def _child(path: str, shapes_json: str) -> dict:
    """The child's side of `_shapes_in_child`: every tensor's shape and item size."""
    import json

    import onnx

    values = _run_once(onnx.load(path), json.loads(shapes_json))
    return {name: [list(a.shape), a.dtype.itemsize] for name, a in values.items()}


if __name__ == "__main__":
    import sys

    from .isolate import child_output

    child_output(lambda: _child(sys.argv[1], sys.argv[2]))
