"""What a step changed in a model's weights: sparsity and distinct values per layer."""

from __future__ import annotations

import numpy as np

# Weight variables that hold a layer's multiply weights: Dense/Conv "kernel", DepthwiseConv2D
# "depthwise_kernel", SeparableConv2D "depthwise_kernel" and "pointwise_kernel".
KERNEL_MARKERS = ("kernel",)


def kernels(layer) -> list:
    """The layer's kernel variables (every *kernel*, quantizer state excluded)."""
    return [w for w in layer.weights if any(m in w.name.split("/")[-1] for m in KERNEL_MARKERS)
            and "quantize" not in w.name]


def kernel_sparsity(model) -> dict[str, float]:
    """Fraction of zero weights in each layer's kernel(s)."""
    out = {}
    for layer in model.layers:
        found = kernels(layer)
        if found:
            values = np.concatenate([np.asarray(w).ravel() for w in found])
            out[layer.name] = round(float(np.mean(values == 0)), 4)
    return out


def unique_weights(model, names) -> dict[str, int]:
    """Number of distinct values in each named layer's kernel(s)."""
    out = {}
    for name in names:
        found = kernels(model.get_layer(name))
        if found:
            out[name] = int(np.unique(np.concatenate([np.asarray(w).ravel() for w in found])).size)
    return out
