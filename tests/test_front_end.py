"""A spectrogram front end inside the model (keras.layers.MelSpectrogram, STFTSpectrogram).

Found by trying a keyword-spotting style model: int8 quantized the spectrogram and the file's
top-1 agreement was 0.0; ONNX export left TensorFlow's RFFT op in the graph and blamed the
opset; an Edge TPU file (batch fixed at 1) crashed the fidelity check (exit 1).
"""

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli


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
