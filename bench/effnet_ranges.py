"""Two more ways to set EfficientNetB0's int8 file, tried for issue 16's 0.97 bar (not kept).

    python bench/effnet_int8.py train --images 15000 --epochs 6 --out DIR
    python bench/effnet_ranges.py DIR/b0.keras

Each is measured as edgenn's fidelity check measures: top-1 agreement with the Keras model on
500 Fashion-MNIST test images (32x32x3, 0-255), calibration on the 200 samples `convert
--limit 300` draws. The int8 file is made by edgenn's own road (``tflite_bytes``), then:
- minmax: as `edgenn convert --quantize int8` writes it;
- mse: every activation range that percentile calibration would narrow is set instead to the
  [lo, hi] (holding 0) that minimizes the expected squared error of int8 steps plus clipping,
  over each tensor's 2,048-bin histogram on the calibration samples (coordinate search);
- bias: empirical bias correction (Nagel et al. 2019; Finkelstein et al. 2019) of the minmax
  file: op by op in order, each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED output's mean
  per channel on the calibration samples, int8 file against float file (reference kernels, all
  tensors kept), is taken off its int32 bias.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _interpreter(flatbuffer: bytes, keep: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if keep
                else OpResolverType.AUTO)
    it = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=keep,
                     experimental_op_resolver_type=resolver)
    detail = it.get_input_details()[0]
    it.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
    it.allocate_tensors()
    return it, detail


def answers(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    it, detail = _interpreter(flatbuffer)
    out = it.get_output_details()[0]
    rows = []
    for sample in x:
        it.set_tensor(detail["index"], sample[None].astype(np.float32))
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0].astype(np.float32))
    return np.array(rows).argmax(1)


def mse_range(counts: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The [a, b] (a <= 0 <= b) of least int8 rounding plus clipping error over a histogram."""
    n = counts.astype(np.float64)
    bins = len(n)
    width = (hi - lo) / bins
    centre = lo + width * (np.arange(bins) + 0.5)
    s0, s1, s2 = (np.concatenate([[0.0], np.cumsum(n * centre ** k)]) for k in range(3))
    edges = lo + width * np.arange(bins + 1)

    def error(a_idx, b_idx):  # clipped below a, clipped above b, rounded between
        a, b = edges[a_idx], edges[b_idx]
        below = s2[a_idx] - 2 * a * s1[a_idx] + a * a * s0[a_idx]
        above = (s2[-1] - s2[b_idx]) - 2 * b * (s1[-1] - s1[b_idx]) + b * b * (s0[-1] - s0[b_idx])
        inside = s0[b_idx] - s0[a_idx]
        return below + above + inside * ((b - a) / 255) ** 2 / 12

    zero = int(np.clip(np.round(-lo / width), 0, bins))
    a_idx, b_idx = 0, bins
    for _ in range(4):
        cand = np.arange(max(zero, a_idx + 1), bins + 1)
        b_idx = int(cand[np.argmin(error(np.full_like(cand, a_idx), cand))])
        cand = np.arange(0, min(zero, b_idx - 1) + 1)
        a_idx = int(cand[np.argmin(error(cand, np.full_like(cand, b_idx)))])
    return float(edges[a_idx]), float(edges[b_idx])


def mse_ranges(calibrated: bytes, samples, percentile=None) -> tuple[bytes, dict]:
    """``ranges.percentile_ranges``'s road with the MSE choice in place of the percentiles."""
    from tensorflow.lite.tools import flatbuffer_utils

    from edgenn.convert.ranges import BINS

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    ranged = {i: (float(t.quantization.min[0]), float(t.quantization.max[0]))
              for i, t in enumerate(tensors) if t.quantization is not None
              and t.quantization.min is not None and len(t.quantization.min) == 1
              and t.quantization.max[0] > t.quantization.min[0]}
    counts = {i: np.zeros(BINS, np.int64) for i in ranged}
    seen = {i: [np.inf, -np.inf] for i in ranged}
    it, detail = _interpreter(calibrated, keep=True)
    for sample in samples():
        it.set_tensor(detail["index"], np.asarray(sample[0], np.float32))
        it.invoke()
        for i, (lo, hi) in ranged.items():
            v = it.get_tensor(i).ravel()
            seen[i] = [min(seen[i][0], float(v.min())), max(seen[i][1], float(v.max()))]
            idx = np.clip(((v - lo) * (BINS / (hi - lo))).astype(np.int64), 0, BINS - 1)
            counts[i] += np.bincount(idx, minlength=BINS)
    changed = 0
    for i, (lo, hi) in ranged.items():
        tol = 1e-3 * max(abs(lo), abs(hi))
        if abs(seen[i][0] - lo) > tol or abs(seen[i][1] - hi) > tol:
            continue  # not the range this tensor holds (as percentile_ranges leaves it)
        a, b = mse_range(counts[i], lo, hi)
        if lo <= a < b <= hi:
            tensors[i].quantization.min, tensors[i].quantization.max = [a], [b]
            changed += 1
    print(f"mse: {changed} of {len(ranged)} ranges set", flush=True)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), {}


def bias_corrected(quantized: bytes, float_file: bytes, x: np.ndarray) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized))
    graph = model.subgraphs[0]

    def name(i):
        return graph.tensors[i].name.decode()

    fl, fdetail = _interpreter(float_file, keep=True)
    by_name = {t["name"]: t["index"] for t in fl.get_tensor_details()}
    ops = [op for op in graph.operators
           if model.operatorCodes[op.opcodeIndex].builtinCode in (3, 4, 9)  # conv, dw, fc
           and len(op.inputs) > 2 and op.inputs[2] >= 0 and name(op.outputs[0]) in by_name]

    def channel_means(it, detail, indices, dequantize=lambda i, v: v):
        totals = dict.fromkeys(indices, 0)
        for sample in x:
            it.set_tensor(detail["index"], sample[None])
            it.invoke()
            for i in indices:
                v = dequantize(i, it.get_tensor(i).astype(np.float32))
                totals[i] = totals[i] + v.reshape(-1, v.shape[-1]).mean(0)
        return {i: t / len(x) for i, t in totals.items()}

    float_means = channel_means(fl, fdetail, [by_name[name(op.outputs[0])] for op in ops])
    for op in ops:  # in execution order: each correction sees the ones before it
        out = graph.tensors[op.outputs[0]].quantization
        it, detail = _interpreter(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), True)
        got = channel_means(it, detail, [op.outputs[0]],
                            lambda i, v, q=out: (v - q.zeroPoint[0]) * q.scale[0])[op.outputs[0]]
        want = float_means[by_name[name(op.outputs[0])]]
        scale = (graph.tensors[op.inputs[0]].quantization.scale[0]
                 * np.asarray(graph.tensors[op.inputs[1]].quantization.scale))
        buffer = model.buffers[graph.tensors[op.inputs[2]].buffer]
        bias = np.frombuffer(bytes(buffer.data), np.int32) - np.round((got - want) / scale)
        buffer.data = np.frombuffer(bias.astype(np.int32).tobytes(), np.uint8)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def main(path: str) -> None:
    from edgenn.convert import ranges
    from edgenn.convert.export import ExportSpec, tflite_bytes
    from edgenn.data import DataSpec, load
    from edgenn.models.load import load_model

    model = load_model(path).original
    splits = load(DataSpec("fashion-mnist", limit=300, scale="none", resize=(32, 32), channels=3))
    x_calib, x_test = splits.x_calib, splits.x_test[:500]
    want = model.predict(x_test, verbose=0).argmax(1)
    minmax = tflite_bytes(model, ExportSpec(quantization="int8"), x_calib)
    rows = {"minmax": minmax}
    percentile = ranges.percentile_ranges
    ranges.percentile_ranges = mse_ranges  # the percentile road, with the MSE choice
    try:
        rows["mse"] = tflite_bytes(model, ExportSpec(quantization="int8",
                                                     calibration="percentile"), x_calib)
    finally:
        ranges.percentile_ranges = percentile
    rows["bias"] = bias_corrected(minmax, tflite_bytes(model, ExportSpec(), x_calib), x_calib)
    result = {k: float((answers(v, x_test) == want).mean()) for k, v in rows.items()}
    print(json.dumps({"model": path, "top1_agreement": result}))


if __name__ == "__main__":
    main(sys.argv[1])
