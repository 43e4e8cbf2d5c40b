"""Issue 4's bars: conversion fidelity, and int8 ONNX speed on MobileNetV2 224 at 1 thread.

Usage: python bench/convert_bench.py [--out bench/out/convert] [--runs 100]

1. Fidelity: a Keras 3 residual CNN and a MobileNet-style CNN (depthwise-separable blocks),
   trained briefly on Fashion-MNIST, converted by edgenn to float ONNX (bar: top-1 agreement
   >= 99.9%, max |difference| <= 1e-4), int8 TFLite and int8 ONNX (bar: >= 97%), measured on the
   10,000 test images.
2. Speed: Keras 3 MobileNetV2 224 (architecture only, random weights: latency does not depend on
   the values), edgenn's default int8 ONNX for --target cpu against float ONNX, ONNX Runtime at
   1 thread, batch 1, same run (bar: >= 1.8x). ORT's library default (S8S8) is timed too, and
   LiteRT float/int8 for reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# Both models train for only a few epochs, so batch norm uses momentum 0.9: with Keras's 0.99
# the moving statistics lag the weights and inference collapses to one class.


def residual_cnn(keras):
    layers = keras.layers
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    for filters in (32, 64):
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization(momentum=0.9)(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization(momentum=0.9)(y)
        if x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.Add()([x, y]))
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="residual_cnn")


def mobilenet_style(keras):
    layers = keras.layers
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU(6.0)(x)
    for filters, stride in ((32, 1), (64, 2), (64, 1), (128, 2)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="mobilenet_style")


def fidelity(out: Path, epochs: int) -> dict:
    from edgenn._tf import keras3
    from edgenn.convert.run import convert
    from edgenn.data import DataSpec, load, match_model

    keras = keras3()
    spec = DataSpec("fashion-mnist", limit=20000)
    splits = match_model(load(spec), (None, 28, 28, 1), 10)
    results = {}
    for build in (residual_cnn, mobilenet_style):
        keras.utils.set_random_seed(0)
        model = build(keras)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=128, verbose=0)
        path = out / f"{model.name}.keras"
        model.save(path)
        row = {"keras_test_accuracy": float(model.evaluate(splits.x_test, splits.y_test, verbose=0)[1])}
        for to, quant, suffix in (("onnx", "none", "float.onnx"), ("tflite", "int8", "int8.tflite"),
                                  ("onnx", "int8", "int8.onnx")):
            report = convert(str(path), str(out / f"{model.name}_{suffix}"), to=to, target="cpu",
                             quantize=quant, data_spec=spec, samples=10000, threshold=0.0)
            fid = report["fidelity"]
            row[f"{to}_{quant}"] = {"top1_agreement": fid["top1_agreement"],
                                    "max_abs_diff": fid["outputs"][0]["max_abs_diff"],
                                    "samples": fid["samples"], "bytes": report["bytes"]}
        results[model.name] = row
        print(model.name, json.dumps(row), flush=True)
    return results


def _time(run, runs: int) -> dict:
    for _ in range(10):
        run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(statistics.median(times), 3), "mean_ms": round(statistics.fmean(times), 3)}


def speed(out: Path, runs: int) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgenn._tf import keras3
    from edgenn.convert.onnx import _Reader, quantize, scheme_for, to_onnx
    from edgenn.convert.tflite import to_tflite
    from edgenn.models.load import load_keras
    from edgenn.recipe import Quantization
    from edgenn.runtime.litert import TFLiteRunner

    keras = keras3()
    keras.utils.set_random_seed(0)
    path = out / "mobilenet_v2_224.keras"
    keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None).save(path)
    model = load_keras(path).tf_keras_model
    rng = np.random.default_rng(0)
    calib = rng.random((32, 224, 224, 3), dtype=np.float32)
    x = calib[:1]

    import onnx

    float_proto = to_onnx(model)
    onnx.save(float_proto, out / "mnv2_float.onnx")
    int8_proto, info = quantize(float_proto, "int8", "cpu", calib, "minmax", samples=32)
    onnx.save(int8_proto, out / "mnv2_int8_edgenn.onnx")
    # The library default for comparison: static QDQ with S8S8, per-tensor.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(out / "mnv2_float.onnx"), str(out / "mnv2_pre.onnx"))
    quantize_static(str(out / "mnv2_pre.onnx"), str(out / "mnv2_int8_s8s8.onnx"),
                    _Reader(float_proto.graph.input[0].name, calib), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)

    def ort_session(name):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(out / name), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        return lambda: session.run(None, feed)

    results = {"scheme": info}
    for label, name in (("onnx_float", "mnv2_float.onnx"), ("onnx_int8_edgenn", "mnv2_int8_edgenn.onnx"),
                        ("onnx_int8_s8s8_default", "mnv2_int8_s8s8.onnx")):
        results[label] = _time(ort_session(name), runs)
    for label, quant in (("litert_float", Quantization.float32), ("litert_int8", Quantization.int8)):
        blob = to_tflite(model, quant, x_calib=calib, calibration_samples=32, batch_size=1)
        runner = TFLiteRunner(blob, threads=1)
        runner._resize(1)
        interp, detail = runner.interpreter, runner.inputs[0]
        feed = runner._quantize(x, detail)
        interp.set_tensor(detail["index"], feed)
        results[label] = _time(interp.invoke, runs)
    base = results["onnx_float"]["p50_ms"]
    results["speedup_onnx_int8_edgenn"] = round(base / results["onnx_int8_edgenn"]["p50_ms"], 3)
    results["speedup_onnx_int8_s8s8_default"] = round(base / results["onnx_int8_s8s8_default"]["p50_ms"], 3)
    litert = results["litert_float"]["p50_ms"] / results["litert_int8"]["p50_ms"]
    results["speedup_litert_int8"] = round(litert, 3)
    results["scheme_for_cpu"] = scheme_for("cpu").__dict__
    print("speed", json.dumps(results), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "convert"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=["fidelity", "speed"], default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.only in (None, "speed"):
        results["speed"] = speed(out, args.runs)
    if args.only in (None, "fidelity"):
        results["fidelity"] = fidelity(out, args.epochs)
    (out / f"results{'_' + args.only if args.only else ''}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
