"""Quantize a model that is already converted, then check it against the float file.

A float ``.tflite`` goes through Google's ai-edge-quantizer, a float ``.onnx`` through ONNX
Runtime's quantizer: for the files a user brings without the Keras model (a published
``.tflite``, an ONNX export from elsewhere). No TensorFlow: both tools work on the flatbuffer
or protobuf, and the check runs both files in their own runtimes on the same inputs.

ai-edge-quantizer modes: ``dynamic-int8``/``dynamic-int4`` (weights quantized, activations on
the fly), ``weight-int8``/``weight-int4`` (weights stored quantized, computed in float),
``int8``/``int16`` (static: weights int8, activations int8 or int16, calibrated on --data;
needs a signature in the file, as the quantizer's calibrator runs signatures). ``--layers
REGEX`` limits quantization to ops whose output tensor name matches. ONNX modes:
``dynamic-int8`` and ``int8`` (static QDQ, calibrated).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConversionError, MissingDependencyError, RuntimeFailure, UsageError
from ..fidelity import Fidelity, Task, judge

TFLITE_MODES = {"dynamic-int8": ("dynamic", 8), "dynamic-int4": ("dynamic", 4),
                "weight-int8": ("weight", 8), "weight-int4": ("weight", 4),
                "int8": ("static", 8), "int16": ("static", 16)}
ONNX_MODES = {"dynamic-int8": "dynamic", "int8": "int8"}
# The fidelity defaults of the nearest converter mode.
_BAR = {"dynamic-int8": "dynamic", "weight-int8": "dynamic", "dynamic-int4": "int8",
        "weight-int4": "int8", "int8": "int8", "int16": "int16x8"}


@dataclass(frozen=True)
class PostQuantResult:
    """A float file quantized after conversion, and how closely it still agrees."""

    source: str
    output: str
    format: str
    mode: str
    tool: str
    bytes_before: int
    bytes_after: int
    fidelity: Fidelity
    layers: str = ".*"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return 0 if self.fidelity.passed else 3

    @property
    def failure(self) -> str | None:
        if self.fidelity.passed:
            return None
        fewer = ("quantize fewer layers (--layers), use a gentler --mode" if self.format == "tflite"
                 else ("use --mode dynamic-int8" if self.mode != "dynamic-int8" else
                       "keep the float file") + " (ONNX Runtime's quantizer takes no --layers)")
        return self.fidelity.failure(
            self.output, f"{fewer}, or set {self.fidelity.override_flag} if this is close enough")

    def to_dict(self) -> dict:
        return {"source": self.source, "output": self.output, "format": self.format,
                "mode": self.mode, "tool": self.tool, "layers": self.layers,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "fidelity": self.fidelity.to_dict(), "notes": list(self.notes)}

    def to_markdown(self) -> str:
        f = self.fidelity
        return (f"# edgenn quantize: {Path(self.source).name} -> {Path(self.output).name}\n\n"
                f"- {self.tool}, mode {self.mode} (layers {self.layers}): {self.bytes_before:,} -> "
                f"{self.bytes_after:,} bytes\n- fidelity on {f.on}: "
                f"{'passed' if f.passed else 'FAILED'}: {f.summary()}\n")


def quantize_file(source: str, output: str, mode: str, *, data_spec=None, layers: str = ".*",
                  samples: int = 500, task: str | dict = "auto", threshold: float | None = None,
                  min_snr: float | None = None, log=lambda m: None,
                  input_shapes: list | None = None) -> PostQuantResult:
    """Quantize ``source`` (.tflite or .onnx) into ``output`` and check it against ``source``."""
    from ..artifacts import check_writable, refuse_overwrite
    from ..models.formats import ModelFormat, detect

    fmt = detect(source)
    out = Path(output)
    if fmt.format not in (ModelFormat.tflite, ModelFormat.onnx):
        raise UsageError(f"quantize takes a converted .tflite or .onnx file; {source} is "
                         f"{fmt.label}", "convert a Keras model with `edgenn convert --quantize`")
    suffix = ".tflite" if fmt.format is ModelFormat.tflite else ".onnx"
    if out.suffix != suffix:
        raise UsageError(f"a quantized {suffix} is written as {suffix}; received -o {output}",
                         f"name the output *{suffix}")
    modes = TFLITE_MODES if suffix == ".tflite" else ONNX_MODES
    if mode not in modes:
        raise UsageError(f"--mode {mode} does not apply to {suffix} files",
                         f"use one of: {', '.join(modes)}")
    refuse_overwrite(out, source)
    check_writable(out)
    info = None
    if suffix == ".tflite":  # read once: the already-quantized check, calibration, the count
        from ..runtime.tflite_info import describe

        info = describe(source)
    if suffix == ".onnx":  # a file quantized before (ddddocr's common_old.onnx: MatMulInteger)
        import onnx

        quantized = _quantized_nodes(onnx.load(str(source), load_external_data=False).graph)
        if quantized:  # its quantizer failed on it with KeyError: '140_scale'
            raise UsageError(f"{source} is already quantized ({quantized} integer ops such as "
                             "QuantizeLinear or MatMulInteger), and --mode "
                             f"{mode} quantizes a float model", "quantize the float model it "
                             "came from")
    if suffix == ".tflite" and mode in ("int8", "int16"):
        quantized = sum(n for kind, n in info.get("quantization", {}).items() if kind != "float")
        if quantized:  # calibrating quantized tensors again aborted LiteRT (LiteRT's add_quantized_int8)
            raise UsageError(f"{source} is already quantized ({quantized} quantized tensors), and "
                             f"--mode {mode} calibrates a float model",
                             "quantize the float model it came from")
        if not info["signatures"]:  # before any data is read or run
            raise _unsigned(source)
    _survives(source, suffix)
    runner = _runner(source)
    names = _output_names(runner)
    _output_tasks(task, names)  # an output --task names that the file lacks: before any work
    ops = output_ops(source, runner)
    in_names = input_names(runner)
    if input_shapes and data_spec is not None:
        raise UsageError("--input-shape sizes the random check inputs; --data brings its own",
                         "drop --input-shape")
    x_check, x_calib, data = _inputs(runner, data_spec, samples, source, input_shapes, in_names)
    static = mode in ("int8", "int16")
    if static and x_calib is None:
        raise UsageError(f"--mode {mode} calibrates activations on real data", "pass --data")
    open_dims = [list(shape) for shape in _input_shapes(runner) if None in shape[1:]]
    if suffix == ".tflite" and static and open_dims:
        raise UsageError(f"{source} takes inputs of open size {open_dims[0]}, and "
                         "ai-edge-quantizer calibrates a .tflite only at the size stored in it",
                         "quantize from the Keras model: `edgenn convert MODEL --to tflite "
                         f"--quantize {mode if mode == 'int8' else 'int16x8'} --data ...`")
    reference = runner.predict(*x_check)  # a file its runtime cannot run stops here, unwritten
    from ..limits import memory_watch

    quantizer = "ai-edge-quantizer" if suffix == ".tflite" else "ONNX Runtime's quantizer"
    with memory_watch(f"{quantizer} on {source}", "calibrate on fewer samples (--limit N), or "
                      "quantize on a machine with more memory"):
        if suffix == ".tflite":
            blob, tool, notes = _aeq(source, info, mode, layers, x_calib, log, in_names,
                                     runner.interpreter)
        else:
            blob, tool, notes = _ort(source, mode, layers, x_calib, log)
    from ..outdir import staged_file

    with staged_file(out) as staged:  # checked before it moves to -o: a killed run leaves nothing
        staged.write_bytes(blob)
        try:
            candidate = _runner(str(staged)).predict(*x_check)
        except RuntimeFailure as err:  # the quantizer's own runtime refuses what it wrote
            plain = [m for m in (("dynamic-int8",) if suffix == ".onnx"
                                 else ("dynamic-int8", "weight-int8")) if m != mode]
            first = f"try --mode {' or '.join(plain)}" if plain else "keep the float file"
            raise ConversionError(
                f"{tool} wrote a {suffix} file that its runtime cannot load or run "
                f"({' '.join(str(err.message).split())[:240]}); "
                "nothing was written",
                f"{first}, or quantize from the Keras model or SavedModel with "
                f"`edgenn convert MODEL --to {suffix[1:]} --quantize int8 --data ...`") from None
        tasks = _output_tasks(task, names, reference, ops)
        fidelity = judge(reference, candidate, tasks[0] if len(set(tasks)) == 1 else tasks,
                         _BAR[mode], data, threshold, min_snr, names, samples=len(x_check[0]))
        notes += fidelity.caveats()
    return PostQuantResult(str(source), str(out), suffix[1:], mode, tool, Path(source).stat().st_size,
                           len(blob), fidelity, layers, tuple(notes))


def _survives(source: str, suffix: str) -> None:
    """Run ``source`` once in a child process first, where a crash cannot take edgenn down.

    A file that aborts or segfaults its runtime would end this process with no message.
    Only a crash, a hang or running out of memory (under ``run_local``'s limit) is reported
    from the child; any other failure is left to the run in this process, which words it.
    """
    from ..profile.isolate import run_local

    runtime = "litert" if suffix == ".tflite" else "onnxruntime"
    config = {"model": str(Path(source).resolve()), "runtime": runtime,
              "accelerator": "xnnpack" if suffix == ".tflite" else "cpu", "threads": None,
              "warmup": 0, "runs": 1}
    doc = run_local(config, timeout=300)
    if doc.get("signal") or doc.get("timed_out") or doc.get("out_of_memory"):
        tool = "LiteRT" if suffix == ".tflite" else "ONNX Runtime"
        what = (f"crashed ({doc['signal']})" if doc.get("signal") else "did not finish in 300 s"
                if doc.get("timed_out") else "ran out of memory (under three quarters of the "
                "memory available)")
        hint = ("quantize it on a machine with more memory" if doc.get("out_of_memory") else
                "the file may be damaged, or use ops this runtime mishandles: `edgenn inspect` "
                "lists them")
        raise RuntimeFailure(f"{tool} {what} running {source} once on inputs of its own shape; "
                             "nothing was written", hint)


def _runner(path: str):
    if path.endswith(".onnx"):
        from ..runtime.onnx_runner import ONNXRunner

        return ONNXRunner(path)
    from ..runtime.litert import TFLiteRunner

    return TFLiteRunner(path)


def _input_shapes(runner) -> list[tuple]:
    return [(None, *shape) for shape in runner.sample_shapes()]  # samples first, as data is


def _batched(runner) -> list[bool]:
    """Whether each input has a batch axis (an ONNX scalar setting, such as a rate, has none)."""
    return [axis is not None for axis in getattr(runner, "input_axes", [0] * len(runner.inputs))]


def _input_dtypes(runner) -> list:
    """Each input's element type: numpy's for a .tflite file, ONNX's "tensor(int32)" as "int32"."""
    if hasattr(runner, "interpreter"):
        return [x["dtype"] for x in runner.inputs]
    return [str(getattr(x, "type", "")).removeprefix("tensor(").removesuffix(")")
            for x in runner.inputs]


def _inputs(runner, data_spec, samples: int, source: str = "", input_shapes=None,
            names: list[str] | None = None):
    """(check inputs, calibration inputs or None, where they came from): lists, one per input.

    Without data, random inputs: at the file's own size, or at ``input_shapes`` where the file
    leaves a size open (refused without them: no size is right for every model).
    """
    shapes = _input_shapes(runner)
    if data_spec is None:
        from ..data.prepare import exact_dtype
        from ..runtime.layout import resolve_input_shapes

        full = resolve_input_shapes(Path(source), input_shapes, purpose="check it at with "
                                    "random inputs", other="pass --data with inputs it takes, or ")
        if full:  # the given shapes, samples first
            axes = getattr(runner, "input_axes", [0] * len(full))
            shapes = [(None, *[d for k, d in enumerate(shape) if k != axis])
                      for shape, axis in zip(full, axes)]
        from ..limits import made_up_batch

        rng = np.random.default_rng(0)
        per_sample = sum(int(np.prod([d or 1 for d in shape[1:]])) for shape in shapes)
        n = made_up_batch(f"{source}'s input ({', '.join(str(list(s[1:])) for s in shapes)[:200]})",
                          4 * per_sample,
                          max(1, min(samples, 64, 2**28 // max(1, per_sample))),  # <= 1 GB
                          "check it on real samples (--data), or on a machine with more memory")
        xs = []
        for shape, dtype, batched in zip(shapes, _input_dtypes(runner), _batched(runner)):
            size = (n if batched else 1, *[d or 1 for d in shape[1:]])
            exact = exact_dtype(dtype)  # ids 0 and 1 exist in any embedding table; a mask
            x = (rng.integers(0, 2, size=size).astype(exact) if exact is not None
                 else rng.random(size, dtype=np.float32))
            xs.append(x if batched else np.repeat(x, n, 0))  # one setting shared by the batch
        return xs, None, "random inputs"
    if len(shapes) != 1:
        from ..data.multi import load_multi
        from ..errors import DataError
        from ..models.signature import TensorInfo

        def described(named):
            return _Inputs([TensorInfo(name, shape, dtype, batched) for name, shape, dtype, batched
                            in zip(named, shapes, _input_dtypes(runner), _batched(runner))])

        own = names or input_names(runner)
        source_names = _source_input_names(source, runner, len(own))
        try:  # the names of the model it came from first: its .npz is what a user has
            splits = load_multi(data_spec, described(source_names or own), inputs_only=True)
        except DataError as first:
            if not source_names:
                raise
            try:  # numbered, as the file's own inputs are
                splits = load_multi(data_spec, described(own), inputs_only=True)
            except DataError:
                raise first from None  # the error that names the model's inputs
        return ([x[:samples] for x in splits.x_test], splits.x_calib,
                f"{data_spec.source} test split")
    from ..data import load_for

    splits = load_for(data_spec, (None, *shapes[0][1:]), None, _input_dtypes(runner)[0],
                      check_samples=samples)
    return [splits.x_test[:samples]], [splits.x_calib], f"{data_spec.source} test split"


def _source_input_names(source: str, runner, count: int) -> list[str] | None:
    """The input names of the model a file with several inputs came from, in the file's order.

    edgenn records them when it converts; None for a file made elsewhere.
    """
    import json

    from ..runtime.tflite_info import INPUT_NAMES_KEY

    if hasattr(runner, "session"):  # ONNX: the metadata ONNX Runtime read with the file
        try:
            names = json.loads(runner.session.get_modelmeta().custom_metadata_map[INPUT_NAMES_KEY])
        except (KeyError, ValueError, AttributeError):
            return None
    else:
        from ..runtime.tflite_info import recorded_input_names

        names = recorded_input_names(source)
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, str) for n in names):
        return None
    return names


def input_names(runner) -> list[str]:
    """Each input's name as a user names it.

    A .tflite file's signature names (``left``, not ``serving_default_left:0``), else the
    tensor's; an ONNX graph's own.
    """
    if not hasattr(runner, "interpreter"):
        return [spec.name for spec in runner.inputs]
    by_index = {}
    try:
        for key in runner.interpreter.get_signature_list():
            details = runner.interpreter.get_signature_runner(key).get_input_details()
            by_index.update({int(d["index"]): name for name, d in details.items()})
            break
    except (ValueError, RuntimeError, KeyError):
        pass
    return [by_index.get(int(d["index"]), str(d["name"]).removeprefix("serving_default_")
                         .split(":")[0]) for d in runner.inputs]


class _Inputs:
    """The inputs of a converted file, as ``load_multi`` reads a model's."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.outputs = []


def _output_names(runner) -> list[str]:
    if hasattr(runner, "interpreter"):
        return [str(d.get("name", f"output_{i}")) for i, d in enumerate(runner.outputs)]
    return [o.name for o in runner.outputs]


# Ops that only move or relabel values: an output read through them is its producer's.
_PASS_THROUGH_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Transpose", "Cast",
               "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "DEQUANTIZE", "QUANTIZE", "CAST"}
_TASK_OF_OP = {"Sigmoid": Task.multilabel, "LOGISTIC": Task.multilabel,
               "Softmax": Task.classification, "SOFTMAX": Task.classification}


def output_ops(source: str, runner) -> list[str | None]:
    """The op that computes each output of a converted file, past layout-only ops."""
    if hasattr(runner, "interpreter"):
        from ..runtime.tflite_info import producers

        producer = producers(source)
        starts = [int(d["index"]) for d in runner.outputs]
    else:
        import onnx

        graph = onnx.load(str(source), load_external_data=False).graph
        producer = {o: (n.op_type, [i for i in n.input if i][:1]) for n in graph.node for o in n.output}
        starts = [o.name for o in runner.outputs]
    found = []
    for tensor in starts:
        op = None
        for _ in range(16):  # a short walk: layout ops come in ones and twos
            if tensor not in producer:
                break
            op, inputs = producer[tensor]
            if op not in _PASS_THROUGH_OPS or not inputs:
                break
            tensor = inputs[0]
        found.append(op)
    return found


def _output_tasks(task, names: list[str], reference: list | None = None,
                  ops: list | None = None) -> list[Task]:
    """Each output's task: ``task`` for all, or {output name: task}.

    Auto decides by the op that computes the output (a sigmoid is a multi-label probability,
    a softmax a classifier's), else by the reference outputs' values (and stays auto without
    them).
    """
    named = task if isinstance(task, dict) else {}
    unknown = [n for n in named if n not in names]
    if unknown:
        raise UsageError(f"--task names output {unknown[0]!r}, which the file does not have "
                         f"(its outputs: {', '.join(names)})", "name an output as `edgenn "
                         "inspect` lists it")
    tasks = [Task(named.get(n, "auto") if named else task) for n in names]
    if reference is None:
        return tasks
    ops = ops or [None] * len(tasks)
    return [(_TASK_OF_OP.get(op) or (Task.classification if _probabilities(y) else Task.regression))
            if t is Task.auto else t for t, y, op in zip(tasks, reference, ops)]


def _probabilities(y: np.ndarray) -> bool:
    y = y.reshape(len(y), -1)
    return bool(y.shape[1] > 1 and (y >= 0).all() and np.allclose(y.sum(1), 1, atol=1e-3))


def _aeq(source: str, info: dict, mode: str, layers: str, x_calib, log,
         names: list[str] | None = None, interpreter=None):
    """Quantize the .tflite ``source`` (``info``: its ``describe``) with ai-edge-quantizer."""
    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise MissingDependencyError("quantizing a .tflite needs ai-edge-quantizer",
                                     "pip install 'edgenn[quantize]'") from None
    from ..quiet import quiet_stderr

    kind, bits = TFLITE_MODES[mode]
    notes = []
    try:
        readable, notes = readable_for_quantizer(Path(source).read_bytes())
    except Exception:  # noqa: BLE001 - a file the object API cannot take goes to the quantizer as it is
        readable, notes = b"", []
    q = quantizer.Quantizer(bytearray(readable) if notes else str(source))
    op = qtyping.TFLOperationName.ALL_SUPPORTED
    if kind == "dynamic":
        q.add_dynamic_config(layers, op, bits)
    elif kind == "weight":
        q.add_weight_only_config(layers, op, bits)
    else:
        q.add_static_config(layers, op, activation_num_bits=bits, weight_num_bits=8)
        ids = _id_inputs(interpreter) if interpreter is not None else []
        if ids:  # ai-edge-quantizer makes the file's inputs integer, which rounds token ids
            from ai_edge_quantizer import algorithm_manager

            q.update_quantization_recipe(".*", qtyping.TFLOperationName.INPUT,
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
            notes.append(f"input{'s' * (len(ids) > 1)} {', '.join(ids)} kept float: "
                         f"{'they hold' if len(ids) > 1 else 'it holds'} ids (a CAST to integers "
                         "reads it), which an 8-bit input would round")
    log(f"quantizing with ai-edge-quantizer ({mode}, layers {layers}) ...")
    calibration = None
    try:
        with quiet_stderr():
            if q.need_calibration:
                calibration = _min_max(q, _calibration_set(source, info, x_calib, names))
    except (ValueError, RuntimeError, KeyError, NotImplementedError) as err:
        reason = " ".join(str(err).split())[:300]
        flow = [o for o in ("WHILE", "IF") if o in (info.get("ops") or {})]
        if flow:  # vvadlrs3's hard_sigmoid LSTM: "Tensor data is null. Run allocate_tensors()"
            raise ConversionError(
                f"ai-edge-quantizer could not calibrate {source}: it runs a {flow[0]} op (a "
                f"recurrent loop or a branch), inside which its calibration reads no tensors "
                f"({reason})", "use --mode dynamic-int8 or weight-int8, or quantize from the "
                "Keras model, which unrolls a loop of fixed length: `edgenn convert MODEL --to "
                "tflite --quantize int8 --data ...`") from None
        raise ConversionError(f"ai-edge-quantizer could not calibrate {source}: {reason}",
                              "try another --mode, or limit it with --layers") from None
    fills = _fill_ops(calibration, source) if kind == "static" and calibration else []
    if fills:  # masked attention: its -1e9 fill and the softmax stay float
        from ai_edge_quantizer import algorithm_manager

        for name in fills:
            # an op's scope is its output names, each followed by ";"
            q.update_quantization_recipe(f"(^|;){re.escape(name)};", op,
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        notes.append(f"kept float: {len(fills)} op(s) of masked attention (a -1e9 fill of masked "
                     "positions and the softmax reading it: one int8 scale for the fill and the "
                     "scores made every score 0)")
    try:
        with quiet_stderr():
            result = q.quantize(calibration, enable_progress_report=False)
    except Exception as err:  # noqa: BLE001 - its own defects come in any type (a TypeError on
        # a resource-variable op's missing inputs): one line, not a traceback
        raise ConversionError(f"ai-edge-quantizer could not quantize {source} "
                              f"({type(err).__name__}: {' '.join(str(err).split())[:300]})",
                              "try another --mode, or limit it with --layers") from None
    blob = bytes(result.quantized_model)
    if _integer_tensors(blob) <= _integer_tensors(info):
        if layers != ".*":
            raise UsageError(f"--layers {layers!r} matches no op ai-edge-quantizer quantizes in "
                             f"{source} ({mode}); nothing was written", "match op output tensor "
                             "names as `edgenn inspect` lists them, or drop --layers")
        raise ConversionError(f"ai-edge-quantizer found no op to quantize in {source} ({mode}); "
                              "nothing was written", "try another --mode, or keep the float file")
    if len(blob) > 0.9 * Path(source).stat().st_size and mode != "int16":
        notes.append(f"hardly smaller than the source: --layers {layers!r} matches few "
                     "quantizable ops (it matches op output tensor names; `edgenn inspect` lists them)")
    return blob, "ai-edge-quantizer", notes


def _fill_ops(calibration: dict, source: str) -> list[str]:
    """The output names of the ops that write or read a tensor calibrated on a fill's range.

    A range past ``tflite.FILL_RANGE`` is a masking fill's (-1e9), no activation's.
    """
    from .tflite import FILL_RANGE

    wide = set()
    for name, qsv in calibration.items():
        try:
            span = max(float(np.max(np.abs(qsv["min"]))), float(np.max(np.abs(qsv["max"]))))
        except (KeyError, TypeError, ValueError):
            continue
        if span >= FILL_RANGE:
            wide.add(name)
    if not wide:
        return []
    from ai_edge_litert.interpreter import Interpreter

    from ..quiet import quiet_stderr

    with quiet_stderr():
        interp = Interpreter(model_path=str(source))
        names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
        ops = interp._get_ops_details()  # noqa: SLF001
    found: list[str] = []
    for op in ops:
        outs = [names[int(o)] for o in op["outputs"] if o >= 0]
        ins = {names[int(i)] for i in op["inputs"] if i >= 0}
        if (set(outs) & wide) or (ins & wide):
            found += [o for o in outs if o not in found]
    return found


def _id_inputs(interpreter) -> list[str]:
    """The inputs of a loaded .tflite that a CAST to integers reads: ids, not signals.

    ai-edge-quantizer's static modes turn the file's float inputs into int8 ones; ids from a
    977-row Embedding (ethnicolr's census model) then came in steps of 3.2, and its int8 file
    agreed 0.79 with the float one (0.998 with the input kept float).
    """
    from ..runtime.litert import _graph

    ops, tensors = _graph(interpreter)
    inputs = {int(d["index"]): d["name"] for d in interpreter.get_input_details()}
    found = set()
    for op in ops:
        if op["op_name"] != "CAST" or not len(op["outputs"]):
            continue
        out = tensors.get(int(op["outputs"][0]))
        if out is not None and np.issubdtype(np.dtype(out["dtype"]), np.integer):
            found |= {inputs[int(i)] for i in op["inputs"] if int(i) in inputs}
    return sorted(found)


def _min_max(q, data: dict) -> dict:
    """Each tensor's range over every calibration sample, as TensorFlow's converter records it.

    ai-edge-quantizer's own ``calibrate`` keeps a moving average (0.95) of each run's min and
    max; a .tflite signature runs one sample at a time, so the ranges shrank to a typical
    sample's and every larger value was clipped (a small regression model: SNR 2.5 dB, 37.9 dB
    with the whole range, as the converter's int8 gets).
    """
    from ai_edge_quantizer import calibrator

    def widest(qsv: dict, new: dict) -> dict:
        if not qsv:
            return new
        return {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}

    try:
        model, recipes = q._float_model_buffer, q._recipe_manager  # noqa: SLF001
    except AttributeError:  # another ai-edge-quantizer: its own calibration, as before
        return q.calibrate(data)
    calib = calibrator.Calibrator(model, qsv_update_func=widest)
    calib.calibrate(data, recipes)
    return calib.get_model_qsvs()


def _integer_tensors(model: bytes | dict) -> int:
    """How many tensors of a .tflite file hold integers of 16 bits or fewer.

    ``model``: the file's bytes, or its ``describe``.
    """
    from ..runtime.tflite_info import describe

    if isinstance(model, bytes):
        with tempfile.TemporaryDirectory(prefix="edgenn-quantize-") as tmp:
            path = Path(tmp, "m.tflite")
            path.write_bytes(model)
            return _integer_tensors(describe(path))
    dtypes = model.get("tensor_dtypes", {})
    return sum(dtypes.get(k, 0) for k in ("int8", "uint8", "int4", "int16"))


def readable_for_quantizer(blob: bytes) -> tuple[bytes, list[str]]:
    """(model, what was changed): the file as ai-edge-quantizer can quantize it.

    ai-edge-quantizer passes by what it does not recognise, silently: ops a file names only
    in the pre-schema-3a field (it reads them all as ADD), and float16 weights read through
    DEQUANTIZE ops (TensorFlow's float16 files, MediaPipe's models). Op codes are copied into
    the current field; float16 constants become float32 ones and their DEQUANTIZE ops go. The
    model computes the same: DEQUANTIZE of a float16 constant is its float32 value.
    """
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime.tflite_info import packed, unpacked

    model = unpacked(blob)
    codes = model.operatorCodes or []
    renamed = sum(code.builtinCode < code.deprecatedBuiltinCode for code in codes)
    for code in codes:
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)
    dequantize = {i for i, code in enumerate(codes)
                  if code.builtinCode == schema.BuiltinOperator.DEQUANTIZE}
    widened = 0
    orphans = []
    for sg in model.subgraphs or []:
        kept = []
        outputs = [] if sg.outputs is None else [int(i) for i in sg.outputs]
        for op in sg.operators or []:
            single = op.opcodeIndex in dequantize and op.inputs is not None and len(op.inputs) == 1
            source = sg.tensors[op.inputs[0]] if single else None
            buffer = model.buffers[source.buffer] if source is not None and source.buffer else None
            data = getattr(buffer, "data", None)
            if (source is None or source.type != schema.TensorType.FLOAT16 or data is None
                    or not len(data) or int(op.outputs[0]) in outputs):
                kept.append(op)
                continue
            wide = schema.BufferT()
            wide.data = np.frombuffer(bytes(bytearray(data)), np.float16).astype("<f4").view(np.uint8)
            model.buffers.append(wide)
            weight = sg.tensors[op.outputs[0]]
            weight.buffer, weight.quantization = len(model.buffers) - 1, None
            orphans.append((sg, op.inputs[0]))
            widened += 1
        sg.operators = kept
    read = {(id(sg), int(i)) for sg in model.subgraphs or [] for op in sg.operators or []
            for i in (op.inputs if op.inputs is not None else []) if i >= 0}
    for sg, index in orphans:  # a float16 copy that nothing reads any more
        if (id(sg), int(index)) not in read:
            tensor = sg.tensors[index]
            tensor.type = schema.TensorType.FLOAT32
            tensor.buffer = 0
    used = {int(t.buffer) for sg in model.subgraphs or [] for t in sg.tensors or []}
    used |= {int(m.buffer) for m in model.metadata or []}  # metadata lives in buffers too
    for index, buffer in enumerate(model.buffers):
        if index and index not in used:
            buffer.data = None
    notes = []
    if renamed:
        notes.append(f"{renamed} op codes stored only in the old schema's field were copied to "
                     "the current one, which ai-edge-quantizer reads")
    if widened:
        notes.append(f"{widened} float16 weight tensors (each behind a DEQUANTIZE) were widened "
                     "to float32 first, so they could be quantized")
    if not notes:
        return blob, []
    return packed(model), notes


def _unsigned(source: str) -> UsageError:
    return UsageError(f"{source} has no signature, and ai-edge-quantizer calibrates through "
                      "signatures", "use --mode dynamic-int8 or weight-int8, or convert the "
                      "model again with edgenn (its .tflite files carry serving_default)")


def _calibration_set(source: str, info: dict, x_calib, order: list[str] | None = None) -> dict:
    """{signature key: [{input name: one sample}, ...]}: how ai-edge-quantizer calibrates.

    ``info``: the source's ``describe``; ``order``: the signature name of each array of
    ``x_calib`` (``input_names``).
    """
    signatures = {sd["key"]: {"inputs": list(sd["inputs"])} for sd in info["signatures"]}
    if not signatures:
        raise _unsigned(source)
    key = next(iter(signatures))
    names = signatures[key]["inputs"]
    if len(names) != len(x_calib):
        raise UsageError(f"{source} signature {key!r} takes {len(names)} inputs; --data gives "
                         f"{len(x_calib)}", "quantize single-input files with --data")
    if order and sorted(order) == sorted(names):
        names = order
    from ..data.prepare import exact_dtype

    n = len(x_calib[0])
    # ids and masks as they are (a float32 token id: "Got value of type FLOAT32 but expected
    # type INT32"), the rest float32
    return {key: [{name: x[i:i + 1] if exact_dtype(x.dtype) is not None
                   else x[i:i + 1].astype(np.float32) for name, x in zip(names, x_calib)}
                  for i in range(n)]}


def _ort(source: str, mode: str, layers: str, x_calib, log):
    import onnx

    from .onnx import quantize

    if layers != ".*":
        raise UsageError("--layers selects ops in .tflite files", "drop --layers for .onnx")
    proto = onnx.load(str(source))
    target = "cpu"
    log(f"quantizing with ONNX Runtime ({mode}) ...")
    with tempfile.TemporaryDirectory(prefix="edgenn-quantize-"):
        try:
            quantized, info = quantize(proto, ONNX_MODES[mode], target,
                                       x_calib if x_calib is None or len(x_calib) > 1 else x_calib[0])
        except ConversionError as err:  # its advice speaks of convert's flags
            raise ConversionError(err.message, "try --mode dynamic-int8 (it needs no calibration "
                                  "run), or keep the float file" if mode == "int8" else
                                  "export the model again with a current exporter, or keep "
                                  "the float file") from None
    if _quantized_nodes(quantized.graph) <= _quantized_nodes(proto.graph):
        nested = sum(a.type == onnx.AttributeProto.GRAPH for n in proto.graph.node
                     for a in n.attribute)
        where = (f"; {nested} of its ops hold subgraphs (If, Loop, Scan), which ONNX Runtime's "
                 "quantizer does not enter" if nested else "")
        raise ConversionError(f"ONNX Runtime's quantizer found no op to quantize in {source} "
                              f"({mode}){where}; nothing was written",
                              "try --mode int8 with --data, or keep the float file"
                              if mode != "int8" else "keep the float file (ONNX Runtime "
                              "quantizes convolutions, matrix products and a few ops around them)")
    return quantized.SerializeToString(), "onnxruntime", [info.summary()]


_QUANTIZED_OPS = {"DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulInteger",
                  "ConvInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLSTM",
                  "MatMulIntegerToFloat", "QAttention", "QGemm"}


def _quantized_nodes(graph) -> int:
    """Nodes of ``graph`` that compute on integers (top level: what the quantizer rewrites)."""
    return sum(n.op_type in _QUANTIZED_OPS for n in graph.node)
