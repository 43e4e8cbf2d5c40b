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
                   bridge_tolerance: float | None = None) -> dict:
    """Load a Keras model safely and report its layers, parameters and MACs.

    For a Keras 3 model, whether it bridges to tf_keras (what pruning, clustering and QAT
    need) is a field of the answer: a model that does not bridge is still described.
    """
    from ..errors import BridgeError
    from .load import TFMOT_STEPS, load_keras
    from .stats import model_stats

    loaded = load_keras(info.path, allow_unsafe=allow_unsafe,
                        custom_objects_file=custom_objects_file, info=info,
                        bridge_tolerance=bridge_tolerance)
    stats = model_stats(loaded.original)
    doc = {
        "format": info.format.value,
        "flavour": loaded.flavour,
        "keras_version": info.keras_version,
        "label": info.label,
        "path": str(info.path),
        "bytes": file_bytes(info.path),
        **stats.to_dict(),
    }
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
