"""QAT on a small data set: tfmot's starting ranges against ranges from the data.

    python bench/qat_ranges.py --out bench/out/qat_ranges

tfmot starts every activation range of a QAT model at [-6, 6] (its input's at [0, 0]) and
moves it by an exponential average with decay 0.999 per step, so a run of a few hundred steps
ends near where it started. edgenn now starts each range at the min/max the float model shows
on 512 training samples (`edgenn.compress.techniques.quantize.init_ranges`). For each small
Keras 3 CNN below (trained on the data first, seed 0) this runs `edgenn compress -r int8-qat`
(the recipe as shipped) twice through the same pipeline: once as edgenn does now, once with the
range start switched off (tfmot's own start), and prints each run's accuracy of the Keras
input model and of the int8 .tflite on LiteRT (test split).

Models: "cnn" (Conv-BN-ReLU x2, GAP, softmax) and the same network with one layer QAT cannot
emulate in the middle (ELU, LeakyReLU, PReLU) or a bilinear upsampling, and one with all of them.
Data: digits (1,437 training images, 8x8; float models trained 30 epochs) and Fashion-MNIST
limited to 1,000 training images (float models trained 60 epochs).

    python bench/qat_ranges.py --model bench/out/effb0/b0.keras --limit 300 --resize 32x32 \
        --channels 3 --scale none --epochs-scale 0.05 --out bench/out/qat_ranges_b0

runs both arms on a trained model of your own (Fashion-MNIST data prepared as the flags say).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
MODELS = ("cnn", "elu", "leaky", "prelu", "bilinear", "all")


def build(kind: str, splits, epochs: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input(splits.x_train.shape[1:])
    x = layers.Conv2D(16, 3, padding="same")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    if kind in ("elu", "all"):
        x = layers.ELU()(layers.Conv2D(16, 3, padding="same")(x))
    if kind in ("leaky", "all"):
        x = layers.LeakyReLU()(layers.Conv2D(16, 3, padding="same")(x))
    if kind in ("prelu", "all"):
        x = layers.PReLU()(layers.Conv2D(16, 3, padding="same")(x))
    if kind in ("bilinear", "all"):
        x = layers.UpSampling2D(interpolation="bilinear")(x)
    x = layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(10, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


def both_arms(path: Path, spec, out: Path, epochs_scale: float = 1.0) -> dict:
    """int8-qat on the model at ``path`` with ranges from the data, then with tfmot's start."""
    import edgenn.compress.techniques.quantize as q
    from edgenn import recipe as rc
    from edgenn.compress.pipeline import run

    recipe_path = rc.resolve("int8-qat")
    row = {}
    for arm in ("data ranges", "tfmot start"):
        original = q.init_ranges
        if arm == "tfmot start":
            q.init_ranges = lambda *a, **k: 0
        try:
            report = run(str(path), rc.load(str(recipe_path)), recipe_path, spec,
                         out / f"{path.stem}-{arm.split()[0]}", overwrite=True,
                         epochs_scale=epochs_scale)
        except Exception as err:  # noqa: BLE001 - a constraint miss still wrote its report
            report = getattr(err, "report", None)
            row[arm] = f"{type(err).__name__}: {str(err)[:120]}"
        finally:
            q.init_ranges = original
        if report is not None:
            row["keras"] = round(report.metrics["baseline"]["accuracy"], 4)
            row[arm] = round(report.metrics["final"]["accuracy"], 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "qat_ranges"))
    ap.add_argument("--only", default=",".join(MODELS))
    ap.add_argument("--sets", default="digits,fashion-1000")
    ap.add_argument("--fashion-epochs", type=int, default=60,
                    help="epochs the float models train on the 1,000 Fashion-MNIST images")
    ap.add_argument("--model", help="a trained model of your own instead (Fashion-MNIST data)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--resize", help="HxW")
    ap.add_argument("--channels", type=int)
    ap.add_argument("--scale", default="auto")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from edgenn.data import DataSpec, load, match_model

    if args.model:
        resize = tuple(int(v) for v in args.resize.split("x")) if args.resize else None
        spec = DataSpec("fashion-mnist", limit=args.limit, resize=resize, channels=args.channels,
                        scale=args.scale)
        row = {"model": args.model, **both_arms(Path(args.model), spec, out, args.epochs_scale)}
        print(json.dumps(row), flush=True)
        return
    sets = {"digits": (DataSpec("digits"), 30),
            "fashion-1000": (DataSpec("fashion-mnist", limit=1000), args.fashion_epochs)}
    sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    rows = []
    for data_name, (spec, epochs) in sets.items():
        splits = match_model(load(spec), (None, None, None, 1), 10)
        for kind in args.only.split(","):
            path = out / f"{data_name}-{kind}.keras"
            build(kind, splits, epochs).save(path)
            row = {"data": data_name, "model": kind, **both_arms(path, spec, out)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| data | model | Keras input | int8 QAT .tflite, ranges from the data | tfmot's start |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['model']} | {r.get('keras')} | {r.get('data ranges')} | "
              f"{r.get('tfmot start')} |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
