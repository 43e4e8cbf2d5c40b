"""Models built with Keras layer packages from PyPI, run through edgenn as a user runs them.

    pip install --no-deps --target PKGS keras-tcn==3.5.7 kapre==0.4.1 keras-hub==0.32.0 \\
        regex kagglehub kagglesdk tokenizers
    python bench/layer_packages.py --packages PKGS --out DIR [--only tcn,kapre,bert,mha]

Each model is trained here on a small real or synthetic task, saved as a user saves it, then
put through `inspect` and `convert` (float, int8, dynamic TFLite; int8 ONNX) and `quantize`
(ai-edge-quantizer int8 of the float file), with a --custom-objects file that imports the
package (the user's own file). The table gives each command's exit code and top-1 agreement.
- tcn: keras-tcn's TCN (dilated causal Conv1D residual blocks, a custom layer) on the digits
  rows as 8 steps of 8 features, Keras 3 `.keras`.
- kapre: kapre's STFT + Magnitude + MagnitudeToDecibel (tf.signal.stft, complex values
  transposed before their magnitude) and a small CNN, on synthetic tones, tf_keras `.h5`.
- bert: keras-hub's BertBackbone (2 layers, hidden 64) with a padding mask and a Dense head,
  on synthetic token sequences (is token 7 in the sequence), Keras 3 `.keras`.
- mha: Keras's own MultiHeadAttention behind Embedding(mask_zero=True), the same kind of task.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BUILD = {
    "tcn": ("tcn.keras", "digits_seq.npz", "from tcn import TCN\n", """
        import numpy as np, keras
        from sklearn.datasets import load_digits
        from tcn import TCN
        d = load_digits()
        x, y = (d.images / 16.0).astype("float32"), d.target
        keras.utils.set_random_seed(0)
        inp = keras.Input((8, 8))
        h = TCN(nb_filters=32, kernel_size=3, dilations=(1, 2, 4), use_batch_norm=True,
                return_sequences=False)(inp)
        m = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x[:1400], y[:1400], epochs=15, batch_size=32, verbose=0)
        print("accuracy", m.evaluate(x[1400:], y[1400:], verbose=0)[1])
        m.save("tcn.keras")
        np.savez("digits_seq.npz", x=x, y=y)
        """),
    "kapre": ("kapre.h5", "tones.npz", "from kapre import STFT, Magnitude, MagnitudeToDecibel\n",
              """
        import os
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import numpy as np, tensorflow as tf
        from kapre.composed import get_stft_magnitude_layer
        keras = tf.keras
        rng = np.random.default_rng(0)
        sr, n = 8000, 4000
        t = np.arange(n) / sr
        y = rng.integers(0, 4, 600)
        f = np.array([300, 700, 1500, 2500])[y] * rng.uniform(0.9, 1.1, 600)
        x = (np.sin(2 * np.pi * f[:, None] * t) * rng.uniform(0.3, 1, (600, 1))
             + 0.3 * rng.standard_normal((600, n))).astype("float32")[..., None]
        tf.keras.utils.set_random_seed(0)
        inp = keras.Input((n, 1))
        h = get_stft_magnitude_layer(input_shape=(n, 1), n_fft=256, hop_length=128,
                                     return_decibel=True, input_data_format="channels_last",
                                     output_data_format="channels_last")(inp)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Conv2D(8, 3, activation="relu")(h)
        h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Conv2D(16, 3, activation="relu")(h)
        h = keras.layers.Flatten()(keras.layers.MaxPooling2D((4, 1))(h))
        m = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h))
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x[:500], y[:500], epochs=15, batch_size=32, verbose=0)
        print("accuracy", m.evaluate(x[500:], y[500:], verbose=0)[1])
        m.save("kapre.h5")
        np.savez("tones.npz", x=x, y=y)
        """),
    "bert": ("bert.keras", "bert.npz", "import keras_hub\n", """
        import numpy as np, keras, keras_hub
        rng = np.random.default_rng(0)
        keras.utils.set_random_seed(0)
        n, L = 1200, 32
        ids = rng.integers(10, 500, (n, L)); lens = rng.integers(8, L, n)
        mask = np.arange(L)[None] < lens[:, None]
        y = rng.integers(0, 2, n)
        for i in np.flatnonzero(y):
            ids[i, rng.integers(0, lens[i])] = 7
        ids = np.where(mask, ids, 0).astype("int32")
        bb = keras_hub.models.BertBackbone(vocabulary_size=512, num_layers=2, num_heads=2,
                                           hidden_dim=64, intermediate_dim=128,
                                           max_sequence_length=L)
        tok = keras.Input((L,), dtype="int32", name="token_ids")
        seg = keras.Input((L,), dtype="int32", name="segment_ids")
        pm = keras.Input((L,), dtype="int32", name="padding_mask")
        out = bb({"token_ids": tok, "segment_ids": seg, "padding_mask": pm})["pooled_output"]
        m = keras.Model([tok, seg, pm], keras.layers.Dense(2, activation="softmax")(out))
        m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        seg_, pm_ = np.zeros_like(ids), mask.astype("int32")
        m.fit([ids[:1000], seg_[:1000], pm_[:1000]], y[:1000], epochs=6, batch_size=32, verbose=0)
        print("accuracy", m.evaluate([ids[1000:], seg_[1000:], pm_[1000:]], y[1000:],
                                     verbose=0)[1])
        m.save("bert.keras")
        np.savez("bert.npz", x_token_ids=ids, x_segment_ids=seg_, x_padding_mask=pm_, y=y)
        """),
    "mha": ("mha.keras", "mha.npz", None, """
        import numpy as np, keras
        rng = np.random.default_rng(0)
        n, L = 600, 16
        ids = rng.integers(3, 50, (n, L)); lens = rng.integers(4, L, n)
        y = rng.integers(0, 2, n)
        for i in np.flatnonzero(y):
            ids[i, rng.integers(0, lens[i])] = 1
        ids = np.where(np.arange(L)[None] < lens[:, None], ids, 0).astype("int32")
        keras.utils.set_random_seed(0)
        inp = keras.Input((L,), dtype="int32")
        h = keras.layers.Embedding(50, 16, mask_zero=True)(inp)
        h = keras.layers.GlobalAveragePooling1D()(keras.layers.MultiHeadAttention(2, 8)(h, h))
        m = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
        m.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        m.fit(ids[:500], y[:500], epochs=10, verbose=0)
        print("accuracy", m.evaluate(ids[500:], y[500:], verbose=0)[1])
        m.save("mha.keras")
        np.savez("mha.npz", x=ids, y=y)
        """),
}

COMMANDS = [
    ("inspect", ["inspect", "{model}"]),
    ("float tflite", ["convert", "{model}", "--to", "tflite", "-o", "f.tflite"]),
    ("int8 tflite", ["convert", "{model}", "--to", "tflite", "--quantize", "int8", "-o",
                     "q.tflite"]),
    ("dynamic tflite", ["convert", "{model}", "--to", "tflite", "--quantize", "dynamic", "-o",
                        "d.tflite"]),
    ("int8 onnx", ["convert", "{model}", "--to", "onnx", "--quantize", "int8", "-o", "q.onnx"]),
    ("quantize int8 (AEQ)", ["quantize", "f.tflite", "--mode", "int8", "-o", "aeq.tflite"]),
]


def run(name: str, packages: Path, out: Path) -> dict:
    model, data, objects, script = BUILD[name]
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(packages)}
    built = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=work, env=env,
                           capture_output=True, text=True)
    accuracy = next((line.split()[1] for line in built.stdout.splitlines()
                     if line.startswith("accuracy")), None)
    if built.returncode:
        return {"model": name, "built": built.stderr.strip().splitlines()[-1:]}
    extra = []
    if objects:
        (work / "objects.py").write_text(objects)
        extra = ["--custom-objects", "objects.py"]
    row = {"model": name, "keras_accuracy": accuracy}
    for label, args in COMMANDS:
        args = [a.format(model=model) for a in args]
        if args[0] != "inspect":
            args += ["--data", data]
        if args[0] != "quantize":
            args += extra
        done = subprocess.run([sys.executable, "-m", "edgenn", *args, "--json"], cwd=work,
                              env=env, capture_output=True, text=True)
        try:
            fidelity = (json.loads(done.stdout).get("fidelity") or {}).get("top1_agreement")
        except json.JSONDecodeError:
            fidelity = None
        row[label] = (done.returncode, fidelity)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", required=True, help="the --target folder of the pip line")
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default=",".join(BUILD))
    opts = parser.parse_args()
    rows = [run(name, Path(opts.packages).resolve(), Path(opts.out).resolve())
            for name in opts.only.split(",")]
    labels = [label for label, _ in COMMANDS]
    print("| model | Keras accuracy | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 2) + "|")
    for row in rows:
        cells = []
        for label in labels:
            code, agreement = row.get(label, ("-", None))
            cells.append(f"{code}" + (f" ({agreement:.3f})" if agreement is not None else ""))
        print(f"| {row['model']} | {row.get('keras_accuracy')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
