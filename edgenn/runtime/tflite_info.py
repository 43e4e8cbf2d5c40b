"""Describe a .tflite flatbuffer: ops, tensors, quantization, signatures. No TensorFlow."""

from __future__ import annotations

import contextlib
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputFileError, MissingDependencyError


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise MissingDependencyError(
            "reading .tflite files needs ai-edge-litert", "pip install ai-edge-litert"
        ) from None
    return schema


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _s(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


# What the generated flatbuffer readers raise on a corrupt buffer: offsets past the end
# (struct.error, IndexError), numbers of the wrong type ("bad number ... for type uint32"),
# vectors that do not fit (ValueError, MemoryError), tables that are not there (AttributeError).
_PARSE_ERRORS = (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError,
                 OverflowError, AttributeError, KeyError, MemoryError, RecursionError)


@contextlib.contextmanager
def parse_guard(path):
    """Turn any failure while walking a flatbuffer into one InputFileError naming the file."""
    try:
        yield
    except InputFileError:
        raise
    except _PARSE_ERRORS as err:
        raise InputFileError(f"{path} is a truncated or corrupt .tflite file ({type(err).__name__})",
                             "convert or copy the model again") from None


def read_model(path: str | Path):
    """Parse a .tflite file; raise InputFileError for a truncated or corrupt one."""
    schema = _schema()
    p = Path(path)
    try:
        buf = p.read_bytes()
    except IsADirectoryError:
        raise InputFileError(f"{p} is a directory, not a .tflite file", "pass the .tflite file") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise InputFileError(f"{p} is not a TFLite flatbuffer (no TFL3 identifier)",
                             "convert the model again")
    with parse_guard(p):
        model = schema.Model.GetRootAs(buf, 0)
        _touch_everything(model, len(buf))
    return model, buf


def _touch_everything(model, size: int) -> None:
    """Walk the tables once so that a truncated buffer fails here, not halfway through a report."""
    if model.SubgraphsLength() == 0:
        raise ValueError("no subgraphs")
    for i in range(model.SubgraphsLength()):
        sg = model.Subgraphs(i)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            tensor.ShapeAsNumpy() if tensor.ShapeLength() else None
            tensor.Name()
        for o in range(sg.OperatorsLength()):
            sg.Operators(o).OpcodeIndex()
    for b in range(model.BuffersLength()):
        buffer = model.Buffers(b)
        if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > size:
            raise ValueError("buffer beyond end of file")
        buffer.DataLength()


def unpacked(flatbuffer: bytes):
    """A .tflite flatbuffer as the schema's editable object tree (``ModelT``)."""
    return _schema().ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)


def packed(model) -> bytes:
    """A ``ModelT`` (``unpacked``, then edited) as a .tflite flatbuffer again."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_names(model) -> list[str]:
    """Each operator code's builtin name (an unpacked model's ``operatorCodes``, in order)."""
    names = _names(_schema().BuiltinOperator)
    return [names.get(max(int(c.builtinCode), int(c.deprecatedBuiltinCode)), "CUSTOM")
            for c in model.operatorCodes or []]


def op_name(model, opcode_index: int) -> str:
    """The builtin op name, or the custom code for custom (and Flex) ops."""
    schema = _schema()
    code = model.OperatorCodes(opcode_index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return _s(code.CustomCode())
    return _names(schema.BuiltinOperator).get(builtin, f"BUILTIN_{builtin}")


def _tensor_info(sg, index: int, type_names: dict[int, str]) -> dict:
    t = sg.Tensors(index)
    q = t.Quantization()
    scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
    zeros = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
    info = {
        "name": _s(t.Name()),
        "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
        "dtype": type_names.get(t.Type(), str(t.Type())).lower(),
    }
    if t.ShapeSignatureLength():  # -1 where the model leaves a dimension open
        info["shape_signature"] = [int(d) for d in t.ShapeSignatureAsNumpy()]
    if scales is not None:
        if len(scales) == 1:
            info["quantization"] = {"scale": float(scales[0]),
                                    "zero_point": int(zeros[0]) if zeros is not None else 0}
        else:
            info["quantization"] = {"per_channel": len(scales),
                                    "axis": int(q.QuantizedDimension())}
    return info


INPUT_NAMES_KEY = "edgenn.inputs"  # metadata: the Keras model's input names, in its order


def recorded_input_names(path: str | Path) -> list[str] | None:
    """The source model's input names edgenn recorded in a file with several inputs, or None.

    The file's own inputs are numbered (input_0, input_1...: what orders them); a user's data
    names them as the Keras model does (``x_<input name>``), so the same .npz serves both.
    """
    import json

    try:
        model, buf = read_model(path)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if _s(entry.Name()) == INPUT_NAMES_KEY:
                data = model.Buffers(entry.Buffer()).DataAsNumpy()
                names = json.loads(bytes(data).decode())
                if isinstance(names, list) and all(isinstance(n, str) for n in names):
                    return names
    except (InputFileError, ValueError, AttributeError, TypeError):
        return None
    return None


def float_ops(path: str | Path) -> dict[str, int]:
    """What a quantized file left in float: ops that write float32 outputs only.

    Op name -> count; QUANTIZE and DEQUANTIZE aside.
    """
    schema = _schema()
    model, _ = read_model(path)
    counts: Counter = Counter()
    with parse_guard(path):
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for o in range(sg.OperatorsLength()):
                op = sg.Operators(o)
                name = op_name(model, op.OpcodeIndex())
                outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
                if name not in ("QUANTIZE", "DEQUANTIZE") and outs and all(
                        i >= 0 and sg.Tensors(i).Type() == schema.TensorType.FLOAT32 for i in outs):
                    counts[name] += 1
    return dict(counts)


def producers(path: str | Path) -> dict[int, tuple[str, list[int]]]:
    """{tensor index: (op name, input tensor indices)} of the main subgraph's ops.

    Read from the file as stored: a delegate the runtime applies later does not hide them.
    """
    model, _ = read_model(path)
    found = {}
    with parse_guard(path):
        sg = model.Subgraphs(0)
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            inputs = [int(i) for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
            for out in (op.OutputsAsNumpy() if op.OutputsLength() else []):
                found[int(out)] = (op_name(model, op.OpcodeIndex()), inputs)
    return found


def describe(path: str | Path) -> dict:
    """A JSON-able description of a .tflite model."""
    with parse_guard(path):
        return _describe(Path(path))


def _describe(p: Path) -> dict:
    schema = _schema()
    model, buf = read_model(p)
    type_names = _names(schema.TensorType)
    ops: Counter = Counter()
    dtypes: Counter = Counter()
    quant = Counter()
    params = 0
    weight_bytes = Counter()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            ops[op_name(model, sg.Operators(o).OpcodeIndex())] += 1
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            dtype = type_names.get(tensor.Type(), str(tensor.Type())).lower()
            dtypes[dtype] += 1
            q = tensor.Quantization()
            n_scales = q.ScaleLength() if q is not None else 0
            quant["per_channel" if n_scales > 1 else "per_tensor" if n_scales == 1 else "float"] += 1
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            nbytes = (buffer.Size() if buffer.Offset() > 1 else buffer.DataLength()) if buffer else 0
            if nbytes:
                shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.array([1])
                params += int(np.prod(shape))
                weight_bytes[dtype] += nbytes
    main = model.Subgraphs(0)
    signatures = []
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sg = model.Subgraphs(sd.SubgraphIndex())
        signatures.append({
            "key": _s(sd.SignatureKey()),
            "inputs": {_s(sd.Inputs(j).Name()): _tensor_info(sg, sd.Inputs(j).TensorIndex(), type_names)
                       for j in range(sd.InputsLength())},
            "outputs": {_s(sd.Outputs(j).Name()): _tensor_info(sg, sd.Outputs(j).TensorIndex(), type_names)
                        for j in range(sd.OutputsLength())},
        })
    flex = sorted(name for name in ops if name.startswith("Flex"))
    custom = sorted(name for name in ops if name not in _names(schema.BuiltinOperator).values()
                    and not name.startswith("Flex") and not name.startswith("BUILTIN_"))
    return {
        "format": "tflite",
        "path": str(p),
        "bytes": len(buf),
        "schema_version": int(model.Version()),
        "description": _s(model.Description()),
        "subgraphs": model.SubgraphsLength(),
        "inputs": [_tensor_info(main, int(i), type_names) for i in main.InputsAsNumpy()]
        if main.InputsLength() else [],
        "outputs": [_tensor_info(main, int(i), type_names) for i in main.OutputsAsNumpy()]
        if main.OutputsLength() else [],
        "ops": dict(ops.most_common()),
        "op_count": int(sum(ops.values())),
        "tensor_dtypes": dict(dtypes.most_common()),
        "quantization": dict(quant),
        "params": params,
        "weight_bytes": dict(weight_bytes),
        "signatures": signatures,
        "flex_ops": flex,
        "custom_ops": custom,
    }


def unresolved_custom_ops(message: str) -> tuple[str, str] | None:
    """(problem, fix) when a runtime's ``message`` says the model's custom ops are not registered.

    Apps that ship .tflite files (MediaPipe's landmark models and the like) link their own
    kernels for custom ops; a plain LiteRT cannot prepare those nodes and says so per node.
    """
    ops = sorted(set(re.findall(r"unresolved custom op: ([\w.:-]+?)\.?(?:\s|$)", message)))
    if not ops:
        return None
    return (f"the model uses custom op{'s' * (len(ops) > 1)} {', '.join(ops)}, which this "
            "LiteRT does not register (the app that ships the model links its own kernels)",
            "run it with a runtime that registers them (--accelerator delegate:PATH for a "
            "delegate that does); `edgenn inspect` lists every custom op")
