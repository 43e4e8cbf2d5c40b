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


@pytest.fixture(scope="module")
def mlp_trainable(mlp, tmp_path_factory):
    out = tmp_path_factory.mktemp("trainable") / "mlp_train.tflite"
    r = run_cli("convert", str(mlp), "--to", "tflite", "--trainable", "--momentum", "0.9",
                "-o", str(out), "--json")
    assert r.code == 0, r.err
    return out, r.json()


def test_mlp_trains_in_litert_without_flex_or_tensorflow(mlp_trainable):
    out, doc = mlp_trainable
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


def test_proximal_term_pulls_towards_the_last_set_weights(mlp_trainable):
    """FedProx: train(mu) adds mu * (w - anchor) to the gradient, anchor = last set_weights.

    From the same state, a step with mu = M and one with mu = 0 see the same cross-entropy
    gradient, so their results differ by exactly lr * M * (w - anchor), momentum or not.
    """
    import numpy as np

    from edgenn.data import DataSpec, load
    from edgenn.runtime.trainable import TrainableRunner, training_memory_bytes

    path, _ = mlp_trainable
    s = load(DataSpec("digits"))
    x, y = s.x_train.reshape(len(s.x_train), -1), s.y_train
    first = TrainableRunner(path)
    assert first.has_proximal
    b, lr, big_mu = first.batch_size, 0.05, 3.0
    w0 = first.get_weights()

    def two_steps(runner, mu):  # a fresh runner: momentum buffers start at zero
        runner.set_weights(w0)  # anchor = w0
        runner.train_epoch(x[:b], y[:b], lr, mu=0.0)
        w1 = runner.get_weights()
        runner.train_epoch(x[b:2 * b], y[b:2 * b], lr, mu=mu)
        return w1, runner.get_weights()

    w1, plain = two_steps(first, 0.0)
    w1_again, prox = two_steps(TrainableRunner(path), big_mu)
    for k in w0:
        np.testing.assert_allclose(w1[k], w1_again[k], atol=1e-6)
        np.testing.assert_allclose(plain[k] - prox[k], lr * big_mu * (w1[k] - w0[k]),
                                   atol=2e-5, rtol=1e-3)
    assert any(np.abs(w1[k] - w0[k]).max() > 1e-4 for k in w0)  # the check is not vacuous
    # the training-memory bound covers at least the file, the weights and their momenta
    params = sum(v.nbytes for v in w0.values())
    assert training_memory_bytes(path) >= path.stat().st_size + 2 * params
