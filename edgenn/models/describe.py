"""`edgenn inspect` for the workstation formats: Keras files and SavedModels."""

from __future__ import annotations

from pathlib import Path

from .formats import FormatInfo, ModelFormat


def file_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def describe_keras(info: FormatInfo, *, allow_unsafe: bool = False,
                   custom_objects_file: str | None = None, bridge: bool = True,
                   bridge_tolerance: float | None = None, input_shapes: list | None = None) -> dict:
    """Load a Keras model safely and report its layers, parameters and MACs.

    For a Keras 3 model, whether it bridges to tf_keras (what pruning, clustering and QAT
    need) is a field of the answer: a model that does not bridge is still described.
    ``input_shapes`` (``--input-shape``): shapes and MACs at that input size, for a model whose
    size is open (SpliceAI's (None, 4): "MACs ?" otherwise).
    """
    from ..errors import BridgeError
    from .load import TFMOT_STEPS, load_keras
    from .stats import model_stats

    loaded = load_keras(info.path, allow_unsafe=allow_unsafe,
                        custom_objects_file=custom_objects_file, info=info,
                        bridge_tolerance=bridge_tolerance)
    model = loaded.original
    if input_shapes:
        model = at_size(model, input_shapes)
    stats = model_stats(model)
    doc = {
        "format": info.format.value,
        "flavour": loaded.flavour,
        "keras_version": info.keras_version,
        "label": info.label,
        "path": str(info.path),
        "bytes": file_bytes(info.path),
        **stats.to_dict(),
    }
    if input_shapes:
        doc["sized_at"] = [list(t["shape"]) for t in doc["inputs"]]
    if info.is_keras3 and not bridge:
        doc["bridge"] = {"ok": None, "skipped": True}
    elif info.is_keras3:
        try:
            loaded.as_tf_keras("inspect")
            doc["bridge"] = {"ok": True, **loaded.bridge.to_dict()}
        except BridgeError:
            err = loaded.bridge_error
            doc["bridge"] = {"ok": False, "error": err.message, "hint": err.hint,
                             "needed_for": list(TFMOT_STEPS)}
    return doc


def at_size(model, given: list):
    """A copy of a functional ``model`` whose inputs have the shapes ``given``.

    ``given``: ``--input-shape`` as [(input name or None, shape)], batch axis first; the
    model's fixed dimensions must stay as they are. The copy's layers are new (their weights
    are not copied): it is for counting shapes and MACs.
    """
    from .._tf import keras_of
    from ..errors import UsageError
    from ..runtime.layout import fit_shapes

    inputs = list(getattr(model, "inputs", None) or [])
    functional = any(c.__name__ in ("Functional", "Sequential") for c in type(model).__mro__)
    if not inputs or not functional:
        raise UsageError("--input-shape sizes a functional or Sequential model; this one is "
                         "subclassed", "inspect it without --input-shape")
    names = [str(getattr(t, "name", "")).split(":")[0] for t in inputs]
    shapes = fit_shapes("the model", [(n, list(tuple(t.shape))) for n, t in zip(names, inputs)],
                        given, purpose="count MACs at")
    keras = keras_of(model)
    fresh = []
    for name, tensor, shape in zip(names, inputs, shapes):
        fresh.append(keras.Input(batch_shape=tuple(shape), dtype=tensor.dtype, name=name)
                     if keras.__name__ == "keras" else
                     keras.Input(batch_size=shape[0], shape=tuple(shape[1:]), dtype=tensor.dtype,
                                 name=name))
    try:
        return keras.models.clone_model(model, input_tensors=fresh if len(fresh) > 1 else fresh[0])
    except Exception as err:  # noqa: BLE001 - a layer refuses the size (Keras raises many kinds)
        raise UsageError(f"the model cannot be built at --input-shape "
                         f"{','.join('x'.join(map(str, s)) for s in shapes)}: "
                         f"{' '.join(str(err).split())[:200]}",
                         "choose a size the model takes (as its training data had)") from None


def describe_savedmodel(info: FormatInfo, *, allow_unsafe: bool = False) -> dict:
    """Signatures and variables of a SavedModel that has no Keras metadata."""
    import numpy as np

    from .._tf import tf
    from .graphscan import check_savedmodel, read_savedmodel
    from .signature import dims

    tensorflow = tf()
    if allow_unsafe:
        read_savedmodel(info.path)
    else:
        check_savedmodel(info.path)
    try:
        loaded = tensorflow.saved_model.load(str(info.path))
    except Exception as err:  # TensorFlow raises many kinds for a broken model
        from .signature import load_failure

        raise load_failure(info.path, err) from None
    signatures = []
    for key, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        signatures.append({
            "key": key,
            "inputs": {k: {"shape": dims(spec.shape), "dtype": spec.dtype.name}
                       for k, spec in kwargs.items()},
            "outputs": {k: {"shape": dims(spec.shape), "dtype": spec.dtype.name}
                        for k, spec in fn.structured_outputs.items()},
        })
    variables = list(getattr(loaded, "variables", []))
    keys = [s["key"] for s in signatures]
    if not keys:  # tf.saved_model.save without signatures= (and no __call__ to serve)
        note = ("no Keras metadata and no serving signature: nothing to convert; save it again "
                "with a signature (model.export, or tf.saved_model.save with signatures=...)")
    else:
        used = "serving_default" if "serving_default" in keys else sorted(keys)[0]
        note = ("no Keras metadata: it converts to every target and takes PTQ-only recipes; "
                "recipes that train need the Keras model"
                + (f"; convert uses its {used} signature" if len(keys) > 1 else ""))
    return {
        "format": ModelFormat.savedmodel.value,
        "label": info.label,
        "path": str(info.path),
        "bytes": file_bytes(info.path),
        "signatures": signatures,
        "params": int(sum(int(np.prod(v.shape)) for v in variables)),
        "note": note,
    }


def inbound_layers(layer) -> list:
    """The layers whose outputs ``layer`` reads (Keras 3 and tf_keras; an input's InputLayer)."""
    out = []
    for node in getattr(layer, "_inbound_nodes", None) or []:
        tensors = node.input_tensors  # tf_keras: one tensor, a list or a dict of them
        tensors = list(tensors.values()) if isinstance(tensors, dict) else (
            list(tensors) if isinstance(tensors, (list, tuple)) else [tensors])
        for tensor in tensors:
            history = getattr(tensor, "_keras_history", None)
            prev = getattr(history, "operation", None) or getattr(history, "layer", None)
            if prev is not None and prev not in out:
                out.append(prev)
    return out


# Layers that pass the input on unchanged (or zero a masked step) on the way to its
# normalization: an int8 output of theirs would lose the features first, so they stay float too.
PASS_THROUGH = frozenset({"Masking", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                          "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                          "ActivityRegularization", "Identity"})


def path_from_input(layer) -> tuple[str, ...] | None:
    """The pass-through layers from a model input to ``layer``, nearest the input first.

    None when ``layer`` reads something else (another layer's computation). A Keras 3 mask
    that comes along (the ``any(x != value)`` operations of a Masking layer) is not read data.
    """
    def data(of):
        return [prev for prev in inbound_layers(of) if hasattr(prev, "trainable_weights")]

    path: list[str] = []
    prev = data(layer)
    while len(prev) == 1 and type(prev[0]).__name__ in PASS_THROUGH:
        path.insert(0, prev[0].name)
        prev = data(prev[0])
    if len(prev) == 1 and type(prev[0]).__name__ == "InputLayer":
        return tuple(path)
    return None


def input_normalizations(model):
    """Each Normalization or BatchNormalization that reads a model input, with its statistics.

    Yields (layer, the pass-through layers before it such as Masking or Dropout, mean,
    variance): the per-feature statistics it holds of the input, float64 vectors. Layers whose
    statistics cannot be read (not built, never adapted) are left out.
    """
    import numpy as np

    for layer in getattr(model, "layers", None) or ():
        kind = type(layer).__name__
        if kind not in ("Normalization", "BatchNormalization") or getattr(layer, "invert", False):
            continue
        through = path_from_input(layer)
        if through is None:
            continue
        try:
            stats = ((layer.moving_mean, layer.moving_variance) if kind == "BatchNormalization"
                     else (layer.mean, layer.variance))
            mean, variance = (np.asarray(v, np.float64).ravel() for v in stats)
        except (AttributeError, TypeError, ValueError):  # not built, or statistics not set
            continue
        yield layer, through, mean, variance


def statistics_mismatch(model, x) -> str | None:
    """A warning when ``x`` lies far outside the statistics the model's input normalization holds.

    A Normalization or BatchNormalization that reads the input (through Masking, Dropout...)
    holds the mean and variance of the features the model was trained on. A feature of the data
    that sits hundreds of those standard deviations away was prepared otherwise (other units, a
    feature computed differently): the float model already answers from outside anything it
    saw, and int8 spends its steps on that feature (sleepecg's stager on synthetic heartbeats:
    one HRV ratio 2,300 standard deviations out, ONNX int8 agreement 0.74).
    """
    import numpy as np

    if x is None or isinstance(x, (list, tuple)) or not np.issubdtype(x.dtype, np.floating):
        return None
    for layer, through, mean, variance in input_normalizations(model):
        features = x.shape[-1] if x.ndim > 1 else 1
        if mean.size != features or variance.size != features or (
                np.all(mean == 0) and np.all(variance == 1)):  # statistics never set
            continue
        rows = np.asarray(x[:2000], np.float64).reshape(-1, features)
        for name in through:  # a Masking layer's padding is not data
            value = getattr(model.get_layer(name), "mask_value", None)
            if value is not None:
                rows = rows[~np.all(rows == value, axis=1)]
        if not len(rows):
            continue
        z = np.abs(np.median(rows, axis=0) - mean) / np.sqrt(np.maximum(variance, 1e-12))
        worst = int(np.argmax(z))
        if z[worst] >= MAX_STATISTICS_DISTANCE:
            return (f"feature {worst} of the data (median {np.median(rows[:, worst]):.4g}) sits "
                    f"{z[worst]:,.0f} standard deviations from the mean {mean[worst]:.4g} the "
                    f"model's {layer.name} holds of its training data: prepare the data as the "
                    "model's training data was (units, scaling); int8 spends its steps on that "
                    "feature")
    return None


# Standard deviations between the data's median and a normalization's mean for one feature
# that make the data suspect (a mean shift of a few is a different population; of 50, other units).
MAX_STATISTICS_DISTANCE = 50


def data_warnings(model, x) -> list[str]:
    """Warnings about data that does not look like what the model was trained on."""
    return [w for w in (pixel_range_mismatch(model, x), statistics_mismatch(model, x)) if w]


def pixel_range_mismatch(model, x) -> str | None:
    """A warning when the model rescales raw pixel values itself but ``x`` is already in [0, 1].

    keras.applications models from MobileNetV3, EfficientNet and ConvNeXt on begin with a
    Rescaling (x/255, x/127.5 - 1) or Normalization (ImageNet means x 255) layer and expect
    0-255 input. Fed [0, 1], they see a small variation on a constant: float inference still
    works, but int8 quantization loses most of the signal (MobileNetV3Small: top-1 agreement
    0.49 with the float model).
    """
    import numpy as np

    if x is None or isinstance(x, (list, tuple)) or not np.issubdtype(x.dtype, np.floating):
        return None
    reason = expects = None
    for layer in (getattr(model, "layers", None) or [])[:4]:
        kind = type(layer).__name__
        if kind == "Rescaling":
            scale = np.abs(np.asarray(layer.scale, dtype=np.float64)).ravel()
            # 1/255 or 1/127.5 for 0-255 pixels; 1/16 for 0-16 digits: a model that divides
            # its input by 4 or more was trained on values well past 1
            if scale.size and 0 < float(scale.max()) <= 1 / 4:
                top = 1 / float(scale.max())
                expects = "pixel values 0-255" if top >= 100 else f"values up to about {top:.3g}"
                reason = f"its {layer.name} layer multiplies the input by {float(scale.max()):.4g}"
                break
        if kind == "Normalization":
            mean = getattr(layer, "mean", None)
            try:
                top = float(np.max(np.asarray(mean, dtype=np.float64)))
            except (TypeError, ValueError):
                continue
            if top > 2:
                expects = "pixel values 0-255"
                reason = f"its {layer.name} layer subtracts means up to {top:.4g}"
                break
    if reason is None or float(np.max(x)) > 1.5:
        return None
    return (f"the model expects {expects} ({reason}) but the data is in [0, 1]: pass "
            "--scale none (int8 quantization loses most of such an input)")
