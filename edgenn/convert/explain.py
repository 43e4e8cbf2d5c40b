"""`--explain`: compare an int8 TFLite model with its Keras source layer by layer.

LiteRT keeps every intermediate tensor when asked (experimental_preserve_all_tensors); each
op's output tensor is named after the Keras layers fused into it, so the last of those layers
gives the Keras activation to compare with. The layers whose error grows most are where
quantization loses accuracy: candidates to keep in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._tf import keras_of
from ..quiet import quiet_stderr

# Below this signal-to-quantization-noise ratio an int8 tensor keeps too little of its signal
# for the layers after it (a tensor spread over 10 standard deviations: about 39 dB).
STARVED_DB = 15.0


@dataclass(frozen=True)
class LayerError:
    """The int8 model's error at one Keras layer's output, and how much that layer added.

    ``quant_snr_db``: the output's own signal-to-quantization-noise ratio, its variation
    (each channel less its mean) against the noise of its int8 step (scale^2 / 12), whatever
    the error that arrives with the input. ``keep_together``: for a starved output (below
    ``STARVED_DB``), this layer and the layers that read it, which must all stay float for the
    tensor to stay float (a float layer's output is quantized again for an int8 reader).
    """

    layer: str
    cls: str
    relative_error: float
    growth: float
    quant_snr_db: float | None = None
    keep_together: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = {"layer": self.layer, "class": self.cls, "relative_error": self.relative_error,
               "growth": self.growth, "quant_snr_db": self.quant_snr_db}
        if self.keep_together:
            out["keep_together"] = list(self.keep_together)
        return out


@dataclass(frozen=True)
class Explanation:
    """Where an int8 model loses accuracy, layer by layer."""

    samples: int
    layers: tuple[LayerError, ...]
    worst: tuple[str, ...]
    skipped: str | None = None

    @property
    def starved(self) -> list[LayerError]:
        """The layers whose int8 output keeps too little signal, most starved first."""
        return sorted((r for r in self.layers if r.keep_together), key=lambda r: r.quant_snr_db)

    def to_dict(self) -> dict:
        if self.skipped:
            return {"skipped": self.skipped}
        return {"samples": self.samples, "layers": [r.to_dict() for r in self.layers],
                "worst": list(self.worst),
                "starved": [list(r.keep_together) for r in self.starved]}


def quant_snr_db(ref: np.ndarray, detail: dict) -> float | None:
    """``ref``'s variation against the quantization noise of ``detail``'s int8 step, in dB."""
    scale = detail["quantization"][0]
    if not scale:
        return None  # a float tensor
    axes = tuple(range(ref.ndim - 1)) if ref.ndim > 1 else None
    variance = float(np.mean((ref - ref.mean(axis=axes, keepdims=True)) ** 2))
    if variance <= 0:
        return None
    return round(10 * np.log10(variance / (scale ** 2 / 12)), 2)


def _joined_snr_db(layer, ref: np.ndarray, detail: dict) -> float | None:
    """``quant_snr_db``, and for a concatenation, its most starved part.

    Every branch of an int8 concatenation shares one scale: a narrow branch joined with a
    wide one keeps a few of its 256 steps, which the whole tensor's variation hides (deepcut's
    normalized embedding beside the maximum of its convolutions: -1.4 dB for that part, 22 dB
    for the whole).
    """
    whole = quant_snr_db(ref, detail)
    if type(layer).__name__ != "Concatenate" or whole is None or ref.ndim < 2:
        return whole
    axis = getattr(layer, "axis", -1)
    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    widths = [tuple(t.shape)[axis] for t in inputs]
    if axis not in (-1, ref.ndim - 1) or None in widths or sum(widths) != ref.shape[-1]:
        return whole
    parts = np.split(ref, np.cumsum(widths)[:-1], axis=-1)
    found = [quant_snr_db(part, detail) for part in parts]
    return min([whole] + [v for v in found if v is not None])


def _readers(model, name: str, with_ops: set[str], depth: int = 3) -> list[str]:
    """The layers that read ``name``'s output, as `--keep-float` can name them.

    Each is the first layer on its path that owns an op in the TFLite model (a Conv2D before
    its BatchNormalization may be named after the latter only).
    """
    out: list[str] = []
    for node in getattr(model.get_layer(name), "_outbound_nodes", []):
        reader = getattr(node, "operation", None) or getattr(node, "outbound_layer", None)
        if reader is None or reader.name == name:
            continue
        try:
            model.get_layer(reader.name)
        except ValueError:
            continue
        found = [reader.name] if reader.name in with_ops else (
            _readers(model, reader.name, with_ops, depth - 1) if depth > 1 else [])
        out += [n for n in found if n not in out]
    return out


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(value.dtype, np.floating) or not scale:
        return value.astype(np.float32)
    return (value.astype(np.float32) - zero) * scale


def _layer_name(scope: str, layers: dict) -> str | None:
    """The layer a tensor-name scope stands for: Keras 3 traces add "_1" to scope names."""
    if scope in layers:
        return scope
    base, _, suffix = scope.rpartition("_")
    return base if suffix.isdigit() and base in layers else None


def layers_of_tensor(tensor_name: str, position: dict) -> set[str]:
    """The Keras layers fused into the op that writes ``tensor_name``.

    TFLite names an op's output after the TensorFlow ops fused into it, joined by ";", each
    scoped ``model/layer/op``; ``position`` maps layer names to their order in the model.
    """
    return {name for piece in tensor_name.split(";") if len(piece.split("/")) >= 3
            for name in [_layer_name(piece.split("/")[1], position)] if name}


def _outer_output(model, layer):
    """``layer``'s output where ``model`` calls it, or None (several outputs, or no call).

    A nested model's own ``output`` belongs to its inner graph, whose inputs share the outer
    inputs' names (keras-hub's BertBackbone inside a classifier: "The name token_ids is used 2
    times", exit 1); the node of the outer call is the one the model computes. A layer with
    several outputs (a backbone's dict) is left out of the comparison.
    """
    from ..models.stats import calls_in

    calls = calls_in(model, layer)
    if calls is None:
        try:
            return layer.output
        except (AttributeError, ValueError):
            return None
    if not calls:
        return None
    found = calls[0].output_tensors
    found = found if isinstance(found, (list, tuple)) else [found]
    return found[0] if len(found) == 1 else None


def _computed(interp) -> set[int] | None:
    """The tensors some op writes (None: the interpreter gives no op details)."""
    try:
        ops = interp._get_ops_details()  # noqa: SLF001 - as stateful_ops reads it
    except Exception:  # noqa: BLE001
        return None
    return {int(o) for op in ops for o in op["outputs"] if o >= 0}


def _output_layers(model) -> list:
    """The layers that compute ``model``'s outputs, in its order (Keras 3 and tf_keras)."""
    found = []
    for tensor in model.outputs:
        history = getattr(tensor, "_keras_history", None)
        layer = history[0] if history is not None else None
        if layer is None:
            return []
        found.append(layer)
    return found


def _reader_layers(interp, position: dict) -> dict[int, list[set[str]]]:
    """For each tensor, the layers fused into each op that reads it (empty: no op details)."""
    try:
        ops = interp._get_ops_details()  # noqa: SLF001 - as stateful_ops reads it
    except Exception:  # noqa: BLE001 - no op details: every tensor is a candidate, as before
        return {}
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    readers: dict[int, list[set[str]]] = {}
    for op in ops:
        made = set().union(*(layers_of_tensor(names.get(o, ""), position) for o in op["outputs"]))
        for i in op["inputs"]:
            if i >= 0:
                readers.setdefault(int(i), []).append(made)
    return readers


def fused_lstm_tensors(interp, model, keep: set[str]) -> list[tuple[str, str]]:
    """(layer, output tensor) of each fused LSTM kernel that belongs to a kept layer.

    The converter names a fused kernel's output ``tfl.unidirectional_sequence_lstm<N>``, not
    after its layer, so the denylist missed it and a kept LSTM stayed int8 (a Bidirectional
    summing its directions lost 40 points there). The kernels come in the model's layer order,
    one per LSTM and two per Bidirectional LSTM; each is matched by that order and checked by
    its width, and nothing is matched when the two do not line up.
    """
    owners = []
    for layer in model.layers:
        kind = type(layer).__name__
        inner = getattr(layer, "forward_layer", None) if kind == "Bidirectional" else layer
        if type(inner).__name__ == "LSTM":
            owners += [(layer.name, int(inner.units))] * (2 if kind == "Bidirectional" else 1)
    if not owners or not keep & {name for name, _ in owners}:
        return []
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    try:
        ops = [op for op in interp._get_ops_details()  # noqa: SLF001 - as stateful_ops reads it
               if op["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    except Exception:  # noqa: BLE001 - no op details: nothing matched, the float check decides
        return []
    if len(ops) != len(owners):
        return []
    found = []
    for op, (owner, units) in zip(ops, owners):
        out = tensors[op["outputs"][0]]
        if int(out["shape"][-1]) != units:
            return []
        if owner in keep:
            found.append((owner, out["name"]))
    return found


def explain_tflite(model, path: Path, x) -> Explanation:
    """Per-layer relative error (||keras - tflite|| / ||keras||) in model order.

    ``x``: one array, or one per model input (in the model's order).
    """
    from ai_edge_litert.interpreter import Interpreter

    from ..data.multi import as_list
    from ..runtime.litert import _in_order

    xs = as_list(x)
    outputs = {layer.name: _outer_output(model, layer) for layer in model.layers
               if type(layer).__name__ != "InputLayer"}
    order = [name for name, out in outputs.items() if out is not None]
    position = {name: i for i, name in enumerate(order)}
    probe = keras_of(model).Model(model.inputs, [outputs[n] for n in order])

    with quiet_stderr():
        interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        inputs = _in_order(interp, interp.get_input_details(), "inputs")
        fixed = any(list(d["shape_signature"]) and d["shape_signature"][0] > 0 for d in inputs)
        if not fixed:
            for detail, value in zip(inputs, xs):
                interp.resize_tensor_input(detail["index"], [len(value), *value.shape[1:]],
                                           strict=False)
        interp.allocate_tensors()
    xs = [value[:1] for value in xs] if fixed else xs
    keras_out = probe.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]
    samples = xs[0]
    for detail in _in_order(interp, interp.get_input_details(), "inputs"):
        value = xs[[d["index"] for d in inputs].index(detail["index"])]
        scale, zero = detail["quantization"]
        feed = value if not scale else np.clip(np.round(value / scale + zero),
                                               np.iinfo(detail["dtype"]).min,
                                               np.iinfo(detail["dtype"]).max)
        interp.set_tensor(detail["index"], feed.astype(detail["dtype"]))
    interp.invoke()

    # A layer with an unfused activation (softmax, sigmoid...) is compared after that op.
    tokens = {"softmax": "Softmax", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu",
              "relu6": "Relu6", "elu": "Elu"}
    needs = {}
    for name in order:
        act = getattr(getattr(model.get_layer(name), "activation", None), "__name__", "linear")
        if act in tokens:
            needs[name] = tokens[act]
    best: dict[str, tuple[int, dict]] = {}
    with_ops: set[str] = set()  # the layers that own an op (what --keep-float can name)
    readers = _reader_layers(interp, position)
    computed = _computed(interp)
    for t in interp.get_tensor_details():
        if t["name"].endswith(("/shared_scale", "/own_scale")):  # shared_scales' copies
            continue
        if computed is not None and t["index"] not in computed:
            # a weight or bias (no op writes it): a Dense's 10x64 kernel has the size of its
            # 10 outputs for 64 samples, and its raw int8 values showed as "rel. error 16.9"
            with_ops |= layers_of_tensor(t["name"], position)
            continue
        layers = layers_of_tensor(t["name"], position)
        with_ops |= layers
        last = max(layers, key=position.get) if layers else None
        if last is None:
            continue
        # A step inside the layer (a SeparableConv2D's depthwise half, read only by its own
        # pointwise half) is not its output, even when its size is: compared as one, it showed
        # a relative error of 1.0 and --explain told the user to keep healthy layers float.
        if readers.get(t["index"]) and all(last in r for r in readers[t["index"]]):
            continue
        if last in needs and needs[last] not in t["name"]:
            continue
        try:
            value = interp.get_tensor(t["index"])
        except ValueError:
            continue
        if value.size != keras_out[position[last]][: len(samples)].size:
            continue
        # Prefer the op's output (the tensor with the most fused layers in its name).
        rank = len(layers)
        if last not in best or rank >= best[last][0]:
            best[last] = (rank, {"index": t["index"], "detail": t, "value": value})
    # A fused LSTM kernel's output is named tfl.unidirectional_sequence_lstm<N>, not after its
    # layer: matched as --keep-float matches it (an LSTM that lost most went unnamed, and the
    # blame fell on the layers before it)
    details = {t["name"]: t for t in interp.get_tensor_details()}
    for owner, tensor in fused_lstm_tensors(interp, model, set(order)):
        if owner in best or type(model.get_layer(owner)).__name__ != "LSTM":
            continue  # a Bidirectional's merge is named after it
        try:
            value = interp.get_tensor(details[tensor]["index"])
        except (KeyError, ValueError):
            continue
        want = keras_out[position[owner]][: len(samples)]
        if value.ndim == 3 and want.ndim == 2:  # return_sequences=False: the last step
            value = value[:, -1, :]
        if value.size == want.size:
            with_ops.add(owner)
            best[owner] = (1, {"index": details[tensor]["index"], "detail": details[tensor],
                               "value": value})

    # An output layer's op writes a tensor named after the model's output, not the layer
    # (StatefulPartitionedCall:0): the file's outputs, in the model's order, stand for them.
    outputs = [layer.name for layer in _output_layers(model)]
    for owner, detail in zip(outputs, _in_order(interp, interp.get_output_details(), "outputs")):
        if owner in position and owner not in best and len(outputs) == len(model.outputs):
            value = interp.get_tensor(detail["index"])
            if value.size == keras_out[position[owner]][: len(samples)].size:
                best[owner] = (0, {"index": detail["index"], "detail": detail, "value": value})

    rows, previous = [], 0.0
    for name in [n for n in order if n in best]:
        entry = best[name][1]
        ref = keras_out[position[name]][: len(samples)].astype(np.float64)
        got = _dequantize(entry["value"], entry["detail"]).astype(np.float64).ravel()
        norm = np.linalg.norm(ref)
        rel = float(np.linalg.norm(ref.ravel() - got) / norm) if norm > 0 else 0.0
        snr = _joined_snr_db(model.get_layer(name), ref, entry["detail"])
        together = ()
        if snr is not None and snr < STARVED_DB:
            together = (name, *_readers(model, name, with_ops))
        rows.append(LayerError(name, type(model.get_layer(name)).__name__, round(rel, 5),
                               round(rel - previous, 5), snr, together))
        previous = rel
    worst = sorted(rows, key=lambda r: r.growth, reverse=True)[:3]
    return Explanation(int(len(samples)), tuple(rows), tuple(r.layer for r in worst if r.growth > 0))
