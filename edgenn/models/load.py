"""Load Keras models from any supported file, safely; bridge to tf_keras only when asked.

Keras 3 first: a loaded Keras 3 model is used as it is for inspection, conversion, PTQ,
distillation and fine-tuning. Only tfmot's steps (prune, cluster, QAT) need tf_keras; they ask
``LoadedModel.as_tf_keras``, and a model the bridge cannot translate fails only them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from .._tf import keras3, keras_of, tf, tf_keras
from ..errors import InputFileError, UsageError
from .formats import FormatInfo, ModelFormat, detect
from .safety import check_config, keras_names, load_custom_objects

# The recipe steps that run on tfmot, and so need the tf_keras copy of a Keras 3 model.
TFMOT_STEPS = ("prune", "cluster", "quantize")


@dataclass
class LoadedModel:
    """A Keras model as loaded, and (made on demand) its tf_keras form for tfmot."""

    info: FormatInfo
    original: object  # the model in the Keras that saved it
    custom_objects: dict = field(default_factory=dict)
    bridge: object | None = None  # BridgeResult once a Keras 3 model has been bridged
    bridge_error: object | None = None  # the BridgeError, when bridging failed
    bridge_tolerance: float | None = None

    @property
    def flavour(self) -> str:
        if not self.info.is_keras:
            return "savedmodel"  # a serving signature (models.signature), no Keras layers
        return "keras3" if self.info.is_keras3 else "tf_keras"

    def as_tf_keras(self, needed_for: str = "this step"):
        """The tf_keras model tfmot works on: the model itself, or its verified bridge copy.

        Raises BridgeError (exit 3) naming the layer at fault and what needs the copy.
        """
        if self.flavour == "tf_keras":
            return self.original
        from ..errors import BridgeError

        if self.flavour == "savedmodel":
            raise UsageError(f"{needed_for} trains the model, and {self.info.path} is a SavedModel "
                             "without Keras metadata (a serving signature, no layers)",
                             "pass the Keras model it was exported from; PTQ-only recipes and "
                             "`edgenn convert` work on the SavedModel itself")
        if self.bridge is None and self.bridge_error is None:
            from .bridge import DEFAULT_TOLERANCE, bridge

            try:
                self.bridge = bridge(self.original, self.custom_objects,
                                     tolerance=self.bridge_tolerance or DEFAULT_TOLERANCE)
            except BridgeError as err:
                self.bridge_error = err
        if self.bridge_error is not None:
            err = self.bridge_error
            raise BridgeError(f"{needed_for} runs on tensorflow-model-optimization, which needs a "
                              f"tf_keras copy of this Keras 3 model, and {err.message}",
                              f"{err.hint}; distill, finetune and every export work without it") from None
        return self.bridge.model

    @property
    def tf_keras_model(self):
        """The tf_keras form (bridging a Keras 3 model), for what only tf_keras can run."""
        return self.as_tf_keras("this command")


def load_keras(path: str | Path, *, allow_unsafe: bool = False,
               custom_objects_file: str | Path | None = None, info: FormatInfo | None = None,
               bridge_tolerance: float | None = None,
               custom_objects: dict | None = None) -> LoadedModel:
    """Load a Keras model (.keras, .h5 or a tf_keras SavedModel) without running its code.

    Parameters
    ----------
    path
        The model file or SavedModel folder.
    allow_unsafe
        Let Keras rebuild Lambda layers and unknown objects (runs code from the file).
    custom_objects_file
        A Python file whose classes and functions are registered for loading.
    bridge_tolerance
        The bridge's equivalence bound, when a tfmot step asks for the tf_keras copy.
    custom_objects
        Objects already registered from such a file (a model edgenn saved loads back with
        the objects its input model needed).
    """
    info = info or detect(path)
    if info.format in (ModelFormat.tflite, ModelFormat.onnx):
        raise UsageError(f"{info.path} is a converted .{info.format.value} file, not a Keras "
                         "model", "this command starts from the Keras model (.keras, .h5 or "
                         "SavedModel); a converted file is quantized with `edgenn quantize` and "
                         "measured with `edgenn profile`")
    if info.format is ModelFormat.savedmodel and not info.has_keras_metadata:
        if not allow_unsafe:
            from .graphscan import check_savedmodel

            check_savedmodel(info.path)
        raise UsageError(
            f"{info.path} is a SavedModel without Keras metadata (exported with model.export or "
            "tf.saved_model.save), so it cannot be trained or compressed as a Keras model",
            "pass the .keras file it was exported from",
        )
    custom = dict(custom_objects) if custom_objects is not None else load_custom_objects(
        custom_objects_file, "keras3" if info.is_keras3 else "tf_keras")
    if info.is_keras3:
        return LoadedModel(info, _load_keras3(info, custom, allow_unsafe), custom,
                           bridge_tolerance=bridge_tolerance)
    return LoadedModel(info, _load_tf_keras(info, custom, allow_unsafe), custom)


def load_model(path: str | Path, *, allow_unsafe: bool = False,
               custom_objects_file: str | Path | None = None,
               bridge_tolerance: float | None = None) -> LoadedModel:
    """A model to export: a Keras model, or a SavedModel's serving signature.

    A SavedModel without Keras metadata converts and takes PTQ-only recipes (``signature.py``);
    its graph is checked like any model file first.
    """
    info = detect(path)
    if info.format is ModelFormat.savedmodel and not info.has_keras_metadata:
        from .graphscan import check_savedmodel, read_savedmodel
        from .signature import SignatureModel

        if allow_unsafe:
            read_savedmodel(info.path)
        else:
            check_savedmodel(info.path)
        try:
            model = SignatureModel(info.path)
        except UsageError:
            raise
        except Exception as err:  # TensorFlow raises many kinds for a broken SavedModel
            from .signature import load_failure

            raise load_failure(info.path, err) from None
        return LoadedModel(info, model)
    return load_keras(path, allow_unsafe=allow_unsafe, custom_objects_file=custom_objects_file,
                      info=info, bridge_tolerance=bridge_tolerance)


def _load_keras3(info: FormatInfo, custom: dict, allow_unsafe: bool):
    keras = keras3()
    if not allow_unsafe:
        _check_loaded_part(info.config, info, keras_names("keras3"), custom)
    try:
        model = keras.saving.load_model(str(info.path), compile=False, safe_mode=not allow_unsafe,
                                        custom_objects=custom or None)
    except Exception as err:
        raise _load_error(info, err, info.config, keras_names("keras3"), custom,
                          keras.saving.get_registered_object) from None
    return float32_compute(functional_view(model, info))


def functional_view(model, info: FormatInfo):
    """A subclassed Keras model as a functional model that calls it.

    ``class Net(keras.Model)`` with its own ``call`` (Keras 3 or tf_keras), viewed at the input
    shape it was built with. A reloaded subclassed model has no symbolic inputs or outputs,
    which every command reads (it failed with an internal error). The view holds the same
    model, weights and all.
    """
    if getattr(model, "inputs", None):  # a functional or Sequential model (Keras 3 raises
        return model                     # AttributeError for a subclassed one, tf_keras None)
    keras = keras_of(model)
    build = (model.get_build_config() if hasattr(model, "get_build_config") else None) or {}
    shape = build.get("input_shape") or getattr(model, "_build_input_shape", None)
    if shape is None and hasattr(model, "save_spec"):  # tf_keras, revived from a SavedModel
        spec = model.save_spec()
        args = spec[0] if spec else ()
        if isinstance(args, (list, tuple)) and len(args) == 1 and hasattr(args[0], "shape"):
            shape = args[0].shape
    if hasattr(shape, "as_list"):  # tf_keras keeps a TensorShape
        shape = shape.as_list()
    if shape is None and len(build.get("shapes_dict") or {}) == 1:
        shape = next(iter(build["shapes_dict"].values()))
    if shape is None and getattr(model, "built", False):
        # built with its own build()'s default shape (mtcnn's ONet: `def build(self,
        # input_shape=(None, 48, 48, 3))`, called without one): nothing recorded it, and
        # loading built it the same way
        import inspect

        with contextlib.suppress(TypeError, ValueError):
            default = inspect.signature(model.build).parameters["input_shape"].default
            if isinstance(default, (list, tuple)) and default and isinstance(
                    default[0], (int, type(None))):
                shape = tuple(default)
    if not isinstance(shape, (list, tuple)) or not shape or isinstance(shape[0], (list, tuple)):
        raise UsageError(f"{info.path} holds a subclassed model (class {type(model).__name__}) "
                         "that was saved before it was built on one input, so edgenn cannot "
                         "tell its input shape",
                         "call the model on a batch (or model.build(shape)) before saving it, or "
                         "save a functional model")
    inp = keras.Input(batch_shape=tuple(shape))
    return keras.Model(inp, model(inp), name=model.name)


def refuse_text_inputs(model, what: str) -> None:
    """Refuse a model that reads strings (TextVectorization, StringLookup inside the model).

    TFLite's builtin kernels and edgenn's data and fidelity checks take numbers; the text
    preprocessing belongs on the device or in a model of its own.
    """
    text = [getattr(t, "name", "?") for t in getattr(model, "inputs", None) or []
            if "string" in str(getattr(t.dtype, "name", t.dtype))]
    if text:
        raise UsageError(f"{what} takes numeric inputs, and this model reads text (input "
                         f"{', '.join(map(repr, text))} has dtype string)",
                         "save the model from its vectorized input on (keras.Model(vectorizer "
                         "output, model output)) and run the text preprocessing beside it")


def float32_compute(model):
    """A model trained under a mixed-precision policy, computing in float32.

    Its weights are float32 already; its layers compute in float16 (or bfloat16), which TFLite
    has no builtin kernels for (the converter asked for Flex Conv2D, MatMul, Relu...) and which
    the bridge's float32 copy cannot match. Edge targets run float32 or quantize from float32,
    so every command works on this copy: the same layers and weights, float32 computation.
    """
    layers = list(model._flatten_layers(include_self=False))  # noqa: SLF001
    if not any(getattr(layer, "compute_dtype", "float32") in ("float16", "bfloat16")
               for layer in layers):
        return model
    keras = keras3()

    from .layer_config import layer_config

    def clone(layer):
        config = layer_config(layer)
        if isinstance(config.get("dtype"), (str, dict)):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _load_tf_keras(info: FormatInfo, custom: dict, allow_unsafe: bool):
    tfk = tf_keras()
    if not allow_unsafe:
        config = info.config
        if info.format is ModelFormat.savedmodel:
            from .graphscan import check_savedmodel

            config = _savedmodel_keras_config(info.path)
            check_savedmodel(info.path)
        if config is not None:
            _check_loaded_part(config, info, keras_names("tf_keras"), custom)
    from .bridge import register_activations
    from .safety import tfmot_objects

    register_activations()  # a model edgenn saved from a bridged copy names them (edgenn>NAME)
    # A model saved after pruning, clustering or QAT holds tfmot's wrappers (edgenn compress
    # writes such models): they load with tfmot's classes, never with code from the file.
    kwargs = {"compile": False, "custom_objects": {**tfmot_objects(), **custom} or None}
    if info.format is ModelFormat.keras_zip:
        kwargs["safe_mode"] = not allow_unsafe
    try:
        model = tfk.models.load_model(str(info.path), **kwargs)
    except Exception as err:
        config = (_savedmodel_keras_config(info.path) if info.format is ModelFormat.savedmodel
                  else info.config)
        raise _load_error(info, err, config, keras_names("tf_keras"), kwargs["custom_objects"],
                          tfk.utils.get_registered_object) from None
    return functional_view(model, info)


def _savedmodel_keras_config(path: Path) -> dict:
    """Every Keras object stored in a tf_keras SavedModel's keras_metadata.pb, as one document.

    tf_keras revives each node from its own metadata, so all of them are checked, not only the
    root's config.
    """
    tf()
    from tf_keras.protobuf import saved_metadata_pb2

    from .formats import parse_config

    meta = saved_metadata_pb2.SavedMetadata()
    try:
        meta.ParseFromString((path / "keras_metadata.pb").read_bytes())
    except Exception as err:
        raise InputFileError(f"{path}/keras_metadata.pb is corrupt ({type(err).__name__})",
                             "save the model again") from None
    nodes, training = [], None
    for node in meta.nodes:
        if node.metadata:
            parsed = parse_config(node.metadata, f"{path}/keras_metadata.pb node {node.node_path}")
            if node.node_path == "root" and isinstance(parsed, dict) and "training_config" in parsed:
                training = parsed.pop("training_config")  # read only to compile: see loaded_part
            nodes.append(parsed)
    return {"saved_model_nodes": nodes, "training_config": training}


def loaded_part(config):
    """The part of a model config that loading with ``compile=False`` deserializes.

    The model's own compile config (its loss, metrics and optimizer: a lambda loss, a custom
    metric) is never read: Keras 3's and tf_keras's loaders drop a .keras file's top-level
    compile_config, and tf_keras reads an .h5's or a SavedModel's training_config only to
    compile. edgenn trains with losses of its own, so a model compiled with a lambda or a custom
    loss loads without running it. A nested model's compile config is still checked: Keras 3
    compiles a nested model from it whatever the top-level flag says.
    """
    if isinstance(config, dict):
        return {k: v for k, v in config.items() if k not in ("compile_config", "training_config")}
    return config


def _check_loaded_part(config, info: FormatInfo, names, custom: dict) -> None:
    from .safety import check_compile_config

    if isinstance(config, dict):  # a .keras file's compile_config, a SavedModel root's training_config
        check_compile_config(config.get("compile_config"), info.path)
        check_compile_config(config.get("training_config"), info.path)
    check_config(loaded_part(config), info.path, names, custom)


def _load_error(info: FormatInfo, err: Exception, config=None, names=None, custom=None,
                registry=None) -> InputFileError:
    """The one-line error for a model Keras failed to load.

    A custom object that nothing registered (the file was loaded with --allow-unsafe, so no
    check named it first) is named with the way to register it, where Keras says only that the
    model "could not be deserialized".
    """
    from .safety import registration_hint, unregistered

    missing = None
    if config is not None:
        try:
            missing = unregistered(loaded_part(config), names, custom, registry)
        except Exception:  # a config too odd to walk: Keras's own error stands
            missing = None
    if missing is not None:
        where, name, module = missing
        origin = f" (module {module!r})" if module else ""
        return InputFileError(
            f"{info.path}: {where} is a custom object {name!r}{origin} that no "
            "--custom-objects file registers, so Keras could not rebuild the model",
            registration_hint(module, name.split(">")[-1]))
    text = " ".join(str(err).split())
    if "Lambda" in text and ("safe_mode" in text or "unsafe" in text):
        return InputFileError(f"{info.path}: the model holds a Lambda layer whose code would run",
                              "rerun with --allow-unsafe if you trust the file")
    if len(text) > 240:
        text = text[:240] + "..."
    return InputFileError(
        f"{info.path} ({info.label}) could not be loaded: {type(err).__name__}: {text}",
        "check that the file is complete and was saved with model.save()",
    )
