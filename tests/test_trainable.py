"""`convert --trainable`: a .tflite that trains itself in stock LiteRT, with builtin ops only."""

import json
import subprocess
import sys

import pytest

from conftest import BLOCK_TF, assert_clean_error, run_cli

TRAIN_ON_DEVICE = BLOCK_TF + """
import json, sys, time
import numpy as np
from edgenn.data import DataSpec, load
from edgenn.runtime.trainable import TrainableRunner

s = load(DataSpec("digits"))
x_train, x_test = s.x_train.reshape(len(s.x_train), -1), s.x_test.reshape(len(s.x_test), -1)
if len(sys.argv) > 2:
    x_train, x_test = s.x_train[..., None], s.x_test[..., None]
runner = TrainableRunner(sys.argv[1])
before = float((runner.predict(x_test).argmax(1) == s.y_test).mean())
t0 = time.perf_counter()
for epoch in range(20):
    loss = runner.train_epoch(x_train, s.y_train, 0.05, seed=epoch)
seconds = time.perf_counter() - t0
after = float((runner.predict(x_test).argmax(1) == s.y_test).mean())
weights = runner.get_weights()
fresh = TrainableRunner(sys.argv[1])
fresh.set_weights(weights)
same = bool(np.allclose(fresh.predict(x_test), runner.predict(x_test), atol=1e-6))
print(json.dumps({"before": before, "after": after, "loss": loss, "seconds": seconds,
                  "same": same, "weights": sorted(weights)}))
"""


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """An untrained tf_keras MLP for 8x8 digits (Flatten -> Dense 64 relu -> Dense 10)."""
    out = tmp_path_factory.mktemp("mlp") / "mlp.keras"
    code = ("import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
            "import tf_keras as k\n"
            "k.utils.set_random_seed(0)\n"
            "m = k.Sequential([k.Input((8, 8)), k.layers.Flatten(), k.layers.Dense(64, activation='relu'),"
            " k.layers.Dense(10, activation='softmax')])\n"
            f"m.save({str(out)!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    return out


def _train(path, *extra):
    proc = subprocess.run([sys.executable, "-c", TRAIN_ON_DEVICE, str(path), *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mlp_trains_in_litert_without_flex_or_tensorflow(mlp, tmp_path):
    out = tmp_path / "mlp_train.tflite"
    r = run_cli("convert", str(mlp), "--to", "tflite", "--trainable", "--momentum", "0.9",
                "-o", str(out), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert set(doc["signatures"]) == {"train", "infer", "get_weights", "set_weights"}
    assert doc["flex_ops"] == [] and doc["fidelity"]["top1_agreement"] == 1.0
    result = _train(out)  # in a process where importing TensorFlow fails
    assert result["before"] < 0.5 and result["after"] >= 0.9, result
    assert result["same"] and result["weights"] == ["b0", "b1", "w0", "w1"]


def test_cnn_head_only(digits_model, tmp_path):
    out = tmp_path / "head.tflite"
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--trainable", "--train-layers",
                "head", "--data", "digits", "-o", str(out), "--json")
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["top1_agreement"] >= 0.99
    result = _train(out, "image")
    assert result["after"] >= result["before"] - 0.02 and result["after"] >= 0.9, result


def test_trainable_refusals(digits_model, tmp_path):
    conv = run_cli("convert", str(digits_model), "--to", "tflite", "--trainable",
                   "-o", str(tmp_path / "x.tflite"))
    assert_clean_error(conv, 2, "needs a Dense-only network", "--train-layers head")
    onnx = run_cli("convert", str(digits_model), "--to", "onnx", "--trainable",
                   "-o", str(tmp_path / "x.onnx"))
    assert_clean_error(onnx, 2, "--trainable exports a float32 TFLite")
    assert list(tmp_path.iterdir()) == []
