"""A spectrogram front end inside the model (keras.layers.MelSpectrogram, STFTSpectrogram).

Found by trying a keyword-spotting style model: int8 quantized the spectrogram and the file's
top-1 agreement was 0.0; ONNX export left TensorFlow's RFFT op in the graph and blamed the
opset; an Edge TPU file (batch fixed at 1) crashed the fidelity check (exit 1).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_clean_error, import_users_module, run_cli


@pytest.fixture(scope="module")
def mel(tmp_path_factory):
    import keras
    from keras import layers

    tmp = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    n, length = 240, 2048
    tone = rng.integers(0, 4, n)
    t = np.arange(length) / 8000
    x = (np.sin(2 * np.pi * (300 + 500 * tone)[:, None] * t)
         + 0.3 * rng.standard_normal((n, length))).astype("float32")
    np.savez(tmp / "audio.npz", x=x, y=tone)
    keras.utils.set_random_seed(0)
    inp = keras.Input((length,))
    h = layers.MelSpectrogram(fft_length=256, sequence_stride=128, sampling_rate=8000,
                              num_mel_bins=32)(inp)
    h = layers.Conv1D(16, 3, activation="relu")(layers.Permute((2, 1))(h))
    model = keras.Model(inp, layers.Dense(4, activation="softmax")(
        layers.GlobalAveragePooling1D()(h)))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, tone, epochs=15, batch_size=32, verbose=0)
    model.save(tmp / "kws.keras")
    return tmp


def test_int8_keeps_the_spectrogram_float(mel, tmp_path):
    data = ["--data", str(mel / "audio.npz"), "--scale", "none"]
    r = run_cli("convert", str(mel / "kws.keras"), "--to", "tflite", "--quantize", "int8", *data,
                "-o", str(tmp_path / "k.tflite"), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["spec"]["keep_float"] == ["mel_spectrogram"], doc["spec"]
    assert doc["fidelity"]["top1_agreement"] >= 0.97, doc["fidelity"]
    assert doc["ops"]["CONV_2D"] >= 1 or doc["ops"].get("FULLY_CONNECTED")  # the rest is int8
    # the Edge TPU runs int8 only: the front end is quantized, and the failure says why
    r = run_cli("convert", str(mel / "kws.keras"), "--to", "tflite", "--quantize", "int8",
                "--target", "edgetpu", *data, "-o", str(tmp_path / "e.tflite"))
    assert r.code in (0, 3), r.err  # not the fixed batch's crash (exit 1)
    if r.code == 3:
        assert "spectrogram front end (mel_spectrogram)" in r.err, r.err
    from edgenn.runtime.litert import TFLiteRunner

    x = np.load(mel / "audio.npz")["x"][:5]
    assert TFLiteRunner(str(tmp_path / "e.tflite")).predict(x)[0].shape == (5, 4)


def test_onnx_names_the_op_it_cannot_translate(mel, tmp_path):
    r = run_cli("convert", str(mel / "kws.keras"), "--to", "onnx", "--data",
                str(mel / "audio.npz"), "--scale", "none", "-o", str(tmp_path / "k.onnx"))
    assert_clean_error(r, 3, "TensorFlow op RFFT", "STFTSpectrogram", "--to tflite")
    assert not (tmp_path / "k.onnx").exists()


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A regression model on features at unequal scales, behind an adapted Normalization."""
    import keras
    from keras import layers

    tmp = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(800, 6)) * [1, 10, 100, 0.1, 5, 50]).astype("float32")
    y = (x @ np.array([1, 0.1, 0.01, 10, 0.2, 0.02]) + 0.1 * rng.normal(size=800)).astype("float32")
    np.savez(tmp / "tab.npz", x=x, y=y[:, None])
    keras.utils.set_random_seed(0)
    norm = layers.Normalization()
    norm.adapt(x)
    inp = keras.Input((6,))
    model = keras.Model(inp, layers.Dense(1)(layers.Dense(32, activation="relu")(norm(inp))))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    model.save(tmp / "tab.keras")
    # the same features brought to one scale first: nothing for int8 to lose at the input
    norm2 = layers.Normalization()
    norm2.adapt(x / [1, 10, 100, 0.1, 5, 50])
    inp = keras.Input((6,))
    keras.Model(inp, layers.Dense(1)(norm2(inp))).save(tmp / "even.keras")
    return tmp


def test_int8_keeps_an_input_normalization_of_unequal_features_float(tabular, tmp_path):
    """Found with a tabular regression model: one int8 scale for its input (features with
    standard deviations 0.1 to 100) left the narrowest 0.24 steps; int8 SNR 2.4 dB."""
    data = ["--data", str(tabular / "tab.npz")]
    for to, suffix in (("tflite", "tflite"), ("onnx", "onnx")):
        r = run_cli("convert", str(tabular / "tab.keras"), "--to", to, "--quantize", "int8", *data,
                    "-o", str(tmp_path / f"t.{suffix}"), "--json")
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["fidelity"]["task"] == "regression" and doc["fidelity"]["value"] >= 20, doc["fidelity"]
        if to == "tflite":
            assert doc["spec"]["keep_float"] == ["normalization"], doc["spec"]
            assert doc["ops"].get("FULLY_CONNECTED")
        else:  # its subtract and scale, nothing after them
            assert len(doc["onnx_quantization"]["float_nodes"]) == 2, doc["onnx_quantization"]
    # an int8 input is quantized before the layer: it cannot help there, and the failure says so
    r = run_cli("convert", str(tabular / "tab.keras"), "--to", "tflite", "--quantize", "int8",
                "--io", "int8", *data, "-o", str(tmp_path / "i.tflite"))
    assert_clean_error(r, 3, "input normalization (normalization)", "feature 3",
                       "normalize the features before the model", "--io float32")
    # features already at one scale: the normalization is quantized like any layer
    r = run_cli("convert", str(tabular / "even.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tabular / "tab.npz"), "-o", str(tmp_path / "e.tflite"), "--json",
                "--min-snr", "0")
    assert r.code == 0, r.err
    assert r.json()["spec"]["keep_float"] == [], r.json()["spec"]


def test_prune_cluster_and_qat_reach_a_model_with_a_spectrogram_front_end(mel, tmp_path):
    """The bridge had no tf_keras class for MelSpectrogram, so prune, cluster and QAT exited 3
    on every keyword-spotting model that computes its own spectrogram. A weightless Keras 3
    layer now crosses as itself (edgenn>Keras3Layer), and the saved copy reloads through the
    safety check; a crafted copy that hides a Lambda there is refused."""
    import json
    import zipfile

    out = tmp_path / "c"
    r = run_cli("compress", str(mel / "kws.keras"), "-r", "cluster-16-int8", "--data",
                str(mel / "audio.npz"), "--scale", "none", "--limit", "120", "--epochs-scale",
                "0.05", "-o", str(out), "--json")
    assert r.code in (0, 4), r.err  # 4: the accuracy constraint, after this little training
    doc = r.json()
    assert any("mel_spectrogram (MelSpectrogram) has no tf_keras class" in n
               for n in doc["notes"]), doc["notes"]
    saved = out / "kws.keras"
    again = run_cli("inspect", str(saved), "--json")
    assert again.code == 0, again.err
    # the same file with a Lambda inside the wrapper
    with zipfile.ZipFile(saved) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    config = json.loads(parts["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Keras3Layer" or layer.get("registered_name") == "edgenn>Keras3Layer":
            layer["config"]["keras3"] = json.dumps({
                "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                "config": {"name": "x", "function": {"class_name": "__lambda__", "config": {
                    "code": "", "defaults": None, "closure": None}}}})
    parts["config.json"] = json.dumps(config).encode()
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(crafted, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    bad = run_cli("inspect", str(crafted))
    assert_clean_error(bad, 2, "is a Lambda layer", "--allow-unsafe")


@pytest.fixture(scope="module")
def masked_features(tmp_path_factory):
    """Padded sequences of features at unequal scales, behind Masking and BatchNormalization.

    Found with sleepecg's trained sleep stager (HRV features from 0.01 to 1e6, Masking then
    BatchNormalization then a GRU): only a Normalization layer that read the input directly
    was kept float, so its ONNX int8 file lost the narrow features (agreement 0.74)."""
    import keras
    from keras import layers

    tmp = tmp_path_factory.mktemp("masked")
    rng = np.random.default_rng(0)
    n, t = 600, 12
    scale = np.array([1, 1e4, 0.05, 300, 2.0], "float32")
    z = rng.normal(size=(n, t, 5)).astype("float32")
    x = z * scale + 3 * scale
    lengths = rng.integers(4, t + 1, n)
    valid = np.arange(t)[None] < lengths[:, None]
    y = np.digitize(((z[:, :, 2] + 0.5 * z[:, :, 0]) * valid).sum(1) / lengths, [-0.25, 0.25])
    x[~valid] = -1  # padding, as the masking value
    np.savez(tmp / "seq.npz", x=x, y=y)
    keras.utils.set_random_seed(0)
    inp = keras.Input((t, 5))
    h = layers.BatchNormalization(name="norm")(layers.Masking(-1.0, name="mask")(inp))
    h = layers.Dense(16, activation="relu")(h)
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(h)))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    model.save(tmp / "seq.keras")
    inp = keras.Input((t, 5))  # the stager's shape: a GRU over the masked steps
    h = layers.GRU(4)(layers.BatchNormalization()(layers.Masking(-1.0)(inp)))
    keras.Model(inp, layers.Dense(3, activation="softmax")(h)).save(tmp / "gru.keras")
    return tmp


def test_int8_keeps_masking_and_batchnorm_of_unequal_features_float(masked_features, tmp_path):
    data = ["--data", str(masked_features / "seq.npz")]
    model = str(masked_features / "seq.keras")
    for to in ("tflite", "onnx"):
        r = run_cli("convert", model, "--to", to, "--quantize", "int8", *data,
                    "-o", str(tmp_path / f"s.{to}"), "--json")
        assert r.code == 0, r.err  # before: top-1 agreement 0.16, in both
        doc = r.json()
        assert doc["fidelity"]["top1_agreement"] >= 0.97, doc["fidelity"]
        if to == "tflite":
            assert doc["spec"]["keep_float"] == ["mask", "norm"], doc["spec"]
            assert doc["ops"].get("FULLY_CONNECTED")
        else:  # the mask's comparisons and multiply and the normalization; the Dense is int8
            kept = doc["onnx_quantization"]["float_nodes"]
            assert any("/mask" in n for n in kept) and any("/norm" in n for n in kept), kept
            assert not any("MatMul" in n for n in kept), kept
    # a failed int8 file that lost its input answers from a few values: no "near-tie" advice
    r = run_cli("convert", model, "--to", "tflite", "--quantize", "int8", "--io", "int8", *data,
                "-o", str(tmp_path / "i.tflite"))
    assert_clean_error(r, 3, "input normalization (norm)", "--io float32")
    assert "near-ties" not in r.err, r.err
    # the GRU behind the mask is unrolled over its 12 steps for int8 (refused as a loop before)
    r = run_cli("compress", str(masked_features / "gru.keras"), "-r", "int8-ptq", *data,
                "-o", str(tmp_path / "c"), "--json")
    assert r.code in (0, 4), r.err  # 4: int8-ptq's 0.5 pt constraint on an untrained GRU
    doc = json.loads((tmp_path / "c" / "report.json").read_text())
    notes = doc["notes"] + [n for a in doc["artifacts"] for n in a.get("notes", [])]
    assert any("unrolled over their time steps" in n for n in notes), notes


@pytest.fixture(scope="module")
def padded_one_hot(tmp_path_factory):
    """One-hot sequences padded with -4,200,000 behind a Masking layer, no normalization.

    Found with mhcnuggets (peptide binding, Masking(-4200000) then an LSTM): one int8 scale for
    the input held the padding, every 0 and 1 fell into the same step, and its ONNX int8 file
    answered 0.63 of labels as the model did (SNR 3 dB)."""
    import keras
    from keras import layers

    tmp = tmp_path_factory.mktemp("padded")
    rng = np.random.default_rng(0)
    n, t, k = 600, 12, 8
    ids = rng.integers(0, k, (n, t))
    lengths = rng.integers(5, t + 1, n)
    valid = np.arange(t)[None] < lengths[:, None]
    x = np.eye(k, dtype="float32")[ids]
    x[~valid] = -4.2e6
    y = ((((ids == 2) | (ids == 5)) & valid).sum(1) / lengths > 0.25).astype("int64")
    np.savez(tmp / "pep.npz", x=x, y=y)
    keras.utils.set_random_seed(0)
    inp = keras.Input((t, k))
    h = layers.Dense(16, activation="relu")(layers.Masking(-4.2e6, name="pad")(inp))
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling1D()(h)))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    model.save(tmp / "pep.keras")
    build = ("import numpy as np, tf_keras as k\n"  # tf_keras's Masking multiplies the input
             f"d = np.load({str(tmp / 'pep.npz')!r})\n"
             "k.utils.set_random_seed(0)\n"
             f"inp = k.Input(({t}, {k}))\n"
             "h = k.layers.Dense(16, activation='relu')(k.layers.Masking(-4.2e6, name='pad')(inp))\n"
             "h = k.layers.GlobalAveragePooling1D()(h)\n"
             "m = k.Model(inp, k.layers.Dense(1, activation='sigmoid')(h))\n"
             "m.compile(k.optimizers.Adam(1e-2), 'binary_crossentropy')\n"
             "m.fit(d['x'], d['y'], epochs=10, batch_size=32, verbose=0)\n"
             f"m.save({str(tmp / 'pep.h5')!r})\n")
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    return tmp


def test_int8_keeps_a_padding_mask_far_from_the_data_float(padded_one_hot, tmp_path):
    data = ["--data", str(padded_one_hot / "pep.npz")]
    for name, to in (("pep.keras", "onnx"), ("pep.h5", "tflite"), ("pep.keras", "tflite")):
        r = run_cli("convert", str(padded_one_hot / name), "--to", to, "--quantize", "int8",
                    *data, "-o", str(tmp_path / f"p.{to}"), "--json")
        # before: exit 3, the one-hot features lost, in the ONNX file (label agreement 0.44)
        # and in the tf_keras model's TFLite file (0.38; Keras 3's mask is a float select)
        assert r.code == 0, (name, to, r.err)
        doc = r.json()
        assert doc["fidelity"]["outputs"][0]["snr_db"] > 25, doc["fidelity"]
        if to == "tflite":
            assert doc["spec"]["keep_float"] == ["pad"], doc["spec"]
        else:  # the mask's comparisons and multiply stay float; the Dense after it is int8
            kept = doc["onnx_quantization"]["float_nodes"]
            assert any("/pad" in n for n in kept) and not any("MatMul" in n for n in kept), kept


def test_data_far_from_the_input_normalization_is_warned_of(tabular, tmp_path):
    """Data prepared otherwise than the training data (other units) reached the fidelity check
    without a word: the model's own input normalization holds the training data's statistics."""
    x = np.load(tabular / "tab.npz")["x"]
    scaled = x.copy()
    scaled[:, 3] *= 1000  # one feature in other units
    np.savez(tmp_path / "units.npz", x=scaled, y=np.load(tabular / "tab.npz")["y"])
    model = str(tabular / "tab.keras")
    r = run_cli("convert", model, "--to", "tflite", "-o", str(tmp_path / "u.tflite"), "--data",
                str(tmp_path / "units.npz"))
    assert "warning: feature 3 of the data" in r.err + r.out and "normalization" in r.err + r.out, (
        r.out, r.err)
    r = run_cli("convert", model, "--to", "tflite", "-o", str(tmp_path / "t.tflite"), "--data",
                str(tabular / "tab.npz"))
    assert r.code == 0 and "warning" not in r.err + r.out, (r.out, r.err)


def test_int8_keeps_a_one_hot_of_bucket_ids_float(tmp_path):
    """A structured-data model (a numeric column cut into buckets by Discretization, one-hot
    encoded by CategoryEncoding): the bucket ids reach the encoding as float, int8 rounded id 3
    to 2.99, which the encoding counted as 2, and label agreement fell to 0.94."""
    import keras
    from keras import layers

    rng = np.random.default_rng(0)
    age = rng.uniform(0, 160, (600, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((1,), name="age")
    ids = layers.Discretization(bin_boundaries=[20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0])(inp)
    hot = layers.CategoryEncoding(num_tokens=8, output_mode="one_hot", name="hot")(ids)
    out = layers.Dense(4, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(
        0, 3))(layers.Dense(16, activation="relu")(hot))
    keras.Model(inp, out).save(tmp_path / "buckets.keras")
    np.savez(tmp_path / "ages.npz", x=age)
    r = run_cli("convert", str(tmp_path / "buckets.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "ages.npz"), "--scale", "none", "-o", str(tmp_path / "b.tflite"),
                "--json")
    assert r.code == 0, r.err
    assert r.json()["spec"]["keep_float"] == ["hot"], r.json()["spec"]
    assert r.json()["fidelity"]["top1_agreement"] == 1.0, r.json()["fidelity"]
    # ONNX: tf2onnx has no translation for the Bucketize op ("not valid ONNX", exit 3 before)
    for opset in ("17", "11"):
        r = run_cli("convert", str(tmp_path / "buckets.keras"), "--to", "onnx", "--opset", opset,
                    "--data", str(tmp_path / "ages.npz"), "--scale", "none",
                    "-o", str(tmp_path / f"b{opset}.onnx"), "--json")
        assert r.code == 0, r.err
        assert r.json()["fidelity"]["top1_agreement"] == 1.0, r.json()["fidelity"]


_STFT_LAYER = '''
import keras
import tensorflow as tf


class Spectrogram(keras.layers.Layer):
    """kapre's way: tf.signal.stft, the complex values moved, then their magnitude."""

    def call(self, x):
        z = tf.signal.stft(x, frame_length=256, frame_step=128, fft_length=256)
        z = tf.expand_dims(tf.transpose(z, (0, 2, 1)), -1)  # (batch, freq, time, 1), complex
        return tf.abs(z)
'''


def test_a_spectrogram_that_moves_complex_values_converts_without_flex(mel, tmp_path):
    """kapre's STFT transposes the complex STFT before its Magnitude layer takes tf.abs: TFLite
    has no kernel that moves complex values, and every conversion asked for Flex ("Transpose").
    The magnitude is now taken first (the same values), in TFLite and before tf2onnx."""
    import keras

    Spectrogram = import_users_module(tmp_path, "spec", _STFT_LAYER).Spectrogram
    audio = np.load(mel / "audio.npz")
    keras.utils.set_random_seed(0)
    inp = keras.Input((audio["x"].shape[1],))
    h = keras.layers.BatchNormalization()(Spectrogram(name="spec")(inp))
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    h = keras.layers.Flatten()(keras.layers.MaxPooling2D((8, 4))(h))
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(audio["x"], audio["y"], epochs=5, batch_size=32, verbose=0)
    model.save(tmp_path / "stft.keras")
    keras.saving.get_custom_objects().clear()
    (tmp_path / "co.py").write_text("from spec import Spectrogram\n")
    common = ["--custom-objects", str(tmp_path / "co.py"), "--data", str(mel / "audio.npz"),
              "--scale", "none", "--json"]
    r = run_cli("convert", str(tmp_path / "stft.keras"), "--to", "tflite", *common,
                "-o", str(tmp_path / "f.tflite"))
    assert r.code == 0, r.err[-1500:]
    doc = r.json()
    assert doc["fidelity"]["top1_agreement"] == 1.0, doc["fidelity"]
    assert "COMPLEX_ABS" in doc["ops"] and not any("FLEX" in op for op in doc["ops"]), doc["ops"]
    assert any("magnitudes taken before" in n for n in doc["notes"]), doc["notes"]
    r = run_cli("convert", str(tmp_path / "stft.keras"), "--to", "tflite", "--quantize", "int8",
                *common, "-o", str(tmp_path / "q.tflite"))
    assert r.code == 0, r.err[-1500:]


def test_magnitudes_first_rewrites_only_moves_whose_readers_take_real_values():
    """Each reader (the magnitude, the real part) gets its own copy of the move, after it; a
    move read by anything else stays, and so does the graph."""
    import tensorflow as tf

    from edgenn.convert.complex_values import magnitudes_first, moves_complex_values

    def graph(read_imag_too, keep_complex):
        @tf.function(input_signature=[tf.TensorSpec((2, 64), tf.float32)])
        def f(x):
            z = tf.transpose(tf.signal.rfft(x[:, None, :]), (0, 2, 1))
            out = [tf.abs(z)]
            if read_imag_too:
                out.append(tf.math.real(z))
            if keep_complex:
                out.append(tf.math.conj(z))
            return out

        return f, f.get_concrete_function().graph.as_graph_def()

    for imag, keep, moved in ((False, False, 1), (True, False, 1), (False, True, 0)):
        f, gd = graph(imag, keep)
        assert moves_complex_values(gd)
        assert magnitudes_first(gd) == moved
        assert moves_complex_values(gd) == (moved == 0)
        if moved:  # the rewritten graph computes the same
            x = np.random.default_rng(0).standard_normal((2, 64)).astype("float32")
            names = [t.name for t in f.get_concrete_function().outputs]
            new = tf.compat.v1.wrap_function(
                lambda v, gd=gd, names=names: tf.graph_util.import_graph_def(
                    gd, input_map={"x:0": v}, return_elements=names, name=""),
                [tf.TensorSpec((2, 64), tf.float32)])
            for a, b in zip(new(tf.constant(x)), f(tf.constant(x))):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
