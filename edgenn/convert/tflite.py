"""TFLite export with every post-training mode, shared by `compress` and `convert`."""

from __future__ import annotations

import re

import numpy as np

from .._tf import tf
from ..errors import ConversionError, UsageError
from ..quiet import quiet_stderr
from ..recipe import IOType, Quantization


def representative(x_calib, samples: int | None):
    """A representative-dataset generator over the first ``samples`` calibration examples.

    ``x_calib`` is one array, or a list with one array per model input.
    """
    from ..data.multi import as_list, count
    from ..data.prepare import exact_dtype

    arrays = as_list(x_calib)

    def generate():
        for i in range(count(x_calib) if samples is None else min(samples, count(x_calib))):
            sample = [a[i:i + 1] if exact_dtype(a.dtype) is not None  # ids, a mask
                      else a[i:i + 1].astype(np.float32) for a in arrays]
            # by name when there are several: the converter's list order need not be ours
            # (input_N are the names input_specs gives the traced function's arguments)
            yield sample if len(sample) == 1 else {f"input_{k}": s for k, s in enumerate(sample)}

    return generate


def fresh_copy(model):
    """A copy of ``model`` with new layers and the same weights, for the converter.

    Converting a tf_keras model traces it, and the trace stays with its layers: a second
    conversion of the same object nests the first one's call names into every tensor name, so
    the bytes would depend on what the process converted before (compress converts a float32
    reference first). A fresh copy converts the same way every time. Keras 3 models need none
    (measured: the same bytes on every conversion) unless a recurrent layer has dropout, which
    the copy drops (``_for_inference``). A model that cannot be copied (a custom layer without
    get_config) is converted as it is.
    """
    from .._tf import is_keras3, keras_of
    from ..models.layer_config import layer_config

    keras3 = is_keras3(model)
    if keras3 and not any(getattr(cell, "dropout", 0) or getattr(cell, "recurrent_dropout", 0)
                          for cell in _cells(model)):
        return model  # Keras 3 keeps no trace on its layers: the model converts as it is
    # (a Keras 3 recurrent layer with dropout draws its dropout masks at inference too, unused:
    # the seed generator's update is a variable write in the trace, which tf2onnx fails on)

    def clone(layer):  # a nested model's recurrent layers too
        return layer.__class__.from_config(_for_inference(layer_config(layer),
                                                          keep_unroll=keras3))

    try:
        with _clone_scope():
            copy = keras_of(model).models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 - the original still converts, only less reproducibly
        return model
    return copy


def _clone_scope():
    """Where a clone's layers deserialize: tfmot's QAT wrappers need its scope."""
    import contextlib
    import sys

    if "tensorflow_model_optimization" not in sys.modules:
        return contextlib.nullcontext()
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_scope()


def _for_inference(config, keep_unroll: bool = False):
    """A recurrent layer's ``config`` without dropout or unrolling, nested layers' too.

    Neither changes what the layer computes at inference, and either keeps tf_keras's LSTM off
    the path TFLite fuses into its LSTM kernel: such a layer became a WHILE loop, whose int8
    calibration crashes the converter (SIGSEGV; ethnicolr's census LSTM, recurrent_dropout
    0.2), and whose dropout-mask cache cost the float file its signature. ``keep_unroll``: a
    Keras 3 layer keeps its unrolling (no fused kernel to reach; unrolled, it is no loop).
    """
    if isinstance(config, dict):
        out = {k: _for_inference(v, keep_unroll) for k, v in config.items()}
        if "recurrent_dropout" in out:
            out.update(dropout=0.0, recurrent_dropout=0.0)
            if "unroll" in out and not keep_unroll:
                out["unroll"] = False
        return out
    if isinstance(config, list):
        return [_for_inference(v, keep_unroll) for v in config]
    return config


def _activation(value) -> str:
    if isinstance(value, dict):  # a serialized activation: {"class_name": ..., "config": ...}
        inner = value.get("config")
        return str(inner.get("name", value.get("class_name")) if isinstance(inner, dict)
                   else value.get("class_name"))
    return value if isinstance(value, str) else getattr(value, "__name__", str(value))


def lstm_not_fused(layer, dropped: bool = False) -> str | None:
    """Why TFLite would not fuse this LSTM layer into its LSTM kernel (None: it would).

    tf_keras takes the fusable path only with tanh and sigmoid activations, a bias, no
    recurrent dropout and no unrolling (``_could_use_gpu_kernel``); Keras 2.0-2.2's default
    ``hard_sigmoid`` is not sigmoid. ``dropped``: the copy that converts has its dropout and
    unrolling off (``fresh_copy``), so they do not count.
    """
    return _config_not_fused(layer.get_config(), dropped)


def _config_not_fused(config: dict, dropped: bool = False) -> str | None:
    """``lstm_not_fused`` read from an LSTM's config."""
    for key, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        if _activation(config.get(key, want)) != want:
            return f"{key} {_activation(config.get(key))}, not {want}"
    if not config.get("use_bias", True):
        return "no bias"
    if not dropped and (config.get("recurrent_dropout") or config.get("unroll")):
        return "recurrent dropout or unrolling"
    return None


def input_specs(model, batch_size: int | None = None):
    """TensorSpecs of a Keras model's inputs (Keras 3 or tf_keras), batch fixed or left open."""
    tensorflow = tf()
    specs = []
    for i, t in enumerate(model.inputs):
        dtype = getattr(t.dtype, "name", t.dtype)
        specs.append(tensorflow.TensorSpec((batch_size, *tuple(t.shape)[1:]), dtype,
                                           name=f"input_{i}"))
    return specs


RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
             "ConvLSTM3D")


def _all_layers(model):
    """Every layer of the model, nested models' layers too."""
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        yield layer
        stack.extend(getattr(layer, "layers", []))


def has_recurrent(model) -> bool:
    """Whether a recurrent layer sits anywhere in the model (nested models too)."""
    return any(type(layer).__name__ in RECURRENT for layer in _all_layers(model))


def _cells(model):
    """Every recurrent layer, inside nested models and wrappers (Bidirectional, TimeDistributed)."""
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if type(layer).__name__ in RECURRENT and type(layer).__name__ != "Bidirectional":
            yield layer
        stack.extend(getattr(layer, "layers", []))
        # a Bidirectional's ``layer`` is the template its two directions were copied from, never
        # built or run (an unroll check read its steps as open)
        inner = (("forward_layer", "backward_layer") if getattr(layer, "forward_layer", None)
                 is not None else ("layer",))
        stack.extend(x for x in (getattr(layer, name, None) for name in inner) if x is not None)


def _masked(model) -> bool:
    """Whether the model masks its sequences.

    A Masking layer, an Embedding with mask_zero, or a mask the model passes itself
    (``GRU(...)(frames, mask=mask_input)``: Keras' video classifier, whose mask is an input).
    """
    return any(type(layer).__name__ == "Masking" or getattr(layer, "mask_zero", False)
               or _mask_given(layer) for layer in _all_layers(model))


def _mask_given(layer) -> bool:
    """Whether ``layer`` is called with a ``mask=`` argument in the model's graph."""
    for node in getattr(layer, "_inbound_nodes", None) or []:
        arguments = getattr(node, "arguments", None)  # Keras 3's Node; tf_keras keeps call_kwargs
        kwargs = getattr(arguments, "kwargs", None) if arguments is not None else None
        if kwargs is None:
            kwargs = getattr(node, "call_kwargs", None)
        if isinstance(kwargs, dict) and kwargs.get("mask") is not None:
            return True
    return False


def _masked_unrolls(layer) -> bool:
    """Whether a masked recurrent layer unrolls into ops int8 calibration runs.

    Measured with TensorFlow 2.21: a masked GRU or SimpleRNN (Keras 3 and tf_keras, a
    Bidirectional GRU too), unrolled, is a chain of plain ops (SELECT_V2 keeps a padded step's
    state) and quantizes to 0.98-0.99 top-1 agreement; a masked Keras 3 LSTM, unrolled, keeps
    variable reads that calibration fails on (READ_VARIABLE) or crashes in, and a masked
    tf_keras LSTM crashes the converter.
    """
    return type(layer).__name__ in ("GRU", "SimpleRNN")


def _has_lstm(model) -> bool:
    return any(type(layer).__name__ == "LSTM" for layer in _cells(model))


def _check_id_inputs(model, io: IOType) -> None:
    """Refuse an 8-bit input that an Embedding reads as ids from a float input.

    The converter quantizes a float input on the range calibration saw, not on steps of one:
    token ids 0..976 (ethnicolr's name model) became steps of 3.8 and the Edge TPU road agreed
    0.79 with the model; deepcut's character ids 0..177 became steps of 0.69, rounded to
    neighbouring characters (0.79 again). Nothing in the file explained either. An integer
    input is not quantized, so its ids stay exact.
    """
    from ..models.describe import inbound_layers

    for layer in _all_layers(model):
        rows = getattr(layer, "input_dim", None)
        if type(layer).__name__ != "Embedding" or not rows:
            continue
        fed = [prev.name for prev in inbound_layers(layer) if type(prev).__name__ == "InputLayer"
               and "float" in str(getattr(prev.dtype, "name", prev.dtype))]
        if fed:
            raise UsageError(f"input {fed[0]!r} holds token ids for the Embedding {layer.name} "
                             f"({rows} rows), and an 8-bit ({io.value}) input tensor rounds them "
                             "to the steps calibration sets", "use float32 io (--io float32, "
                             "--target cpu; the Edge TPU road needs 8-bit inputs): the ids then "
                             "stay exact and the rest is quantized inside")


MAX_UNROLL = 256  # time steps a loop is unrolled over for int8 (the graph holds one step each)


def _loops(model, lstm_fuses: bool | None = None) -> list:
    """(layer, why) of the recurrent layers that would convert to a WHILE loop."""
    from .._tf import is_keras3

    masked = _masked(model)  # a masked LSTM is a loop in tf_keras too (measured: a segfault)
    fused = (not is_keras3(model) if lstm_fuses is None else lstm_fuses) and not masked
    out = []
    for layer in _cells(model):
        kind = type(layer).__name__
        if getattr(layer, "unroll", False) and (not masked or _masked_unrolls(layer)):
            continue  # unrolled: a chain of plain ops, no loop
        why = lstm_not_fused(layer, dropped=lstm_fuses is not None) if kind == "LSTM" else None
        if not (fused and kind == "LSTM" and why is None):
            out.append((layer, why))
    return out


def _unrollable(layer) -> bool:
    """A recurrent layer Keras can unroll (not a ConvLSTM) over at most MAX_UNROLL steps."""
    steps = _steps(layer)
    return (not type(layer).__name__.startswith("ConvLSTM") and steps is not None
            and steps <= MAX_UNROLL)


def _steps(layer) -> int | None:
    from ..models.stats import _built_shapes

    shape = _built_shapes(layer)[0]
    if shape is None:
        shape = list(getattr(getattr(layer, "input", None), "shape", None) or [])
    return int(shape[1]) if len(shape) > 2 and shape[1] is not None else None


def unrolled_loops(model, q: Quantization, notes: list[str]):
    """For int8/int16x8, ``model`` with its recurrent loops unrolled over their time steps.

    A loop (a GRU, a SimpleRNN, an LSTM TFLite cannot fuse: Keras 2.0-2.2's default
    ``hard_sigmoid`` gate, vvadlrs3's voice-activity LSTM) cannot be calibrated for int8 (the
    converter crashes), so such models were refused. Unrolled over a fixed number of steps
    (``unroll=True``, the same weights and arithmetic) it is a chain of ordinary ops, which
    quantize. Only when every loop has a known length up to MAX_UNROLL and nothing is masked;
    otherwise the model is returned as it is (and ``check_integer_recurrent`` words why).
    """
    from .._tf import is_keras3, keras_of
    from ..models.layer_config import layer_config

    loops = _loops(model) if q in (Quantization.int8, Quantization.int16x8) else []
    if not loops or (_masked(model) and not all(_masked_unrolls(x) for x, _ in loops)):
        return model
    if not all(_unrollable(layer) for layer, _ in loops):
        return model
    steps = {layer.name: _steps(layer) for layer, _ in loops}
    fused = not is_keras3(model)

    def loop(kind: str, config: dict) -> bool:  # what _loops decides, from a config
        return not (fused and kind == "LSTM" and _config_not_fused(config, dropped=True) is None)

    def unroll(config):  # a wrapper's (Bidirectional's) recurrent layers, by their configs
        if isinstance(config, dict):
            out = {k: unroll(v) for k, v in config.items()}
            inner = out.get("config")
            if isinstance(inner, dict) and "unroll" in inner and loop(out.get("class_name"), inner):
                inner["unroll"] = True
            return out
        if isinstance(config, list):
            return [unroll(v) for v in config]
        return config

    def clone(layer):
        config = unroll(layer_config(layer))
        if "unroll" in config and layer.name in steps:
            config["unroll"] = True
        return layer.__class__.from_config(config)

    with _clone_scope():
        copy = keras_of(model).models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    if _loops(copy):  # a wrapper kept its loop: the refusal stands
        return model
    notes.append("unrolled over their time steps for " + q.value + " (a loop cannot be "
                 "calibrated; the same weights and arithmetic): " + ", ".join(
                     f"{layer.name} ({type(layer).__name__}{', ' + why if why else ''}, "
                     f"{steps[layer.name]} steps)" for layer, why in loops[:4]))
    return copy


WEIGHTS_ONLY = "use --quantize dynamic or float16 (weights only)"


def check_integer_recurrent(model, q: Quantization, lstm_fuses: bool | None = None,
                            weights_only: str = WEIGHTS_ONLY) -> None:
    """Refuse what crashes the converter: full-integer calibration of a recurrent loop.

    Only tf_keras's LSTM becomes a fused kernel; every other recurrent layer becomes a WHILE
    loop, and calibrating a WHILE loop for int8/int16x8 kills TensorFlow 2.21's converter with
    a segmentation fault (measured on GRU, SimpleRNN and Keras 3 LSTM loops). A loop over a
    fixed number of steps is unrolled instead (``unrolled_loops``); what is refused is a loop
    over an open or long time axis, or over masked sequences.
    ``lstm_fuses``: whether an LSTM will reach the fused kernel (default: it does in a tf_keras
    model); `compress` asks before it trains, of the Keras 3 model the bridge will convert.
    ``weights_only``: how the caller's user picks a weights-only mode instead.
    """
    from .._tf import is_keras3

    if q not in (Quantization.int8, Quantization.int16x8):
        return
    masked = _masked(model)
    fused = (not is_keras3(model) if lstm_fuses is None else lstm_fuses) and not masked
    found = _loops(model, lstm_fuses)
    unrolls = not masked or all(_masked_unrolls(layer) for layer, _ in found)
    if unrolls and all(_unrollable(layer) for layer, _ in found):
        return  # to_tflite unrolls them (unrolled_loops)
    unfusable = any(why is not None for _, why in found)
    loops = [f"{layer.name} ({type(layer).__name__}{', ' + why if why else ''}"
             + ("" if masked else f", {_steps(layer) or 'open'} steps") + ")"
             for layer, why in found]
    if loops:
        fixable = unrolls and not any(type(layer).__name__.startswith("ConvLSTM")
                                      for layer, _ in found)
        hint = (weights_only
                + (f"; a loop over a fixed number of steps (up to {MAX_UNROLL}) is unrolled "
                   "and quantizes: give the input a fixed length" if fixable else "")
                + ("; an LSTM reaches the fused kernel with --lstm fused"
                   if _has_lstm(model) and not masked and not fused and not unfusable else "")
                + ("; a masked LSTM always runs as a loop (a masked GRU or SimpleRNN is "
                   "unrolled over a fixed length)" if not unrolls else ""))
        raise UsageError(f"{q.value} quantization of recurrent loops is not supported by the "
                         f"TFLite converter (it crashes): {', '.join(loops[:4])}", hint)


def for_fused_kernels(model):
    """The model to convert so its LSTMs reach TFLite's fused LSTM kernel.

    tf_keras marks its LSTM as an ``lstm`` implementation, which the converter fuses into one
    UNIDIRECTIONAL_SEQUENCE_LSTM op (weights stored once, quantizable, fast); Keras 3's LSTM
    becomes a WHILE loop of small ops. A Keras 3 model with an LSTM is converted through its
    tf_keras copy when the bridge can make one (checked equal first); otherwise as it is, which
    still needs no Flex ops.
    """
    from .._tf import is_keras3

    if not is_keras3(model) or not _has_lstm(model):
        return model
    from ..errors import BridgeError
    from ..models.bridge import bridge

    try:
        return bridge(model).model
    except BridgeError:
        return model


def _owner(model, function):
    """The object the converter saves beside ``function``: it must own what the trace captured.

    The converter writes the traced function and its owner as a SavedModel, and only a file
    made that way gets a serving_default signature (which ai-edge-quantizer, LiteRT's
    CompiledModel and int8 calibration of several inputs need); when the save fails, it falls
    back, silently, to a file with none. The owner is a tf.Module holding the model's
    tf.Variables:
    - Keras 3 wraps each tf.Variable; handed the Keras 3 model, the converter froze the wrong
      ones (every output NaN), so it gets each KerasVariable's value;
    - a tf_keras model handed over as itself is saved as a Keras SavedModel, which traces every
      layer's training call too: 3-5x the time, and a Dropout's random op raised there under
      deterministic ops without a seed (every tf_keras model with a Dropout lost its signature;
      deepcut's two-input CNN could not calibrate int8). Only when the trace captured a
      resource that is not a variable (a lookup table) does the tf_keras model itself own it,
      with a seed set for its Dropouts.
    A SavedModel's signature (models/signature.py) hands over the loaded object that owns its
    variables.
    """
    if hasattr(model, "trackable"):
        return model.trackable
    tensorflow = tf()
    variables = [v if isinstance(v, tensorflow.Variable) else v.value for v in model.variables]
    from .._tf import is_keras3

    held = {id(v.handle) for v in variables}
    if not is_keras3(model) and any(t.dtype == tensorflow.resource and id(t) not in held
                                    for t in function.captured_inputs):
        tensorflow.random.set_seed(0)
        return model
    holder = tensorflow.Module()
    holder.model_variables = variables
    return holder


def traced(model, batch_size: int | None = None):
    """The model's inference call as a concrete function: what the converters take.

    The same road for Keras 3 and tf_keras models (Keras 3 runs on the TensorFlow backend).
    """
    own = getattr(model, "own_function", None)  # a SavedModel's signature may go as it is
    if own is not None and (fn := own(batch_size)) is not None:
        return fn
    tensorflow = tf()
    from ..evaluate import inference_call

    fn = tensorflow.function(inference_call(model))
    return fn.get_concrete_function(*input_specs(model, batch_size))


def to_tflite(model, quantization: Quantization = Quantization.float32,
              io: IOType = IOType.float32, x_calib: np.ndarray | None = None,
              calibration_samples: int | None = None, allow_flex: bool = False,
              batch_size: int | None = None, fused_lstm: bool = True,
              keep_float: tuple[str, ...] = (), sparse_weights: bool = False,
              calibration: str = "minmax", notes: list[str] | None = None,
              fills_float: bool = True) -> bytes:
    """Convert a Keras model (Keras 3 or tf_keras) to a TFLite flatbuffer.

    ``export.export`` is the public road; this is the converter it calls.

    Parameters
    ----------
    quantization
        float32; dynamic (int8 weights, float activations); float16 (weights); int8 (full
        integer, calibrated on ``x_calib``); int16x8 (int16 activations, int8 weights).
    io
        Input/output type of an int8 model: float32 (quantize inside), int8 or uint8.
    calibration_samples
        How many of ``x_calib`` calibrate (the ExportSpec's count; None: all of them).
    allow_flex
        Let the converter use Select TF (Flex) ops; without it a model that needs them fails
        with the list of ops.
    batch_size
        Fix the batch dimension (the Edge TPU needs static shapes); None keeps it dynamic.
    fused_lstm
        Convert LSTMs to TFLite's fused (stateful) kernel where the bridge allows; False keeps
        Keras 3's stateless WHILE loop. See ``for_fused_kernels``.
    keep_float
        Keras layer names whose ops stay float32 in an int8 model (selective quantization:
        the converter calibrates, then TFLite's MLIR quantizer skips those ops' outputs, with
        DEQUANTIZE/QUANTIZE around them).
    sparse_weights
        Store pruned weights in TFLite's sparse format (the converter's sparsity pass): the file
        shrinks by about the sparsity. LiteRT's kernels read int8 FullyConnected weights sparse
        in 1x16 blocks of the input axis (a Keras Dense kernel pruned with block_size [16, 1])
        and float ones in 1x4; weights below the converter's sparsity floor stay dense. The
        file is run once here: a layout the CPU kernels refuse is an error, not a file.
    calibration
        How int8 activation ranges are set: "minmax" (the converter's recorded min/max) or
        "percentile" (each range narrowed to its 99.999th percentiles, see ``ranges``).
    notes
        A list that gets what the conversion changed on its own (``shared_scales``).
    fills_float
        Keep float, in an int8 model, the ops that a masking fill put on an int8 range no
        activation has (``masked_fills``); False where nothing may stay float (the Edge TPU).
    """
    tensorflow = tf()
    model = fresh_copy(for_fused_kernels(model) if fused_lstm else model)
    q = Quantization(quantization)
    notes = notes if notes is not None else []
    model = unrolled_loops(model, q, notes)
    check_integer_recurrent(model, q)
    io = IOType(io)
    if io is not IOType.float32 and q is not Quantization.int8:
        raise UsageError(f"io {io.value} needs int8 quantization; received {q.value}",
                         "use --quantize int8 or io float32")
    if io is not IOType.float32:
        _check_id_inputs(model, io)
    needs_data = q in (Quantization.int8, Quantization.int16x8)
    from ..data.multi import count

    if needs_data and count(x_calib) == 0:
        raise UsageError(f"{q.value} quantization needs calibration data",
                         "pass --data (a representative set is drawn from its calibration split)")

    if batch_size is None and has_recurrent(model):
        # A recurrent layer traced with a dynamic batch becomes TensorList ops, which only
        # Flex runs; with a static batch it becomes builtin ops (fused LSTM kernels in tf_keras).
        batch_size = 1
    function = traced(model, batch_size)
    owner = _owner(model, function)
    from .complex_values import real_valued

    if (real := real_valued(function)) is not None:  # a spectrogram's complex values moved
        function, owner = real, tensorflow.Module()
        notes.append("magnitudes taken before the complex STFT values are moved (the same "
                     "values; TFLite moves no complex tensors)")
    converter = tensorflow.lite.TFLiteConverter.from_concrete_functions([function], owner)
    _configure(converter, q, io, x_calib, calibration_samples, allow_flex, sparse_weights,
               keep_float)
    if keep_float or calibration == "percentile":
        return _calibrated(converter, model, keep_float, io, calibration,
                           representative(x_calib, calibration_samples), notes, fills_float)
    log: list[str] = []
    try:
        with quiet_stderr(capture=log):
            flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError, ValueError, RuntimeError...
        text = " ".join(str(err).split())
        if not text.strip(" :"):  # the reason is only in the converter's log
            from ..quiet import logged_error

            text = logged_error("".join(log)) or type(err).__name__
        flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", text)))
        if flex and not allow_flex:
            raise ConversionError(
                f"the model needs TensorFlow ops that TFLite has no builtin for: "
                f"{', '.join(flex)}", "replace those layers, or rerun with --allow-flex (the "
                "artifact then needs the Flex delegate, which stock ai-edge-litert and "
                "tflite-runtime lack)") from None
        if needs_data and batch_size is None and "failed to invoke" in text:
            # Calibration runs the graph: a shape built from the dynamic batch (tf_keras's
            # GroupNormalization broadcasts to one) can fail there and not with a fixed batch,
            # which is what an edge runtime feeds anyway.
            return to_tflite(model, q, io, x_calib, calibration_samples, allow_flex, 1,
                             fused_lstm, keep_float, sparse_weights, calibration, notes)
        if "Max and min for dynamic tensors" in text:
            # Keras 3's Embedding guards negative ids with integer arithmetic (LESS, ADD,
            # SELECT_V2) that int16x8 calibration wants ranges for and has none: an int32 or a
            # float id input alike (tf_keras's Embedding converts)
            raise ConversionError(f"TFLite conversion ({q.value}) failed: {text[:300]}",
                                  "TFLite's calibration has no range for an integer tensor it "
                                  "tried to quantize (a Keras 3 Embedding's id arithmetic does "
                                  "this at int16x8): use --quantize int8 or dynamic") from None
        raise ConversionError(f"TFLite conversion ({q.value}) failed: {text[:400]}",
                              "run `edgenn check` to find the op at fault, or try another "
                              "quantization mode") from None
    if q is Quantization.int8 and fills_float and not sparse_weights and masked_fills(flatbuffer):
        # an attention mask's -1e9 fill set the scale of the scores it fills (every score 0);
        # sparse weights quantize every op (as with front layers): the fidelity check judges
        again = tensorflow.lite.TFLiteConverter.from_concrete_functions([function], owner)
        _configure(again, q, io, x_calib, calibration_samples, allow_flex, False, ())
        return _calibrated(again, model, keep_float, io, calibration,
                           representative(x_calib, calibration_samples), notes, fills_float)
    if sparse_weights:
        _check_sparse_runs(flatbuffer)
    elif q in (Quantization.int8, Quantization.int16x8):
        from . import shared_scales

        if (shared_scales.suspect(flatbuffer) if q is Quantization.int8
                else shared_scales.clip_suspect(flatbuffer)):
            # the ranges calibration recorded, which the quantizer's shared scales overrode
            calibrating = tensorflow.lite.TFLiteConverter.from_concrete_functions([function],
                                                                                  owner)
            _configure(calibrating, q, io, x_calib, calibration_samples, allow_flex, False, ())
            flatbuffer = _own_scales(flatbuffer, lambda: _calibrate_only(calibrating), notes,
                                     shared_scales.repair if q is Quantization.int8
                                     else shared_scales.unclip)
    return flatbuffer


def _calibrate_only(converter) -> bytes:
    """The float model with the ranges calibration recorded (TF's documented selective road)."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001
    return converter.convert()


def _own_scales(quantized: bytes, calibrated, notes: list[str], repair=None) -> bytes:
    """``repair`` (``shared_scales.repair`` unless given) of ``quantized``.

    ``calibrated``: the ranges, or what makes them. The repair never fails a conversion: on
    an error the quantizer's file stands, with a note.
    """
    from . import shared_scales

    try:
        with quiet_stderr():
            ranges = calibrated() if callable(calibrated) else calibrated
            result, changed = (repair or shared_scales.repair)(quantized, ranges)
    except Exception as err:  # noqa: BLE001 - the quantizer's file stands as it is
        result, changed = quantized, [f"scales were left as the quantizer set them "
                                      f"({type(err).__name__})"]
    notes.extend(changed)
    return result


def with_input_names(flatbuffer: bytes, names: list[str]) -> bytes:
    """``flatbuffer`` with the source model's input names in its metadata (INPUT_NAMES_KEY)."""
    import json

    from ai_edge_litert import schema_py_generated as schema

    from ..runtime.tflite_info import INPUT_NAMES_KEY, packed, unpacked

    model = unpacked(flatbuffer)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(names).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = INPUT_NAMES_KEY.encode(), len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (INPUT_NAMES_KEY,
                                                                          INPUT_NAMES_KEY.encode())]
    model.metadata.append(entry)
    return packed(model)


def _configure(converter, q: Quantization, io: IOType, x_calib, calibration_samples,
               allow_flex: bool, sparse_weights: bool, keep_float: tuple[str, ...]) -> None:
    """Set the converter's optimizations, representative data and op sets for ``q``."""
    tensorflow = tf()
    ops = [tensorflow.lite.OpsSet.TFLITE_BUILTINS]
    if q is Quantization.dynamic:
        converter.optimizations = [tensorflow.lite.Optimize.DEFAULT]
    elif q is Quantization.float16:
        converter.optimizations = [tensorflow.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tensorflow.float16]
    elif q is Quantization.int8:
        converter.optimizations = [tensorflow.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(x_calib, calibration_samples)
        ops = [tensorflow.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io is not IOType.float32:
            dtype = tensorflow.int8 if io is IOType.int8 else tensorflow.uint8
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
    elif q is Quantization.int16x8:
        converter.optimizations = [tensorflow.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(x_calib, calibration_samples)
        # With the builtin set beside it, an op TFLite has no 16x8 kernel for (NEG...) stays
        # float instead of failing the conversion (TensorFlow's documented fallback); the
        # convert log names those ops (`float_ops`).
        ops = [tensorflow.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
               tensorflow.lite.OpsSet.TFLITE_BUILTINS]
    if allow_flex:
        ops = ops + [tensorflow.lite.OpsSet.SELECT_TF_OPS]
    converter.target_spec.supported_ops = ops
    if sparse_weights:
        if keep_float:
            raise UsageError("sparse weights and --keep-float cannot be combined (the selective "
                             "quantizer rewrites the file after the sparsity pass)",
                             "drop one of them")
        converter.optimizations = list(converter.optimizations) + [
            tensorflow.lite.Optimize.EXPERIMENTAL_SPARSITY]


def _check_sparse_runs(flatbuffer: bytes) -> None:
    """Run a sparse file once on LiteRT's CPU kernels (XNNPack included) or refuse it.

    Seen with TF 2.21: int8 FullyConnected weights pruned weight by weight are stored sparse,
    and XNNPack then fails to prepare the op.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        with quiet_stderr():
            interpreter = Interpreter(model_content=flatbuffer)
            interpreter.allocate_tensors()
            for d in interpreter.get_input_details():
                interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            interpreter.invoke()
    except Exception as err:  # noqa: BLE001 - the runtime raises RuntimeError or ValueError
        raise ConversionError(
            f"the file with sparse weights does not run on LiteRT's CPU kernels: "
            f"{' '.join(str(err).split())[:200]}",
            "prune Dense layers in blocks LiteRT reads sparse (block_size [16, 1] for int8, "
            "[4, 1] for float), or drop sparse_weights") from None


def scopes(tensor_names: list[str]) -> dict[str, int]:
    """{layer scope: order}: the second part of each ``model/layer/op`` a tensor name carries.

    A SavedModel without Keras metadata has no layers to name, but TFLite tensor names keep the
    scopes of the TensorFlow ops fused into them, and a Keras-built graph scopes ops by layer.
    """
    found: dict[str, int] = {}
    for name in tensor_names:
        for piece in name.split(";"):
            parts = piece.split("/")
            if len(parts) >= 3 and parts[1] not in found:
                found[parts[1]] = len(found)
    return found


def _known_layers(keep_float, position: dict, names: list[str], where: str) -> None:
    """Refuse --keep-float names that are no layer (or scope) of the model."""
    unknown = [name for name in keep_float if name not in position]
    if unknown:
        raise UsageError(f"--keep-float names no layer of the model: {', '.join(unknown)}",
                         f"use layer names such as {', '.join(names[-4:])} ({where})")


FILL_RANGE = 1e6  # a range (or constant) this wide holds a masking fill (-1e9), no activation


def masked_fills(flatbuffer: bytes) -> list[str]:
    """The tensors of an int8 file that a masking fill put on a range no activation has.

    Keras 3's masked softmax (MultiHeadAttention with an attention or padding mask: keras-hub's
    BERT) fills masked scores with -1e9 (a SELECT_V2 of a constant); int8 gives the fill and the
    scores one scale, whose step (3.9e6) makes every score 0 and attention uniform (label
    agreement 0.53, SNR 0.3 dB). These are the op outputs on such a range (the scores, the fill)
    and what the ops reading them write (the softmax): kept float, the softmax is exact and
    the matrix multiplies around it stay int8.
    """
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime.tflite_info import op_names, unpacked

    model = unpacked(flatbuffer)
    kinds = op_names(model)
    found: list[str] = []
    for sg in model.subgraphs:
        wide = set()
        for op in sg.operators or []:
            for out in op.outputs if op.outputs is not None else []:
                q = sg.tensors[out].quantization
                if (sg.tensors[out].type == schema.TensorType.INT8 and q is not None
                        and q.scale is not None and len(q.scale) == 1
                        and float(q.scale[0]) * 255 >= FILL_RANGE):
                    wide.add(int(out))
        for op in sg.operators or []:
            outs = [int(o) for o in (op.outputs if op.outputs is not None else [])]
            ins = {int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0}
            if set(outs) & wide or (ins & wide and kinds[op.opcodeIndex] != "DEQUANTIZE"):
                for out in outs:
                    name = sg.tensors[out].name
                    found.append(name.decode() if isinstance(name, bytes) else str(name))
    return list(dict.fromkeys(found))


def _calibrated(converter, model, keep_float: tuple[str, ...], io: IOType, calibration: str,
                samples, notes: list[str], fills_float: bool = True) -> bytes:
    """int8 in two passes: calibrate, then quantize (see ``to_tflite``).

    Between the two, percentile calibration narrows the recorded ranges, and the ops of
    ``keep_float`` layers are denylisted so they stay float32.
    """
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import convert as tfl_convert

    from .explain import fused_lstm_tensors, layers_of_tensor

    tensorflow = tf()
    position = {layer.name: i for i, layer in enumerate(model.layers)}
    road = "selective int8" if keep_float else f"int8 with {calibration} calibration"
    if position:
        names = [n for n in position if type(model.get_layer(n)).__name__ != "InputLayer"]
        _known_layers(keep_float, position, names, "`edgenn inspect MODEL` lists them, "
                      "`convert --explain` ranks them")
    try:
        with quiet_stderr():
            calibrated = _calibrate_only(converter)
            interp = Interpreter(model_content=calibrated)  # its tensor and output names
            names = [t["name"] for t in interp.get_tensor_details()]
    except Exception as err:  # noqa: BLE001 - converter errors of every type, one line
        raise ConversionError(f"TFLite calibration for {road} failed: "
                              f"{' '.join(str(err).split())[:300]}",
                              "try without --keep-float" if keep_float else
                              "try --calibration minmax") from None
    if not position and keep_float:  # a SavedModel's signature: its layers are the scopes of
        position = scopes(names)    # the TensorFlow ops the tensor names carry
        _known_layers(keep_float, position, list(position),
                      "a SavedModel without Keras layers: the scopes of its TensorFlow ops")
    if calibration == "percentile":
        from .ranges import percentile_ranges

        with quiet_stderr():
            calibrated, _ = percentile_ranges(calibrated, samples)
    keep = set(keep_float)
    nodes, found = [], set()
    for name in names:
        fused = layers_of_tensor(name, position)
        if fused & keep:
            nodes.append(name)
            found |= fused & keep
    # A kept layer that produces a model output: its fused activation (a Dense's softmax) is
    # an op of its own whose tensor carries the output's name, not the layer's; left out, the
    # float logits were quantized again right before it.
    from ..fidelity import _producer
    from ..runtime.litert import _in_order

    for tensor, detail in zip(model.outputs,
                              _in_order(interp, interp.get_output_details(), "outputs")):
        producer = _producer(tensor)
        if producer is not None and producer.name in keep and detail["name"] not in nodes:
            nodes.append(detail["name"])
    lstm_nodes = fused_lstm_tensors(interp, model, keep)
    for owner, tensor in lstm_nodes:
        nodes.append(tensor)
        found.add(owner)
    missing = sorted(keep - found, key=position.get)
    if missing:
        raise UsageError(f"--keep-float: {', '.join(missing)} computes no op of its own in the "
                         "TFLite model", "name a layer that does (a Conv2D, Dense or activation; "
                         "`convert --explain` lists the ones it can see)")
    kwargs = {}
    if io is not IOType.float32:
        dtype = tensorflow.int8 if io is IOType.int8 else tensorflow.uint8
        kwargs = {"fully_quantize": True, "input_data_type": dtype, "output_data_type": dtype}
    try:
        with quiet_stderr():
            result = tfl_convert.mlir_quantize(calibrated, denylisted_nodes=nodes, **kwargs)
            known = set(names)
            fills = [n for n in masked_fills(result) if n in known and n not in nodes] \
                if fills_float else []
            if fills:
                result = tfl_convert.mlir_quantize(calibrated, denylisted_nodes=nodes + fills,
                                                   **kwargs)
                notes.append(f"kept float: {len(fills)} tensors of masked attention (the "
                             "scores, their -1e9 fill of masked positions and the softmax: one "
                             "int8 scale for the fill and the scores made every score 0)")
            details = Interpreter(model_content=result).get_tensor_details()
    except Exception as err:  # noqa: BLE001
        raise ConversionError(f"{road} quantization failed: "
                              f"{' '.join(str(err).split())[:300]}",
                              "try without --keep-float" if keep_float else
                              "try --calibration minmax") from None
    # The quantizer skips a name it cannot honour without a word (seen: the first convolution
    # after a float input): a kept layer must own a float tensor in the result.
    floats = set()
    for t in details:
        if np.dtype(t["dtype"]) == np.float32:
            floats |= layers_of_tensor(t["name"], position)
    # a kept LSTM is float when its kernels are (a lone LSTM owns no other op to show it)
    dtypes = {t["name"]: np.dtype(t["dtype"]) for t in details}
    floats |= {owner for owner, _ in lstm_nodes}
    floats -= {owner for owner, tensor in lstm_nodes if dtypes.get(tensor) != np.float32}
    ignored = sorted(keep - floats, key=position.get)
    if ignored:
        raise ConversionError(f"TFLite's quantizer did not keep {', '.join(ignored)} in float "
                              "(it leaves some ops, such as the first after the input, "
                              "quantized)", "keep the layers after it instead, or convert "
                              "with --quantize int16x8 or dynamic")
    return _own_scales(result, calibrated, notes)
