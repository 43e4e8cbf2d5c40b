"""Give back a tensor its own int8 scale when TFLite's quantizer imposed a shared one on it.

TFLite's int8 CONCATENATION, MAXIMUM and MINIMUM kernels need every input on the output's
scale, and the MLIR quantizer meets that by giving each input's *producer* the shared scale, or
by requantizing the input and then letting every other reader read the requantized copy too.
A tensor that also feeds a convolution then reaches it on a scale made for the widest branch of
the concatenation: deepcut's Thai word segmenter concatenates a normalized embedding (range
about +-4) with the maximum of twelve convolution units (up to 800), and the embedding reached
all twelve convolutions in steps of 3.8, i.e. as about two levels (label agreement 0.854, SNR
2.4 dB, where min/max calibration had recorded +-4 for it). Keeping the concatenation float
(--keep-float) did not help: the scale was shared before the denylist applied.

The repair works on the quantized file, with the ranges calibration recorded for each tensor
(the converter's calibrate-only model):
- a tensor produced by an op that rescales its output anyway (a convolution, a matrix multiply,
  an add...) and whose scale is more than 4x what its recorded range needs gets its own scale;
  the readers that need the shared one (the concatenation) read a QUANTIZE of it to that scale;
  readers that only move bytes (reshape, expand_dims, pad) take the new scale along when every
  reader after them rescales anyway;
- an embedding lookup (GATHER of a constant table) on such a scale gets its table quantized
  again on the table's own range, from the float weights;
- a reader that rescales anyway and reads a requantized copy reads the original instead.
``unclip`` is the 16-bit counterpart: TFLite's 16x8 quantizer gives a SUM its input's scale,
which clips a sum of many positions; such tensors get a scale that covers their recorded range.
LiteRT's int8 kernels take any input and output scale on the ops that rescale (they compute
their multipliers from the tensors' parameters when prepared), and requantizing QUANTIZE
(int8 to int8) is a builtin kernel the Edge TPU compiler maps too.
"""

from __future__ import annotations

import numpy as np

WASTE = 4.0  # a scale this many times what the range needs throws away 2 of 8 bits
CLIPPED = 1.01  # a recorded range past this many times a 16-bit scale's reach is clipped
MIN_SCALE = 1e-6  # below this (a layer of zeros: 4.6e-41 was seen) a kernel's multiplier breaks
SHARED_SCALE_OPS = {"CONCATENATION", "MAXIMUM", "MINIMUM"}
# Ops whose int8 kernels rescale from the input's parameters to the output's (any of either).
RESCALING = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "ADD", "SUB",
             "MUL", "MEAN", "SUM", "BATCH_MATMUL", "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "TANH",
             "SOFTMAX", "HARD_SWISH", "SQUARED_DIFFERENCE"}
FREE_OUTPUT = RESCALING - {"DEQUANTIZE", "LOGISTIC", "TANH", "SOFTMAX"}  # fixed output scales
# Ops that copy int8 bytes: their output must carry their input's parameters.
MOVING = {"RESHAPE", "EXPAND_DIMS", "SQUEEZE", "PAD", "PADV2", "TRANSPOSE"}


def suspect(flatbuffer: bytes) -> bool:
    """Whether the repair could change the file.

    That takes a tensor that several ops read, one of them a concatenation, maximum or minimum
    (or a reshape on the way to one, or a requantize). A branch read only by its concatenation
    (an Inception block's) has nothing to gain, and the repair's extra calibration pass costs
    (InceptionV3 at 75x75: 25 s -> 35 s).
    """
    model, names = _read(flatbuffer)
    for sg in model.subgraphs:
        readers: dict[int, list[str]] = {}
        for op in sg.operators or []:
            for i in (op.inputs if op.inputs is not None else []):
                if i >= 0:
                    readers.setdefault(int(i), []).append(names[op.opcodeIndex])
        if any(len(kinds) > 1 and set(kinds) & (SHARED_SCALE_OPS | MOVING | {"QUANTIZE"})
               for kinds in readers.values()):
            return True
    return False


def clip_suspect(flatbuffer: bytes) -> bool:
    """Whether an int16 tensor that a rescaling op produces kept one of its inputs' scales.

    That is what a scale imposed, not calibrated, looks like (a 16x8 SUM's); only then does
    ``unclip`` need the extra calibration pass.
    """
    from ai_edge_litert import schema_py_generated as schema

    model, names = _read(flatbuffer)
    g = _Graph(model, names)
    for op in g.ops:
        if g.kind(op) not in FREE_OUTPUT or g.kind(op) == "QUANTIZE":
            continue
        for out in op.outputs if op.outputs is not None else []:
            if not g.per_tensor(int(out), schema.TensorType.INT16):
                continue
            scale = g.sg.tensors[out].quantization.scale[0]
            if any(i >= 0 and g.per_tensor(int(i), schema.TensorType.INT16)
                   and g.sg.tensors[i].quantization.scale[0] == scale for i in op.inputs):
                return True
    return False


def _read(flatbuffer: bytes):
    from ..runtime.tflite_info import op_names, unpacked

    model = unpacked(flatbuffer)
    return model, op_names(model)


def _name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _recorded(calibrated: bytes) -> tuple[dict, dict]:
    """{tensor name: (min, max)} recorded by calibration; {name: float32 array} of constants."""
    model, _ = _read(calibrated)
    ranges, constants = {}, {}
    sg = model.subgraphs[0]
    for t in sg.tensors:
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1:
            ranges[_name(t)] = (float(q.min[0]), float(q.max[0]))
        data = getattr(model.buffers[t.buffer], "data", None) if t.buffer else None
        if data is not None and len(data) and t.type == 0:  # FLOAT32
            constants[_name(t)] = np.frombuffer(bytes(bytearray(data)), "<f4")
    return ranges, constants


def _params(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    return scale, int(np.clip(round(-128 - lo / scale), -128, 127))


class _Graph:
    """The first subgraph of an unpacked file: who produces and who reads each tensor."""

    def __init__(self, model, names: list[str]):
        self.sg = model.subgraphs[0]
        self.names = names
        self.ops = list(self.sg.operators or [])
        self.producer = {int(o): op for op in self.ops
                         for o in (op.outputs if op.outputs is not None else [])}
        self.readers: dict[int, list] = {}
        for op in self.ops:
            for i in (op.inputs if op.inputs is not None else []):
                if i >= 0:
                    self.readers.setdefault(int(i), []).append(op)
        self.outputs = {int(i) for i in self.sg.outputs}

    def kind(self, op) -> str:
        return self.names[op.opcodeIndex]

    def per_tensor(self, index: int, dtype: int) -> bool:
        """Whether tensor ``index`` is of ``dtype`` (a schema TensorType) on one scale."""
        t = self.sg.tensors[index]
        q = t.quantization
        return t.type == dtype and q is not None and q.scale is not None and len(q.scale) == 1

    def rescaled_downstream(self, index: int, depth: int = 0) -> bool:
        """Every reader of ``index`` rescales, past byte-moving ops (which then follow it)."""
        if index in self.outputs or depth > 8:
            return False
        for op in self.readers.get(index, []):
            if self.kind(op) in MOVING:
                if op.inputs[0] != index or not self.rescaled_downstream(int(op.outputs[0]),
                                                                         depth + 1):
                    return False
            elif self.kind(op) not in RESCALING:
                return False
        return True

    def carry(self, index: int, scale: float, zero: int, skip=()) -> None:
        """Byte-moving readers of ``index`` (and theirs) take its new parameters along."""
        for op in self.readers.get(index, []):
            if self.kind(op) in MOVING and not any(op is other for other in skip):
                out = self.sg.tensors[op.outputs[0]]
                out.quantization.scale, out.quantization.zeroPoint = [scale], [zero]
                self.carry(int(op.outputs[0]), scale, zero)


def unclip(quantized: bytes, calibrated: bytes) -> tuple[bytes, list[str]]:
    """``quantized`` (int16x8) with the 16-bit tensors that clip their range given their own.

    TFLite's 16x8 quantizer gives a SUM the scale of its input: the sum of 100 one-hot
    positions, recorded 0..100, was stored on a scale that ends at 1.0 (mmsplice's exon model,
    a masked global average pooling: SNR 2.3 dB where int8 kept 27.5 dB). The int16 kernels of
    the ops that rescale (SUM, MEAN, ADD, the matrix multiplies...) take any output scale, so
    such a tensor gets a symmetric scale (zero point 0, as int16 needs) that covers the range
    calibration recorded, where every reader rescales too.
    """
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime.tflite_info import packed

    model, names = _read(quantized)
    ranges, _ = _recorded(calibrated)
    g = _Graph(model, names)
    widened = []
    for index, t in enumerate(g.sg.tensors):
        op = g.producer.get(index)
        if (op is None or g.kind(op) not in FREE_OUTPUT or index in g.outputs
                or not g.per_tensor(index, schema.TensorType.INT16)):
            continue
        lo_hi = ranges.get(_name(t))
        if lo_hi is None:
            continue
        reach = max(abs(lo_hi[0]), abs(lo_hi[1]))
        old = float(t.quantization.scale[0])
        if reach <= CLIPPED * 32767 * old or not g.rescaled_downstream(index):
            continue
        scale = reach / 32767
        t.quantization.scale, t.quantization.zeroPoint = [scale], [0]
        g.carry(index, scale, 0)
        widened.append(f"{_name(t)} ({32767 * old:.3g} -> {reach:.3g})")
    if not widened:
        return quantized, []
    repaired = packed(model)
    if not _runs(repaired):
        return quantized, ["16-bit tensors that clip their range were left as the quantizer "
                           "set them (the file with wider scales did not run on LiteRT)"]
    shown = ", ".join(widened[:3]) + (f" and {len(widened) - 3} more" if len(widened) > 3 else "")
    return repaired, [f"{len(widened)} int16 tensors had been given a scale that clipped the "
                      f"range calibration recorded for them; they got one that covers it "
                      f"({shown})"]


def repair(quantized: bytes, calibrated: bytes) -> tuple[bytes, list[str]]:
    """``quantized`` with shared scales undone where they starve a tensor (see the module)."""
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime.tflite_info import packed

    model, names = _read(quantized)
    ranges, constants = _recorded(calibrated)
    g = _Graph(model, names)
    sg, ops, producer, readers, outputs = g.sg, g.ops, g.producer, g.readers, g.outputs
    kind, rescaled_downstream, carry = g.kind, g.rescaled_downstream, g.carry

    def int8(index: int) -> bool:
        return g.per_tensor(index, schema.TensorType.INT8)

    def twin(moving, source: int, quantization) -> int:
        """Readers that rescale, behind a Flatten of a shared copy, get a twin moving ``source``.

        Returns how many readers were moved.
        """
        moved = int(moving.outputs[0])
        rescaling = [x for x in readers.get(moved, []) if kind(x) in RESCALING]
        if not rescaling or moved in outputs:
            return 0
        sg.tensors.append(_copy_tensor(schema, sg.tensors[moved], "/own_scale", quantization))
        op = schema.OperatorT()
        op.opcodeIndex, op.builtinOptionsType = moving.opcodeIndex, moving.builtinOptionsType
        op.builtinOptions = moving.builtinOptions
        op.inputs, op.outputs = [source, *list(moving.inputs)[1:]], [len(sg.tensors) - 1]
        inserted.append((moving, op))
        for x in rescaling:
            x.inputs = [len(sg.tensors) - 1 if int(i) == moved else i for i in x.inputs]
        return len(rescaling)

    quantize_code = None
    inserted: list[tuple[object, object]] = []  # (after this op, the new QUANTIZE)
    own, relinked, tables = [], 0, []
    for index, t in enumerate(sg.tensors):
        op = producer.get(index)
        if op is None or not int8(index) or index in outputs:
            continue
        lo_hi = ranges.get(_name(t))
        table = None
        if kind(op) == "GATHER" and int8(int(op.inputs[0])):
            table = sg.tensors[op.inputs[0]]
            values = constants.get(_name(table))
            if values is None or not values.size:
                continue
            lo_hi = (float(values.min()), float(values.max()))
        elif kind(op) not in FREE_OUTPUT:
            continue
        if lo_hi is None:
            continue
        old_scale, old_zero = float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])
        scale, zero = _params(*lo_hi)
        if old_scale <= WASTE * scale or not scale >= MIN_SCALE:
            continue  # a range of (about) nothing keeps the scale it has: LiteRT divides by it
        if table is not None and len(readers.get(int(op.inputs[0]), [])) != 1:
            continue  # a table several lookups read keeps the scale they share
        keep_shared = [r for r in readers.get(index, [])
                       if kind(r) not in RESCALING
                       and not (kind(r) in MOVING and rescaled_downstream(int(r.outputs[0])))]
        if len(keep_shared) == len(readers.get(index, [])) and not any(
                kind(r) in MOVING and any(kind(x) in RESCALING
                                          for x in readers.get(int(r.outputs[0]), []))
                for r in keep_shared):
            continue  # every reader needs the shared scale: a copy on it would gain nothing
        if keep_shared:
            shared = schema.QuantizationParametersT()
            shared.scale, shared.zeroPoint = [old_scale], [old_zero]
            sg.tensors.append(_copy_tensor(schema, t, "/shared_scale", shared))
            copy_index = len(sg.tensors) - 1
            if quantize_code is None:
                quantize_code = _opcode(model, names, schema, "QUANTIZE")
            q = schema.OperatorT()
            q.opcodeIndex, q.inputs, q.outputs = quantize_code, [index], [copy_index]
            inserted.append((op, q))
            for r in keep_shared:
                r.inputs = [copy_index if int(i) == index else i for i in r.inputs]
            mine = schema.QuantizationParametersT()
            mine.scale, mine.zeroPoint = [scale], [zero]
            for r in keep_shared:
                if kind(r) in MOVING and int(r.inputs[0]) == copy_index:
                    relinked += twin(r, index, mine)
        t.quantization.scale, t.quantization.zeroPoint = [scale], [zero]
        carry(index, scale, zero, keep_shared)
        if table is not None:
            values = constants[_name(table)]
            table.quantization.scale, table.quantization.zeroPoint = [scale], [zero]
            q8 = np.clip(np.round(values / scale) + zero, -128, 127).astype(np.int8)
            model.buffers[table.buffer].data = q8.view(np.uint8)
            tables.append(_name(table))
        own.append(_name(t))
    # A reader that rescales anyway reads the original of a requantized copy (finer steps).
    for op in ops:
        if kind(op) != "QUANTIZE" or not int8(int(op.inputs[0])) or not int8(int(op.outputs[0])):
            continue
        source, copy = int(op.inputs[0]), int(op.outputs[0])
        if sg.tensors[source].quantization.scale[0] >= sg.tensors[copy].quantization.scale[0]:
            continue
        for r in readers.get(copy, []):
            if kind(r) in RESCALING and r is not op:
                r.inputs = [source if int(i) == copy else i for i in r.inputs]
                relinked += 1
            elif kind(r) in MOVING and int(r.inputs[0]) == copy:
                relinked += twin(r, source, sg.tensors[source].quantization)
    if not own and not relinked:
        return quantized, []
    for after, q in inserted:
        ops.insert(ops.index(after) + 1, q)
    sg.operators = ops
    repaired = packed(model)
    if not _runs(repaired):  # LiteRT would crash in the process that checks it: keep the original
        return quantized, ["shared int8 scales were left as the quantizer set them (the file "
                           "with its tensors' own scales did not run on LiteRT)"]
    notes = []
    if own:
        shown = ", ".join(own[:3]) + (f" and {len(own) - 3} more" if len(own) > 3 else "")
        notes.append(f"{len(own)} int8 tensors had been given a scale shared through a "
                     f"concatenation or maximum that was over {WASTE:g}x what their own range "
                     f"needs; they got their own scale back ({shown})"
                     + (f", {len(tables)} embedding tables quantized again on their own range"
                        if tables else ""))
    if relinked:
        notes.append(f"{relinked} readers of requantized copies read the finer original instead")
    return repaired, notes


def _runs(flatbuffer: bytes) -> bool:
    """Whether LiteRT runs the file once on random inputs, tried in a child process.

    A kernel that rejects a scale may crash rather than raise. The inputs are in [0, 1): an
    input read as ids (a CAST before a GATHER) reads id 0, which every table has.
    """
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    code = ("import sys, numpy as np\n"
            "from ai_edge_litert.interpreter import Interpreter\n"
            "i = Interpreter(model_path=sys.argv[1])\n"
            "for d in i.get_input_details():\n"
            "    i.resize_tensor_input(d['index'], [max(1, x) for x in d['shape_signature']],"
            " strict=False)\n"
            "i.allocate_tensors()\n"
            "rng = np.random.default_rng(0)\n"
            "for d in i.get_input_details():\n"
            "    x = rng.random(d['shape']) if np.issubdtype(d['dtype'], np.floating)"
            " else rng.integers(0, 2, d['shape'])\n"
            "    i.set_tensor(d['index'], x.astype(d['dtype']))\n"
            "i.invoke()\n"
            "assert all(np.isfinite(i.get_tensor(d['index'])).all() for d in i.get_output_details()"
            " if np.issubdtype(d['dtype'], np.floating))\n")
    with tempfile.TemporaryDirectory(prefix="edgenn-scales-") as tmp:
        path = Path(tmp) / "repaired.tflite"
        path.write_bytes(flatbuffer)
        try:
            proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                                  timeout=300)
        except subprocess.TimeoutExpired:
            return False
    return proc.returncode == 0


def _copy_tensor(schema, tensor, suffix: str, quantization):
    """A new activation tensor shaped as ``tensor``, named after it, with ``quantization``."""
    copy = schema.TensorT()
    copy.name = (_name(tensor) + suffix).encode()
    copy.shape, copy.shapeSignature, copy.type = tensor.shape, tensor.shapeSignature, tensor.type
    copy.quantization = schema.QuantizationParametersT()
    copy.quantization.scale = list(quantization.scale)
    copy.quantization.zeroPoint = list(quantization.zeroPoint)
    copy.buffer = 0
    return copy


def _opcode(model, names: list[str], schema, name: str) -> int:
    code = getattr(schema.BuiltinOperator, name)
    if name in names:
        return names.index(name)
    entry = schema.OperatorCodeT()
    entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 2
    model.operatorCodes.append(entry)
    names.append(name)
    return len(model.operatorCodes) - 1
