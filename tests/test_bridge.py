"""Keras 3 -> tf_keras bridge, on real Keras 3 files."""

import numpy as np
import pytest

from edgenn.errors import BridgeError
from edgenn.models.bridge import SUPPORTED_LAYERS, random_inputs, verify
from edgenn.models.load import load_keras

ISSUE_LAYERS = {"InputLayer", "Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                "Conv2DTranspose", "BatchNormalization", "LayerNormalization", "MaxPooling2D",
                "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Add",
                "Concatenate", "Multiply", "Activation", "ReLU", "Softmax", "Dropout", "Flatten",
                "Reshape", "ZeroPadding2D", "UpSampling2D", "Rescaling", "Embedding"}


def _outputs(model, inputs):
    out = model(inputs[0] if len(inputs) == 1 else inputs, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


@pytest.mark.parametrize("name", ["k3_residual.keras", "k3_residual.h5", "k3_seq.keras",
                                  "k3_mobilenetv3.keras", "k3_rnns.keras"])
def test_bridge_matches_keras3(models, manifest, name):
    loaded = load_keras(models / name)
    assert loaded.flavour == "keras3"
    assert type(loaded.original).__module__.startswith("keras")
    assert type(loaded.tf_keras_model).__module__.startswith("tf_keras")
    assert loaded.bridge.max_abs_diff <= 1e-5
    assert loaded.original.count_params() == manifest[name.split(".")[0]]["params"]
    assert loaded.tf_keras_model.count_params() == loaded.original.count_params()
    # Independent check on fresh inputs, not the ones the bridge used.
    inputs = random_inputs(loaded.original, seed=123, batch=7)
    for a, b in zip(_outputs(loaded.original, inputs), _outputs(loaded.tf_keras_model, inputs)):
        assert np.max(np.abs(a - b)) <= 1e-5


def test_bridge_covers_every_layer_the_issue_lists(models):
    assert ISSUE_LAYERS <= SUPPORTED_LAYERS
    loaded = load_keras(models / "k3_zoo.keras")
    classes = {type(layer).__name__ for layer in loaded.original.layers}
    assert ISSUE_LAYERS <= classes
    assert {type(layer).__name__ for layer in loaded.tf_keras_model.layers} == classes
    assert loaded.bridge.max_abs_diff <= 1e-5
    # Regularizers and constraints came across as objects, not dropped.
    conv = loaded.tf_keras_model.get_layer("conv")
    assert conv.kernel_regularizer is not None and conv.kernel_constraint is not None
    relu = loaded.tf_keras_model.get_layer("relu6")
    assert float(relu.max_value) == 6.0


def test_sequential_stays_sequential(models):
    loaded = load_keras(models / "k3_seq.keras")
    assert type(loaded.tf_keras_model).__name__ == "Sequential"


def test_unsupported_layer_fails_only_what_needs_the_bridge(models):
    loaded = load_keras(models / "k3_attention.keras")  # loads: Keras 3 first
    assert loaded.original.count_params() > 0
    with pytest.raises(BridgeError) as info:
        loaded.as_tf_keras("the prune step")
    text = str(info.value)
    assert "the prune step" in text and "'attn'" in text and "MultiHeadAttention" in text
    assert "tf_keras" in text and "supported:" in text and "distill, finetune" in text
    assert info.value.exit_code == 3


def test_divergence_names_first_layer(models):
    loaded = load_keras(models / "k3_residual.keras")
    copy = loaded.tf_keras_model
    weights = copy.get_layer("sep").get_weights()
    weights[-1] = weights[-1] + 0.5  # shift the separable conv's bias
    copy.get_layer("sep").set_weights(weights)
    with pytest.raises(BridgeError, match=r"first layer that diverges is 'sep' \(SeparableConv2D\)"):
        verify(loaded.original, copy)


def test_bridge_is_made_only_when_asked(models):
    loaded = load_keras(models / "k3_residual.keras")
    assert loaded.bridge is None  # loading does not bridge
    loaded.as_tf_keras()
    assert loaded.bridge is not None and loaded.bridge.relative_error <= loaded.bridge.tolerance
