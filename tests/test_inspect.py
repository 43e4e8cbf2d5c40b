"""`edgenn inspect` on every format; TFLite and ONNX with TensorFlow imports blocked."""

import re

import pytest

from conftest import assert_clean_error, import_users_module, run_cli


def test_keras3_residual_param_count_matches_keras(models, manifest):
    r = run_cli("inspect", str(models / "k3_residual.keras"), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["flavour"] == "keras3"
    assert doc["params"] == manifest["k3_residual"]["params"]
    assert doc["bridge"]["ok"] is True and doc["bridge"]["relative_error"] <= 1e-4
    by_name = {layer["name"]: layer for layer in doc["layers"]}
    # Hand-computed MACs for one sample of 16x16x3:
    assert by_name["stem"]["macs"] == 16 * 16 * 8 * 3 * 3 * 3          # Conv2D 3x3, 3->8
    assert by_name["sep"]["macs"] == 16 * 16 * (3 * 3 * 8 + 8 * 8)     # depthwise + pointwise
    assert by_name["dw"]["macs"] == 16 * 16 * 8 * 3 * 3                # DepthwiseConv2D
    assert by_name["head"]["macs"] == 8 * 5                            # Dense 8->5
    assert by_name["bn"]["params"] == 4 * 8
    assert doc["non_trainable_params"] == 2 * 8  # moving mean and variance
    assert doc["macs"] == sum(layer["macs"] for layer in doc["layers"])
    assert doc["weight_bytes"] == {"float32": 4 * doc["params"]}
    assert doc["inputs"][0]["shape"] == [None, 16, 16, 3]


def test_keras3_human_output_is_a_table(models):
    r = run_cli("inspect", str(models / "k3_residual.keras"))
    assert r.code == 0
    assert "SeparableConv2D" in r.out and "bridge: ok" in r.out
    assert r.err.strip() == ""  # TensorFlow's start-up noise stays hidden


@pytest.mark.parametrize("name,label", [
    ("tfk_cnn.keras", "tf_keras keras"),
    ("tfk_cnn.h5", "tf_keras h5"),
    ("tfk_savedmodel", "SavedModel (tf_keras)"),
])
def test_tf_keras_formats(models, manifest, name, label):
    r = run_cli("inspect", str(models / name), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["label"].startswith(label)
    assert doc["params"] == manifest["tfk_cnn"]["params"]
    assert "bridge" not in doc
    assert {layer["name"]: layer["macs"] for layer in doc["layers"]}["conv"] == 6 * 6 * 4 * 9


def test_plain_savedmodel_lists_signatures(models):
    r = run_cli("inspect", str(models / "k3_export_savedmodel"), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert "serving_default" in {s["key"] for s in doc["signatures"]}
    assert doc["params"] == 10 * 16 + 16 + 16 * 3 + 3
    # the text names each input's dtype and shape: what a user prepares the data by
    text = run_cli("inspect", str(models / "k3_export_savedmodel"))
    assert re.search(r"inputs \S+ float32 \[\?, 10\] -> outputs \S+ float32 \[\?, 3\]",
                     " ".join(text.out.split())), text.out


def test_tflite_float_and_int8_without_tensorflow(models, manifest):
    r = run_cli("inspect", str(models / "tfk_cnn.tflite"), "--json", block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["ops"]["CONV_2D"] == 1 and doc["ops"]["FULLY_CONNECTED"] == 1
    assert doc["inputs"][0]["shape"] == [1, 8, 8, 1] and doc["inputs"][0]["dtype"] == "float32"
    # Every Keras weight is a float32 constant; the flatten's shape is one more (int32) constant.
    assert doc["weight_bytes"]["float32"] == 4 * manifest["tfk_cnn"]["params"]
    assert doc["params"] == manifest["tfk_cnn"]["params"] + 2
    assert doc["flex_ops"] == [] and doc["signatures"][0]["key"] == "serving_default"

    q = run_cli("inspect", str(models / "tfk_cnn_int8.tflite"), "--json", block_tf=True)
    assert q.code == 0, q.err
    qd = q.json()
    assert qd["inputs"][0]["dtype"] == "int8" and "quantization" in qd["inputs"][0]
    assert qd["quantization"]["per_channel"] >= 1  # conv and dense weights are per-channel
    assert "float32" not in qd["tensor_dtypes"]
    assert qd["bytes"] < doc["bytes"]


def test_tflite_flex_ops_listed(models):
    r = run_cli("inspect", str(models / "flex.tflite"), "--json", block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["flex_ops"] == ["FlexCumprod"]
    human = run_cli("inspect", str(models / "flex.tflite"), block_tf=True)
    assert "Flex (Select TF) ops: FlexCumprod" in human.out


def test_onnx_without_tensorflow(models):
    r = run_cli("inspect", str(models / "tiny.onnx"), "--json", block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["opsets"] == {"ai.onnx": 17}
    assert doc["ops"] == {"MatMul": 1, "Add": 1, "Relu": 1}
    assert doc["params"] == 15 and doc["initializer_bytes"] == {"float32": 60}
    assert doc["inputs"] == [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]
    assert doc["metadata"] == {"edgenn.test": "1"}


def test_keras_inspect_with_tf_blocked_says_what_to_install(models):
    r = run_cli("inspect", str(models / "tfk_cnn.keras"), block_tf=True)
    assert r.code == 2
    assert "TensorFlow is not installed" in r.err and "edgenn[tf]" in r.err


def test_a_savedmodel_without_signatures_is_described_as_such(tmp_path):
    """tf.saved_model.save without signatures= (a tf.Module with two tf.functions, so none is
    picked as serving_default): inspect said it "converts to every target", and convert then
    refused it."""
    import subprocess
    import sys

    code = ("import tensorflow as tf\n"
            "class M(tf.Module):\n"
            "    def __init__(self):\n"
            "        self.w = tf.Variable(tf.ones((4, 2)))\n"
            "    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])\n"
            "    def predict(self, x):\n"
            "        return x @ self.w\n"
            "    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])\n"
            "    def logits(self, x):\n"
            "        return x @ self.w - 1\n"
            f"tf.saved_model.save(M(), {str(tmp_path / 'sm')!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    r = run_cli("inspect", str(tmp_path / "sm"), "--json")
    assert r.code == 0, r.err
    assert "no serving signature" in r.json()["note"], r.json()
    r = run_cli("convert", str(tmp_path / "sm"), "--to", "tflite", "-o", str(tmp_path / "s.tflite"))
    assert_clean_error(r, 2, "no serving signature", "signatures=")


def test_a_layer_called_twice_counts_its_macs_twice(tmp_path):
    """A siamese model calls its encoder (a nested model) and a shared Dense once per branch,
    and a nested model calls a Dense twice: each call costs its MACs (counted once before:
    192 of 512)."""
    import keras

    e_in = keras.Input((8,))
    encoder = keras.Model(e_in, keras.layers.Dense(16, name="d")(e_in), name="enc")
    x = keras.Input((8,))
    inner = keras.layers.Dense(8, name="twice")
    twice = keras.Model(x, inner(inner(x)), name="tw")
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    shared = keras.layers.Dense(4, name="sh")
    out = keras.layers.Add()([shared(encoder(a)), shared(encoder(twice(b)))])
    keras.Model([a, b], out).save(tmp_path / "siamese.keras")
    r = run_cli("inspect", str(tmp_path / "siamese.keras"), "--no-bridge", "--json")
    assert r.code == 0, r.err
    macs = {layer["name"]: layer["macs"] for layer in r.json()["layers"]}
    assert macs["enc"] == 2 * 8 * 16 and macs["sh"] == 2 * 16 * 4 and macs["tw"] == 2 * 8 * 8
    assert r.json()["macs"] == 512


_BLOCKS = """
import keras


@keras.saving.register_keras_serializable("blocks")
class Residual(keras.layers.Layer):
    # keras-tcn's way: its convolutions built in build(), a `layers` list of its own that
    # leaves the 1x1 matching convolution out
    def __init__(self, filters=6, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, shape):
        self.layers = [keras.layers.Conv1D(self.filters, 3, padding="causal", name="c0")]
        self.layers[0].build(shape)
        self.match = keras.layers.Conv1D(self.filters, 1, name="match")
        self.match.build(shape)

    def call(self, x):
        return self.layers[0](x) + self.match(x)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable("blocks")
class Stack(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first, self.second = Residual(6, name="r0"), Residual(6, name="r1")

    def build(self, shape):
        self.first.build(shape)
        self.second.build(tuple(shape[:-1]) + (6,))

    def call(self, x):
        return self.second(self.first(x))
"""


def test_a_custom_layer_of_keras_layers_counts_their_macs(tmp_path):
    """keras-tcn's TCN (residual blocks of dilated Conv1Ds, inside a custom layer) counted
    "MACs 0": a custom layer now counts the Keras layers it holds, at the shapes they were
    built with, and all of them (a block's own `layers` list missed its 1x1 convolution)."""
    import keras

    Stack = import_users_module(tmp_path, "blocks", _BLOCKS).Stack
    inp = keras.Input((10, 4))
    keras.Model(inp, keras.layers.Dense(3)(Stack(name="stack")(inp))).save(tmp_path / "m.keras")
    keras.saving.get_custom_objects().clear()
    (tmp_path / "co.py").write_text("from blocks import Stack, Residual\n")
    r = run_cli("inspect", str(tmp_path / "m.keras"), "--custom-objects", str(tmp_path / "co.py"),
                "--no-bridge", "--json")
    assert r.code == 0, r.err[-800:]
    macs = {layer["name"]: layer["macs"] for layer in r.json()["layers"]}
    # 10 steps x 6 filters: r0 3x4 + 1x4, r1 3x6 + 1x6
    assert macs["stack"] == 10 * 6 * (3 * 4 + 4) + 10 * 6 * (3 * 6 + 6)


def test_a_model_applied_to_every_frame_counts_its_macs_per_frame(tmp_path):
    """vvadlrs3's voice-activity models run a MobileNet on each of 36 video frames
    (TimeDistributed of a model): inspect counted 0 MACs for it, 3.75 billion in truth."""
    import keras

    frame = keras.Input((6, 6, 1))
    cnn = keras.Model(frame, keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(frame)), name="cnn")
    clip = keras.Input((5, 6, 6, 1))
    h = keras.layers.TimeDistributed(cnn, name="frames")(clip)
    keras.Model(clip, keras.layers.Dense(2)(keras.layers.Flatten()(h))).save(tmp_path / "v.keras")
    r = run_cli("inspect", str(tmp_path / "v.keras"), "--no-bridge", "--json")
    assert r.code == 0, r.err
    macs = {layer["name"]: layer["macs"] for layer in r.json()["layers"]}
    assert macs["frames"] == 5 * (4 * 4 * 4 * 9), macs
