"""Session 19's models, as a user would bring them: masks and bucketed columns.

- Keras' video classifier head: frame features plus a boolean mask input passed to the
  recurrent layer (``GRU(...)(frames, mask=mask)``), with a GRU and with an LSTM;
- padded sequences behind ``Masking``: a Keras 3 LSTM, GRU and SimpleRNN, a tf_keras
  Bidirectional GRU, SimpleRNN and LSTM;
- a structured-data classifier: a numeric column bucketed by ``Discretization``, then
  ``Embedding`` and ``CategoryEncoding``, beside five normalized columns.

Each is trained briefly on scikit-learn's digits (the video and structured ones) or on
synthetic padded sequences, then converted with the edgenn CLI: int8 TFLite and float/int8
ONNX, and the fidelity line is printed.

Usage: python bench/masks_and_buckets.py [WORK_DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

EDGENN = [sys.executable, "-m", "edgenn"]

KERAS3 = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
from sklearn.datasets import load_digits
out = sys.argv[1]
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)
d = load_digits(); X, Y = d.data.astype("float32") / 16.0, d.target
T, F = 20, 64
def clips(n):
    feats = np.zeros((n, T, F), "float32"); mask = np.zeros((n, T), bool); lab = np.zeros(n, "int64")
    for i in range(n):
        L = rng.integers(5, T + 1); idx = rng.integers(0, len(X), L)
        feats[i, :L] = X[idx]; mask[i, :L] = True
        lab[i] = np.bincount(Y[idx] % 5, minlength=5).argmax()
    return feats, mask, lab
f, m, y = clips(3000)
ft, mt, yt = clips(400)
np.savez(f"{out}/video.npz", x_frames=ft, x_mask=mt, y=yt)
for kind in ("GRU", "LSTM"):
    fi = keras.Input((T, F), name="frames"); mi = keras.Input((T,), dtype="bool", name="mask")
    x = getattr(keras.layers, kind)(16, return_sequences=True)(fi, mask=mi)
    x = keras.layers.GRU(8)(x)
    x = keras.layers.Dense(8, activation="relu")(keras.layers.Dropout(0.4)(x))
    model = keras.Model([fi, mi], keras.layers.Dense(5, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit([f, m], y, epochs=8, batch_size=64, verbose=0)
    print("video", kind, "test accuracy", model.evaluate([ft, mt], yt, verbose=0)[1])
    model.save(f"{out}/video_{kind}.keras")
# padded sequences behind Masking
Ts, Fs = 20, 8
xs = rng.normal(0, 1, (2000, Ts, Fs)).astype("float32"); L = rng.integers(4, Ts + 1, 2000)
for i in range(2000): xs[i, L[i]:] = 0.0
ys = (xs[:, :, 0].sum(1) > 0).astype("int64") + 2 * (xs[:, :, 1].sum(1) > 0)
np.savez(f"{out}/padded.npz", x=xs, y=ys)
for kind in ("LSTM", "GRU", "SimpleRNN"):
    inp = keras.Input((Ts, Fs))
    h = getattr(keras.layers, kind)(16)(keras.layers.Masking(0.0)(inp))
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xs, ys, epochs=5, verbose=0)
    print("masked", kind, "accuracy", model.evaluate(xs[:300], ys[:300], verbose=0)[1])
    model.save(f"{out}/masked_{kind}.keras")
# a structured-data classifier
X = d.data.astype("float32"); yb = (d.target >= 5).astype("int64")
age = X[:, 20:30].sum(1, keepdims=True); feats = X[:, [10, 27, 36, 43, 53]]
a_in = keras.Input((1,), name="age"); f_in = keras.Input((5,), name="feats")
disc = keras.layers.Discretization(num_bins=8); disc.adapt(age)
b = disc(a_in)
emb = keras.layers.Flatten()(keras.layers.Embedding(8, 4)(b))
oh = keras.layers.CategoryEncoding(num_tokens=8, output_mode="one_hot")(b)
norm = keras.layers.Normalization(); norm.adapt(feats)
x = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([emb, oh, norm(f_in)]))
model = keras.Model([a_in, f_in], keras.layers.Dense(1, activation="sigmoid")(x))
model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
model.fit([age[:1400], feats[:1400]], yb[:1400], epochs=30, batch_size=32, verbose=0)
print("structured test accuracy", model.evaluate([age[1400:], feats[1400:]], yb[1400:], verbose=0)[1])
model.save(f"{out}/structured.keras")
np.savez(f"{out}/structured.npz", x_age=age[1400:], x_feats=feats[1400:], y=yb[1400:])
'''

TF_KERAS = r'''
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tf_keras as k
out = sys.argv[1]
k.utils.set_random_seed(0)
d = np.load(f"{out}/padded.npz"); x, y = d["x"], d["y"]
for kind in ("GRU", "SimpleRNN", "LSTM"):
    inp = k.Input((20, 8)); h = k.layers.Masking(0.0)(inp)
    h = (k.layers.Bidirectional(k.layers.GRU(12))(h) if kind == "GRU"
         else getattr(k.layers, kind)(16)(h))
    m = k.Model(inp, k.layers.Dense(4, activation="softmax")(h))
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=4, verbose=0)
    print("tf_keras masked", kind, "accuracy", m.evaluate(x[:300], y[:300], verbose=0)[1])
    m.save(f"{out}/tfk_masked_{kind}.h5")
'''


def build(work: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    for code in (KERAS3, TF_KERAS):
        proc = subprocess.run([sys.executable, "-c", code, str(work)], capture_output=True,
                              text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        print("\n".join(line for line in proc.stdout.splitlines() if line.strip()))


def convert(work: Path, model: str, data: str, to: str, quantize: str) -> str:
    out = work / f"{Path(model).stem}-{quantize}.{to}"
    out.unlink(missing_ok=True)
    proc = subprocess.run([*EDGENN, "convert", str(work / model), "--to", to, "--quantize",
                           quantize, "--data", str(work / data), "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=1800)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:160]}"
    if "error" in doc:
        return f"exit {proc.returncode}: {doc['error']['message'][:160]}"
    f = doc["fidelity"]
    return (f"exit {proc.returncode}: {f['metric']} {f['value']:.4f} "
            f"({'passed' if f['passed'] else 'FAILED'}), {out.stat().st_size:,} bytes")


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="edgenn-masks-"))
    work.mkdir(parents=True, exist_ok=True)
    build(work)
    runs = [("video_GRU.keras", "video.npz", "tflite", "int8"),
            ("video_GRU.keras", "video.npz", "onnx", "int8"),
            ("video_LSTM.keras", "video.npz", "tflite", "int8"),
            ("video_LSTM.keras", "video.npz", "tflite", "dynamic"),
            *[(f"masked_{k}.keras", "padded.npz", "tflite", "int8") for k in ("LSTM", "GRU", "SimpleRNN")],
            *[(f"tfk_masked_{k}.h5", "padded.npz", "tflite", "int8") for k in ("GRU", "SimpleRNN", "LSTM")],
            ("structured.keras", "structured.npz", "tflite", "int8"),
            ("structured.keras", "structured.npz", "onnx", "none"),
            ("structured.keras", "structured.npz", "onnx", "int8")]
    print("| model | to | quantize | result |\n|---|---|---|---|")
    for model, data, to, q in runs:
        print(f"| {model} | {to} | {q} | {convert(work, model, data, to, q)} |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
