"""Run a .tflite model with LiteRT (ai-edge-litert): batching, (de)quantization. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, RuntimeFailure
from ..limits import runs_that_fit
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


def _graph(interpreter) -> tuple[list, dict]:
    """The interpreter's ops and its tensors by index; both empty when it gives no details."""
    try:
        return (interpreter._get_ops_details(),
                {d["index"]: d for d in interpreter.get_tensor_details()})
    except Exception:  # noqa: BLE001 - an interpreter without op details
        return [], {}


def integer_recurrent(interpreter, graph: tuple | None = None) -> list[str]:
    """The fused recurrent kernels (``STATEFUL_OPS``) of a model that run on integer inputs.

    LiteRT's int8 UNIDIRECTIONAL_SEQUENCE_LSTM corrupted the heap of the process running it
    when a model concatenated the outputs of two stacked 128-unit LSTMs (textgenrnn's
    network; glibc aborted later, in whatever allocated next), and computed wrong values for
    a summing Bidirectional LSTM: such files run in a child process (``TFLiteRunner``).
    """
    ops, tensors = graph or _graph(interpreter)
    found = set()
    for op in ops:
        if op["op_name"] not in STATEFUL_OPS or not len(op["inputs"]):
            continue
        first = tensors.get(int(op["inputs"][0]))
        if first is not None and np.issubdtype(np.dtype(first["dtype"]), np.integer):
            found.add(op["op_name"])
    return sorted(found)


def _peak_activations(interpreter, graph: tuple | None = None) -> tuple[str | None, int]:
    """(op, bytes): the op whose input and output tensors take the most memory at once.

    A lower bound on LiteRT's arena for one run at the file's declared shapes (an open size
    counts as 1), read before anything is allocated. Tensors no op computes (weights) are left
    out. (None, 0) when the interpreter gives no op details.
    """
    ops, tensors = graph or _graph(interpreter)
    if not ops:
        return None, 0
    computed = {int(i) for op in ops for i in op["outputs"]}
    computed |= {int(d["index"]) for d in interpreter.get_input_details()}

    def size(index) -> int:
        detail = tensors.get(int(index))
        if detail is None or int(index) not in computed:
            return 0
        return int(np.prod([max(int(d), 1) for d in detail["shape"]])) * np.dtype(detail["dtype"]).itemsize

    best = (None, 0)
    for op in ops:
        total = sum(size(i) for i in (*op["inputs"], *op["outputs"]) if int(i) >= 0)
        if total > best[1]:
            best = (op["op_name"], total)
    return best


def _signature(detail: dict) -> list[int]:
    """A tensor's dims as the file declares them: -1 where a size is open."""
    signature = detail.get("shape_signature")
    return [int(d) for d in (signature if signature is not None and len(signature)
                             else detail["shape"])]


class TFLiteRunner:
    """Feed float inputs to a .tflite model and read float outputs, whatever its io types.

    Integer inputs are quantized with the input tensor's scale and zero point, integer outputs
    dequantized, so a float32, float16, dynamic-range or full-int8 model answers the same way.
    """

    def __init__(self, model: str | Path | bytes, threads: int | None = None,
                 isolate: bool = True):
        cls = _interpreter_class()
        self.model, self.threads = model, threads
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
        from .layout import batch_axes

        # the dims each input is declared with (-1 open), read once: resizing changes "shape"
        self.declared = [_signature(d) for d in self.inputs]
        self.input_axes, self.output_axes = batch_axes(self.declared,
                                                       [_signature(d) for d in self.outputs])
        # a batch the file fixes (the smallest, if inputs differ), else None
        self.fixed_batch = min((sig[axis] for sig, axis in zip(self.declared, self.input_axes)
                                if axis is not None and sig[axis] > 0), default=None)
        graph = _graph(self.interpreter)  # ops and tensors, read once
        self.peak = _peak_activations(self.interpreter, graph)
        # kernels that have corrupted the memory of the process running them run in a child
        self.isolated = integer_recurrent(self.interpreter, graph) if isolate else []

    def sample_shapes(self) -> list[tuple]:
        """Each input's shape per sample (its batch axis left out; None for an open size)."""
        return [tuple(d if d > 0 else None for k, d in enumerate(signature) if k != axis)
                for signature, axis in zip(self.declared, self.input_axes)]

    def _resize(self, batch: int, samples: list[tuple] | None = None) -> None:
        """Input tensors for ``batch`` samples.

        A dimension the model leaves open (the image size of a fully convolutional model, a
        sequence length) takes ``samples``' size; an input without a batch axis (a setting, a
        scalar) keeps its own shape. A tensor the file marks fixed-size is left as it is.
        """
        key = (batch, tuple(map(tuple, samples or ())))
        if key == self._batch:
            return
        for i, (detail, signature, axis) in enumerate(zip(self.inputs, self.declared,
                                                          self.input_axes)):
            sample = list(samples[i]) if samples and i < len(samples) else []
            inner = [d for k, d in enumerate(signature) if k != axis]
            if len(sample) != len(inner):
                sample = [1] * len(inner)
            shape = [d if d > 0 else int(s) for d, s in zip(inner, sample)]
            if axis is not None:
                shape.insert(axis, batch)
            if shape == [int(d) for d in detail["shape"]]:
                continue
            try:
                self.interpreter.resize_tensor_input(detail["index"], shape, strict=False)
            except (RuntimeError, ValueError) as err:  # "Attempting to resize a fixed-size tensor"
                raise RuntimeFailure(f"LiteRT cannot resize input {detail['name']!r} to {shape}: "
                                     f"{' '.join(str(err).split())[:200]}",
                                     "run it at the input shape stored in the file") from None
        try:
            with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate" and friends
                self.interpreter.allocate_tensors()
        except RuntimeError as err:
            from .tflite_info import unresolved_custom_ops

            custom = unresolved_custom_ops(str(err))
            if custom:
                raise RuntimeFailure(*custom) from None
            import re

            text = " ".join(str(err).split())[:300]
            kernel = re.search(r"Node number \d+ \((\w+)\) failed to prepare", text)
            hint = ("the model may have a fixed batch size; use batch 1" if batch > 1 else
                    f"LiteRT's {kernel.group(1)} kernel refuses this file as it is typed "
                    "(seen: a fused LSTM at int16x8): convert it with another --quantize mode "
                    "(int8, dynamic or none)" if kernel else
                    "convert the model again, or with another --quantize mode")
            raise RuntimeFailure(f"LiteRT could not allocate tensors for batch {batch}"
                                 + (f": {text}" if text else ""), hint) from None
        self._batch = key
        self.inputs = _in_order(self.interpreter, self.interpreter.get_input_details(), "inputs")
        self.outputs = _in_order(self.interpreter, self.interpreter.get_output_details(), "outputs")
        if batch > 1 and any(axis is not None and len(d["shape"]) > axis and d["shape"][axis] != batch
                             for d, axis in zip(self.outputs, self.output_axes)):
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

    def _steps(self, xs, batch_size: int) -> list[int]:
        """The samples per run to try, in order: a batch, then one at a time.

        A batch the file fixes is the only size (resizing a fixed tensor is a gamble: a model
        with resource variables corrupted memory when its [1, 5] input was run at [64, 5]); a
        setting that differs per sample, or an output without a batch axis, means one sample
        per run.
        """
        if self.fixed_batch:
            return [self.fixed_batch]
        varying = any(axis is None and len(x) > 1 and not (x == x[:1]).all()
                      for axis, x in zip(self.input_axes, xs))
        if varying or None in self.output_axes:
            return [1]
        step = max(1, min(batch_size, len(xs[0])))
        return [step, 1] if step > 1 else [1]

    def predict(self, *xs: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Outputs (float32) for inputs ``xs`` (one array per model input, samples first).

        Each input is laid out as the model takes it (its batch axis, or one value for an
        input without one) and each output comes back samples first.
        """
        if not self.inputs:
            raise RuntimeFailure("the model takes no inputs, so there is nothing to feed it "
                                 "and compare", "check the file with `edgenn inspect`")
        for where, detail in [("input", d) for d in self.inputs] + [("output", d) for d in self.outputs]:
            if np.dtype(detail["dtype"]).kind in "SUO":
                raise RuntimeFailure(f"{where} {detail['name']!r} holds strings, which edgenn "
                                     "cannot feed or compare (it works on numbers and booleans)",
                                     "run the model on numeric tensors (move text or other "
                                     "processing out of the model)")
        if self.isolated:
            return self._predict_in_child(xs, batch_size)
        n = len(xs[0])
        samples = [x.shape[1:] for x in xs]
        steps = runs_that_fit(*self.peak, self._steps(xs, batch_size), bool(self.fixed_batch))
        for k, step in enumerate(steps):
            try:
                self._resize(step, samples)
                break
            except RuntimeFailure:
                if k == len(steps) - 1:
                    raise
        from .layout import from_model, to_model

        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, n, step):
            real = min(step, n - start)
            for detail, axis, x in zip(self.inputs, self.input_axes, xs):
                chunk = x[start:start + step]
                if axis is not None and real < step:  # pad the last batch, not re-allocate
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - real, axis=0)])
                self.interpreter.set_tensor(detail["index"],
                                            self._quantize(to_model(chunk, axis), detail))
            if self.stateful:
                self.interpreter.reset_all_variables()
            try:
                self.interpreter.invoke()
            except RuntimeError as err:
                raise RuntimeFailure(f"LiteRT could not run the model: "
                                     f"{' '.join(str(err).split())[:300]}",
                                     "check the model's inputs with `edgenn inspect`: edgenn "
                                     "fed values of the types and shapes the file declares") from None
            for i, (detail, axis) in enumerate(zip(self.outputs, self.output_axes)):
                try:
                    value = self.interpreter.get_tensor(detail["index"])
                except ValueError as err:  # "Invalid tensor size": a size the data decides
                    raise RuntimeFailure(f"LiteRT could not read output {detail['name']!r}: "
                                         f"{err} (its size depends on the values computed)",
                                         "compare the model on outputs of a fixed size") from None
                y = from_model(self._dequantize(value, detail), axis)
                results[i].append(y[:real] if axis is not None else y)
        return [np.concatenate(r) for r in results]

    def _predict_in_child(self, xs, batch_size: int) -> list[np.ndarray]:
        """``predict`` in a child process: a crash there is one error, not the end of edgenn."""
        import json
        import signal
        import subprocess
        import sys
        import tempfile

        named = not isinstance(self.model, (bytes, bytearray))
        with tempfile.TemporaryDirectory(prefix="edgenn-litert-") as tmp:
            work = Path(tmp)
            model = self.model if named else work / "model.tflite"
            if not named:
                model.write_bytes(bytes(self.model))
            np.savez(work / "inputs.npz", *xs)
            config = {"model": str(model), "threads": self.threads, "batch_size": batch_size,
                      "work": str(work)}
            proc = subprocess.run([sys.executable, "-c", "from edgenn.runtime.litert import "
                                   "_child_predict; _child_predict()", json.dumps(config)],
                                  capture_output=True, text=True, env=_checked_heap())
            if proc.returncode == 0 and (work / "outputs.npz").is_file():
                with np.load(work / "outputs.npz") as out:
                    return [out[f"arr_{i}"] for i in range(len(out.files))]
            if proc.returncode == 0 and (work / "error.json").is_file():
                err = json.loads((work / "error.json").read_text())
                raise RuntimeFailure(err["message"], err["hint"])
        what = f"running {self.model}" if named else "running the model"
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise RuntimeFailure(f"LiteRT crashed ({name}) {what} (its integer "
                                 f"{', '.join(self.isolated)} kernels, run in a child process: "
                                 "they have corrupted memory on models tested here)",
                                 "keep the recurrent layers float: --quantize dynamic or float16")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise RuntimeFailure(f"LiteRT failed {what} in a child process: "
                             f"{(lines[-1] if lines else f'exit {proc.returncode}')[:300]}",
                             "check the model with `edgenn inspect`")


def _checked_heap() -> dict:
    """The environment of a child that runs kernels known to corrupt memory, strictly checked.

    LiteRT's int8 LSTM kernel corrupted the heap of textgenrnn's stacked LSTMs; glibc caught it
    ("free(): invalid pointer", SIGABRT) in one process layout and not in another, where the
    file's outputs were then scored as if they were sound. glibc's malloc checks
    (MALLOC_CHECK_=3, from libc_malloc_debug since glibc 2.34) catch it every time.
    """
    import glob
    import os

    env = {**os.environ, "MALLOC_CHECK_": "3"}
    debug = sorted(glob.glob("/usr/lib/*/libc_malloc_debug.so.0") + glob.glob("/lib*/libc_malloc_debug.so.0"))
    if debug:
        env["LD_PRELOAD"] = " ".join(filter(None, [debug[0], env.get("LD_PRELOAD", "")]))
    return env


def _child_predict() -> None:
    """The child of ``TFLiteRunner._predict_in_child``: run, then save outputs or the error."""
    import json
    import sys

    config = json.loads(sys.argv[1])
    work = Path(config["work"])
    with np.load(work / "inputs.npz") as a:
        xs = [a[f"arr_{i}"] for i in range(len(a.files))]
    try:
        runner = TFLiteRunner(config["model"], config["threads"], isolate=False)
        ys = runner.predict(*xs, batch_size=config["batch_size"])
    except RuntimeFailure as err:
        (work / "error.json").write_text(json.dumps({"message": err.message, "hint": err.hint}))
        return
    np.savez(work / "outputs.npz", *ys)
