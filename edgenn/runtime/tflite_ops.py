"""Walk a .tflite graph op by op, with dtypes, shapes and the Keras layer each op came from.

Shared by the Edge TPU, GPU and CPU pre-flight checks. Reads the flatbuffer with the schema
that ai-edge-litert ships; no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .tflite_info import _names, _s, _schema, op_name, parse_guard, read_model


@dataclass
class TensorView:
    name: str
    dtype: str
    shape: list[int]
    signature: list[int]
    constant: bool
    quantized: bool
    index: int = -1  # in its subgraph's tensors
    value: int | None = None  # a constant integer scalar's value (a loop's bound)


@dataclass
class OpView:
    index: int
    name: str
    inputs: list[TensorView]
    outputs: list[TensorView]
    options: dict = field(default_factory=dict)

    @property
    def layer(self) -> str:
        """The Keras layer(s) the op came from, read from its output tensor's name.

        The converter names a fused op's output after every layer fused into it
        ("m/relu1/Relu;m/bn1/...;m/conv1/Conv2D"); they are listed source first: conv1+bn1+relu1.
        """
        for t in self.outputs:
            layers = []
            for part in t.name.split(";"):
                pieces = [p for p in part.split("/") if p]
                name = pieces[1] if len(pieces) >= 3 else pieces[0] if len(pieces) == 2 else None
                if name and name not in layers:
                    layers.append(name)
            if layers:
                return "+".join(reversed(layers))
        return self.outputs[0].name if self.outputs else "?"


def _options(op, schema, opcode_name: str) -> dict:
    out = {}
    table = op.BuiltinOptions()
    if table is None:
        return out
    readers = {
        "CONV_2D": schema.Conv2DOptions, "DEPTHWISE_CONV_2D": schema.DepthwiseConv2DOptions,
        "AVERAGE_POOL_2D": schema.Pool2DOptions, "MAX_POOL_2D": schema.Pool2DOptions,
    }
    if opcode_name == "WHILE":  # which subgraphs test and run each step
        opts = schema.WhileOptions()
        opts.Init(table.Bytes, table.Pos)
        return {"cond": opts.CondSubgraphIndex(), "body": opts.BodySubgraphIndex()}
    cls = readers.get(opcode_name)
    if cls is None:
        return out
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    if hasattr(opts, "DilationWFactor"):
        out["dilation"] = (opts.DilationHFactor(), opts.DilationWFactor())
    if hasattr(opts, "FusedActivationFunction"):
        out["fused_activation"] = opts.FusedActivationFunction()
    return out


def read_ops(path: str | Path, subgraph: int = 0) -> tuple[list[OpView], dict]:
    """A subgraph's ops in execution order (the main one's by default), and facts about the model.

    Tensor indices (``TensorView.index``) are the subgraph's own.
    """
    return read_subgraphs(path, [subgraph])[subgraph]


def read_subgraphs(path: str | Path, subgraphs: list[int]) -> dict[int, tuple[list[OpView], dict]]:
    """`read_ops` of each of ``subgraphs`` (a loop's body and condition), the file parsed once."""
    with parse_guard(path):
        schema = _schema()
        model, buf = read_model(path)
        return {i: _read_ops(model, buf, schema, i) for i in subgraphs}


def _read_ops(model, buf, schema, subgraph: int) -> tuple[list[OpView], dict]:
    import numpy as np

    types = _names(schema.TensorType)
    integers = {schema.TensorType.INT32: "<i4", schema.TensorType.INT64: "<i8"}
    sg = model.Subgraphs(subgraph)

    def tensor(i: int) -> TensorView:
        t = sg.Tensors(i)
        buffer = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        constant = bool(buffer and (buffer.DataLength() or buffer.Offset() > 1))
        shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
        value = None
        if constant and not shape and t.Type() in integers and buffer.DataLength():
            data = np.frombuffer(buffer.DataAsNumpy().tobytes(), integers[t.Type()])
            value = int(data[0]) if data.size == 1 else None
        q = t.Quantization()
        return TensorView(
            name=_s(t.Name()), dtype=types.get(t.Type(), str(t.Type())).lower(), shape=shape,
            signature=[int(d) for d in t.ShapeSignatureAsNumpy()] if t.ShapeSignatureLength() else [],
            constant=constant, quantized=bool(q is not None and q.ScaleLength()), index=i,
            value=value)

    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name = op_name(model, op.OpcodeIndex())
        ins = [tensor(int(j)) for j in op.InputsAsNumpy() if j >= 0] if op.InputsLength() else []
        outs = [tensor(int(j)) for j in op.OutputsAsNumpy()] if op.OutputsLength() else []
        ops.append(OpView(i, name, ins, outs, _options(op, schema, name)))
    facts = {"subgraphs": model.SubgraphsLength(), "bytes": len(buf),
             "inputs": [tensor(int(i)) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []}
    return ops, facts
