"""EfficientNetB0's full int8 PTQ: how it depends on the model's training and the quantizer.

    python bench/effnet_int8.py train --images 15000 --epochs 6 --out bench/out/effb0
    python bench/effnet_int8.py measure bench/out/effb0/b0.keras
    python bench/effnet_int8.py train --variant lite --out bench/out/effb0-lite

--variant builds the same network with one or both of the two changes Google made for
EfficientNet-Lite: `relu6` (ReLU6 in place of swish), `no-se` (no squeeze-and-excite), `lite`
(both). The same training, data and measurement then separate what the architecture costs
int8 from what the training does.

train: keras.applications.EfficientNetB0 (weights=None, 32x32x3, 10 classes) on Fashion-MNIST
(resized, 0-255 pixels as its Rescaling layer expects), Adam 1e-3 with a cosine decay, batch 64,
BatchNorm statistics then set from the data (as bench/zoo.py does); the model is saved after
every epoch with its test accuracy printed.
measure: what edgenn's CLI gives (float TFLite, int8 with min/max and percentile calibration,
ai-edge-quantizer's static int8 of the float file, int16x8), each judged by edgenn's fidelity
check (top-1 agreement with the Keras model on 500 test images), and how sensitive the float
model itself is: its answers flipped by uniform pixel noise of +-2 and +-4 (of 0-255), the span
of its logits, and the share of test images whose top two logits are closer than one int8 step
of that span.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA = ["--data", "fashion-mnist", "--limit", "300", "--scale", "none", "--resize", "32x32",
        "--channels", "3"]


def _spec(limit):
    from edgenn.data import DataSpec

    return DataSpec("fashion-mnist", limit=limit, scale="none", resize=(32, 32), channels=3)


VARIANTS = {"b0": ("swish", True), "relu6": ("relu6", True), "no-se": ("swish", False),
            "lite": ("relu6", False)}


def _network(variant: str):
    """keras.applications' EfficientNetB0 (32x32x3, 10 classes), or one of its Lite changes."""
    import copy

    import keras
    from keras.src.applications import efficientnet

    activation, squeeze = VARIANTS[variant]
    if variant == "b0":
        return keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10)
    blocks = copy.deepcopy(efficientnet.DEFAULT_BLOCKS_ARGS)
    for block in blocks:
        block["se_ratio"] = block["se_ratio"] if squeeze else 0.0
    return efficientnet.EfficientNet(1.0, 1.0, 224, 0.2, activation=activation, blocks_args=blocks,
                                     name=f"efficientnetb0_{variant.replace('-', '_')}",
                                     weights=None, input_shape=(32, 32, 3), classes=10)


def train(images: int, epochs: int, out: Path, variant: str = "b0", noise: float = 0.0) -> None:
    import keras
    import numpy as np
    from zoo import set_statistics

    from edgenn.data import load

    splits = load(_spec(images))
    x, y = splits.x_train, splits.y_train
    keras.utils.set_random_seed(0)
    model = _network(variant)
    steps = epochs * int(np.ceil(len(x) / 64))
    # --noise: Gaussian pixel noise (0-255 scale) in training only; the saved model is the same
    # network without it
    # (Keras' GaussianNoise takes a std up to 1: it runs on pixels scaled to 0-1)
    fitted = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                               keras.layers.GaussianNoise(noise / 255), keras.layers.Rescaling(255),
                               model]) if noise else model
    fitted.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                  "sparse_categorical_crossentropy")
    out.mkdir(parents=True, exist_ok=True)

    class Epoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            set_statistics(model, x)
            acc = float((model.predict(splits.x_test[:2000], verbose=0).argmax(1)
                         == splits.y_test[:2000]).mean())
            print(f"epoch {epoch} {time.time() - self.t0:.0f} s loss {logs['loss']:.3f} "
                  f"test accuracy {acc:.3f}", flush=True)
            model.save(out / "b0.keras")

    fitted.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[Epoch()])


def _edgenn(*args) -> dict:
    run = subprocess.run([sys.executable, "-m", "edgenn", *args, "--json"], capture_output=True,
                         text=True)
    try:
        doc = json.loads(run.stdout)
    except json.JSONDecodeError:
        doc = {}
    fid = doc.get("fidelity") or {}
    return {"exit": run.returncode, "top1_agreement": fid.get("top1_agreement"),
            "error": (run.stderr.strip().splitlines() or [""])[-1][:200] if run.returncode else None}


def measure(model_path: Path) -> dict:
    import keras
    import numpy as np

    from edgenn.data import load

    work = model_path.parent
    rows = {}
    rows["float"] = _edgenn("convert", str(model_path), "--to", "tflite", *DATA,
                            "-o", str(work / "float.tflite"))
    for label, extra in (("int8 minmax", []), ("int8 percentile", ["--calibration", "percentile"]),
                         ("int16x8", None)):
        q = ["--quantize", "int16x8"] if extra is None else ["--quantize", "int8", *extra]
        rows[label] = _edgenn("convert", str(model_path), "--to", "tflite", *q, *DATA,
                              "-o", str(work / f"{label.replace(' ', '-')}.tflite"))
    rows["ai-edge-quantizer int8"] = _edgenn("quantize", str(work / "float.tflite"), "--mode",
                                             "int8", *DATA, "-o", str(work / "aeq.tflite"))
    model = keras.models.load_model(model_path)
    x = load(_spec(300)).x_test[:500]
    head = model.layers[-1]  # Dense(10, softmax): its logits, by the same weights without it
    features = keras.Model(model.inputs, head.input).predict(x, verbose=0)
    kernel, bias = head.get_weights()
    logits = features @ kernel + bias
    answers = logits.argmax(1)
    rng = np.random.default_rng(0)
    flips = {}
    for k in (2, 4):
        noisy = np.clip(x + rng.integers(-k, k + 1, x.shape), 0, 255).astype("float32")
        flips[f"+-{k}"] = float((model.predict(noisy, verbose=0).argmax(1) != answers).mean())
    top2 = np.sort(logits, axis=1)[:, -2:]
    step = float(logits.max() - logits.min()) / 255
    sensitivity = {"noise_flips": flips, "logits": [float(logits.min()), float(logits.max())],
                   "int8_logit_step": step,
                   "top2_closer_than_a_step": float((top2[:, 1] - top2[:, 0] < step).mean())}
    return {"model": str(model_path), "convert": rows, "float_model": sensitivity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--images", type=int, default=15000)
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--out", default="bench/out/effb0")
    t.add_argument("--variant", choices=sorted(VARIANTS), default="b0")
    t.add_argument("--noise", type=float, default=0.0,
                   help="std of Gaussian pixel noise added in training (0-255 scale)")
    m = sub.add_parser("measure")
    m.add_argument("model")
    opts = parser.parse_args()
    if opts.cmd == "train":
        train(opts.images, opts.epochs, Path(opts.out), opts.variant, opts.noise)
    else:
        print(json.dumps(measure(Path(opts.model)), indent=1))


if __name__ == "__main__":
    main()
