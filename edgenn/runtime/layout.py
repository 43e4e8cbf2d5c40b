"""Where each tensor of a converted model keeps its samples. No TensorFlow.

edgenn's arrays always hold samples on axis 0. A model may keep them elsewhere (a streaming
model's state ``[2, batch, 128]``, PyTorch's sequence-first ``[seq, batch, features]``) or not
at all (a scalar sample rate that the whole batch shares).
"""

from __future__ import annotations

import numpy as np


def _dynamic(d) -> bool:
    return not (isinstance(d, int) and d > 0)


def batch_axes(inputs: list[list], outputs: list[list] = ()) -> tuple[list, list]:
    """(input axes, output axes): each tensor's batch axis, or None where it has none.

    ``inputs``/``outputs``: each tensor's dims as ONNX gives them (ints, symbol names, None)
    or as a .tflite signature does (-1 for an open dimension).
    The batch symbol is a symbol named like "batch" or else the one most inputs share (the
    first input's earliest on a tie). A tensor holding it is batched along it; one without it is
    batched along axis 0 when that axis is open; any other tensor (a scalar, a fixed-shape
    setting) has no batch axis. A model whose inputs are all fixed is batched along axis 0.
    """
    tensors = [list(d) for d in inputs]
    if not any(_dynamic(d) for dims in tensors for d in dims):
        axis0 = [0 if dims else None for dims in tensors]
        return axis0, [0 if list(dims) else None for dims in outputs]
    symbols = [s for dims in tensors for s in dict.fromkeys(d for d in dims if isinstance(d, str) and d)]
    named = [s for s in dict.fromkeys(symbols) if "batch" in s.lower()]
    order = {s: min(dims.index(s) for dims in tensors if s in dims) for s in symbols}
    batch = named[0] if named else max(dict.fromkeys(symbols), key=lambda s: (
        symbols.count(s), -order[s]), default=None)

    def axis(dims) -> int | None:
        dims = list(dims)
        if batch is not None and batch in dims:
            return dims.index(batch)
        return 0 if dims and _dynamic(dims[0]) else None

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
