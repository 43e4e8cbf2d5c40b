"""Run a .tflite model with LiteRT (ai-edge-litert): batching, (de)quantization. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, RuntimeFailure
from ..quiet import quiet_stderr


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingDependencyError("running .tflite models needs ai-edge-litert",
                                     "pip install ai-edge-litert") from None
    return Interpreter


# Builtin ops that keep their state in variable tensors across invocations: TFLite's fused
# recurrent kernels. An app must reset them between independent inputs, and so do we.
STATEFUL_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF"})


def stateful_ops(interpreter) -> list[str]:
    """The stateful builtin ops in a loaded model (the variable tensors they own persist)."""
    try:
        names = {d["op_name"] for d in interpreter._get_ops_details()}
    except Exception:  # noqa: BLE001 - an interpreter without op details: assume stateless
        return []
    return sorted(names & STATEFUL_OPS)


def _in_order(interpreter, details: list[dict], kind: str) -> list[dict]:
    """Tensors in the model's order, not the file's tensor-index order.

    A file with one signature names them there (input_N / output_N as edgenn and the Keras
    exporters write them); one without is ordered by the converter's names (input_N,
    Identity_N). Anything else stays as listed.
    """
    import re

    if len(details) < 2:
        return details
    by_index = {d["index"]: d for d in details}
    try:
        signatures = interpreter.get_signature_list()
    except Exception:  # noqa: BLE001 - an interpreter without signature support
        signatures = {}
    if len(signatures) == 1:
        key = next(iter(signatures))
        runner = interpreter.get_signature_runner(key)
        named = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
        order = [named[name]["index"] for name in _numbered(list(named))]
        if sorted(order) == sorted(by_index):
            return [by_index[i] for i in order]
        # ai-edge-quantizer's int8 file kept basic-pitch's signature pointing at a tensor it
        # had replaced with a dequantized one: a name whose tensor is not an output takes the
        # left-over output of its shape (in listed order when shapes repeat).
        spare = [d for d in details if d["index"] not in order]
        if len(order) == len(details) and len(spare) == sum(i not in by_index for i in order):
            fixed = []
            for i, name in zip(order, _numbered(list(named))):
                if i in by_index:
                    fixed.append(by_index[i])
                    continue
                shape = list(named[name]["shape"])[1:]  # an inner tensor keeps its old batch
                match = next((d for d in spare if list(d["shape"])[1:] == shape), None)
                if match is None:
                    break
                spare.remove(match)
                fixed.append(match)
            else:
                return fixed

    def position(detail):
        match = re.fullmatch(r"(?:input|Identity)(?:_(\d+))?", detail["name"].split(":")[0])
        return int(match.group(1) or 0) if match else None

    keys = [position(d) for d in details]
    if None in keys or len(set(keys)) != len(keys):
        return details
    return [d for _, d in sorted(zip(keys, details), key=lambda kv: kv[0])]


def _numbered(names: list[str]) -> list[str]:
    """name_0, name_1, ..., name_10 in number order, then plain names in alphabetical order.

    Plain names (a file made elsewhere: basic-pitch's contour, note, onset) are sorted, as a
    SavedModel's signature outputs are (``SignatureModel``): the runtime lists them in the
    file's order, which ai-edge-quantizer's rewrite changed, and the quantized file's first
    output was compared with the float file's third (exit 1 on the shapes).
    """
    import re

    def key(name):
        match = re.search(r"_(\d+)$", name)
        return (0, int(match.group(1)), "") if match else (1, 0, name)

    return sorted(names, key=key)


class TFLiteRunner:
    """Feed float inputs to a .tflite model and read float outputs, whatever its io types.

    Integer inputs are quantized with the input tensor's scale and zero point, integer outputs
    dequantized, so a float32, float16, dynamic-range or full-int8 model answers the same way.
    """

    def __init__(self, model: str | Path | bytes, threads: int | None = None):
        cls = _interpreter_class()
        try:
            with quiet_stderr():
                if isinstance(model, (bytes, bytearray)):
                    self.interpreter = cls(model_content=bytes(model), num_threads=threads)
                else:
                    self.interpreter = cls(model_path=str(model), num_threads=threads)
        except (ValueError, RuntimeError) as err:
            raise RuntimeFailure(f"LiteRT could not load the model: {err}",
                                 "check that the .tflite file is complete and uses builtin ops "
                                 "(edgenn inspect lists Flex and custom ops)") from None
        self._batch = None
        self.inputs = _in_order(self.interpreter, self.interpreter.get_input_details(), "inputs")
        self.outputs = _in_order(self.interpreter, self.interpreter.get_output_details(), "outputs")
        # fused LSTM/RNN kernels carry their state into the next invoke: every batch here is
        # a set of independent samples, so the state is reset before each one
        self.stateful = stateful_ops(self.interpreter)

    def _resize(self, batch: int, samples: list[tuple] | None = None) -> None:
        """Input tensors for ``batch`` samples.

        A dimension the model leaves open (the image size of a fully convolutional model, a
        sequence length) takes ``samples``' size.
        """
        key = (batch, tuple(map(tuple, samples or ())))
        if key == self._batch:
            return
        for i, detail in enumerate(self.inputs):
            shape = list(detail["shape_signature"] if len(detail["shape_signature"]) else detail["shape"])
            shape[0] = batch
            sample = samples[i] if samples and i < len(samples) else ()
            shape = [d if d > 0 else (int(sample[k - 1]) if 0 < k <= len(sample) else 1)
                     for k, d in enumerate(shape)]
            self.interpreter.resize_tensor_input(detail["index"], shape, strict=False)
        try:
            with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate" and friends
                self.interpreter.allocate_tensors()
        except RuntimeError as err:
            from .tflite_info import unresolved_custom_ops

            custom = unresolved_custom_ops(str(err))
            if custom:
                raise RuntimeFailure(*custom) from None
            raise RuntimeFailure(f"LiteRT could not allocate tensors for batch {batch}: {err}",
                                 "the model may have a fixed batch size; use batch 1") from None
        self._batch = key
        self.inputs = _in_order(self.interpreter, self.interpreter.get_input_details(), "inputs")
        self.outputs = _in_order(self.interpreter, self.interpreter.get_output_details(), "outputs")
        if batch > 1 and any(len(d["shape"]) and d["shape"][0] != batch for d in self.outputs):
            # a graph built for one batch size (a reshape to a constant, as an Edge TPU file's
            # fixed batch gives) allocates for more but still answers for one
            self._batch = None
            raise RuntimeFailure(f"the model answers for a fixed batch, not {batch}",
                                 "run it with batch 1")

    @staticmethod
    def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
        dtype = detail["dtype"]
        if np.issubdtype(dtype, np.floating):
            return x.astype(dtype)
        scale, zero = detail["quantization"]
        if scale == 0:
            return x.astype(dtype)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    @staticmethod
    def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
        if np.issubdtype(y.dtype, np.floating):
            return y.astype(np.float32)
        scale, zero = detail["quantization"]
        if scale == 0:
            return y.astype(np.float32)
        return (y.astype(np.float32) - zero) * scale

    def predict(self, *xs: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Outputs (float32) for inputs ``xs`` (one array per model input), in batches."""
        n = len(xs[0])
        batch_size = max(1, min(batch_size, n))
        samples = [x.shape[1:] for x in xs]
        try:
            self._resize(batch_size, samples)
            fixed = True
        except RuntimeFailure:
            self._resize(1, samples)
            batch_size, fixed = 1, False
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, n, batch_size):
            chunk = [x[start:start + batch_size] for x in xs]
            real = len(chunk[0])
            if real < batch_size and fixed:  # pad the last batch instead of re-allocating
                chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - real, axis=0)])
                         for c in chunk]
            for detail, x in zip(self.inputs, chunk):
                self.interpreter.set_tensor(detail["index"], self._quantize(x, detail))
            if self.stateful:
                self.interpreter.reset_all_variables()
            self.interpreter.invoke()
            for i, detail in enumerate(self.outputs):
                y = self.interpreter.get_tensor(detail["index"])[:real]
                results[i].append(self._dequantize(y, detail))
        return [np.concatenate(r) for r in results]
