"""Run an .onnx model with ONNX Runtime. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, RuntimeFailure


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
        try:
            self.session = ort.InferenceSession(source, options, providers=wanted)
        except Exception as err:
            raise RuntimeFailure(f"ONNX Runtime could not load the model: {' '.join(str(err).split())[:300]}",
                                 "check the model with `edgenn inspect`") from None
        self.inputs = self.session.get_inputs()

    def predict(self, *xs: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Outputs for inputs ``xs`` (one array per model input), in batches."""
        n = len(xs[0])
        outs: list[list[np.ndarray]] = []
        for start in range(0, n, batch_size):
            feed = {}
            for spec, x in zip(self.inputs, xs):
                dtype = np.float32 if "float" in spec.type else np.int64 if "int64" in spec.type else None
                chunk = x[start:start + batch_size]
                feed[spec.name] = chunk.astype(dtype) if dtype is not None else chunk
            try:
                result = self.session.run(None, feed)
            except Exception as err:  # ORT raises its own exception types
                raise RuntimeFailure(f"ONNX Runtime could not run the model: "
                                     f"{' '.join(str(err).split())[:300]}",
                                     "check the model's inputs with `edgenn inspect`") from None
            if not outs:
                outs = [[] for _ in result]
            for i, r in enumerate(result):
                outs[i].append(np.asarray(r, dtype=np.float32))
        return [np.concatenate(o) for o in outs]
