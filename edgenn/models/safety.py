"""Refuse model files that would run code when loaded, before any loader touches them.

Keras can rebuild Python functions from a model file (Lambda layers carry marshalled
bytecode) and import classes named in it. edgenn reads the config as plain JSON first and
refuses anything that is not a built-in Keras object, unless the user passes --allow-unsafe
or registers the class with --custom-objects.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputFileError, UnsafeModelError

# Built-in layers whose configs hold no code. TFOpLambda/SlicingOpLambda name TensorFlow ops
# (e.g. "math.add") that tf_keras looks up by name: no code is deserialised.
_CODE_CARRIERS = {"Lambda"}
_KERAS_MODULE_PREFIXES = ("keras", "tf_keras")


def iter_objects(node, path: str = "model") -> Iterator[tuple[str, dict]]:
    """Yield (where, object) for every serialised object (a dict with class_name)."""
    if isinstance(node, dict):
        if "class_name" in node:
            cfg = node.get("config")
            name = node.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
            where = f"{path}/{name}" if name else path
            yield where, node
        else:
            where = path
        for key, value in node.items():
            if key in ("inbound_nodes", "build_config", "compile_config"):
                continue
            yield from iter_objects(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from iter_objects(item, path)


def check_config(config: dict, source: Path, known_layers: set[str],
                 custom_objects: dict | None = None) -> None:
    """Raise UnsafeModelError if loading ``config`` would run code or import unknown classes.

    Parameters
    ----------
    config
        The model config as stored in the file (Keras 3 or tf_keras layout).
    source
        The model file, for the message.
    known_layers
        Class names of the built-in layers and models of the Keras that will load the file.
    custom_objects
        Classes the user registered with --custom-objects; they are allowed.
    """
    custom = set(custom_objects or {})
    for where, obj in iter_objects(config):
        cls = obj.get("class_name")
        if not isinstance(cls, str):
            continue
        registered = obj.get("registered_name")
        module = obj.get("module")
        if cls in custom or (registered and registered in custom):
            continue
        cfg = obj.get("config")
        lambda_fn = isinstance(cfg, dict) and cfg.get("function_type") == "lambda"
        if cls in _CODE_CARRIERS or cls == "__lambda__" or lambda_fn:
            raise UnsafeModelError(
                f"{source}: layer {where} is a {cls} layer, whose Python code would run when the "
                "model loads; edgenn refused it",
                "if you trust this file, rerun with --allow-unsafe",
            )
        custom_marker = registered not in (None, cls) and not str(registered).startswith("keras")
        foreign_module = module is not None and not str(module).startswith(_KERAS_MODULE_PREFIXES)
        if custom_marker or foreign_module:
            raise UnsafeModelError(
                f"{source}: {where} is a custom object {registered or cls!r} "
                f"(module {module!r}) that edgenn does not know; loading it could run code",
                "register it with --custom-objects FILE.py, or rerun with --allow-unsafe if you "
                "trust the file",
            )
        if _is_layer_entry(obj) and cls not in known_layers:
            raise UnsafeModelError(
                f"{source}: layer {where} has unknown class {cls!r}",
                "register it with --custom-objects FILE.py, or rerun with --allow-unsafe if you "
                "trust the file",
            )


def _is_layer_entry(obj: dict) -> bool:
    # Layers (and nested models) are the entries of a model's "layers" list: they carry a
    # config with a "name", and usually "inbound_nodes" or "trainable".
    cfg = obj.get("config")
    return isinstance(cfg, dict) and "name" in cfg and ("trainable" in cfg or "inbound_nodes" in obj
                                                         or obj.get("class_name") == "InputLayer")


def load_custom_objects(path: str | Path | None) -> dict:
    """Import a user's Python file and return the classes and functions it defines.

    The user names this file explicitly, so running it is their choice; model files never
    choose what runs.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file() or p.suffix != ".py":
        raise InputFileError(f"--custom-objects must be a .py file; received {path}",
                             "pass the Python file that defines your layers")
    spec = importlib.util.spec_from_file_location(f"edgenn_custom_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise InputFileError(f"--custom-objects {p} failed to import: {type(err).__name__}: {err}",
                             "fix the file so that `python FILE.py` runs") from None
    objects = getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(objects, dict):
        return dict(objects)
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
