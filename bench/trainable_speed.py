"""Issue 6's speed bar, measured early: TFLite clients train >= 10x faster per local epoch than
Keras clients on the same model (the config's builtin:mlp on Fashion-MNIST).

Usage: python bench/trainable_speed.py [--samples 600] [--epochs 5]

A client of a 100-client federation holds ~600 images. Both sides train the same MLP
(Flatten -> Dense 128 relu -> Dense 10) with SGD, batch 32, on the same samples; the Keras side
gets one warm-up epoch first so tracing is not counted. Median seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    from edgenn._tf import tf_keras
    from edgenn.convert.trainable import export_trainable
    from edgenn.data import DataSpec, load
    from edgenn.runtime.trainable import TrainableRunner

    tfk = tf_keras()
    s = load(DataSpec("fashion-mnist", limit=args.samples))
    x, y = s.x_train[: args.samples], s.y_train[: args.samples]
    tfk.utils.set_random_seed(0)
    model = tfk.Sequential([tfk.Input((28, 28)), tfk.layers.Flatten(),
                            tfk.layers.Dense(128, activation="relu"),
                            tfk.layers.Dense(10, activation="softmax")])
    runner = TrainableRunner(export_trainable(model, 32, "all"))
    model.compile(tfk.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # warm-up: tracing excluded
    keras_times, tflite_times = [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=True)
        keras_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        runner.train_epoch(x, y, 0.05, seed=epoch)
        tflite_times.append(time.perf_counter() - t0)
    k, t = statistics.median(keras_times), statistics.median(tflite_times)
    acc = float((runner.predict(s.x_test).argmax(1) == s.y_test).mean())
    result = {"samples": len(x), "keras_s_per_epoch": round(k, 4),
              "tflite_s_per_epoch": round(t, 4), "speedup": round(k / t, 1),
              "tflite_test_accuracy_after": round(acc, 4), "epochs_timed": args.epochs}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
