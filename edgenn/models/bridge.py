"""Bridge Keras 3 models into tf_keras, the Keras that tensorflow-model-optimization accepts.

tf_keras cannot read Keras 3 files (``batch_shape``, dtype policies, ``module`` keys, a new node
format). The bridge rebuilds the model in tf_keras from the Keras 3 config, layer by layer,
copies the weights, and proves the two models compute the same function on random inputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from .._tf import keras3, tf_keras
from ..errors import BridgeError
from .allowlist import BRIDGE_ACTIVATIONS, BRIDGE_LAYERS

# Layer classes the bridge translates and tests. Anything else fails with the list.
SUPPORTED_LAYERS = frozenset({
    "InputLayer", "Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D",
    "Conv2DTranspose", "BatchNormalization", "LayerNormalization", "MaxPooling1D", "MaxPooling2D",
    "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Add", "Subtract", "Multiply", "Average",
    "Maximum", "Minimum", "Concatenate", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "Dropout", "SpatialDropout2D", "GaussianNoise", "Flatten", "Reshape", "Permute",
    "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Rescaling", "Embedding", "Normalization",
    "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed",
    "GaussianDropout", "SpatialDropout1D", "AlphaDropout", "ActivityRegularization",
    "ZeroPadding1D", "Cropping1D", "UpSampling1D", "RepeatVector", "PReLU", "Conv1DTranspose",
    "SeparableConv1D", "MaxPooling3D", "AveragePooling3D", "GlobalAveragePooling3D",
    "GlobalMaxPooling3D", "MultiHeadAttention", "Resizing", "CenterCrop", "Attention",
    "AdditiveAttention", "Dot", "EinsumDense", "GroupNormalization", "UnitNormalization",
    "DepthwiseConv1D", "Identity", "Masking", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
    "Conv3DTranspose", "Cropping3D", "UpSampling3D", "ZeroPadding3D", "SpatialDropout3D",
})
# Random augmentation inside the model (Keras' tutorials put it there): the identity at
# inference, and tf_keras's own versions differ (options, channels-last only, shapes), so the
# bridge makes them identity layers; the tfmot steps then train without them (a recipe's
# `augment:` augments while a step trains). The bridge's check still compares the outputs.
_AUGMENTATION = frozenset({
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomGrayscale", "RandomHue", "RandomSaturation", "RandomSharpness",
    "RandomShear", "RandomColorJitter", "RandomErasing", "RandomGaussianBlur", "RandomPerspective",
    "RandomInvert", "RandomPosterization", "RandomColorDegeneration",
    "RandomCrop",  # Keras 3 returns its input unchanged at inference (measured, 3.15)
})
# Layers Keras's own applications define (keras.src.applications.*): tf_keras's applications
# define the same ones.
_APPLICATION_LAYERS = {"LayerScale": "convnext", "StochasticDepth": "convnext"}
_MODELS = {"Functional", "Sequential", "Model"}
# Layers that wrap another layer: the inner layer is translated first, by the same rules.
_WRAPPERS = {"Bidirectional", "TimeDistributed"}
_MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}

# Keras 3 options with no tf_keras counterpart, dropped only while they hold these values
# (which mean "off"). Any other value makes the bridge refuse the layer.
_DROPPABLE_DEFAULTS = {
    "quantization_config": (None,), "lora_rank": (None,), "lora_alpha": (None,),
    "optional": (False,), "rms_scaling": (False,), "input_axes": (None,),
    "output_axes": (None,), "sparse": (False,), "ragged": (False,), "seed": (None,),
    "synchronized": (False,), "gamma_regularizer": (None,), "mask_zero": (False,),
    "use_cudnn": ("auto", False), "zero_output_for_mask": (False,),
    # tf_keras's ZeroPadding1D works channels-last only
    "data_format": ("channels_last",),
    "use_gate": (False,), "sliding_window": (None,), "flash_attention": (None,),  # attention
    "pad_to_aspect_ratio": (False,), "antialias": (False,),  # Resizing
    "fill_mode": ("constant",), "fill_value": (0.0, 0),  # Resizing, read only when padding
}
# Options Keras 3 renamed: the tf_keras name for each (per layer class).
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
_LAYER_BASE_KWARGS = {"name", "dtype", "trainable", "dynamic", "input_dim", "input_shape",
                      "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                      "autocast", "implementation"}


# The bridge's equivalence bound: the relative L2 error ||keras3 - tf_keras|| / ||keras3|| of
# every output on random inputs. float32 rounding grows with depth (ResNet50 with data-set
# BatchNorm statistics differed by 4.3e-5 absolute, about 1e-6 relative), while a layer
# translated wrongly (an epsilon, an activation, a padding) errs by 1e-3 and far more.
DEFAULT_TOLERANCE = 1e-4


@dataclass
class BridgeResult:
    """The tf_keras model and how closely it matches the Keras 3 original."""

    model: object
    max_abs_diff: float
    relative_error: float
    tolerance: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "relative_error": self.relative_error,
                "tolerance": self.tolerance, "notes": self.notes}


def bridge(k3_model, custom_objects: dict | None = None, tolerance: float = DEFAULT_TOLERANCE,
           seed: int = 0) -> BridgeResult:
    """Rebuild ``k3_model`` in tf_keras, copy its weights and check the outputs agree.

    Raises
    ------
    BridgeError
        For a layer the bridge cannot translate (named with its class and what to do), or when
        the outputs differ by more than ``tolerance`` (naming the first layer that diverges).
    """
    keras = keras3()

    notes: list[str] = []
    k3_model = inline_nested(k3_model, notes)
    serialized = keras.saving.serialize_keras_object(k3_model)
    try:
        tfk_model = _build_model(serialized, custom_objects or {}, notes)
        _tf_ops_allowed(tfk_model)
        _copy_weights(k3_model, tfk_model)
    except BridgeError:
        raise
    except Exception as err:  # tf_keras refusing a translated layer: a bridge gap, not a crash
        text = " ".join(str(err).split())[:240]
        raise BridgeError(f"tf_keras could not rebuild the model ({type(err).__name__}: {text})",
                          "report the model to edgenn, or save it with tf_keras") from None
    diff, rel = verify(k3_model, tfk_model, tolerance, seed)
    augmentation = [f"{layer.name} ({type(layer).__name__})" for layer in _walk(k3_model)
                    if type(layer).__name__ in _AUGMENTATION]
    if augmentation:
        notes.append(f"augmentation inside the model ({', '.join(augmentation)}) is the identity "
                     "in the tf_keras copy, as at inference: tfmot's steps train without it (a "
                     "recipe's augment: augments while a step trains)")
    return BridgeResult(tfk_model, diff, rel, tolerance, notes)


def verify(k3_model, tfk_model, tolerance: float = DEFAULT_TOLERANCE,
           seed: int = 0) -> tuple[float, float]:
    """Check two models compute the same function on random inputs.

    The bound is on each output's relative L2 error, so it holds for deep networks and large
    outputs alike. Returns (max |difference|, worst relative error).

    Raises
    ------
    BridgeError
        Naming the first layer, in model order, whose output errs by more than the bound.
    """
    from ..errors import InputFileError

    try:
        inputs = random_inputs(k3_model, seed)
    except InputFileError as err:  # inputs too large to make up: the copy cannot be checked
        raise BridgeError(f"the tf_keras copy could not be checked: {err.message}",
                          "prune, cluster and QAT need that check; run them on a machine "
                          "with more memory") from None
    a, b = _predict(k3_model, inputs), _predict(tfk_model, inputs)
    diff, _ = _max_diff(a, b)
    rel = _relative(a, b)
    if not rel <= tolerance:
        layer, layer_rel = _first_divergent_layer(k3_model, tfk_model, inputs, tolerance)
        raise BridgeError(
            f"the tf_keras copy differs from the Keras 3 model by a relative error of {rel:.3g} "
            f"(> {tolerance:.1g}; max |difference| {diff:.3g}); the first layer that diverges is "
            f"{layer} (relative error {layer_rel:.3g})",
            "report this layer's config to edgenn, save the model with tf_keras, or, if the "
            "difference is rounding, raise --bridge-tolerance",
        )
    return float(diff), float(rel)


def _relative(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """The worst output's ||a - b|| / ||a|| (absolute when a is all zeros)."""
    worst = 0.0
    for x, y in zip(a, b):
        x64 = x.astype(np.float64)
        err = float(np.linalg.norm(x64 - y))
        norm = float(np.linalg.norm(x64))
        worst = max(worst, err / norm if norm > 0 else err)
    return worst


# --- building ---------------------------------------------------------------------------------

def inline_nested(model, notes: list[str]):
    """``model`` with every model nested in it as a layer inlined, for tfmot.

    A transfer-learning backbone or a Sequential block becomes part of one flat Functional
    graph of the same layer objects (the same weights): tfmot wraps top-level layers only.

    A nested model's call arguments (``training=False``) are not kept: its layers run as the
    flat model runs them (a frozen BatchNormalization stays in inference mode either way).
    ``model`` itself is returned when nothing is nested or the graph cannot be inlined (two
    layers of one name, a subclassed model), and the bridge then goes on as before.
    """
    keras = keras3()

    def graph(layer):
        if isinstance(layer, keras.Sequential):
            return getattr(layer, "_functional", None)
        if type(layer).__name__ == "Functional" or (
                isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")):
            return layer
        return None

    top = graph(model)
    nested = [layer.name for layer in model.layers if graph(layer) is not None]
    if top is None or not nested:
        return model

    def run(fn, inputs):
        def operation(op):
            inner = graph(op) if isinstance(op, keras.Model) else None
            if inner is None:
                return op
            return lambda *args, **kwargs: run(inner, args[0] if len(args) == 1 else list(args))
        return fn._run_through_graph(inputs, operation_fn=operation)

    try:
        inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype,
                              name=str(t.name).split(":")[0]) for t in top.inputs]
        outputs = run(top, inputs[0] if len(inputs) == 1 else inputs)
        flat = keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name)
        names = [layer.name for layer in flat.layers]
        if len(names) != len(set(names)):
            return model
    except Exception:  # noqa: BLE001 - not inlinable: the bridge translates the nested model whole
        return model
    notes.append(f"inlined the nested model{'s' * (len(nested) > 1)} {', '.join(nested)} so "
                 "tfmot reaches the layers inside")
    return flat


def _build_model(serialized: dict, custom_objects: dict, notes: list[str]):
    cls = serialized.get("class_name")
    config = serialized.get("config", {})
    if cls == "Sequential":
        return _build_sequential(config, custom_objects, notes)
    if cls in ("Functional", "Model"):
        return _build_functional(config, custom_objects, notes)
    raise BridgeError(
        f"the model is a subclassed Keras 3 model ({cls}), which has no config to rebuild",
        "build it with the Sequential or Functional API, or save it with tf_keras",
    )


def _build_sequential(config: dict, custom_objects: dict, notes: list[str]):
    tfk = tf_keras()
    model = tfk.Sequential(name=config.get("name"))
    layers = config.get("layers", [])
    if layers and layers[0].get("class_name") == "InputLayer":
        model.add(_make_input(layers[0]["config"]))
        layers = layers[1:]
    elif config.get("build_input_shape"):
        model.add(tfk.Input(batch_shape=tuple(config["build_input_shape"])))
    for entry in layers:
        model.add(_make_layer(entry, custom_objects, notes))
    return model


def _build_functional(config: dict, custom_objects: dict, notes: list[str]):
    tfk = tf_keras()
    tensors: dict[tuple, object] = {}
    for entry in config.get("layers", []):
        name = entry.get("name") or entry["config"].get("name")
        if entry["class_name"] == "InputLayer":
            tensors[(name, 0, 0)] = _make_input(entry["config"])
            continue
        layer = None
        for node_index, node in enumerate(entry.get("inbound_nodes", [])):
            args = _resolve(node.get("args", []), tensors, name)
            kwargs = _resolve(node.get("kwargs", {}), tensors, name)
            scalar = _scalar_merge(entry["class_name"], args, name)
            if scalar is not None:  # a merge with a number: an affine map of one tensor
                layer, args = scalar
            elif layer is None and _is_operation(entry, args):
                layer = _operation(entry, name)
            elif layer is None:
                try:
                    layer = _make_layer(entry, custom_objects, notes)
                except BridgeError:
                    layer = _weightless_keras_layer(entry, name, notes)
                    if layer is None:
                        raise
            if entry["class_name"] in _MERGE_LAYERS and len(args) > 1:
                args = [list(args)]  # Keras 3 takes merge inputs as separate arguments too
            outputs = layer(*args, **kwargs)
            flat = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for tensor_index, tensor in enumerate(flat):
                tensors[(name, node_index, tensor_index)] = tensor

    def pick(spec):
        if isinstance(spec, dict):  # keras.Model({"img": ..., "meta": ...}, {"cls": ...}):
            # a list in the order Keras 3 flattens a dict (sorted keys), which tfmot can clone
            return [pick(spec[key]) for key in sorted(spec)]
        if spec and isinstance(spec[0], str):  # a single [name, node, tensor]
            return tensors[tuple(spec)]
        return [tensors[tuple(s)] for s in spec]

    return tfk.Model(inputs=pick(config["input_layers"]), outputs=pick(config["output_layers"]),
                     name=config.get("name"))


def _is_operation(entry: dict, args: list) -> bool:
    """A Keras 3 operation (``keras.ops`` on symbolic tensors) rather than a layer.

    Operations named like a merge layer (``x + y`` is an ``Add``) are built as that layer when
    every argument is a tensor, as tfmot knows layers.
    """
    if not str(entry.get("module") or "").startswith("keras.src.ops"):
        return False
    tensors = all(not isinstance(a, (int, float, bool)) for a in args)
    return not (entry["class_name"] in _MERGE_LAYERS and tensors)


def _operation(entry: dict, name: str):
    """The TensorFlow function of a Keras 3 operation, applied to tf_keras tensors.

    tf_keras records each call as a TFOpLambda layer.
    """
    from .._tf import tf

    t = tf()
    cls_name = entry["class_name"]
    config = {k: v for k, v in (entry.get("config") or {}).items() if k != "name"}
    reductions = {"Any": t.reduce_any, "All": t.reduce_all, "Mean": t.reduce_mean,
                  "Sum": t.reduce_sum, "Max": t.reduce_max, "Min": t.reduce_min,
                  "Prod": t.reduce_prod}
    plain = {"NotEqual": t.math.not_equal, "Equal": t.math.equal, "Greater": t.math.greater,
             "GreaterEqual": t.math.greater_equal, "Less": t.math.less,
             "LessEqual": t.math.less_equal, "LogicalAnd": t.math.logical_and,
             "LogicalOr": t.math.logical_or, "LogicalNot": t.math.logical_not,
             "Add": t.math.add, "Subtract": t.math.subtract, "Multiply": t.math.multiply,
             "Maximum": t.math.maximum, "Minimum": t.math.minimum, "Divide": t.math.divide,
             "TrueDivide": t.math.truediv, "Power": t.math.pow, "Absolute": t.math.abs,
             "Abs": t.math.abs, "Sqrt": t.math.sqrt, "Square": t.math.square, "Exp": t.math.exp,
             "Log": t.math.log, "Negative": t.math.negative, "Sign": t.math.sign,
             "Erf": t.math.erf, "Sigmoid": t.math.sigmoid, "Tanh": t.math.tanh,
             "Relu": t.nn.relu, "Matmul": t.linalg.matmul, "Where": t.where}
    fn = None
    if cls_name in reductions and config.get("initial") is None:
        axis, keep = config.get("axis"), bool(config.get("keepdims", False))
        reduce = reductions[cls_name]
        fn = lambda x: reduce(x, axis=axis, keepdims=keep)  # noqa: E731
    elif cls_name in plain and not config:
        fn = plain[cls_name]
    elif cls_name == "Cast" and set(config) == {"dtype"}:
        fn = lambda x: t.cast(x, config["dtype"])  # noqa: E731
    elif cls_name == "Reshape" and set(config) == {"newshape"}:
        fn = lambda x: t.reshape(x, config["newshape"])  # noqa: E731
    elif cls_name == "Transpose" and set(config) == {"axes"}:
        fn = lambda x: t.transpose(x, config["axes"])  # noqa: E731
    elif cls_name == "ExpandDims" and set(config) == {"axis"}:
        fn = lambda x: t.expand_dims(x, config["axis"])  # noqa: E731
    elif cls_name == "Squeeze" and set(config) == {"axis"}:
        fn = lambda x: t.squeeze(x, config["axis"])  # noqa: E731
    if fn is None:
        fn = _keras_operation(entry, name)
    return fn


def _keras_operation(entry: dict, name: str):
    """Any other Keras 3 operation, run as itself on tf_keras tensors.

    With the TensorFlow backend a Keras 3 operation is TensorFlow functions, and tf_keras records
    each one it is given a symbolic tensor as a TFOpLambda layer (a function named by its
    TensorFlow API path, which a saved copy reloads through edgenn's safety check: `_tf_ops_allowed`
    checks the names when the model is built). Only operations of Keras 3's own ``keras.src.ops``
    modules are built: the safety check has refused any other class before the bridge runs.
    """
    import importlib

    module_name = str(entry.get("module") or "")
    cls = None
    if module_name.startswith("keras.src.ops."):
        try:
            cls = getattr(importlib.import_module(module_name), entry["class_name"], None)
        except ImportError:
            cls = None
    if cls is None:
        raise BridgeError(f"operation {name!r} (keras.ops {entry['class_name']}) has no tf_keras "
                          "translation in edgenn's bridge",
                          "write it as a layer, or save the model with tf_keras")
    config = dict(entry.get("config") or {})
    try:
        return cls.from_config(config)
    except Exception as err:  # noqa: BLE001 - an operation this Keras cannot rebuild from its config
        raise BridgeError(f"operation {name!r} (keras.ops {entry['class_name']}) could not be "
                          f"rebuilt from its config ({type(err).__name__}: {err})",
                          "write it as a layer, or save the model with tf_keras") from None


def _weightless_keras_layer(entry: dict, name: str, notes: list[str]):
    """A Keras 3 layer with no tf_keras class and no weights, wrapped as it is.

    The tf_keras copy holds an ``edgenn>Keras3Layer`` that runs the Keras 3 layer's own
    ``call`` on its TensorFlow tensors (the TensorFlow backend computes with them), so a
    MelSpectrogram front end no longer keeps prune, cluster and QAT from the rest of the model.
    Only Keras 3's own layer classes, and only those without weights (weights would not reach
    tfmot); `verify` checks the copy equal. None when the layer is not one of them.
    """
    import json

    from .allowlist import CODE_LAYERS

    module = str(entry.get("module") or "")
    if entry["class_name"] in CODE_LAYERS or not (module == "keras.layers"
                                                  or module.startswith("keras.src.layers")):
        return None  # a Lambda (loaded with --allow-unsafe) stays the bridge's refusal
    inner = {k: entry[k] for k in ("module", "class_name", "config", "registered_name")
             if k in entry}
    try:
        layer = _own_layer("Keras3Layer")(json.dumps(inner),
                                           build_config=entry.get("build_config"), name=name)
    except Exception:  # noqa: BLE001 - a layer this Keras cannot rebuild: the bridge's refusal stands
        return None
    if layer.keras3_layer.weights:
        return None
    notes.append(f"{name} ({entry['class_name']}) has no tf_keras class: the tf_keras copy runs "
                 "the Keras 3 layer itself (it has no weights for tfmot to train)")
    return layer


def _tf_ops_allowed(tfk_model) -> None:
    """Every TensorFlow function the tf_keras copy calls is one a saved copy may reload with."""
    from . import allowlist as al

    for layer in tfk_model.layers:
        if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda"):
            symbol = layer.get_config().get("function")
            if not (isinstance(symbol, str) and al.tf_function_allowed(symbol)):
                raise BridgeError(f"layer {layer.name!r} calls the TensorFlow function {symbol!r}, "
                                  "which edgenn would refuse in the saved copy",
                                  "write it as a layer, or save the model with tf_keras")


def _scalar_merge(cls_name: str, args: list, name: str):
    """A merge of one tensor with a Python number, as the Rescaling layer tf_keras can build.

    Keras 3 merges accept numbers (MobileNetV3's hard_sigmoid multiplies by 1/6); tf_keras's
    merge layers take tensors only.
    """
    if cls_name not in ("Multiply", "Add", "Subtract") or len(args) != 2:
        return None
    numbers = [isinstance(a, (int, float)) and not isinstance(a, bool) for a in args]
    if numbers.count(True) != 1:
        return None
    c = float(args[numbers.index(True)])
    tensor = args[numbers.index(False)]
    rescaling = tf_keras().layers.Rescaling
    if cls_name == "Multiply":
        layer = rescaling(c, name=name)
    elif cls_name == "Add":
        layer = rescaling(1.0, offset=c, name=name)
    elif numbers[1]:  # tensor - c
        layer = rescaling(1.0, offset=-c, name=name)
    else:  # c - tensor
        layer = rescaling(-1.0, offset=c, name=name)
    return layer, [tensor]


def _resolve(structure, tensors: dict, layer_name: str):
    """Replace Keras 3 ``__keras_tensor__`` references with the tf_keras tensors built so far.

    Slices and ellipses (``x[:, 1:7, ...]``) become Python's again, and a list of them a tuple,
    as Keras 3 reads them back.
    """
    if isinstance(structure, dict):
        kind = structure.get("class_name")
        if kind == "__slice__":
            inner = structure.get("config") or {}
            return slice(inner.get("start"), inner.get("stop"), inner.get("step"))
        if kind == "__ellipsis__":
            return Ellipsis
        if kind == "__numpy__":
            inner = structure.get("config") or {}
            return np.array(inner.get("value"), dtype=inner.get("dtype"))
        if structure.get("class_name") == "__keras_tensor__":
            history = tuple(structure["config"]["keras_history"])
            if history not in tensors:
                raise BridgeError(f"layer {layer_name!r} reads {history}, which was not built",
                                  "the model config is out of order; save it again")
            return tensors[history]
        return {k: _resolve(v, tensors, layer_name) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        items = [_resolve(v, tensors, layer_name) for v in structure]
        if any(isinstance(v, slice) or v is Ellipsis for v in items):
            return tuple(items)
        return items
    return structure


def _make_input(config: dict):
    tfk = tf_keras()
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    return tfk.Input(batch_shape=tuple(shape), dtype=dtype, name=config.get("name"),
                     sparse=bool(config.get("sparse", False)))


def _make_layer(entry: dict, custom_objects: dict, notes: list[str]):
    tfk = tf_keras()
    cls_name = entry["class_name"]
    where = entry.get("name") or entry["config"].get("name")
    if cls_name in _MODELS:
        return _build_model(entry, custom_objects, notes)
    if cls_name in _AUGMENTATION:  # said once, by bridge()
        return tfk.layers.Activation("linear", name=where)
    if cls_name in _WRAPPERS:
        return _make_wrapper(entry, custom_objects, notes)
    custom = custom_objects.get(cls_name) or custom_objects.get(entry.get("registered_name") or "")
    tfk_cls = custom if _is_tf_keras_class(custom) else getattr(tfk.layers, cls_name, None)
    if cls_name in _APPLICATION_LAYERS and not _is_tf_keras_class(custom):
        import importlib

        module = importlib.import_module(f"tf_keras.src.applications.{_APPLICATION_LAYERS[cls_name]}")
        tfk_cls = custom = getattr(module, cls_name)
    if f"{ACTIVATION_PACKAGE}>{cls_name}" in BRIDGE_LAYERS and not _is_tf_keras_class(custom):
        tfk_cls = custom = _own_layer(cls_name)
    if tfk_cls is None or (cls_name not in SUPPORTED_LAYERS and tfk_cls is not custom):
        raise BridgeError(
            f"layer {where!r} (class {cls_name}) has no tf_keras translation in edgenn's bridge",
            "replace it with supported layers, save the model with tf_keras "
            "(TF_USE_LEGACY_KERAS=1), or pass a tf_keras implementation with --custom-objects; "
            f"supported: {', '.join(sorted(SUPPORTED_LAYERS))}",
        )
    config = _translate(entry["config"], where, notes)
    for key in ("activation", "recurrent_activation"):
        if key in config:
            config[key] = _activation(config[key])
    for k3_key, tfk_key in _RENAMED.get(cls_name, {}).items():
        if k3_key in config:
            config[tfk_key] = config.pop(k3_key)
    config = _fit_kwargs(tfk_cls, config, where, cls_name, notes)
    if cls_name == "MultiHeadAttention":  # tf_keras builds it from shapes in its config
        shapes = (entry.get("build_config") or {}).get("shapes_dict") or {}
        config.update(query_shape=shapes.get("query_shape"), value_shape=shapes.get("value_shape"),
                      key_shape=shapes.get("key_shape") or shapes.get("value_shape"))
    try:
        return tfk_cls.from_config(config)
    except (TypeError, ValueError) as err:
        raise BridgeError(f"layer {where!r} (class {cls_name}) could not be rebuilt in tf_keras: "
                          f"{err}", "save the model with tf_keras or report it to edgenn") from None


def _make_wrapper(entry: dict, custom_objects: dict, notes: list[str]):
    """Bidirectional or TimeDistributed around a translated inner layer."""
    tfk = tf_keras()
    config = dict(entry["config"])
    where = config.get("name")
    inner = _make_layer(_unwrapped(config.pop("layer")), custom_objects, notes)
    kwargs = {k: config[k] for k in ("name", "trainable") if k in config}
    if entry["class_name"] == "TimeDistributed":
        return tfk.layers.TimeDistributed(inner, **kwargs)
    backward = config.get("backward_layer")
    if backward is not None:
        kwargs["backward_layer"] = _make_layer(_unwrapped(backward), custom_objects, notes)
    if config.get("weights") is not None:
        raise BridgeError(f"layer {where!r} (class Bidirectional) carries initial weights in its "
                          "config", "save the model without them, or report it to edgenn")
    return tfk.layers.Bidirectional(inner, merge_mode=config.get("merge_mode", "concat"), **kwargs)


def _unwrapped(entry: dict) -> dict:
    """An inner layer's entry without what its wrapper sets (tf_keras's wrapper sets it too)."""
    entry = dict(entry, config=dict(entry["config"]))
    entry["config"].pop("zero_output_for_mask", None)  # Bidirectional: masked steps give zeros
    return entry


def _is_tf_keras_class(obj) -> bool:
    if not inspect.isclass(obj):
        return False
    return issubclass(obj, tf_keras().layers.Layer)


_REGISTERED: dict = {}


def _keras3_activation(name: str):
    """The Keras 3 activation ``name`` as a function tf_keras layers accept.

    Registered with tf_keras as ``edgenn>NAME``, so a bridged model survives what tfmot and
    saving do to it (clone_model, from_config, reload); ``register_activations`` registers
    them all before edgenn loads a tf_keras file that names them.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]

    def activation(x):
        return getattr(keras3().activations, name)(x)

    activation.__name__ = name
    _REGISTERED[name] = tf_keras().utils.register_keras_serializable(
        package=ACTIVATION_PACKAGE, name=name)(activation)
    return _REGISTERED[name]


def register_activations() -> None:
    """Register every bridge activation and layer with tf_keras (see ``_keras3_activation``)."""
    for name in sorted(_KERAS3_ONLY_ACTIVATIONS):
        _keras3_activation(name)
    for name in sorted(BRIDGE_LAYERS):
        _own_layer(name.split(">", 1)[1])


_OWN_LAYERS: dict = {}


def _own_layer(cls_name: str):
    """A tf_keras class for a Keras 3 application layer tf_keras lacks.

    Registered as ``edgenn>NAME``, so tfmot's clone_model and a saved model's reload find it.

    CustomScaleLayer (InceptionResNetV2's residual scale): inputs[0] + inputs[1] * scale, as
    Keras 3 computes it (tf_keras's InceptionResNetV2 used a Lambda for the same sum).
    """
    if cls_name in _OWN_LAYERS:
        return _OWN_LAYERS[cls_name]
    tfk = tf_keras()
    if cls_name == "Keras3Layer":
        _OWN_LAYERS[cls_name] = tfk.utils.register_keras_serializable(
            package=ACTIVATION_PACKAGE, name=cls_name)(_keras3_layer_class(tfk))
        return _OWN_LAYERS[cls_name]
    if cls_name != "CustomScaleLayer":
        raise KeyError(cls_name)

    class CustomScaleLayer(tfk.layers.Layer):
        def __init__(self, scale, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

        def call(self, inputs):
            return inputs[0] + inputs[1] * self.scale

    CustomScaleLayer.__module__ = __name__
    _OWN_LAYERS[cls_name] = tfk.utils.register_keras_serializable(
        package=ACTIVATION_PACKAGE, name=cls_name)(CustomScaleLayer)
    return _OWN_LAYERS[cls_name]


def _keras3_layer_class(tfk):
    """The tf_keras layer that runs a weightless Keras 3 layer (`_weightless_keras_layer`).

    Its config holds the Keras 3 layer's serialized config as a JSON string; the safety check
    reads that string as a Keras 3 config (`safety._check_layer_config`) before any reload.
    """
    import json

    class Keras3Layer(tfk.layers.Layer):
        def __init__(self, keras3, build_config=None, **kwargs):
            super().__init__(**kwargs)
            self.keras3 = keras3
            self.build_config = build_config
            layer = keras3_module().layers.deserialize(json.loads(keras3))
            if build_config:
                layer.build_from_config(build_config)
            object.__setattr__(self, "keras3_layer", layer)  # not tracked: it has no weights

        def get_config(self):
            return {**super().get_config(), "keras3": self.keras3,
                    "build_config": self.build_config}

        def call(self, inputs):
            return self.keras3_layer.call(inputs)

        def compute_output_shape(self, input_shape):
            return self.keras3_layer.compute_output_shape(input_shape)

    Keras3Layer.__module__ = __name__
    return Keras3Layer


def keras3_module():
    return keras3()


# Keras 3 activations that tf_keras lacks, or defines differently (Keras 3's hard_sigmoid is
# relu6(x + 3) / 6; tf_keras's is clip(0.2 x + 0.5, 0, 1)): built from Keras 3's own function.
ACTIVATION_PACKAGE = "edgenn"
_KERAS3_ONLY_ACTIVATIONS = {name.split(">", 1)[1] for name in BRIDGE_ACTIVATIONS}


def _activation(name):
    if name == "silu":  # tf_keras's own swish, the same function: a QAT .h5 then reloads
        return "swish"  # (tf_keras's h5 loader cannot read back a registered function)
    if isinstance(name, str) and name in _KERAS3_ONLY_ACTIVATIONS:
        return _keras3_activation(name)
    return name


def _translate(value, where: str, notes: list[str]):
    """Turn Keras 3 serialised objects into the tf_keras shape, recursively."""
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:
            cls = value["class_name"]
            if cls in ("DTypePolicy", "FloatDTypePolicy"):
                name = value["config"]["name"]
                if name.startswith("mixed_"):
                    return {"class_name": "Policy", "config": {"name": name}}
                return name
            if "DTypePolicy" in cls:
                raise BridgeError(
                    f"layer {where!r} uses the dtype policy {cls} (a quantized Keras 3 layer)",
                    "bridge the float model, then quantize with an edgenn recipe",
                )
            if cls == "function":  # a built-in activation stored as an object
                return _activation(value["config"])
            inner = {k: v for k, v in _translate(value["config"], where, notes).items()
                     if not (k in _DROPPABLE_DEFAULTS and v in _DROPPABLE_DEFAULTS[k])} \
                if isinstance(value["config"], dict) else value["config"]
            return {"class_name": cls, "config": inner}
        return {k: _translate(v, where, notes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_translate(v, where, notes) for v in value]
    return value


def _fit_kwargs(tfk_cls, config: dict, where: str, cls_name: str, notes: list[str]) -> dict:
    """Keep the keys tf_keras accepts; drop Keras 3-only keys that are off; refuse the rest."""
    accepted = set(_LAYER_BASE_KWARGS)
    takes_anything = False
    for klass in tfk_cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.VAR_KEYWORD:
                continue
            accepted.add(p.name)
        if klass.__name__ == "Layer":
            break
    else:
        takes_anything = True
    out = {}
    for key, value in config.items():
        if key in accepted or takes_anything:
            out[key] = value
        elif key in _DROPPABLE_DEFAULTS and value in _DROPPABLE_DEFAULTS[key]:
            continue
        else:
            raise BridgeError(
                f"layer {where!r} (class {cls_name}) sets {key}={value!r}, which tf_keras "
                "does not support",
                "remove the option from the model, or save it with tf_keras",
            )
    return out


# --- weights and verification ---------------------------------------------------------------

def _copy_weights(k3_model, tfk_model) -> None:
    by_name = {layer.name: layer for layer in tfk_model.layers}
    for layer in k3_model.layers:
        target = by_name.get(layer.name)
        if target is None:
            raise BridgeError(f"layer {layer.name!r} is missing from the tf_keras copy",
                              "report this model to edgenn")
        if hasattr(layer, "layers") and hasattr(target, "layers"):
            _copy_weights(layer, target)
            continue
        if type(layer).__name__ in _AUGMENTATION:  # its random seed state has no place there
            continue
        source = layer.get_weights()
        shapes = [w.shape for w in target.get_weights()]
        if [w.shape for w in source] != shapes:
            raise BridgeError(
                f"layer {layer.name!r} ({type(layer).__name__}) has weights "
                f"{[w.shape for w in source]} in Keras 3 but {shapes} in tf_keras",
                "report this layer's config to edgenn",
            )
        if source:
            target.set_weights(source)


def random_inputs(model, seed: int = 0, batch: int = 4,
                  hint: str = "pass --data with real samples") -> list[np.ndarray]:
    """Random inputs in each input's shape and dtype (integers stay inside embedding tables).

    Fewer than ``batch`` samples when a model declares inputs too large for the memory
    available, and a one-line refusal (``hint``: what to do) when one sample is.
    """
    from ..limits import made_up_batch

    rng = np.random.default_rng(seed)
    vocab = min((getattr(layer, "input_dim", 2) for layer in _walk(model)
                 if type(layer).__name__ == "Embedding"), default=2)
    specs = [([d if d is not None else 8 for d in tuple(tensor.shape)[1:]],
              np.dtype(getattr(tensor.dtype, "name", tensor.dtype))) for tensor in model.inputs]
    sample = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in specs)
    named = ", ".join(f"{getattr(t, 'name', i)} {inner} {dtype.name}"
                      for i, (t, (inner, dtype)) in enumerate(zip(model.inputs, specs)))
    batch = made_up_batch(f"the model's input ({named[:200]})", sample, batch, hint)
    out = []
    for inner, dtype in specs:
        shape = [batch, *inner]
        if np.issubdtype(dtype, np.integer):
            out.append(rng.integers(0, vocab, size=shape, dtype=np.int64).astype(dtype))
        elif dtype == np.bool_:  # a mask: some steps on, some off
            out.append(rng.integers(0, 2, size=shape).astype(bool))
        else:  # drawn in float32, not numpy's float64: half the peak for a large input
            out.append(rng.random(shape, dtype=np.float32).astype(dtype, copy=False))
    return out


def _walk(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk(layer)


def _predict(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from ..evaluate import as_feed, flat_outputs

    out = model(as_feed(model, inputs[0] if len(inputs) == 1 else inputs), training=False)
    return flat_outputs(out)


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    diff = max(float(np.max(np.abs(x.astype(np.float64) - y))) if x.size else 0.0
               for x, y in zip(a, b))
    scale = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in a)
    return diff, scale


def _first_divergent_layer(k3_model, tfk_model, inputs, limit: float) -> tuple[str, float]:
    """The first layer, in model order, whose output's relative error passes ``limit``."""
    keras = keras3()

    tfk = tf_keras()
    names = [layer.name for layer in k3_model.layers if type(layer).__name__ != "InputLayer"]
    k3_outs = keras.Model(k3_model.inputs, [k3_model.get_layer(n).output for n in names])
    tfk_outs = tfk.Model(tfk_model.inputs, [tfk_model.get_layer(n).output for n in names])
    a, b = _predict(k3_outs, inputs), _predict(tfk_outs, inputs)
    for name, x, y in zip(names, a, b):
        rel = _relative([x], [y])
        if rel > limit:
            return f"{name!r} ({type(k3_model.get_layer(name)).__name__})", rel
    return "(none: only the final outputs differ)", 0.0
