"""Read a SavedModel's graphs as data and refuse ops that would write files or run Python.

Loading a SavedModel runs graph code: initializer functions of tables and resources, the init
op, the restore function; converting or evaluating it runs its signatures. Every op in every
graph and function is checked before TensorFlow loads anything: a registered stateless op only
computes (except the few in ``allowlist.STATELESS_BUT_UNSAFE``), a stateful op must be on
``allowlist.STATEFUL_OPS``, and the checkpoint-writing ops are allowed only inside the
SavedModel's own save function (TF2) or the Saver's save subgraph (TF1), when nothing that runs
at load or inference reaches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from ..errors import InputFileError, UnsafeModelError
from . import allowlist as al

_HINT = "if you trust this model, rerun with --allow-unsafe"


def read_savedmodel(path: Path):
    """Parse ``saved_model.pb``; InputFileError for a missing, empty or corrupt one."""
    from .._tf import tf

    tf()
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise InputFileError(f"{path} has no saved_model.pb (a text saved_model.pbtxt is not "
                             "supported)", "save the model again with tf.saved_model.save")
    data = pb.read_bytes()
    if not data:
        raise InputFileError(f"{pb} is empty (0 bytes)", "save or copy the model again")
    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as err:
        raise InputFileError(f"{pb} is not a valid SavedModel protobuf ({type(err).__name__})",
                             "save or copy the model again") from None
    if not sm.meta_graphs:
        raise InputFileError(f"{pb} holds no graph", "save the model again")
    return sm


@lru_cache(maxsize=1)
def _registry() -> dict[str, bool]:
    """Every op this TensorFlow knows, mapped to whether it is stateful."""
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api

    ops = op_def_pb2.OpList()
    buf = c_api.TF_GetAllOpList()
    try:
        ops.ParseFromString(c_api.TF_GetBuffer(buf))
    finally:
        c_api.TF_DeleteBuffer(buf)
    return {op.name: bool(op.is_stateful) for op in ops.op}


def op_problem(op: str, functions: Iterable[str] = (), allow_save: bool = False) -> str | None:
    """Why ``op`` may not run, or None when it only computes."""
    if op in functions:
        return None  # a call to a function of the same graph; its body is checked on its own
    registry = _registry()
    if op in al.PYTHON_OPS:
        return "runs a Python function"
    if op in al.SAVE_OPS:
        return None if allow_save else "writes checkpoint files"
    if op not in registry:
        return "is not an op this TensorFlow knows (a custom op library would have to be loaded)"
    if op in al.STATELESS_BUT_UNSAFE:
        return "reads files or writes debug dumps"
    if registry[op] and op not in al.STATEFUL_OPS:
        return "has side effects outside the model (files, network, queues or logs)"
    return None


def _called(node) -> set[str]:
    """Names of the functions a NodeDef calls (op name or function-valued attributes)."""
    out = {node.op}
    for attr in node.attr.values():
        if attr.HasField("func"):
            out.add(attr.func.name)
        if attr.HasField("list"):
            out.update(f.name for f in attr.list.func)
    return out


def check_savedmodel(path: Path) -> None:
    """Raise UnsafeModelError for an op that would write files or run Python; parse errors -> 2."""
    sm = read_savedmodel(path)
    for meta in sm.meta_graphs:
        graph = meta.graph_def
        library = {f.signature.name: f for f in graph.library.function}
        save_node = meta.saver_def.save_tensor_name.split(":")[0] if meta.HasField("saver_def") else ""
        save_roots, other_roots = set(), set(meta.object_graph_def.concrete_functions)
        other_roots |= {g.gradient_func for g in graph.library.gradient}
        for node in graph.node:
            (save_roots if node.name == save_node else other_roots).update(_called(node) & set(library))
        reached = _reach(other_roots, library)
        save_only = _reach(save_roots, library) - reached
        runs = _graph_reach(graph, _graph_roots(meta))
        for node in graph.node:
            # a TF1 graph holds its Saver's save/SaveV2, which only a checkpoint save runs
            problem = op_problem(node.op, library, allow_save=node.name not in runs)
            if problem:
                raise _refusal(path, node.op, node.name, "graph", problem)
        for name, fn in library.items():
            for node in fn.node_def:
                problem = op_problem(node.op, library, allow_save=name in save_only)
                if problem:
                    raise _refusal(path, node.op, node.name, f"function {name}", problem)


def _node(tensor: str) -> str:
    """The node a tensor or control input names: "^save/x", "out:0" -> "save/x", "out"."""
    return tensor.lstrip("^").split(":")[0]


def _graph_roots(meta) -> set[str]:
    """Top-level nodes that run at load or inference (TF1 graphs).

    Every signature's outputs (the init-op signature's too), the Saver's restore op, and the
    init ops' collections.
    """
    roots = {_node(t.name) for sig in meta.signature_def.values() for t in sig.outputs.values()}
    if meta.HasField("saver_def"):
        roots.add(_node(meta.saver_def.restore_op_name))
    for key in ("saved_model_main_op", "legacy_init_op", "main_op", "table_initializer"):
        if key in meta.collection_def:
            roots |= {_node(name) for name in meta.collection_def[key].node_list.value}
    return roots


def _closure(roots: set[str], edges: dict) -> set[str]:
    """Everything ``roots`` reach through ``edges`` (a name -> the names it leads to)."""
    seen, stack = set(), [r for r in roots if r in edges]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(n for n in edges[name] if n in edges and n not in seen)
    return seen


def _graph_reach(graph, roots: set[str]) -> set[str]:
    """The top-level nodes ``roots`` depend on, data and control inputs alike."""
    return _closure(roots, {node.name: [_node(i) for i in node.input] for node in graph.node})


def _reach(roots: set[str], library: dict) -> set[str]:
    """The library functions ``roots`` call, directly or through others."""
    return _closure(roots, {name: [c for node in fn.node_def for c in _called(node)]
                            for name, fn in library.items()})


def _refusal(path: Path, op: str, node: str, where: str, problem: str) -> UnsafeModelError:
    return UnsafeModelError(f"{path}: op {op} ({node!r} in {where}) {problem}; edgenn will not "
                            "load a model that does this", _HINT)
