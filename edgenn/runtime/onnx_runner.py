"""Run an .onnx model with ONNX Runtime. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, RuntimeFailure
from ..limits import runs_that_fit
from .layout import batch_axes, from_model, to_model
from .onnx_info import element_type, peak_activations, runtime_hint, runtime_message


class ONNXRunner:
    """Feed numpy inputs to an ONNX model through an execution provider."""

    def __init__(self, model: str | Path | bytes, threads: int | None = None,
                 providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("running .onnx models needs onnxruntime",
                                         "pip install 'edgenn[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise RuntimeFailure(f"ONNX Runtime here has no {', '.join(missing)} (available: "
                                 f"{', '.join(available)})",
                                 "install the onnxruntime build for that provider "
                                 "(e.g. onnxruntime-gpu for CUDA/TensorRT) or use ep:CPUExecutionProvider")
        source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
        self._source, self._peak = source, None
        try:
            self.session = ort.InferenceSession(source, options, providers=wanted)
        except Exception as err:
            raise RuntimeFailure(f"ONNX Runtime could not load the model: "
                                 f"{runtime_message(err)[:300]}",
                                 runtime_hint(err) or "check the model with `edgenn inspect`") from None
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        self.input_axes, self.output_axes = batch_axes([i.shape for i in self.inputs],
                                                       [o.shape for o in self.outputs])

    def sample_shapes(self) -> list[tuple]:
        """Each input's shape per sample (its batch axis left out; None for an open size)."""
        return [tuple(d if isinstance(d, int) and d > 0 else None
                      for k, d in enumerate(i.shape) if k != axis)
                for i, axis in zip(self.inputs, self.input_axes)]

    def _step(self, xs, batch_size: int) -> tuple[int, int | None]:
        """(samples per run, the fixed batch a run is padded to, if the model has one)."""
        fixed = None
        for spec, axis, x in zip(self.inputs, self.input_axes, xs):
            if axis is None and len(x) > 1 and not (x == x[:1]).all():
                batch_size = 1  # a setting that differs per sample: one sample per run
            elif axis is not None and isinstance(spec.shape[axis], int) and spec.shape[axis] > 0:
                fixed = spec.shape[axis]
        return (min(batch_size, fixed), fixed) if fixed else (batch_size, None)

    def predict(self, *xs: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Outputs for inputs ``xs`` (one array per model input, samples first), in batches.

        Each input is laid out as the model takes it (its batch axis, or one value for an input
        without one) and each output comes back samples first.
        """
        n = len(xs[0])
        step, fixed = self._step(xs, batch_size)
        if self._peak is None:  # read once, at the first run: a bound on what a run needs
            self._peak = peak_activations(self._source)
        step = runs_that_fit(*self._peak, [step], fixed is not None)[0]
        outs: list[list[np.ndarray]] = []
        for start in range(0, n, step):
            feed = {}
            taken = min(step, n - start)
            for spec, axis, x in zip(self.inputs, self.input_axes, xs):
                dtype = element_type(spec.type)
                if dtype is None:
                    raise RuntimeFailure(f"input {spec.name!r} takes {spec.type}, which edgenn "
                                         "cannot feed (it feeds numbers and booleans)",
                                         "run the model on numeric inputs (move text or other "
                                         "preprocessing out of the model)")
                chunk = x[start:start + step]
                if fixed and axis is not None and taken < fixed:  # pad to the model's batch
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - taken, 0)])
                chunk = to_model(chunk, axis)
                feed[spec.name] = chunk.astype(dtype)
            try:
                result = self.session.run(None, feed)
            except Exception as err:  # ORT raises its own exception types
                raise RuntimeFailure(f"ONNX Runtime could not run the model: "
                                     f"{runtime_message(err)[:300]}",
                                     runtime_hint(err) or "check the model's inputs with "
                                     "`edgenn inspect`") from None
            if not outs:
                outs = [[] for _ in result]
            for i, (r, axis, spec) in enumerate(zip(result, self.output_axes, self.outputs)):
                if isinstance(r, list):  # a sequence, one entry per sample: axis 0
                    r, axis = _per_sample(r, spec), 0
                r = from_model(np.asarray(r, dtype=np.float32), axis)
                outs[i].append(r[:taken] if axis is not None else r)
        return [np.concatenate(o) for o in outs]


def _per_sample(values: list, spec) -> np.ndarray:
    """A sequence output as an array, one row per sample.

    scikit-learn's ZipMap ({class: probability} per sample) becomes the probabilities in class
    order; any other sequence is refused.
    """
    if all(isinstance(v, dict) for v in values):
        keys = sorted(values[0]) if values else []
        if all(sorted(v) == keys for v in values):
            return np.array([[float(v[k]) for k in keys] for v in values], dtype=np.float32)
    raise RuntimeFailure(f"output {spec.name!r} is a {spec.type}, which edgenn cannot compare "
                         "sample by sample", "export the model with tensor outputs only (for "
                         "skl2onnx: options={'zipmap': False})")
