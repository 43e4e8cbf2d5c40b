"""Activation ranges for TFLite's int8 quantizer: min/max, or clipped to percentiles.

TFLite's converter records each activation tensor's min and max over the calibration samples
and maps that range onto 256 levels. One outlier in a tensor stretches its range, and every
other value of that tensor gets coarser steps. Percentile calibration (as ONNX Runtime's
``CalibrationMethod.Percentile`` defines it) keeps the range that holds all but the extreme
``(100 - percentile) / 2`` percent of the values on each side, and saturates the rest.

The road: the converter calibrates only (``_experimental_calibrate_only``: a float model whose
tensors carry the recorded min/max), the calibrated model runs on the same samples keeping every
tensor, a histogram per tensor gives the percentiles, the narrowed ranges are written into the
file, and TFLite's MLIR quantizer quantizes it as it would have.
"""

from __future__ import annotations

import numpy as np

BINS = 2048  # as ONNX Runtime's histogram calibrators
DEFAULT_PERCENTILE = 99.999  # ONNX Runtime's default


def percentile_ranges(calibrated: bytes, samples, percentile: float = DEFAULT_PERCENTILE
                      ) -> tuple[bytes, dict]:
    """``calibrated`` with every recorded activation range narrowed to its percentiles.

    ``samples`` is the representative-dataset generator the converter calibrated on (one
    array, a list or a dict of ``input_N`` arrays per sample). A range is only ever narrowed,
    never widened; a tensor whose recorded range is not what the calibrated model computes
    (the quantizer's own bookkeeping on some fused ops) is left as recorded. Returns the new
    flatbuffer and a summary: tensors narrowed, and the median fraction of range kept.
    """
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    from ..quiet import quiet_stderr
    from ..runtime.litert import _in_order

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    ranged = {}
    for i, t in enumerate(tensors):
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1 and q.max[0] > q.min[0]:
            ranged[i] = (float(q.min[0]), float(q.max[0]))
    counts = {i: np.zeros(BINS, np.int64) for i in ranged}
    seen = {i: [np.inf, -np.inf] for i in ranged}
    with quiet_stderr():
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    inputs = _in_order(interp, interp.get_input_details(), "inputs")
    shapes = None  # allocated at the first sample's shapes
    for sample in samples():
        arrays = ([sample[k] for k in sorted(sample, key=lambda n: int(n.split("_")[-1]))]
                  if isinstance(sample, dict) else list(sample))
        values = [np.asarray(value, detail["dtype"]) for detail, value in zip(inputs, arrays)]
        if [v.shape for v in values] != shapes:  # the first, or an open dimension's size
            for detail, value in zip(inputs, values):
                interp.resize_tensor_input(detail["index"], list(value.shape), strict=False)
            with quiet_stderr():
                interp.allocate_tensors()
            shapes = [v.shape for v in values]
        for detail, value in zip(inputs, values):
            interp.set_tensor(detail["index"], value)
        interp.invoke()
        for i, (lo, hi) in ranged.items():
            v = interp.get_tensor(i).ravel()
            if v.size == 0:
                continue
            seen[i][0] = min(seen[i][0], float(v.min()))
            seen[i][1] = max(seen[i][1], float(v.max()))
            idx = np.clip(((v - lo) * (BINS / (hi - lo))).astype(np.int64), 0, BINS - 1)
            counts[i] += np.bincount(idx, minlength=BINS)
    cut = (100.0 - percentile) / 200.0
    kept, narrowed = [], 0
    for i, (lo, hi) in ranged.items():
        tol = 1e-3 * max(abs(lo), abs(hi))
        if abs(seen[i][0] - lo) > tol or abs(seen[i][1] - hi) > tol or not counts[i].any():
            continue  # not the range this tensor holds: leave it as the converter recorded it
        cdf = np.cumsum(counts[i]) / counts[i].sum()
        width = (hi - lo) / BINS
        new_lo = lo + width * int(np.searchsorted(cdf, cut))
        new_hi = lo + width * (int(np.searchsorted(cdf, 1.0 - cut)) + 1)
        new_lo, new_hi = max(new_lo, lo), min(new_hi, hi)
        if new_hi <= new_lo or (new_lo == lo and new_hi == hi):
            continue
        tensors[i].quantization.min = [new_lo]
        tensors[i].quantization.max = [new_hi]
        kept.append((new_hi - new_lo) / (hi - lo))
        narrowed += 1
    summary = {"method": "percentile", "percentile": percentile, "tensors": len(ranged),
               "narrowed": narrowed,
               "median_range_kept": round(float(np.median(kept)), 4) if kept else 1.0}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), summary
