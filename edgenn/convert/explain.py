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


@dataclass(frozen=True)
class LayerError:
    """The int8 model's error at one Keras layer's output, and how much that layer added."""

    layer: str
    cls: str
    relative_error: float
    growth: float

    def to_dict(self) -> dict:
        return {"layer": self.layer, "class": self.cls, "relative_error": self.relative_error,
                "growth": self.growth}


@dataclass(frozen=True)
class Explanation:
    """Where an int8 model loses accuracy, layer by layer."""

    samples: int
    layers: tuple[LayerError, ...]
    worst: tuple[str, ...]
    skipped: str | None = None

    def to_dict(self) -> dict:
        if self.skipped:
            return {"skipped": self.skipped}
        return {"samples": self.samples, "layers": [r.to_dict() for r in self.layers],
                "worst": list(self.worst)}


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


def explain_tflite(model, path: Path, x: np.ndarray) -> Explanation:
    """Per-layer relative error (||keras - tflite|| / ||keras||) in model order."""
    from ai_edge_litert.interpreter import Interpreter

    order = [layer.name for layer in model.layers if type(layer).__name__ != "InputLayer"]
    position = {name: i for i, name in enumerate(order)}
    probe = keras_of(model).Model(model.inputs, [model.get_layer(n).output for n in order])
    keras_out = probe.predict(x, verbose=0)
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]

    with quiet_stderr():
        interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        detail = interp.get_input_details()[0]
        fixed = list(detail["shape_signature"]) and detail["shape_signature"][0] > 0
        if not fixed:
            interp.resize_tensor_input(detail["index"], [len(x), *x.shape[1:]], strict=False)
        interp.allocate_tensors()
    samples = x[:1] if fixed else x
    detail = interp.get_input_details()[0]
    scale, zero = detail["quantization"]
    feed = samples if not scale else np.clip(np.round(samples / scale + zero),
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
    for t in interp.get_tensor_details():
        layers = layers_of_tensor(t["name"], position)
        last = max(layers, key=position.get) if layers else None
        if last is None:
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

    rows, previous = [], 0.0
    for name in order:
        if name not in best:
            continue
        entry = best[name][1]
        ref = keras_out[position[name]][: len(samples)].astype(np.float64).ravel()
        got = _dequantize(entry["value"], entry["detail"]).astype(np.float64).ravel()
        norm = np.linalg.norm(ref)
        rel = float(np.linalg.norm(ref - got) / norm) if norm > 0 else 0.0
        rows.append(LayerError(name, type(model.get_layer(name)).__name__, round(rel, 5),
                               round(rel - previous, 5)))
        previous = rel
    worst = sorted(rows, key=lambda r: r.growth, reverse=True)[:3]
    return Explanation(int(len(samples)), tuple(rows), tuple(r.layer for r in worst if r.growth > 0))
