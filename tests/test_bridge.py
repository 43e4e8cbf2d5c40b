"""Keras 3 -> tf_keras bridge, on real Keras 3 files."""

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
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
    assert "the prune step" in text and "'rms'" in text and "RMSNormalization" in text
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


def test_augmentation_and_more_layer_shapes_cross_the_bridge(tmp_path):
    """Augmentation inside the model (as Keras' tutorials build it) becomes the identity it is
    at inference, and said so; other layers users bring translate and agree."""
    import keras
    from keras import layers

    from edgenn.models.bridge import bridge

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = layers.RandomFlip("horizontal", name="flip")(inp)
    h = layers.RandomRotation(0.1, name="rotate")(h)
    h = layers.RandomContrast(0.2, name="contrast")(h)
    h = layers.RandomCrop(8, 8, name="crop")(h)
    h = layers.CenterCrop(6, 6)(layers.Resizing(10, 12)(h))
    h = layers.Conv2D(4, 3, name="conv")(layers.Resizing(8, 8, crop_to_aspect_ratio=True)(h))
    h = layers.PReLU(name="prelu")(layers.GaussianDropout(0.1)(h))
    h = layers.SeparableConv1D(4, 3, name="sep1d")(layers.Reshape((36, 4))(h))
    h = layers.UpSampling1D(2)(layers.ZeroPadding1D(1)(h))
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(layers.Flatten()(h)))
    result = bridge(model)
    assert result.max_abs_diff <= 1e-5
    assert any("flip (RandomFlip), rotate (RandomRotation), contrast (RandomContrast), crop "
               "(RandomCrop)) is the identity" in n for n in result.notes), result.notes
    names = {type(layer).__name__ for layer in result.model.layers}
    assert {"PReLU", "SeparableConv1D", "UpSampling1D", "ZeroPadding1D", "Resizing",
            "CenterCrop"} <= names


def test_attention_normalization_and_1d_layers_cross_the_bridge():
    """Layers tf_keras has under the same name: translated, and equal on fresh inputs."""
    import keras
    from keras import layers

    from edgenn.models.bridge import bridge

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 8))
    q = layers.EinsumDense("abc,cd->abd", output_shape=(None, 8), bias_axes="d", name="q")(inp)
    h = layers.Concatenate()([layers.Attention(name="dot_att")([q, inp]),
                              layers.AdditiveAttention(name="add_att")([q, inp])])
    h = layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name="dw1d")(h)
    h = layers.GroupNormalization(groups=4, name="gn")(layers.Identity()(h))
    a, b = layers.GlobalAveragePooling1D()(h), layers.GlobalMaxPooling1D()(h)
    h = layers.Concatenate()([layers.UnitNormalization(name="unit")(a), layers.Dot(axes=1)([a, b])])
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(h))
    result = bridge(model)
    assert result.relative_error <= 1e-5, result.to_dict()
    names = {type(layer).__name__ for layer in result.model.layers}
    assert {"EinsumDense", "Attention", "AdditiveAttention", "DepthwiseConv1D",
            "GroupNormalization", "UnitNormalization", "Dot", "Identity"} <= names
    x = random_inputs(model, seed=5, batch=3)[0]
    assert np.allclose(model(x), result.model(x), atol=1e-5)
    # tf_keras's GroupNormalization broadcasts to a shape built from the dynamic batch, which
    # failed int8 calibration (exit 3 after a prune): it converts with a fixed batch of 1
    from edgenn.convert.tflite import to_tflite
    from edgenn.recipe import Quantization

    calib = random_inputs(model, seed=6, batch=8)[0]
    assert len(to_tflite(result.model, Quantization.int8, x_calib=calib)) > 0


def test_options_keras3_renamed_cross_under_tf_keras_names():
    """LeakyReLU's negative_slope is tf_keras's alpha: any Keras 3 LeakyReLU (even at its
    default) was refused as "an option tf_keras does not support" by prune, cluster and QAT."""
    import keras
    from keras import layers

    from edgenn.models.bridge import bridge

    inp = keras.Input((6,))
    h = layers.LeakyReLU(negative_slope=0.1, name="leaky")(layers.Dense(8)(inp))
    h = layers.LeakyReLU(name="leaky_default")(layers.Dense(8)(h))
    model = keras.Model(inp, layers.Dense(2)(h))
    result = bridge(model)
    assert abs(result.model.get_layer("leaky").get_config()["alpha"] - 0.1) < 1e-6
    x = -np.abs(random_inputs(model, seed=1, batch=5)[0])  # the negative side is the slope's
    assert np.allclose(model(x), result.model(x), atol=1e-6)


def test_inception_resnet_scale_layer_crosses_and_its_saved_copy_reloads(tmp_path):
    """InceptionResNetV2's CustomScaleLayer has no tf_keras class (prune, cluster and QAT of
    the model exited 3): edgenn rebuilds it, registered, and a saved pruned copy loads back
    through edgenn's safety check."""
    import keras
    from keras import layers
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    from edgenn.models.bridge import bridge
    from edgenn.models.load import load_keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = CustomScaleLayer(0.17, name="scale")([a, layers.Conv2D(4, 1)(a)])
    model = keras.Model(inp, layers.Dense(3)(layers.GlobalAveragePooling2D()(h)))
    result = bridge(model)
    assert type(result.model.get_layer("scale")).__name__ == "CustomScaleLayer"
    x = random_inputs(model, seed=2, batch=4)[0]
    assert np.allclose(model(x), result.model(x), atol=1e-6)
    for suffix in (".keras", ".h5"):  # what compress writes after a prune, after QAT
        result.model.save(tmp_path / f"bridged{suffix}")
        again = load_keras(tmp_path / f"bridged{suffix}").original
        assert again.get_layer("scale").get_config()["scale"] == 0.17
        assert np.allclose(again(x), result.model(x), atol=1e-6)


def test_keras3_operations_cross_the_bridge_and_a_masked_lstm_is_not_calibrated(tmp_path):
    """keras.ops calls on symbolic tensors (a Masking layer's not_equal/any feeding the LSTM's
    mask, and ops users write) become TensorFlow op layers in tf_keras and agree. A masked LSTM
    is a loop even in tf_keras: int8 is refused in one line (the converter segfaulted)."""
    import keras
    from keras import layers, ops

    from edgenn.models.bridge import bridge

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 4))
    seq = layers.LSTM(5, return_sequences=True)(layers.Masking()(inp))
    h = ops.mean(ops.transpose(seq, (0, 2, 1)), axis=-1) + ops.max(seq, axis=1)
    h = ops.where(ops.greater(h, 0.0), ops.sqrt(ops.abs(h)), ops.square(h))
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(ops.reshape(h, (-1, 5))))
    x = random_inputs(model, seed=3, batch=4)[0]
    x[:, 4:] = 0.0  # padded steps: the mask matters
    result = bridge(model)
    assert result.relative_error <= 1e-5, result.to_dict()
    assert np.allclose(model(x), result.model(x), atol=1e-5)
    assert "TFOpLambda" in {type(layer).__name__ for layer in result.model.layers}

    model.save(tmp_path / "masked.keras")
    np.savez(tmp_path / "seq.npz", x=np.repeat(x, 10, 0), y=np.arange(40) % 3)
    r = run_cli("convert", str(tmp_path / "masked.keras"), "--to", "tflite", "--quantize", "int8", "--data",
                str(tmp_path / "seq.npz"), "--scale", "none", "-o", str(tmp_path / "m.tflite"))
    assert_clean_error(r, 2, "a masked LSTM always runs as a loop", "--quantize dynamic")
    assert not (tmp_path / "m.tflite").exists()


def test_any_keras3_operation_crosses_the_bridge_as_tensorflow_ops(tmp_path):
    """Operations the bridge had no entry for (relu6, silu, clip, concatenate, a slice, softmax)
    made prune, cluster and QAT exit 3 ("operation 'relu6' has no tf_keras translation"). Any
    Keras 3 operation now runs as itself on the tf_keras tensors, which records the TensorFlow
    functions it calls; the copy agrees and a saved copy reloads through the safety check."""
    import keras
    from keras import layers, ops

    from edgenn.models.bridge import bridge
    from edgenn.models.load import load_keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    h = layers.Conv2D(6, 3, padding="same")(inp)
    h = ops.relu6(h) * 0.5 + ops.silu(h)
    h = ops.concatenate([h, ops.clip(ops.square(h), 0.0, 2.0)], axis=-1)
    h = h[:, 1:7, ::2, :]
    h = ops.softmax(ops.mean(h, axis=(1, 2)), axis=-1)
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(h))
    result = bridge(model)
    functions = {layer.get_config().get("function") for layer in result.model.layers
                 if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda")}
    assert {"nn.relu6", "__operators__.getitem"} <= functions, functions
    x = random_inputs(model, seed=3, batch=4)[0]
    assert np.allclose(model(x), result.model(x), atol=1e-6)
    result.model.save(tmp_path / "bridged.keras")
    again = load_keras(tmp_path / "bridged.keras").original
    assert np.allclose(again(x), result.model(x), atol=1e-6)
