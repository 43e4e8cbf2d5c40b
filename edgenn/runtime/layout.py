"""Where each tensor of a converted model keeps its samples. No TensorFlow.

edgenn's arrays always hold samples on axis 0. A model may keep them elsewhere (a streaming
model's state ``[2, batch, 128]``, PyTorch's sequence-first ``[seq, batch, features]``) or not
at all (a scalar sample rate that the whole batch shares).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

from ..errors import UsageError


def _dynamic(d) -> bool:
    return not (isinstance(d, int) and d > 0)


def _symbol(d, dims) -> bool:
    """Whether ``d`` names a dimension.

    Paddle's "?" and a name used twice in one tensor ("?, ?" for height and width) are open
    sizes, not a batch.
    """
    return (isinstance(d, str) and re.fullmatch(r"[A-Za-z_][\w.:/-]*", d) is not None
            and list(dims).count(d) == 1)


def batch_axes(inputs: list[list], outputs: list[list] = ()) -> tuple[list, list]:
    """(input axes, output axes): each tensor's batch axis, or None where it has none.

    ``inputs``/``outputs``: each tensor's dims as ONNX gives them (ints, symbol names, None)
    or as a .tflite signature does (-1 for an open dimension).
    The batch symbol is a symbol named like "batch", or else the one that leads most inputs
    (the first on a tie). A tensor holding it is batched along it; one without it is batched
    along axis 0 when that axis is open or 1; any other tensor (a scalar, a fixed-shape
    setting) has no batch axis. A model whose inputs are all fixed is batched along axis 0
    when they all lead with one size; when they lead with different sizes ([1, 3, 1] and a
    shape vector [2]; sequences of 2, 1 and 3 items), only the ones that lead with 1 are.
    """
    tensors = [list(d) for d in inputs]
    if not any(_dynamic(d) for dims in tensors for d in dims):
        leads = {dims[0] for dims in tensors if dims}
        common = leads.pop() if len(leads) == 1 else 1

        def fixed(dims) -> int | None:
            dims = list(dims)
            return 0 if dims and (dims[0] == common or _dynamic(dims[0])) else None

        return [fixed(d) for d in tensors], [fixed(d) for d in outputs]
    symbols = [s for dims in tensors for s in dict.fromkeys(d for d in dims if _symbol(d, dims))]
    named = [s for s in dict.fromkeys(symbols) if "batch" in s.lower()]
    # a symbol not named like a batch leads some tensor, or it is a length ([1, "time", 80])
    leading = [s for s in dict.fromkeys(symbols) if any(dims and dims[0] == s for dims in tensors)]
    batch = named[0] if named else max(leading, key=symbols.count, default=None)

    def axis(dims) -> int | None:
        dims = list(dims)
        if batch is not None and batch in dims:
            return dims.index(batch)
        return 0 if dims and (_dynamic(dims[0]) or dims[0] == 1) else None

    return [axis(d) for d in tensors], [axis(d) for d in outputs]


def to_model(chunk, axis):
    """Samples-first ``chunk`` laid out as the model takes it: its batch axis, or one value."""
    if axis is None:
        return np.asarray(chunk[0])
    return chunk if axis == 0 else np.moveaxis(chunk, 0, axis)


def from_model(value, axis):
    """A model output laid out samples-first (an output without a batch axis gains one of 1)."""
    if axis is None:
        return np.asarray(value)[None]
    return value if axis == 0 else np.moveaxis(value, axis, 0)


def input_signatures(path: Path, info: dict | None = None) -> list[tuple[str, list]]:
    """Each input's name and shape, with -1 (or an ONNX symbol name) where a dimension is open.

    ``info``: the .tflite file's description when the caller has it already.
    """
    if path.suffix.lower() == ".tflite":
        from .tflite_info import describe

        info = info or describe(path)
        return [(t["name"], t.get("shape_signature", t["shape"])) for t in info["inputs"]]
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    known = {init.name for init in graph.initializer}
    return [(i.name, [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                      else (d.dim_param or -1) for d in i.type.tensor_type.shape.dim])
            for i in graph.input if i.name not in known]


def _open(d) -> bool:
    return not (isinstance(d, int) and d > 0)


def _signatures_readable(path: Path) -> bool:
    """Whether edgenn reads input signatures from ``path``: a .tflite, or an .onnx with onnx."""
    suffix = path.suffix.lower()
    return suffix == ".tflite" or (suffix == ".onnx" and importlib.util.find_spec("onnx") is not None)


def made_up_sizes(path: Path, info: dict | None = None) -> str | None:
    """What to say when a run at sizes edgenn chose failed: the file leaves a size open.

    An open batch is run at 1 when no ``--input-shape`` is given, and a model may not take
    1 (ICLabel reshapes its batch into four mirror images per sample). None when the file
    fixes every size (or is neither .tflite nor .onnx).
    """
    if not _signatures_readable(path):
        return None
    signatures = input_signatures(path, info)
    if not any(_open(d) for _, sig in signatures for d in sig):
        return None
    shapes = ",".join("x".join(str(d if not _open(d) else 1) for d in sig) for _, sig in signatures)
    return (f"it ran at {shapes}, the sizes the file leaves open made 1: give sizes the model "
            "takes with --input-shape (NAME=SHAPE per input; `edgenn inspect` lists them)")


def resolve_input_shapes(path: Path, given: list | None, info: dict | None = None,
                         purpose: str = "measure", other: str = "") -> list[list[int]] | None:
    """The shape each input is measured at, or None where the model's own will do.

    ``given``: ``--input-shape`` as [(input name or None, shape)]: one shape per input in order,
    or shapes by input name (the others keep theirs). An open batch axis takes 1; any other
    open dimension needs a shape from the user. Shapes must keep the model's fixed dimensions;
    the inputs left out take the batch of the ones given. ``purpose`` and ``other`` (another
    way out) word the refusal of an open size.
    """
    if not _signatures_readable(path):
        return [shape for _, shape in given] if given else None
    shapes = fit_shapes(str(path), input_signatures(path, info), given, purpose, other)
    return shapes if given else None


def fit_shapes(path: str, signatures: list[tuple[str, list]], given: list | None,
               purpose: str = "measure", other: str = "") -> list[list[int]]:
    """Each input's shape: ``given`` (``--input-shape``) fitted to ``signatures``.

    ``signatures``: [(input name, dims)], an open dimension None, -1 or a symbol. See
    ``resolve_input_shapes``; ``path`` names the model in the refusals.
    """
    names = [name for name, _ in signatures]
    axes, _ = batch_axes([sig for _, sig in signatures])
    chosen: dict = {}
    if given and all(name is None for name, _ in given):
        if len(given) != len(signatures):
            raise UsageError(f"{path} has {len(signatures)} input(s) but --input-shape gives "
                             f"{len(given)}", "give one shape per input, comma-separated, or "
                             "name the ones to set: --input-shape NAME=SHAPE")
        chosen = {name: shape for name, (_, shape) in zip(names, given)}
    elif given:
        for name, shape in given:
            if name not in names:
                raise UsageError(f"{path} has no input {name!r} (its inputs: {', '.join(names)})",
                                 "name an input as `edgenn inspect` lists it")
            chosen[name] = shape
    batches = [chosen[name][axis] for (name, _), axis in zip(signatures, axes)
               if name in chosen and axis is not None and axis < len(chosen[name])]
    batch = batches[0] if batches else 1  # the inputs left out share the batch given
    shapes = []
    for (name, sig), axis in zip(signatures, axes):
        shown = [d if not _open(d) else None for d in sig]
        if name not in chosen:
            open_dims = [k for k, d in enumerate(sig) if _open(d) and k != axis]
            if open_dims:
                example = "x".join("1" if k == axis else str(d) if not _open(d) else "224"
                                   for k, d in enumerate(sig)) or "scalar"
                prefix = f"{name}=" if len(signatures) > 1 else ""
                raise UsageError(f"{path}: input {name!r} has an open size {shown}, so there "
                                 f"is no one size to {purpose}",
                                 f"{other}pass --input-shape, e.g. {prefix}{example}")
            shapes.append([batch if k == axis and _open(d) else 1 if _open(d) else d
                           for k, d in enumerate(sig)])
            continue
        shape = chosen[name]
        fits = len(sig) == len(shape) and all(_open(d) or d == s or k == axis
                                              for k, (d, s) in enumerate(zip(sig, shape)))
        if not fits:
            raise UsageError(f"{path}: input {name!r} has shape {shown}; --input-shape gives "
                             f"{'x'.join(map(str, shape)) or 'scalar'}",
                             "keep the model's fixed dimensions and choose the open ones")
        shapes.append(list(shape))
    return shapes
