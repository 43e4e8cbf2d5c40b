"""Every model a user brings: keras.applications and edge architectures through every command.

    python bench/zoo.py [--only NAME,...] [--out bench/out/zoo] [--limit 400] [--epochs 3]
                        [--train-limit N]

Each model is built here with weights=None at a small input size, trained for a few epochs on
the data (so its answers are a classifier's, with margins, and int8 agreement means something),
its BatchNormalization statistics then set from the data, saved as a user would, and
run through the real CLI (in this process, one TensorFlow import; exit codes as a shell sees
them): inspect, convert to float TFLite, int8 TFLite (calibrated on the data), ONNX, the Edge
TPU pre-flight (check), and compress with int8-ptq and prune-80-int8 (epochs scaled to 0.05
on --limit samples). Data: Fashion-MNIST resized to the model's input (and to 3 channels).
The table goes to stdout (markdown) and OUT/zoo.json; every failure keeps its one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hostile"))

# (name, builder, input shape): the smallest member of every keras.applications family at the
# smallest input each accepts, then the edge architectures.
APPS = [
    ("MobileNet", (32, 32, 3)), ("MobileNetV2", (32, 32, 3)), ("MobileNetV3Small", (32, 32, 3)),
    ("MobileNetV3Large", (32, 32, 3)), ("EfficientNetB0", (32, 32, 3)),
    ("EfficientNetV2B0", (32, 32, 3)), ("ConvNeXtTiny", (32, 32, 3)), ("ResNet50", (32, 32, 3)),
    ("ResNet50V2", (32, 32, 3)), ("DenseNet121", (32, 32, 3)), ("VGG16", (32, 32, 3)),
    ("Xception", (71, 71, 3)), ("InceptionV3", (75, 75, 3)), ("InceptionResNetV2", (75, 75, 3)),
    ("NASNetMobile", (32, 32, 3)),
]
EDGE = ["DSCNN", "LSTM", "GRU", "TwoInTwoOut", "Autoencoder", "SavedModel"]
# Sequence models: a Fashion-MNIST image read as 28 steps of 28 features (rows), or, for the
# token model, a digits image read as 64 integer tokens (pixel values 0-16) through an Embedding.
SEQUENCE = ["BiLSTM", "SimpleRNN", "Conv1D", "TimeDistributed", "Transformer", "Tokens"]
# Applications that rescale their input inside the model (a Rescaling/Normalization layer that
# expects pixel values 0-255, as their documentation says): they get unscaled data, as a user
# following that documentation would give them. Fed [0, 1] instead, the signal is a tiny
# variation on a constant and int8 loses it (MobileNetV3Small: top-1 agreement 0.49).
RAW_PIXELS = {"MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetV2B0",
              "ConvNeXtTiny"}


def build(name: str, shape, x, y, epochs: int):
    """A Keras 3 model, briefly trained, with data-set BatchNorm statistics."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    if name in dict(APPS):
        model = getattr(keras.applications, name)(weights=None, input_shape=shape, classes=10)
    elif name == "DSCNN":
        inp = keras.Input(shape)
        h = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inp)
        h = layers.ReLU()(layers.BatchNormalization()(h))
        for _ in range(3):
            h = layers.ReLU()(layers.BatchNormalization()(
                layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)))
            h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, 1, use_bias=False)(h)))
        model = keras.Model(inp, layers.Dense(10, activation="softmax")(
            layers.GlobalAveragePooling2D()(h)), name="dscnn")
    elif name in ("LSTM", "GRU"):
        inp = keras.Input((shape[0], shape[1]))
        rnn = layers.LSTM(32) if name == "LSTM" else layers.GRU(32)
        model = keras.Model(inp, layers.Dense(10, activation="softmax")(rnn(inp)), name=name.lower())
    elif name in SEQUENCE:
        model = sequence_model(name, shape)
    elif name == "Autoencoder":
        inp = keras.Input((shape[0] * shape[1],))
        code = layers.Dense(64, activation="relu")(inp)
        model = keras.Model(inp, layers.Dense(shape[0] * shape[1], activation="sigmoid")(code),
                            name="autoencoder")
    else:
        raise KeyError(name)
    if epochs:
        target = x if name == "Autoencoder" else y
        loss = "mse" if name == "Autoencoder" else "sparse_categorical_crossentropy"
        model.compile(keras.optimizers.Adam(1e-3), loss)
        model.fit(x, target, epochs=epochs, batch_size=32, verbose=0)
    set_statistics(model, x)
    return model


def sequence_model(name: str, shape):
    import keras
    from keras import layers

    if name == "Tokens":  # 64 integer tokens in 0..16, as a text classifier takes word ids
        inp = keras.Input((64,), dtype="int32")
        h = layers.GlobalAveragePooling1D()(layers.Embedding(17, 16)(inp))
        return keras.Model(inp, layers.Dense(10, activation="softmax")(h), name="tokens")
    inp = keras.Input((shape[0], shape[1]))
    if name == "BiLSTM":
        h = layers.Bidirectional(layers.LSTM(16))(inp)
    elif name == "SimpleRNN":
        h = layers.SimpleRNN(32)(inp)
    elif name == "Conv1D":
        h = layers.Conv1D(32, 3, activation="relu")(inp)
        h = layers.GlobalMaxPooling1D()(layers.Conv1D(32, 3, activation="relu")(h))
    elif name == "TimeDistributed":
        h = layers.Flatten()(layers.TimeDistributed(layers.Dense(8, activation="relu"))(inp))
    elif name == "Transformer":  # one encoder block over the rows
        x = layers.Dense(32)(inp)
        x = layers.LayerNormalization()(x + layers.MultiHeadAttention(2, 16)(x, x))
        x = layers.LayerNormalization()(x + layers.Dense(32)(layers.Dense(64, activation="gelu")(x)))
        h = layers.GlobalAveragePooling1D()(x)
    else:
        raise KeyError(name)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(h), name=name.lower())


def set_statistics(model, x, batches: int = 20) -> None:
    """Moving statistics of every BatchNormalization = the mean of ``batches`` data batches."""
    import numpy as np

    bns = [layer for layer in model._flatten_layers() if type(layer).__name__ == "BatchNormalization"]
    if not bns:
        return
    rng = np.random.default_rng(0)
    for k in range(batches):
        for layer in bns:
            layer.momentum = k / (k + 1)
        model(x[rng.choice(len(x), size=min(32, len(x)), replace=False)], training=True)
    for layer in bns:
        layer.momentum = 0.99


def commands(path: Path, data: list[str], out: Path) -> list[tuple[str, list[str]]]:
    m = str(path)
    return [
        ("inspect", ["inspect", m, "--json"]),
        ("float tflite", ["convert", m, "--to", "tflite", *data, "-o", str(out / "f32.tflite"),
                          "--json"]),
        ("int8 tflite", ["convert", m, "--to", "tflite", "--quantize", "int8", *data,
                         "-o", str(out / "int8.tflite"), "--json"]),
        ("onnx", ["convert", m, "--to", "onnx", *data, "-o", str(out / "m.onnx"), "--json"]),
        ("edgetpu check", ["check", m, "--target", "edgetpu", *data]),
        ("int8-ptq", ["compress", m, "-r", "int8-ptq", *data, "-o", str(out / "ptq")]),
        ("prune-80-int8", ["compress", m, "-r", "prune-80-int8", *data, "--epochs-scale", "0.05",
                           "-o", str(out / "prune")]),
    ]


def data_flags(name: str, shape, limit: int) -> list[str]:
    if name in ("LSTM", "GRU") or name in SEQUENCE:
        return ["--data", "fashion-mnist", "--limit", str(limit)]  # 28 steps of 28 features
    if name == "Autoencoder":
        return ["--data", "fashion-mnist", "--limit", str(limit)]
    flags = ["--data", "fashion-mnist", "--limit", str(limit)]
    if name in RAW_PIXELS:
        flags += ["--scale", "none"]
    if shape[:2] != (28, 28):
        flags += ["--resize", f"{shape[0]}x{shape[1]}"]
    if len(shape) == 3 and shape[2] == 3:
        flags += ["--channels", "3"]
    return flags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "zoo"))
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3, help="training before the model is saved")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="samples the model is trained on before it is saved (default: --limit);"
                             " the commands still get --limit")
    parser.add_argument("--table", default=None, help="print the table of a finished run's zoo.json")
    parser.add_argument("--fresh-process", action="store_true",
                        help="run each command in its own process, as a user's shell does (big "
                             "models: one process running every command grew past 24 GB)")
    parser.add_argument("--model", default=None,
                        help="with one --only NAME: run the commands on this saved model "
                             "instead of building and training one")
    opts = parser.parse_args()
    if opts.table:
        rows = json.loads(Path(opts.table).read_text())
        for name, row in rows.items():  # runs before the accuracy column: read it back
            for work in Path(opts.table).parent.glob(f"{name}-*/ptq/report.json"):
                report = json.loads(work.read_text())
                row.setdefault("accuracy", report["metrics"]["baseline"]["accuracy"])
        print(table(rows))
        return
    import signal

    import runner  # the hostile corpus's in-process CLI runner
    from runner import run_case

    runner.CASE_SECONDS = 1800  # a command past 30 min is recorded as a hang (exit -1)
    signal.signal(signal.SIGALRM, runner._alarm)
    if opts.fresh_process:
        run_case = _in_child

    from edgenn.data import DataSpec, load

    names = [n for n, _ in APPS] + EDGE + SEQUENCE
    if opts.only:
        names = [n for n in names if n in opts.only.split(",")]
    out_root = Path(opts.out).resolve()  # commands run in their own working folders
    out_root.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in names:
        shape = dict(APPS).get(name, {"DSCNN": (28, 28, 1), "LSTM": (28, 28), "GRU": (28, 28),
                                      "Autoencoder": (28, 28), "TwoInTwoOut": (28, 28, 1),
                                      "SavedModel": (28, 28, 1)}.get(name, (28, 28)))
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=out_root))
        t0 = time.perf_counter()
        try:
            spec = DataSpec("fashion-mnist", limit=opts.train_limit or opts.limit,
                            scale="none" if name in RAW_PIXELS else "auto",
                            resize=shape[:2] if len(shape) == 3 and shape[:2] != (28, 28) else None,
                            channels=shape[2] if len(shape) == 3 else None)
            splits = load(spec)
            x, y = splits.x_train, splits.y_train
            if name == "Autoencoder":
                x = x.reshape(len(x), -1)
            if opts.model:
                path = Path(opts.model).resolve()
            elif name == "Tokens":
                path = tokens(work, opts.train_limit or opts.limit, opts.epochs)
            elif name in ("TwoInTwoOut", "SavedModel"):
                path = special(name, work, x.reshape(len(x), 28, 28, 1), y, opts.epochs)
            else:
                sample = (shape[0] * shape[1],) if name == "Autoencoder" else shape
                model = build(name, shape, x.reshape((len(x), *sample)), y, opts.epochs)
                path = work / f"{name}.keras"
                model.save(path)
        except Exception as err:  # noqa: BLE001 - a model the bench cannot build is a row too
            rows[name] = {"build": f"could not build: {type(err).__name__}: {err}"}
            print(name, rows[name], flush=True)
            continue
        row = {"params": None, "build_s": round(time.perf_counter() - t0, 1)}
        flags = data_flags(name, shape, opts.limit)
        if name == "TwoInTwoOut":  # one array per input, as prepared above
            flags = ["--data", str(work / "two.npz"), "--scale", "none"]
        if name == "Tokens":
            flags = ["--data", str(work / "tokens.npz"), "--scale", "none"]
        for label, args in commands(path, flags, work):
            result = run_case([*args, "--quiet"] if "--json" not in args else args, work)
            errors = [ln[7:] for ln in result["err"].splitlines() if ln.startswith("error: ")]
            row[label] = {"code": result["code"], "seconds": result["seconds"],
                          "error": errors[0] if errors else None}
            if label == "inspect" and result["code"] == 0:
                doc = json.loads(result["out"])
                row["params"] = doc.get("params")
                row["bridge"] = doc.get("bridge", {}).get("ok")
            if label == "int8-ptq" and (work / "ptq" / "report.json").is_file():
                report = json.loads((work / "ptq" / "report.json").read_text())
                row["accuracy"] = report.get("metrics", {}).get("baseline", {}).get("accuracy")
            if label in ("float tflite", "int8 tflite", "onnx") and result["code"] in (0, 3):
                fid = json.loads(result["out"]).get("fidelity", {})
                row[label]["fidelity"] = (f"{fid['metric']} {fid['value']:.3g}"
                                          if "metric" in fid else None)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
        (out_root / "zoo.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


def _in_child(args: list[str], cwd: Path) -> dict:
    """``runner.run_case``'s result, from `python -m edgenn ARGS` in a child process."""
    import subprocess

    started = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-m", "edgenn", *args], cwd=cwd, capture_output=True,
                             text=True, timeout=1800)
        code, out, err = run.returncode, run.stdout, run.stderr
    except subprocess.TimeoutExpired:
        code, out, err = -1, "", "hang"
    return {"code": code, "out": out, "err": err,
            "seconds": round(time.monotonic() - started, 1)}


def special(name: str, work: Path, x, y, epochs: int = 3):
    """A two-input, two-output model; a plain SavedModel (model.export)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = layers.MaxPooling2D()(layers.Conv2D(16, 3, activation="relu")(inp))
    h = layers.GlobalAveragePooling2D()(layers.Conv2D(32, 3, activation="relu")(h))
    model = keras.Model(inp, layers.Dense(10, activation="softmax")(h), name="small")
    if name == "SavedModel":
        model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=max(3, epochs), batch_size=32, verbose=0)
        model.export(str(work / "savedmodel"), verbose=False)
        return work / "savedmodel"
    a, b = keras.Input((28, 28, 1), name="a"), keras.Input((28, 28, 1), name="b")
    h = layers.Concatenate()([layers.Flatten()(a), layers.Flatten()(b)])
    two = keras.Model([a, b], [layers.Dense(10, activation="softmax", name="cls")(h),
                               layers.Dense(1, name="reg")(h)], name="two_in_two_out")
    flipped = x[:, ::-1]  # the second input: the same garments upside down
    two.compile(keras.optimizers.Adam(1e-3), ["sparse_categorical_crossentropy", "mse"])
    two.fit([x, flipped], [y, x.mean(axis=(1, 2, 3))], epochs=max(3, epochs), batch_size=32,
            verbose=0)
    two.save(work / "two.keras")
    import numpy as np

    # labels too, so compress can score each head (convert needs the inputs only)
    np.savez(work / "two.npz", x_a=x, x_b=flipped, y_cls=y, y_reg=x.mean(axis=(1, 2, 3)))
    return work / "two.keras"


def tokens(work: Path, limit: int, epochs: int) -> Path:
    """The token model, trained on digits read as 64 integer tokens; its data as an .npz."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.int32), digits.target.astype(np.int64)
    keras.utils.set_random_seed(0)
    model = sequence_model("Tokens", (64,))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x[:limit], y[:limit], epochs=max(10, epochs), batch_size=32, verbose=0)
    model.save(work / "tokens.keras")
    np.savez(work / "tokens.npz", x=x, y=y)
    return work / "tokens.keras"


def table(rows: dict) -> str:
    labels = ["inspect", "float tflite", "int8 tflite", "onnx", "edgetpu check", "int8-ptq",
              "prune-80-int8"]
    lines = ["| model | params | Keras acc. | bridge | " + " | ".join(labels) + " |",
             "|---|---|---|---|" + "---|" * len(labels)]
    reasons = []
    for name, row in rows.items():
        if "build" in row:
            lines.append(f"| {name} | - | - | - | " + " | ".join(["not built"] * len(labels)) + " |")
            reasons.append(f"- {name}: {row['build']}")
            continue
        cells = []
        for label in labels:
            r = row.get(label) or {}
            cell = "ok" if r.get("code") == 0 else f"exit {r.get('code')}"
            if r.get("fidelity"):
                cell += f" ({r['fidelity'].replace('top-1 agreement', 'top-1')})"
            cells.append(cell)
            if r.get("error"):
                reasons.append(f"- {name} / {label}: {r['error'][:300]}")
        params = f"{row['params']:,}" if row.get("params") else "-"
        acc = f"{row['accuracy']:.3f}" if row.get("accuracy") is not None else "-"
        lines.append(f"| {name} | {params} | {acc} | {row.get('bridge')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(reasons) + "\n"


if __name__ == "__main__":
    main()
