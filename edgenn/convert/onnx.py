"""ONNX export with tf2onnx, and ONNX Runtime quantization with a scheme chosen per target."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._tf import tf
from ..errors import ConversionError, MissingDependencyError, UsageError
from ..quiet import quiet_stderr


def _cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


@dataclass(frozen=True)
class OnnxQuantScheme:
    """How to quantize for a target: the choice the tool makes instead of a library default."""

    activation: str  # "uint8" or "int8"
    weight: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    why: str = ""


def scheme_for(target: str, machine: str | None = None) -> OnnxQuantScheme:
    """Pick activation/weight types for static QDQ by target and CPU.

    On x86, ONNX Runtime's fast int8 kernels (VNNI / AVX2 u8s8 dot products) take uint8
    activations and int8 weights; S8S8 falls back to slower paths (measured here: S8S8 1.00x,
    U8S8 2.1x over float on MobileNetV2). Arm kernels prefer symmetric int8 activations.
    GPUs (TensorRT, CUDA) take symmetric int8 for both.
    """
    machine = (machine or platform.machine()).lower()
    if target == "gpu":
        return OnnxQuantScheme("int8", per_channel=True,
                               why="TensorRT/CUDA execution providers take symmetric S8S8 QDQ")
    if machine in ("x86_64", "amd64", "i686"):
        vnni = _cpu_has_vnni()
        return OnnxQuantScheme("uint8", per_channel=True, reduce_range=not vnni,
                               why="x86: U8S8 hits ORT's fast int8 kernels"
                                   + ("" if vnni else "; no VNNI, so 7-bit weights avoid saturation"))
    return OnnxQuantScheme("int8", per_channel=True, why="Arm: symmetric S8S8 suits the kernels")


def to_onnx(model, opset: int = 17):
    """Keras model (Keras 3 or tf_keras) -> checked, shape-inferred ONNX ModelProto.

    The input batch is left dynamic; the model is traced as a concrete function, as for TFLite.
    """
    tf()
    try:
        import onnx
        import tf2onnx
    except ImportError:
        raise MissingDependencyError("ONNX export needs tf2onnx and onnx",
                                     "pip install 'edgenn[tf,onnx]'") from None
    if not 7 <= opset <= 21:
        raise UsageError(f"opset must be between 7 and 21; received {opset}", "use --opset 17")
    from .tflite import fresh_copy

    model = fresh_copy(model)  # a trace does not depend on earlier ones (see fresh_copy)
    # tf2onnx numbers the nodes it adds from a process-wide counter, and picks among equal
    # constants by name when it folds them: start every export from the same count, so the
    # same model gives the same bytes however many exports came before it in this process
    tf2onnx.utils.INTERNAL_NAME = 1
    try:
        with quiet_stderr():
            proto = _convert_frozen(tf2onnx, model, opset)
    except Exception as err:
        raise ConversionError(f"tf2onnx could not convert the model: {' '.join(str(err).split())[:400]}",
                              "try another --opset, or report the layer to edgenn") from None
    canonical_names(proto)
    try:
        onnx.checker.check_model(proto)
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True)
    except Exception as err:
        import re

        text = " ".join(str(err).split())
        left = re.search(r"No Op registered for (\w+)", text)
        node = re.search(r"Name: (\S+) OpType", text)
        if left:  # a TensorFlow op tf2onnx passed through untranslated: no opset has it
            where = f" (in {node.group(1)})" if node else ""
            hint = ("export to TFLite (--to tflite), or compute that part outside the model"
                    + ("; a spectrogram front end exports to ONNX as keras.layers.STFTSpectrogram"
                       if left.group(1) in ("RFFT", "RFFT2D", "FFT", "ComplexAbs") else ""))
            raise ConversionError(f"tf2onnx has no ONNX translation for the TensorFlow op "
                                  f"{left.group(1)}{where}, so the exported model is not valid "
                                  "ONNX", hint) from None
        raise ConversionError(f"the exported ONNX model fails onnx's checker: {text[:400]}",
                              "try another --opset") from None
    return proto


@dataclass(frozen=True)
class OnnxQuantization:
    """What ONNX Runtime's quantizer was asked to do."""

    mode: str  # "dynamic" or "static QDQ"
    weights: str
    activations: str
    per_channel: bool = True
    reduce_range: bool = False
    calibration: str | None = None
    samples: int | None = None
    why: str = ""
    float_nodes: tuple[str, ...] = ()  # left float: an input's normalization (front_layers)
    upgraded: str = ""  # how the file was brought up to what the quantizer needs
    fill_nodes: tuple[str, ...] = ()  # left float: masked attention's fill and softmax

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    def summary(self) -> str:
        extra = f", {self.calibration} calibration on {self.samples} samples" if self.calibration else ""
        reduce = ", reduced range" if self.reduce_range else ""
        channel = "per-channel " if self.per_channel else ""
        return (f"{self.mode}: {channel}{self.weights} weights, {self.activations} activations"
                f"{reduce}{extra}" + (f" ({self.why})" if self.why else "")
                + (f"; {len(self.float_nodes)} node(s) at the input left float"
                   if self.float_nodes else "")
                + (f"; {len(self.fill_nodes)} node(s) of masked attention left float (its -1e9 "
                   "fill and softmax)" if self.fill_nodes else "")
                + (f"; {self.upgraded}" if self.upgraded else ""))


_COUNTER = re.compile(r"__(\d+)")


def canonical_names(proto) -> None:
    """Renumber the ``__N`` suffixes tf2onnx gives the nodes it adds, in order of appearance.

    tf2onnx draws N from a process-wide counter, so the same model exported twice in one
    process (compress exports several files) got different names, and different bytes.
    Every occurrence of a number maps to the same new number, so names stay unique and every
    reference to a tensor still finds it.
    """
    graph = proto.graph
    numbers: dict[str, str] = {}
    graphs = list(_all_graphs(graph))  # Loop and If bodies read the outer graph's names

    def rename(name: str) -> str:
        return _COUNTER.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers) + 1)),
                            name)

    for g in graphs:
        for node in g.node:
            node.name = rename(node.name)
            node.input[:] = [rename(n) for n in node.input]
            node.output[:] = [rename(n) for n in node.output]
        for group in (g.initializer, g.value_info, g.input, g.output):
            for item in group:
                item.name = rename(item.name)
        for group in (g.value_info, g.input, g.output):  # symbolic dims: "unk__N"
            for item in group:
                for dim in item.type.tensor_type.shape.dim:
                    if dim.HasField("dim_param"):
                        dim.dim_param = rename(dim.dim_param)
    # tf2onnx folds equal constants into one and keeps either name ("const_axes__10" or
    # "const_starts__10"), and which one varies from run to run: its own top-level constants
    # are named by the order they are first read instead
    made = re.compile(r"const(_[A-Za-z]+)*__\d+")
    owned = {i.name for i in graph.initializer if made.fullmatch(i.name)}
    inner = {i.name for g in graphs[1:] for i in list(g.initializer) + list(g.input)}
    owned -= inner  # a body's own name that happens to match stays as it is
    order: dict[str, str] = {}
    for g in graphs:
        for node in g.node:
            for name in node.input:
                if name in owned and name not in order:
                    order[name] = f"tf2onnx_const_{len(order)}"
    for name in sorted(owned - set(order)):
        order[name] = f"tf2onnx_const_{len(order)}"
    for g in graphs:
        for node in g.node:
            node.input[:] = [order.get(n, n) for n in node.input]
    for item in graph.initializer:
        item.name = order.get(item.name, item.name)


def _all_graphs(graph):
    """The graph and every subgraph (Loop and If bodies), outer first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _all_graphs(sub)


def _convert_frozen(tf2onnx, model, opset: int):
    """Trace, freeze and convert: the frozen graph holds every captured value as a constant.

    tf2onnx's own from_function leaves captured tensors that are not variables (a Keras 3
    Normalization layer's mean and variance) as graph inputs the runtime then asks for.
    Control flow stays unlowered: tf2onnx turns a recurrent layer's While loop into ONNX's
    LSTM/GRU/RNN ops or a Loop, where a lowered one leaves TensorList ops ONNX lacks.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from .complex_values import magnitudes_first
    from .tflite import traced

    frozen = convert_variables_to_constants_v2(traced(model), lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    magnitudes_first(graph_def)  # tf2onnx translates an RFFT only when its magnitude reads it
    proto, _ = tf2onnx.convert.from_graph_def(
        _inlinable(graph_def), input_names=[t.name for t in frozen.inputs],
        output_names=[t.name for t in frozen.outputs], opset=opset,
        custom_op_handlers={"Erfc": (_erfc, []), "Bucketize": (_bucketize, [])})
    return proto


def _inlinable(graph_def):
    """``graph_def`` with functions marked for XLA made ordinary, so they inline.

    Keras 3 runs a grouped convolution as a ``tf.function(jit_compile=True)`` (TF's CPU kernel
    lacks groups); the mark keeps grappler from inlining the call, and tf2onnx then meets a
    StatefulPartitionedCall, which ONNX has no op for. Inlined, it is a Conv with groups.
    """
    marks = ("_XlaMustCompile", "_noinline")
    for function in graph_def.library.function:
        for mark in marks:
            if mark in function.attr:
                del function.attr[mark]
    for node in list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]:
        for mark in marks:
            if mark in node.attr:
                del node.attr[mark]
    return graph_def


def _erfc(ctx, node, name, args):
    """TF's Erfc (exact GELU: 0.5 x erfc(-x / sqrt 2)), which tf2onnx lacks, as 1 - Erf(x)."""
    from tf2onnx import utils

    node.type = "Erf"
    one = ctx.make_const(utils.make_name(f"{name}_one"),
                         np.array(1, dtype=utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))))
    ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{name}_erfc"),
                                  inputs=[one.output[0], node.output[0]])


def _bucketize(ctx, node, name, args):
    """TF's Bucketize (a Discretization layer's bucket ids), which tf2onnx lacks.

    The number of boundaries at or below each value, as comparisons summed.
    """
    from onnx import TensorProto
    from tf2onnx import utils

    x = node.input[0]
    numpy_type = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    bounds = ctx.make_const(utils.make_name(f"{name}_bounds"),
                            np.array(node.get_attr_value("boundaries"), dtype=numpy_type))
    # Unsqueeze's and ReduceSum's axes: an input from opset 13, an attribute before
    if ctx.opset >= 13:
        axes, attr = [ctx.make_const(utils.make_name(f"{name}_axes"),
                                     np.array([-1], np.int64)).output[0]], {}
    else:
        axes, attr = [], {"axes": [-1]}
    expanded = ctx.make_node("Unsqueeze", [x, *axes], attr=attr)
    below = ctx.make_node("Less", [expanded.output[0], bounds.output[0]])
    at_or_above = ctx.make_node("Not", [below.output[0]])
    counted = ctx.make_node("Cast", [at_or_above.output[0]], attr={"to": TensorProto.INT32})
    del node.attr["boundaries"]
    node.type = "ReduceSum"
    node.set_attr("keepdims", 0)
    for key, value in attr.items():
        node.set_attr(key, value)
    ctx.replace_inputs(node, [counted.output[0], *axes])


def _element_type(value_info):
    """The numpy type of a graph input (None where it is no plain tensor)."""
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type))
    except (KeyError, TypeError):
        return None


class _Reader:
    """Calibration data for ONNX Runtime's static quantization."""

    def __init__(self, names: list[str], x, axes: list | None = None, batch: int = 1,
                 dtypes: list | None = None):
        from ..data.multi import as_list, count
        from ..runtime.layout import to_model

        # One sample a batch (or the model's fixed batch, the last one padded): the entropy and
        # percentile calibrators stack batches and need equal shapes. Each input goes in the
        # model's layout (its batch axis, or one value) and its own element type.
        arrays = as_list(x)
        axes = axes or [0] * len(arrays)
        dtypes = dtypes or [None] * len(arrays)
        n = count(x)

        def chunk(a, start):
            part = a[start:start + batch]
            if len(part) < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), 0)])
            return part

        self.batches = [{name: to_model(chunk(a, i), axis).astype(
                             dtype or (a.dtype if np.issubdtype(a.dtype, np.integer) else np.float32))
                         for name, a, axis, dtype in zip(names, arrays, axes, dtypes)}
                        for i in range(0, n, batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self):
        self.i = 0


@contextlib.contextmanager
def _working_in(folder):
    """Run with ``folder`` as the working directory, and go back after."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def quantize(proto, mode: str, target: str, x_calib: np.ndarray | None = None,
             method: str = "minmax", samples: int = 200, float_inputs: list[int] = ()):
    """Quantize an ONNX model: "dynamic" (int8 weights) or "int8" (static QDQ, calibrated).

    ``float_inputs``: positions of graph inputs whose first computing nodes stay float (an input
    whose features are at unequal scales, read by a normalization: `export.front_layers`).

    Returns (quantized ModelProto, an OnnxQuantization describing what was done).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UsageError(f"calibration must be one of {', '.join(methods)}; received {method!r}",
                         "use --calibration minmax")
    with tempfile.TemporaryDirectory(prefix="edgenn-onnx-") as tmp, _working_in(tmp):
        # (ONNX Runtime's symbolic shape inference writes sym_shape_infer_temp.onnx and its
        # external data into the working folder when it gives up: that must not be the user's)
        src, pre, out = Path(tmp, "in.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "out.onnx")
        proto, upgraded = for_quantizer(proto)
        onnx.save(proto, src)
        try:
            with quiet_stderr():
                quant_pre_process(str(src), str(pre))
        except Exception:  # noqa: BLE001 - symbolic shape inference gives up on some graphs
            try:  # (a dynamic batch through Concatenate of several inputs): ONNX's own will do
                with quiet_stderr():
                    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            except Exception as err:
                raise ConversionError(f"ONNX Runtime's quant_pre_process failed: "
                                      f"{' '.join(str(err).split())[:300]}",
                                      "try --quantize dynamic, or --to tflite") from None
        if mode == "dynamic":
            with quiet_stderr(), _quantizer_errors():
                quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True)
            info = OnnxQuantization("dynamic", "int8", "float (quantized on the fly)",
                                    upgraded=upgraded)
        elif mode == "int8":
            from ..data.multi import count, take

            if not count(x_calib):
                raise UsageError("static int8 ONNX quantization needs calibration data", "pass --data")
            scheme = scheme_for(target)
            from ..runtime.layout import batch_axes
            from ..runtime.onnx_info import tensor_dims

            known = {i.name for i in proto.graph.initializer}
            graph_inputs = [i for i in proto.graph.input if i.name not in known]
            names = [i.name for i in graph_inputs]
            axes, _ = batch_axes([tensor_dims(i) for i in graph_inputs])
            fixed = [tensor_dims(i)[a] for i, a in zip(graph_inputs, axes) if a is not None]
            batch = next((d for d in fixed if isinstance(d, int) and d > 0), None)
            dtypes = [_element_type(i) for i in graph_inputs]
            calib = take(x_calib, slice(0, samples))
            probed = batch is None
            if probed:  # an open batch: one sample a batch, if the model runs on one
                batch = _batch_it_runs(pre, names, calib, axes, dtypes)
            prepared = onnx.load(str(pre)).graph
            excluded = _first_computing_nodes(prepared, [names[i] for i in float_inputs])
            fills = [n for n in masked_fill_nodes(prepared) if n not in excluded]
            excluded += fills
            why = scheme.why

            def static(**extra):
                with quiet_stderr():
                    quantize_static(
                        str(pre), str(out), _Reader(names, calib, axes, batch, dtypes),
                        quant_format=QuantFormat.QDQ,
                        per_channel=scheme.per_channel, reduce_range=scheme.reduce_range,
                        activation_type=types[scheme.activation], weight_type=types[scheme.weight],
                        calibrate_method=methods[method], nodes_to_exclude=excluded,
                        extra_options=extra)

            try:
                static()
            except Exception:  # noqa: BLE001 - seen: its int32-bias scale adjustment assumes a
                # 1-D bias per channel and raises on a bias of shape [1, C] (magika 1.0)
                with _quantizer_errors():
                    static(QDQDisableWeightAdjustForInt32Bias=True)
                why = ((why + "; ") if why else "") + ("weight scales not widened for int32 "
                                                       "biases (ONNX Runtime's step failed)")
            if probed and batch > 1:
                why = ((why + "; ") if why else "") + (f"calibrated in batches of {batch}: the "
                                                       "model does not run on fewer samples")
            info = OnnxQuantization("static QDQ", scheme.weight, scheme.activation,
                                    scheme.per_channel, scheme.reduce_range, method,
                                    int(min(samples, count(x_calib))), why,
                                    tuple(n for n in excluded if n not in fills), upgraded,
                                    tuple(fills))
        else:
            raise UsageError(f"ONNX quantization {mode!r} is not supported",
                             "use --quantize none, dynamic or int8 with --to onnx")
        result = onnx.load(str(out))
    canonical_order(result.graph)
    return result, info


MAX_PROBED_BATCH = 64


def _batch_it_runs(path, names: list[str], x, axes: list, dtypes: list) -> int:
    """The smallest batch (1, 2, 4 ... MAX_PROBED_BATCH) at which the model at ``path`` runs.

    A model with an open batch axis may still take only some sizes: ICLabel (mne-icalabel)
    reshapes its batch into the four mirror images of each sample it averages, and fails
    on one sample. 1 when no size runs (or the samples are fewer): the quantizer's own run
    then names the fault.
    """
    import onnxruntime as ort

    from ..data.multi import count, take

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    size = 1
    while size <= min(MAX_PROBED_BATCH, count(x)):
        try:
            session.run(None, _Reader(names, take(x, slice(0, size)), axes, size,
                                      dtypes).batches[0])
            return size
        except Exception:  # noqa: BLE001 - ORT raises its own types; the next size may run
            size *= 2
    return 1


QUANT_OPSET = 13  # DequantizeLinear takes a per-channel ``axis`` from opset 13


def for_quantizer(proto):
    """``proto`` as ONNX Runtime's quantizer needs it, and what was changed ("" for nothing).

    - Files of IR version 3 (before 2019) list their weights among the graph inputs, as inputs
      with default values (later IR versions allow it too). Once the quantizer folds such
      weights away (a BatchNormalization into its Conv) the inputs stay, now required: they
      are taken out of the inputs, and the weights stay initializers. The IR version goes to 7,
      where initializers need not be inputs: the calibrator adds some of its own.
    - An opset under 13 is upgraded to 13 by onnx's version converter. The quantizer upgrades
      such a file to opset 11 only, then writes per-channel DequantizeLinear nodes with an
      ``axis`` attribute that opset 11 lacks: a file its own runtime refuses to load.
    """
    import onnx
    from onnx import version_converter

    changes = []
    weights = {init.name for init in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    listed = any(i.name in weights for i in proto.graph.input)
    if listed or proto.ir_version < 7:
        proto = onnx.ModelProto.FromString(proto.SerializeToString())
    if listed:
        inputs = [i for i in proto.graph.input if i.name not in weights]
        del proto.graph.input[:]
        proto.graph.input.extend(inputs)
        changes.append("weights also listed as graph inputs kept as weights only")
    if proto.ir_version < 7:
        changes.append(f"IR version {proto.ir_version} raised to 7")
        proto.ir_version = 7
    if opset is not None and opset < QUANT_OPSET:
        try:
            proto = version_converter.convert_version(proto, QUANT_OPSET)
        except Exception as err:  # noqa: BLE001 - the converter lacks adapters for some ops
            raise ConversionError(
                f"the file's opset {opset} is older than ONNX Runtime's quantizer takes "
                f"({QUANT_OPSET}), and onnx's version converter could not upgrade it: "
                f"{' '.join(str(err).split())[:200]}",
                f"export the model again at opset {QUANT_OPSET} or later") from None
        changes.append(f"opset {opset} upgraded to {QUANT_OPSET}, which per-channel quantization "
                       "needs")
    return proto, "; ".join(changes)


@contextlib.contextmanager
def _quantizer_errors():
    """ONNX Runtime's quantizer failing inside (its own defects, of any type) as one line."""
    try:
        yield
    except (UsageError, ConversionError):
        raise
    except Exception as err:  # noqa: BLE001
        raise ConversionError(f"ONNX Runtime's quantizer failed ({type(err).__name__}: "
                              f"{' '.join(str(err).split())[:240]})",
                              "try the other quantization mode, or keep the float file") from None


_AFFINE_OPS = {"Sub", "Add", "Mul", "Div"}
# Ops that compute with weights (or run a subgraph): where an input's float front ends.
_WEIGHTED_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "LSTM", "GRU", "RNN",
                 "Loop", "Scan", "If"}


_COMPARISONS = {"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or",
                "Xor", "IsNaN", "IsInf"}


def masked_fill_nodes(graph) -> list[str]:
    """The nodes from a masking fill (-1e9) to the softmax that reads it, to keep float.

    Keras 3's masked softmax (MultiHeadAttention with a mask) writes -1e9 where a position is
    masked (a Where of a constant); calibrated, that tensor's int8 range holds the fill, and
    every real score falls into one step of it (attention uniform: agreement 0.87 for a small
    masked transformer, 0.53 for keras-hub's BERT classifier). Only where the fill reaches a
    Softmax within a few element-wise steps; the matrix multiplies on either side stay int8.
    """
    from onnx import numpy_helper

    from .tflite import FILL_RANGE

    def fill(tensor) -> bool:  # a float constant that large fills; no weight is
        value = numpy_helper.to_array(tensor)
        return value.dtype.kind == "f" and bool(value.size) and \
            float(np.abs(value).max()) >= FILL_RANGE

    big = {item.name for item in graph.initializer if fill(item)}
    big |= {o for node in graph.node if node.op_type == "Constant" for a in node.attribute
            if a.name == "value" and a.HasField("t") and fill(a.t) for o in node.output if o}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    out: list[str] = []
    for node in graph.node:
        if node.op_type == "Constant" or not any(name in big for name in node.input):
            continue
        path, frontier, reached = [node], [node], False
        for _step in range(4):  # the fill, perhaps a cast or reshape, then the softmax
            following = [r for n in frontier for o in n.output for r in readers.get(o, [])
                         if r.op_type not in _WEIGHTED_OPS]
            reached = reached or any(r.op_type == "Softmax" for r in following)
            frontier = [r for r in following if r.op_type != "Softmax"]
            path += [r for r in following if r not in path]
            if reached or not frontier:
                break
        if reached:
            out += [n.name for n in path if n.name not in out]
    return out


def _first_computing_nodes(graph, inputs: list[str]) -> list[str]:
    """The nodes that keep ``inputs`` float until they are normalized or their padding masked.

    From each input, every node that computes on the input alone (with constants, or with what
    such nodes made) before any op with weights: a normalization's subtract and scale, and a
    Masking layer's comparisons, mask and multiply in front of it. Where no such node scales the
    input by a constant or multiplies it by a mask made of it (no normalization, no padding
    mask in the graph), the first weighted nodes stay float too.
    """
    constants = {t.name for t in graph.initializer}
    for node in graph.node:  # folded constants (the nodes are in topological order)
        if all(not name or name in constants for name in node.input):
            constants.update(o for o in node.output if o)
    out: list[str] = []
    for start in inputs:
        region, first, made, scaled, masks = [], [], {start}, False, set()
        for node in graph.node:
            data = [name for name in node.input if name and name not in constants]
            if not data or not all(name in made for name in data):
                continue
            if node.op_type in _WEIGHTED_OPS:
                first.append(node.name)
                continue
            region.append(node.name)
            made.update(o for o in node.output if o)
            if node.op_type in _COMPARISONS or all(name in masks for name in data):
                masks.update(o for o in node.output if o)  # a mask, and what is made of it
            scaled = scaled or (node.op_type in _AFFINE_OPS
                                and len(data) < len([n for n in node.input if n]))
            # a padding mask applied (x * mask): the padding is zero from here on
            scaled = scaled or (node.op_type in ("Mul", "Where") and 0 < sum(
                name in masks for name in data) < len(data))
        out += [name for name in region + ([] if scaled else first) if name not in out]
    return out


def canonical_order(graph) -> None:
    """Put nodes in one topological order (ties by name) and initializers by name.

    ONNX Runtime's graph optimizer (quant_pre_process) may write an equivalent graph with its
    nodes in another valid order; seen as rare byte differences between two exports of one
    model in one process. Sorting makes the bytes depend on the graph alone.
    """
    import heapq

    nodes = list(graph.node)
    produced = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    needs = [set() for _ in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for name in node.input:
            j = produced.get(name)
            if j is not None and j != i and j not in needs[i]:
                needs[i].add(j)
                users[j].append(i)
    left = [len(n) for n in needs]
    ready = [((nodes[i].name, i), i) for i in range(len(nodes)) if left[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for k in users[i]:
            left[k] -= 1
            if left[k] == 0:
                heapq.heappush(ready, ((nodes[k].name, k), k))
    if len(order) != len(nodes):  # not a DAG as read (subgraph captures): leave it as it is
        return
    sorted_nodes = [nodes[i] for i in order]
    inits = sorted(graph.initializer, key=lambda t: t.name)
    del graph.node[:]
    graph.node.extend(sorted_nodes)
    del graph.initializer[:]
    graph.initializer.extend(inits)


def add_metadata(proto, entries: dict) -> None:
    """Write provenance into the model's metadata_props (replacing same-named keys)."""
    keep = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=str(value))
