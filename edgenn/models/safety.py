"""Refuse model files that would run code, write files or read files when loaded.

Keras rebuilds a model by looking up every name in its config and calling what it finds:
layer classes' ``from_config``, activations, initializers and, in tf_keras, TensorFlow API
functions behind op layers, which it calls eagerly when their inputs are constants. edgenn reads
the config as plain JSON first and checks every object in it, wherever it sits (layers, nested
and wrapped models, inbound-node arguments, build and compile configs), against allowlists of
names that compute and do nothing else (``allowlist.py``). Anything else is refused unless the
user passes --allow-unsafe or registers the class with --custom-objects.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import inspect
import types
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputFileError, UnsafeModelError
from . import allowlist as al

MAX_CONFIG_DEPTH = 200  # Keras configs nest ~30 deep; Keras's own loader recurses on depth
_KERAS_MODULE_PREFIXES = ("keras", "tf_keras")
_UNSAFE_HINT = "if you trust this file, rerun with --allow-unsafe"
_CUSTOM_HINT = ("register it with --custom-objects FILE.py, or rerun with --allow-unsafe if you "
                "trust the file")


@dataclass(frozen=True)
class KerasNames:
    """The names a Keras may build from a config: classes, functions and lookup strings."""

    classes: frozenset[str]
    functions: frozenset[str]
    lookup: frozenset[str]  # lower-case names a string-valued activation/initializer may take
    flavour: str  # "keras3" or "tf_keras"


@lru_cache(maxsize=2)
def keras_names(flavour: str) -> KerasNames:
    """Collect the built-in names of Keras 3 (``keras3``) or tf_keras (``tf_keras``)."""
    from .._tf import keras3, tf_keras

    k = keras3() if flavour == "keras3" else tf_keras()
    class_modules = [k.layers, k.initializers, k.regularizers, k.constraints, k.losses, k.metrics,
                     k.optimizers, k.optimizers.schedules]
    class_modules.append(k.dtype_policies if flavour == "keras3" else k.mixed_precision)
    classes = {name for mod in class_modules for name, obj in vars(mod).items()
               if inspect.isclass(obj) and not name.startswith("_")}
    classes |= {"Functional", "Sequential", "Model"} | _application_layers(k)
    if flavour == "keras3":
        classes |= _keras3_operations()
    if flavour == "tf_keras":
        classes |= al.TF_KERAS_OP_LAYERS | set(tfmot_objects())
        # tf_keras registers its own optimizers under the package "Custom": a compiled model's
        # training config names "Custom>Adam" (a SavedModel of any compiled model was refused)
        classes |= {f"Custom>{name}" for name, obj in vars(k.optimizers).items()
                    if inspect.isclass(obj) and not name.startswith("_")}
        classes |= al.BRIDGE_LAYERS | {name.split(">", 1)[1] for name in al.BRIDGE_LAYERS}
    functions = {name for mod in (k.activations, k.losses, k.metrics)
                 for name, obj in vars(mod).items()
                 if callable(obj) and not inspect.isclass(obj) and not name.startswith("_")
                 and name not in ("get", "serialize", "deserialize")}
    if flavour == "tf_keras":  # Keras 3 activations edgenn's bridge wrote (models/bridge.py)
        functions |= al.BRIDGE_ACTIVATIONS
    lookup = {n.lower() for n in functions | classes} | {_snake(n) for n in classes}
    return KerasNames(frozenset(classes), frozenset(functions), frozenset(lookup), flavour)


@lru_cache(maxsize=1)
def tfmot_objects() -> dict:
    """The serializable classes of tfmot (tensorflow-model-optimization).

    The wrappers, quantizers and quantize configs that a model saved after pruning,
    clustering or QAT names: library code, like Keras's built-ins.

    Empty when tensorflow-model-optimization is not installed.
    """
    from .._tf import tf

    tf()
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        return {}
    objects: dict = {}
    for scope in (tfmot.quantization.keras.quantize_scope, tfmot.sparsity.keras.prune_scope,
                  tfmot.clustering.keras.cluster_scope):
        for mapping in scope().custom_objects:
            objects.update(mapping)
    return objects


def _application_layers(k) -> set[str]:
    """Layer classes that Keras's own applications define (ConvNeXt's LayerScale)."""
    import sys

    _ = k.applications  # imports every application module
    prefix = f"{k.__name__}.src.applications."
    layer = k.layers.Layer
    return {name for mod_name, mod in list(sys.modules.items()) if mod_name.startswith(prefix)
            for name, obj in vars(mod).items()
            if inspect.isclass(obj) and issubclass(obj, layer) and obj.__module__ == mod_name}


def _keras3_operations() -> set[str]:
    """Keras 3 operation classes a functional config may name (see al.KERAS3_OP_MODULES)."""
    import importlib

    from keras.src.ops.operation import Operation

    names = set()
    for short in al.KERAS3_OP_MODULES:
        module = importlib.import_module(f"keras.src.ops.{short}")
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, Operation)
                    and obj.__module__ == module.__name__ and name not in al.CALLABLE_OPS):
                names.add(name)
    return names


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or
                                   (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def walk(config, max_depth: int = MAX_CONFIG_DEPTH) -> Iterator[tuple[str, str | None, object]]:
    """Yield (where, key, node) for every dict and list in ``config``, without recursion.

    Raises InputFileError past ``max_depth`` levels (a legitimate config is far shallower, and
    Keras's own loader would hit Python's recursion limit).
    """
    stack: list[tuple[object, str, str | None, int]] = [(config, "", None, 0)]
    while stack:
        node, where, key, depth = stack.pop()
        if depth > max_depth:
            raise InputFileError(f"the model config nests deeper than {max_depth} levels",
                                 "this is not a config Keras writes; save the model again")
        if isinstance(node, dict):
            name = _object_name(node)
            here = (f"{where}/{name}" if where else name) if name and "class_name" in node else where
            yield here, key, node
            for k, value in node.items():
                if isinstance(value, (dict, list, tuple)):
                    stack.append((value, here, str(k), depth + 1))
        elif isinstance(node, (list, tuple)):
            yield where, key, node
            for value in node:
                if isinstance(value, (dict, list, tuple)):
                    stack.append((value, where, key, depth + 1))


def _object_name(obj: dict) -> str | None:
    cfg = obj.get("config")
    name = obj.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
    return name if isinstance(name, str) else None


def check_config(config, source: Path, names: KerasNames,
                 custom_objects: dict | None = None) -> None:
    """Raise UnsafeModelError if loading ``config`` could run code or touch files.

    Parameters
    ----------
    config
        The model config as stored in the file (Keras 3 or tf_keras layout).
    source
        The model file, for the message.
    names
        The built-in names of the Keras that will load the file (``keras_names``).
    custom_objects
        Classes and functions the user registered with --custom-objects; they are allowed.
    """
    custom = set(custom_objects or {})
    for where, _key, node in walk(config):
        if not isinstance(node, dict):
            continue
        _check_callable_strings(node, where, source, names, custom)
        if "class_name" not in node:
            continue
        _check_object(node, where, source, names, custom)
        nodes = node.get("inbound_nodes")
        if isinstance(nodes, list):
            for inbound in nodes:
                if not _references_a_tensor(inbound):
                    raise UnsafeModelError(
                        f"{source}: layer {where} is called on constants only, so Keras would run "
                        "it while loading; a saved model never holds such a call", _UNSAFE_HINT)


def check_compile_config(config, source: Path) -> None:
    """The model's own compile config, which loading with ``compile=False`` never reads.

    A loss or metric the user wrote (a lambda, a function or class of their own module) is
    saved there and never runs, so it is accepted. A reference into Python's standard library
    (os.system, subprocess.Popen...) is no training code anyone writes: such a file was crafted,
    and is refused like the rest of its kind.
    """
    import sys

    for _where, _key, node in walk(config):
        if not isinstance(node, dict):
            continue
        module = node.get("module")
        if not isinstance(module, str):
            continue
        top = module.split(".")[0]
        # Keras itself writes builtins for a function or a module a lambda's closure holds
        if top in sys.stdlib_module_names and top != "builtins":
            raise UnsafeModelError(f"{source}: the compile config names {module}."
                                   f"{node.get('class_name')}, which no training code saves; "
                                   "edgenn refused the file", _UNSAFE_HINT)


def _is_custom(obj: dict, names: KerasNames) -> bool:
    """Whether a config object names a class or function from outside Keras (a custom object)."""
    cls, registered, module = obj.get("class_name"), obj.get("registered_name"), obj.get("module")
    # tf_keras writes TensorFlow initializers with their TF module and looks them up by class
    # name alone; Keras 3 imports only modules under keras.
    roots = _KERAS_MODULE_PREFIXES + (("tensorflow", "tensorflow_model_optimization")
                                      if names.flavour == "tf_keras" else ())
    # by package root: keras_hub, keras_nlp and keras_cv are libraries of their own
    foreign = module is not None and not (
        str(module).split(".")[0] in roots or (module == "builtins" and cls == "function"))
    custom_marker = registered not in (None, cls) and str(registered).split(">")[0].split(
        ".")[0] not in _KERAS_MODULE_PREFIXES
    bridged = (names.flavour == "tf_keras" and registered in al.BRIDGE_LAYERS
               and module in (None, al.BRIDGE_MODULE))  # edgenn's own, saved after a prune
    return (foreign or custom_marker) and not bridged


def registration_hint(module, name: str) -> str:
    """How to register a custom object: with the import line, where it is one of Python."""
    line = isinstance(module, str) and module != "builtins" and name.isidentifier() and all(
        part.isidentifier() for part in module.split("."))
    return "register it with --custom-objects FILE.py" + (
        f" (a file holding `from {module} import {name}`)" if line else "")


def _given(obj: dict, custom) -> bool:
    """Whether the user's --custom-objects file gives the class or function ``obj`` names.

    Also as its registered "package>Name" (the class_name a tf_keras SavedModel stores).
    """
    cls, registered, cfg = obj.get("class_name"), obj.get("registered_name"), obj.get("config")
    return cls in custom or (isinstance(registered, str) and registered in custom) or (
        ">" in cls and cls.split(">", 1)[1] in custom) or (
        cls == "function" and isinstance(cfg, str) and cfg in custom)


def unregistered(config, names: KerasNames, custom_objects: dict | None,
                 registry) -> tuple[str, str, object] | None:
    """The first custom object in ``config`` that nothing registers: (where, name, module).

    For a file loaded with --allow-unsafe that failed: Keras only says the model "could not be
    deserialized" when a class it names was never imported. ``registry(name)`` is the loading
    Keras's own lookup of registered objects (a package registers its layers on import).
    """
    custom = set(custom_objects or {})
    for where, _key, node in walk(config):
        if not (isinstance(node, dict) and isinstance(node.get("class_name"), str)):
            continue
        cls = node["class_name"]
        unknown = cls not in names.classes and cls not in al.DATA_MARKERS and cls not in (
            "function", "__lambda__", "__typespec__", "TypeSpec")  # a .h5 keeps no module
        if _given(node, custom) or not (_is_custom(node, names) or unknown):
            continue
        name = str(node.get("registered_name") or node["class_name"])
        if registry(name) is None:
            return where, name, node.get("module")
    return None


def _check_object(obj: dict, where: str, source: Path, names: KerasNames, custom: set) -> None:
    cls = obj.get("class_name")
    cfg = obj.get("config")
    if not isinstance(cls, str):
        raise UnsafeModelError(f"{source}: {where} has a class_name that is not a name ({cls!r})",
                               _UNSAFE_HINT)
    registered = obj.get("registered_name")
    module = obj.get("module")
    if _given(obj, custom):
        return
    if cls == "__lambda__" or (isinstance(cfg, dict) and cfg.get("function_type") == "lambda"):
        raise UnsafeModelError(f"{source}: {where} is a Python lambda, whose code would run when "
                               "the model loads; edgenn refused it", _UNSAFE_HINT)
    if cls in al.DATA_MARKERS:
        return
    if cls in ("__typespec__", "TypeSpec"):
        spec = obj.get("spec_name") or obj.get("type_spec")
        if spec not in al.SAFE_TYPE_SPECS:
            raise UnsafeModelError(f"{source}: {where} names the type spec {spec!r}, which edgenn "
                                   "does not know", _CUSTOM_HINT)
        return
    if _is_custom(obj, names):
        wanted = str(registered or cls).split(">")[-1]
        hint = (registration_hint(module, wanted) + ", or rerun with --allow-unsafe if you "
                "trust the file") if not custom else (
            f"the --custom-objects file gives {', '.join(sorted(custom)[:6])}"
            f"{' ...' if len(custom) > 6 else ''} but not {wanted}: define or import {wanted} "
            "in it (or set CUSTOM_OBJECTS = {...}), or rerun with --allow-unsafe if you trust "
            "the file")
        raise UnsafeModelError(
            f"{source}: {where} is a custom object {registered or cls!r} (module {module!r}) that "
            "edgenn does not know; loading it could run code", hint)
    if cls == "function":
        if not (isinstance(cfg, str) and cfg in names.functions):
            raise UnsafeModelError(f"{source}: {where} names the function {cfg!r}, which is not a "
                                   "built-in Keras activation, loss or metric", _CUSTOM_HINT)
        return
    if cls in al.CODE_LAYERS:
        raise UnsafeModelError(f"{source}: layer {where} is a {cls} layer: {al.CODE_LAYERS[cls]}; "
                               "edgenn refused it", _UNSAFE_HINT)
    if cls not in names.classes:
        raise UnsafeModelError(f"{source}: {where} has unknown class {cls!r}", _CUSTOM_HINT)
    if isinstance(cfg, dict):
        _check_layer_config(cls, cfg, where, source)


def _check_layer_config(cls: str, cfg: dict, where: str, source: Path) -> None:
    """Layers whose config names something they call or read."""
    problem = None
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = cfg.get("function")
        if not (isinstance(fn, str) and al.tf_function_allowed(fn)):
            problem = (f"calls the TensorFlow function {fn!r}, which is not on edgenn's list of "
                       "pure tensor math")
    elif cls == "TensorFlowOpLayer":
        op = (cfg.get("node_def") or {}).get("op") if isinstance(cfg.get("node_def"), dict) else None
        problem = f"builds the raw TensorFlow op {op!r} from the config"
    elif cls == "ClassMethod":
        owner, method = cfg.get("cls_symbol"), cfg.get("method_name")
        prefixes = al.CLASS_METHODS.get(owner, ()) if isinstance(owner, str) else ()
        if not (isinstance(method, str) and method.startswith(prefixes) and prefixes):
            problem = f"calls {owner!r}.{method!r}, which is not a composite-tensor constructor"
    elif cls in ("InstanceMethod", "InstanceProperty"):
        attr = cfg.get("attr_name")
        if attr not in al.TENSOR_ATTRIBUTES:
            problem = f"reads the attribute {attr!r} of its input, which is not a tensor attribute"
    elif cls == "Keras3Layer":  # edgenn's bridge: a weightless Keras 3 layer, as JSON
        problem = _keras3_layer_problem(cfg.get("keras3"), where, source)
    elif cls in al.VOCABULARY_LAYERS and isinstance(cfg.get("vocabulary"), str):
        problem = f"reads its vocabulary from the file {cfg['vocabulary']!r} named in the config"
    if problem:
        raise UnsafeModelError(f"{source}: layer {where} ({cls}) {problem}; edgenn refused it",
                               _UNSAFE_HINT)


def _keras3_layer_problem(text, where: str, source: Path) -> str | None:
    """What is wrong with the Keras 3 layer an ``edgenn>Keras3Layer`` holds, or None.

    One Keras 3 built-in layer, checked as a Keras 3 config: a crafted file cannot put a Lambda
    or a class from another module there.
    """
    import json

    try:
        inner = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        inner = None
    module = inner.get("module") if isinstance(inner, dict) else None
    if not (isinstance(module, str) and (module == "keras.layers"
                                         or module.startswith("keras.src.layers"))):
        return "holds something other than one Keras 3 layer"
    check_config(inner, source, keras_names("keras3"))
    return None


def _check_callable_strings(node: dict, where: str, source: Path, names: KerasNames,
                            custom: set) -> None:
    """String values of keys like ``activation`` or ``kernel_initializer`` name built-ins only."""
    for key, value in node.items():
        if not (isinstance(value, str) and isinstance(key, str)):
            continue
        if key == "activation" or key.endswith(al.CALLABLE_KEY_SUFFIXES):
            if value.lower() not in names.lookup and value not in custom:
                raise UnsafeModelError(
                    f"{source}: {where}: {key} names {value!r}, which is not a built-in Keras "
                    "function or class", _CUSTOM_HINT)


def _references_a_tensor(node) -> bool:
    """Whether an inbound node reads another layer's output (both Keras node layouts)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                return True
            stack.extend(v for v in item.values() if isinstance(v, (dict, list, tuple)))
        elif isinstance(item, (list, tuple)):
            if (len(item) >= 3 and isinstance(item[0], str) and item[0] != "_CONSTANT_VALUE"
                    and isinstance(item[1], int) and isinstance(item[2], int)):
                return True
            stack.extend(v for v in item if isinstance(v, (dict, list, tuple)))
    return False


class _KerasAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``alias`` (and its submodules) as the module ``real`` (and its submodules)."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def _real(self, name: str) -> str | None:
        for alias, real in self.names.items():
            if name == alias or name.startswith(alias + "."):
                return real + name[len(alias):]
        return None

    def find_spec(self, name, path=None, target=None):
        return None if self._real(name) is None else importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(self._real(spec.name))

    def exec_module(self, module) -> None:
        pass


@contextlib.contextmanager
def _keras_of(flavour: str):
    """Within the block, a user's ``keras`` and ``tensorflow.keras`` are the model's Keras.

    A custom layer must subclass the Keras that loads the model. edgenn's process holds both:
    Keras 3 (``keras``) and tf_keras, which TensorFlow's ``tf.keras`` names here. A Keras 2
    era file (``from keras.layers import Layer`` or ``tensorflow.keras``) written for an
    ``.h5`` gets tf_keras; a file written for a Keras 3 model with ``tf.keras`` (TensorFlow
    2.16 and later) gets Keras 3. Without this, the layer subclassed the other Keras and the
    model failed to load (IndexError deep in Keras's graph rebuild).
    """
    from .._tf import tf

    tensorflow = tf()
    if flavour == "keras3":
        names = {"tensorflow.keras": "keras._tf_keras.keras"}
    else:
        names = {"tensorflow.keras": "tf_keras", "keras": "tf_keras"}
    import sys

    def aliased(name: str) -> bool:
        return any(name == a or name.startswith(a + ".") for a in names)

    saved = {k: sys.modules.pop(k) for k in [k for k in sys.modules if aliased(k)]}
    missing = object()
    attribute = vars(tensorflow).get("keras", missing)
    finder = _KerasAlias(names)
    sys.meta_path.insert(0, finder)
    try:
        tensorflow.keras = importlib.import_module("tensorflow.keras")  # `tf.keras.X` too
        yield
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if aliased(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        if attribute is missing:
            vars(tensorflow).pop("keras", None)
        else:
            tensorflow.keras = attribute


def load_custom_objects(path: str | Path | None, flavour: str = "tf_keras") -> dict:
    """Import a user's Python file and return the classes and functions it defines.

    The user names this file explicitly, so running it is their choice; model files never
    choose what runs. ``flavour`` (``keras3`` or ``tf_keras``) is the Keras of the model the
    objects load with, which the file's ``keras`` and ``tensorflow.keras`` then name.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"--custom-objects file not found: {path}", "check the path")
    if not p.is_file() or p.suffix != ".py":
        raise InputFileError(f"--custom-objects must be a .py file; received {path}",
                             "pass the Python file that defines your layers")
    spec = importlib.util.spec_from_file_location(f"edgenn_custom_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    import sys

    before = set(sys.modules)
    # As `python FILE.py` does, the file's own folder comes first on the import path while it
    # runs, so `from my_layers import Block` beside it imports (it failed with "No module
    # named", and advice to make `python FILE.py` run, which it did). The folder then moves to
    # the end of the path: a later import inside a layer's build still finds the user's module,
    # and a file there named like a library does not shadow it for the rest of the run.
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)
    try:
        with _keras_of(flavour):
            spec.loader.exec_module(module)
    except Exception as err:
        raise InputFileError(f"--custom-objects {p} failed to import: {type(err).__name__}: {err}",
                             "fix the file so that `python FILE.py` runs") from None
    finally:
        sys.path.remove(folder)
        if folder not in sys.path:
            sys.path.append(folder)
    users = [module] + [sys.modules[name] for name in set(sys.modules) - before
                        if name.split(".")[0] not in _LIBRARY_ROOTS | {"edgenn"}]
    _keep_keras_of(flavour, users)
    # What the packages it imports (as modules, or through what it imports from them) register
    # with Keras (`import keras_hub` registers keras_hub>BertBackbone...), under those names;
    # only from outside Keras and the standard library. Found by package, not as what was new
    # in the registry: a second load in one process imports nothing new.
    packages = {str(getattr(v, "__name__", "") if inspect.ismodule(v)
                    else getattr(v, "__module__", "") or "").split(".")[0]
                for v in vars(module).values()} - {""}
    registered = {name: obj for registry in _registries(flavour)
                  for name, obj in list(registry.items())
                  if str(getattr(obj, "__module__", "") or "").split(".")[0] in packages
                  and _registered_by_a_package(obj)}
    objects = getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(objects, dict):
        return {**registered, **objects}
    # What the file defines, and the Keras classes and functions it imports from the user's
    # own code (a file that does `from mtcnn.network.onet import ONet` gave nothing before, and
    # the model was refused with advice to pass the file it had been given). Not what it
    # imports from installed libraries or the standard library: a name registered here is one
    # a model file may then instantiate (`from subprocess import Popen` must not make Popen one).
    return {**registered, **{
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and (getattr(obj, "__module__", None) == module.__name__ or _users_own(obj))
    }}


def _registries(flavour: str) -> list[dict]:
    """Keras's global registries of custom objects that the model's Keras reads."""
    if flavour == "keras3":
        from .._tf import keras3

        return [keras3().saving.get_custom_objects()]
    from .._tf import tf_keras

    return [tf_keras().utils.get_custom_objects()]


def _registered_by_a_package(obj) -> bool:
    import sys

    root = str(getattr(obj, "__module__", "") or "").split(".")[0]
    if root in _LIBRARY_ROOTS | {"edgenn"} or root in sys.stdlib_module_names:
        return False
    return _users_own(obj) if inspect.isclass(obj) else inspect.isfunction(obj)


def _users_own(obj) -> bool:
    """Whether an imported object is one a model may name.

    A subclass of a Keras class (a layer, a model, a loss...) from any package but Keras's
    own, or a function from the user's own files (not an installed library's or the standard
    library's).
    """
    import sys

    if str(getattr(obj, "__module__", "")).split(".")[0] in _LIBRARY_ROOTS:
        return False
    if inspect.isclass(obj):
        return any(str(base.__module__).split(".")[0] in ("keras", "tf_keras")
                   for base in inspect.getmro(obj)[1:])
    source = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = str(getattr(source, "__file__", "") or "")
    installed = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return bool(path) and "site-packages" not in path and not any(
        path.startswith(str(root)) for root in installed)


class _TensorFlowView(types.ModuleType):
    """``tensorflow`` as a user's module sees it: ``keras`` is the model's Keras.

    Every other attribute is TensorFlow's.
    """

    def __init__(self, real, keras):
        super().__init__(real.__name__)
        self.__dict__.update(_real=real, keras=keras)

    def __getattr__(self, name):
        return getattr(self.__dict__["_real"], name)


def _keep_keras_of(flavour: str, modules) -> None:
    """The user's modules keep the model's Keras after their import, as ``tf.keras``.

    An alias covers import statements only. A class that reads ``tf.keras.layers.Conv2D`` when
    it is built (not at import) got tf_keras in edgenn's process, where TensorFlow's
    ``tf.keras`` names tf_keras for tfmot: a Keras 3 model's layers built of tf_keras layers,
    untracked, and the model loaded with no weights (0 parameters, and no word of it).
    """
    from .._tf import tf

    tensorflow = tf()
    keras = importlib.import_module("keras._tf_keras.keras" if flavour == "keras3" else "tf_keras")
    view = _TensorFlowView(tensorflow, keras)
    for module in modules:
        space = getattr(module, "__dict__", None)
        if not isinstance(space, dict):
            continue
        for name, value in list(space.items()):
            if value is tensorflow:
                space[name] = view


# Libraries whose classes and functions a custom-objects file's imports never register.
_LIBRARY_ROOTS = {"keras", "tf_keras", "tensorflow", "tensorflow_model_optimization", "numpy",
                  "builtins", ""}
