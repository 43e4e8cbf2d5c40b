"""Facts about a Keras model (either Keras): per-layer shapes, parameters and MACs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class LayerStats:
    name: str
    cls: str
    output_shape: list | None
    params: int
    trainable_params: int
    macs: int | None  # multiply-accumulates for one sample; None when shapes are dynamic


@dataclass
class ModelStats:
    name: str
    layers: list[LayerStats]
    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int | None
    weight_bytes: dict[str, int] = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = [asdict(layer) | {"class": layer.cls} for layer in self.layers]
        for layer in out["layers"]:
            del layer["cls"]
        return out


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def _shape(tensor_or_list):
    if isinstance(tensor_or_list, (list, tuple)):
        return [_shape(t) for t in tensor_or_list]
    return [None if d is None else int(d) for d in tuple(tensor_or_list.shape)]


def _safe(getter):
    try:
        return getter()
    except (AttributeError, ValueError, RuntimeError):
        return None


def _count(weights) -> int:
    return int(sum(int(np.prod(tuple(w.shape))) for w in weights))


def model_stats(model) -> ModelStats:
    """Per-layer and total statistics; the total equals ``model.count_params()``."""
    layers = []
    for layer in model.layers:
        out_shape = _safe(lambda layer=layer: _shape(layer.output))
        macs = layer_macs(layer)
        layers.append(LayerStats(
            name=layer.name,
            cls=type(layer).__name__,
            output_shape=out_shape,
            params=int(layer.count_params()) if layer.built else 0,
            trainable_params=_count(layer.trainable_weights),
            macs=None if macs is None else macs * _calls(model, layer),
        ))
    weight_bytes: dict[str, int] = {}
    for w in model.weights:
        dtype = np.dtype(_dtype_name(w.dtype))
        weight_bytes[dtype.name] = weight_bytes.get(dtype.name, 0) + int(
            np.prod(tuple(w.shape))) * dtype.itemsize
    macs = [layer.macs for layer in layers]
    trainable = _count(model.trainable_weights)
    total = int(model.count_params())
    return ModelStats(
        name=model.name,
        layers=layers,
        params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        macs=None if any(m is None for m in macs) else int(sum(macs)),
        weight_bytes=weight_bytes,
        inputs=[{"name": getattr(t, "name", ""), "shape": _shape(t), "dtype": _dtype_name(t.dtype)}
                for t in model.inputs],
        outputs=[{"name": getattr(t, "name", ""), "shape": _shape(t),
                  "dtype": _dtype_name(t.dtype)} for t in model.outputs],
    )


def calls_in(model, layer) -> list | None:
    """The nodes (calls) of ``layer`` that ``model``'s graph holds; None where it does not say.

    A nested model also holds the node of its own graph; only the outer model's calls count.
    """
    nodes = getattr(model, "_network_nodes", None)  # tf_keras: "<layer name>_ib-<i>"
    key = layer.name
    if nodes is None:
        nodes, key = getattr(model, "_nodes", None), str(id(layer))  # Keras 3: "<id>_ib-<i>"
    inbound = getattr(layer, "_inbound_nodes", None) or []
    if not isinstance(nodes, (set, frozenset)) or not inbound:
        return None
    return [node for i, node in enumerate(inbound) if f"{key}_ib-{i}" in nodes]


def _calls(model, layer) -> int:
    """How many times ``model``'s graph calls ``layer``; 1 where the graph does not say.

    A shared encoder called twice in a siamese model had its MACs counted once.
    """
    found = calls_in(model, layer)
    return 1 if found is None else max(1, len(found))


def _kernel(layer, suffix: str = "kernel"):
    for w in layer.weights:
        name = getattr(w, "path", None) or w.name
        if name.split(":")[0].split("/")[-1] == suffix:
            return tuple(int(d) for d in w.shape)
    return None


def _spatial(shape) -> int | None:
    """Product of the non-batch dimensions, or None if any is unknown."""
    dims = shape[1:]
    if any(d is None for d in dims):
        return None
    return int(np.prod(dims)) if dims else 1


def layer_macs(layer) -> int | None:
    """Multiply-accumulates of one forward pass for one sample.

    Counted for the layers whose cost is a matrix product (Dense, convolutions, recurrent cells
    over every time step, attention's projections and score products); element-wise layers,
    pooling and normalisation count 0 (BatchNormalization folds into the convolution before it
    on every edge runtime). Nested models sum their layers.
    """
    if (inner := _custom_sublayers(layer)):
        # a custom layer built of Keras layers (keras-tcn's TCN: its dilated Conv1Ds counted
        # "MACs 0"), each counted at the shape it was built with, once per forward pass; all
        # it tracks, not a `layers` list of its own (TCN's blocks leave their 1x1 conv out)
        parts = [layer_macs(sub) for sub in inner]
        return None if any(p is None for p in parts) else int(sum(parts))
    if hasattr(layer, "layers") and layer.layers:
        parts = [layer_macs(sub) for sub in layer.layers]
        return None if any(p is None for p in parts) else int(sum(
            p * _calls(layer, sub) for p, sub in zip(parts, layer.layers)))
    cls = type(layer).__name__
    if cls in _RECURRENT_GATES or cls == "Bidirectional":
        return _recurrent_macs(layer)
    if cls == "MultiHeadAttention":
        return _attention_macs(layer)
    if cls == "TimeDistributed" and getattr(layer.layer, "layers", None):
        # a whole model per frame (vvadlrs3's MobileNet over 36 video frames: "MACs 0")
        steps = _safe(lambda: tuple(layer.input.shape)[1])
        inner = layer_macs(layer.layer)
        return None if inner is None or steps is None else inner * int(steps)
    if cls == "TimeDistributed":  # the inner layer's kernel, the wrapper's (time-long) shapes
        return _matmul_macs(layer, type(layer.layer).__name__, kernel_of=layer.layer)
    return _matmul_macs(layer, cls)


def _custom_sublayers(layer) -> list:
    """The layers a custom (non-Keras) layer holds; [] for Keras's own layers and for models.

    A model, subclassed or not, is counted by its `layers` with how often its graph calls each.
    """
    if str(type(layer).__module__).split(".")[0] in ("keras", "tf_keras", "tensorflow") or any(
            base.__name__ in ("Model", "Functional", "Sequential") for base in type(layer).__mro__):
        return []
    flatten = getattr(layer, "_flatten_layers", None)
    return [] if flatten is None else list(_safe(
        lambda: list(flatten(include_self=False, recursive=False))) or [])


_RECURRENT_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def _recurrent_macs(layer) -> int | None:
    """Every time step multiplies the input and the state by each gate's kernels."""
    if type(layer).__name__ == "Bidirectional":
        halves = [_recurrent_macs_of(sub, layer) for sub in (layer.forward_layer,
                                                              layer.backward_layer)]
        return None if None in halves else int(sum(halves))
    return _recurrent_macs_of(layer, layer)


def _recurrent_macs_of(cell_layer, shaped) -> int | None:
    gates = _RECURRENT_GATES.get(type(cell_layer).__name__)
    inp = _safe(lambda: _shape(shaped.input))
    if inp and isinstance(inp[0], list):  # [sequence, mask]: a Keras 3 layer behind a Masking
        inp = inp[0]
    if gates is None or inp is None or len(inp) != 3 or None in inp[1:]:
        return None
    steps, features = int(inp[1]), int(inp[2])
    units = int(cell_layer.units)
    return steps * gates * units * (features + units)


def _attention_macs(layer) -> int | None:
    """Query, key and value projections, the two score products, and the output projection."""
    heads = getattr(layer, "_num_heads", None) or getattr(layer, "num_heads", None)
    key_dim = getattr(layer, "_key_dim", None) or getattr(layer, "key_dim", None)
    value_dim = getattr(layer, "_value_dim", None) or key_dim
    built = getattr(layer, "_build_shapes_dict", None) or {}  # Keras 3; tf_keras keeps _*_shape
    shapes = [built.get(f"{n}_shape", getattr(layer, f"_{n}_shape", None))
              for n in ("query", "key", "value")]
    if not heads or not key_dim or shapes[0] is None:
        return None
    query = tuple(shapes[0])
    value = tuple(shapes[2]) if shapes[2] is not None else query
    key = tuple(shapes[1]) if shapes[1] is not None else value
    if any(d is None for shape in (query, key, value) for d in shape[1:]):
        return None
    query, key, value = ([int(d) for d in shape[1:]] for shape in (query, key, value))
    query, key, value = [None, *query], [None, *key], [None, *value]
    tq, tk = int(np.prod(query[1:-1])), int(np.prod(key[1:-1]))
    width = int(query[-1])
    projections = (tq * query[-1] * heads * key_dim + tk * key[-1] * heads * key_dim
                   + tk * value[-1] * heads * value_dim)
    products = heads * tq * tk * (key_dim + value_dim)
    return int(projections + products + tq * heads * value_dim * width)


def _matmul_macs(layer, cls: str, kernel_of=None) -> int | None:
    kernel_of = kernel_of or layer
    if cls not in _MAC_LAYERS:
        return 0
    out = _safe(lambda: _shape(layer.output))
    inp = _safe(lambda: _shape(layer.input))
    if (out is None or inp is None) and len(getattr(layer, "_inbound_nodes", None) or []) <= 1:
        inp, out = _built_shapes(layer)  # a subclassed model's layer (a shared one stays "?")
    if out is None or inp is None or isinstance(out[0], list) or isinstance(inp[0], list):
        return None
    out_n, in_n = _spatial(out), _spatial(inp)
    if out_n is None or in_n is None:
        return None
    if cls == "Dense":
        k = _kernel(kernel_of)
        return out_n * k[0] if k else None
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        k = _kernel(kernel_of)  # (*window, in/groups, out)
        return out_n * int(np.prod(k[:-1])) if k else None
    if cls == "DepthwiseConv2D":
        k = _kernel(kernel_of, "depthwise_kernel") or _kernel(kernel_of)  # (kh, kw, in, mult)
        return out_n * int(np.prod(k[:2])) if k else None
    if cls == "SeparableConv2D":
        dk = _kernel(kernel_of, "depthwise_kernel")  # (kh, kw, in, mult)
        pk = _kernel(kernel_of, "pointwise_kernel")  # (1, 1, in*mult, out)
        if not dk or not pk:
            return None
        positions = out_n // pk[-1]
        return positions * (int(np.prod(dk)) + pk[2] * pk[3])
    if cls in ("Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose"):
        k = _kernel(kernel_of)  # (*window, out, in)
        return in_n * int(np.prod(k[:-2])) * k[-2] if k else None
    return 0


def _built_shapes(layer) -> tuple[list | None, list | None]:
    """(input, output) shapes from what the layer was built with (Keras 3 or tf_keras).

    A layer inside a subclassed model (mtcnn's ONet: "MACs ?") has no symbolic input or
    output; the shape it was built at, and its output for that shape, count the same.
    """
    built = getattr(layer, "_build_shapes_dict", None) or {}
    shape = next(iter(built.values())) if len(built) == 1 else getattr(
        layer, "_build_input_shape", None)
    if shape is None:
        return None, None
    shape = tuple(getattr(shape, "as_list", lambda: shape)())
    out = _safe(lambda: tuple(layer.compute_output_shape(shape)))
    if out is None or any(isinstance(d, (list, tuple)) for d in shape):
        return None, None
    listed = [[None if d is None else int(d) for d in dims] for dims in (shape, out)]
    return listed[0], listed[1]


_MAC_LAYERS = {"Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D",
               "Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose"}
