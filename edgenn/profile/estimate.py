"""`edgenn estimate`: latency and RAM for a device you do not have, from MACs and a profile.

Method (an estimate, labelled as one): MACs are counted per op from the .tflite graph (CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL); an op computes in int8 when
its input tensor is int8, else in float32 (float16 on a GPU accelerator when the profile gives
a float16 rate). A WHILE loop (a recurrent layer TFLite does not fuse) counts its body's MACs
once per step, the steps read from the loop's inputs in one run on zeros.
Latency = sum(MACs per dtype / the profile's sustained GMAC/s for that dtype).
RAM is the peak of the tensor arena: non-constant tensors live from the op that writes them to
the last op that reads them; the largest sum of live tensors, plus the weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError
from .costs import Costs

_BYTES = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8,
          "bool": 1}


def _nbytes(t) -> int:
    # A dynamic dimension (-1) counts as 1: the batch of one an edge device runs.
    return math.prod(max(int(d), 1) for d in (t.shape or [1])) * _BYTES.get(t.dtype, 4)


@dataclass(frozen=True)
class Estimate:
    """An estimate (not a measurement) of a model's latency and RAM on a device."""

    model: str
    device: str
    accelerator: str
    throughput_source: str
    macs: dict
    latency_ms: float
    latency_ms_by_dtype: dict
    ram_mb: float
    arena_bytes: int
    weight_bytes: int
    model_bytes: int
    device_checks: tuple
    strict: bool = False
    method: str = "MACs / sustained GMAC/s per dtype; RAM = tensor-arena peak + weights"
    notes: tuple = ()

    @property
    def over(self) -> list:
        return [c for c in self.device_checks if not c.ok]

    @property
    def exit_code(self) -> int:
        """4 when the estimate exceeds the device under --strict, else 0."""
        return 4 if self.strict and self.over else 0

    @property
    def failure(self) -> str | None:
        if not self.exit_code:
            return None
        return (f"{len(self.over)} device limit(s) exceeded on {self.device} (estimate): "
                + "; ".join(f"{c.name} {c.value:,g} > {c.limit:,g}" for c in self.over)
                + ": pick a smaller model or another device, or drop --strict")

    @property
    def warnings(self) -> list[str]:
        return [f"{self.model}: estimated {c.name} {c.value:,g} exceeds {self.device}'s "
                f"{c.limit:,g}; the model will not fit as it is" for c in self.over] + [
                f"{self.model}: {note}" for note in self.notes]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["device_checks"] = [c.to_dict() for c in self.device_checks]
        out["estimate"] = True
        del out["strict"]
        return out


def tflite_costs(path: str | Path, input_shapes: list | None = None) -> Costs:
    """MACs per compute dtype, the tensor-arena peak and the weight bytes of a .tflite model.

    ``input_shapes`` (``--input-shape``): the size the inputs are fed at, where the file's own
    is open. The shapes stored for an open axis are 1s: SpliceAI, fed 11,000 positions, was
    estimated at one position (693 thousand MACs where it computes 3.8 billion), so an open
    size is refused without them, and with them every tensor takes the shape LiteRT gives it
    at that size.
    """
    from ..runtime.layout import resolve_input_shapes
    from ..runtime.tflite_ops import read_ops, read_subgraphs

    ops, facts = read_ops(path)
    shapes = resolve_input_shapes(Path(path), input_shapes, purpose="estimate")
    loops = [op for op in ops if op.name == "WHILE" and "body" in op.options]
    parts = read_subgraphs(path, sorted({op.options[k] for op in loops for k in ("body", "cond")}))
    steps: dict[int, int] = {}
    if shapes or loops:
        sized, values = _sized(path, shapes, [t.index for op in loops for t in _counters(op)])
        for op in ops:
            for t in op.inputs + op.outputs:
                t.shape = sized.get(t.index, t.shape)
        for op in loops:
            steps[op.index] = _loop_steps(op, *parts[op.options["cond"]], values)
    macs: dict[str, int] = {}
    notes: list[str] = []
    weight_bytes = 0
    for op in ops:
        _add_macs(macs, op)
    for op in loops:
        body, _ = parts[op.options["body"]]
        per_step: dict[str, int] = {}
        for inner in body:
            _add_macs(per_step, inner)
        weight_bytes += sum(_nbytes(t) for inner in body for t in inner.inputs if t.constant)
        count = steps.get(op.index, 0)
        if count <= 0 and per_step:
            notes.append(f"the step count of loop {op.layer} could not be read: its body's "
                         f"{sum(per_step.values()):,} MACs are counted once")
        for dtype, n in per_step.items():
            macs[dtype] = macs.get(dtype, 0) + n * max(count, 1)

    # Liveness of activations: first writer to last reader, in execution order; the peak of the
    # live sum, swept over start and end events (linear in tensors, whatever the op count).
    first, last, size = {}, {}, {}
    for op in ops:
        for t in op.outputs + op.inputs:
            if t.constant:
                continue
            size[t.name] = _nbytes(t)
            first.setdefault(t.name, op.index)
            last[t.name] = op.index
    events = sorted([(first[n], 0, size[n]) for n in size] + [(last[n] + 1, -1, -size[n]) for n in size])
    peak = live = 0
    for _, _, delta in events:
        live += delta
        peak = max(peak, live)
    weight_bytes += sum(_nbytes(t) for op in ops for t in op.inputs if t.constant)
    return Costs(macs, peak, weight_bytes, facts["bytes"], tuple(notes))


def _add_macs(macs: dict, op) -> None:
    """Add ``op``'s multiply-accumulates to ``macs`` under the dtype it computes in."""
    n = 0
    out = math.prod(max(d, 1) for d in op.outputs[0].shape) if op.outputs and op.outputs[0].shape else 0
    weights = op.inputs[1].shape if len(op.inputs) > 1 else []
    if op.name == "CONV_2D" and len(weights) == 4:
        n = out * weights[1] * weights[2] * weights[3]
    elif op.name == "DEPTHWISE_CONV_2D" and len(weights) == 4:
        n = out * weights[1] * weights[2]
    elif op.name == "FULLY_CONNECTED" and len(weights) == 2:
        n = out * weights[1]
    elif op.name == "TRANSPOSE_CONV" and len(op.inputs) > 2:
        w = op.inputs[1].shape
        n = math.prod(op.inputs[2].shape) * w[1] * w[2] * w[0] if len(w) == 4 else 0
    elif op.name == "BATCH_MATMUL" and op.inputs[0].shape:
        n = out * op.inputs[0].shape[-1]
    if n:
        dtype = "int8" if op.inputs[0].dtype in ("int8", "uint8") else "float32"
        macs[dtype] = macs.get(dtype, 0) + int(n)


def _counters(loop) -> list:
    """A WHILE op's scalar integer inputs: its step counters and the count they run to."""
    return [t for t in loop.inputs if t.dtype in ("int32", "int64") and not t.shape]


def _loop_steps(loop, cond: list, facts: dict, values: dict[int, int]) -> int:
    """How many steps a WHILE op runs: the smallest bound its condition compares a counter with.

    Keras's RNN loop runs while ``step < bound and time < bound``; the bound is a constant in
    the condition's subgraph (``cond``, its ops) where the time axis is fixed, else one of the
    loop's inputs (its value in ``values``, read after a run). 0 when no bound is found.
    """
    args = [t.index for t in facts["inputs"]]
    bounds = []
    for op in cond:
        if op.name not in ("LESS", "LESS_EQUAL") or len(op.inputs) != 2:
            continue
        bound = op.inputs[1]
        if bound.constant:
            value = bound.value
        elif bound.index in args and args.index(bound.index) < len(loop.inputs):
            value = values.get(loop.inputs[args.index(bound.index)].index)
        else:
            value = None
        if value is not None and value > 0:
            bounds.append(value + (op.name == "LESS_EQUAL"))
    return min(bounds, default=0)


def _sized(path: str | Path, shapes: list[list[int]] | None,
           read: list[int] = ()) -> tuple[dict[int, list[int]], dict[int, int]]:
    """({tensor index: shape}, {index in ``read``: its value}) after one LiteRT run on zeros.

    ``shapes``: the inputs are resized to them first (None: the file's own). The run is a
    child with an address-space limit (`isolate.run_child`): a file may declare any arena.
    """
    import json

    from .isolate import run_child

    what = (f"{path} at --input-shape {','.join('x'.join(map(str, s)) for s in shapes)}"
            if shapes else f"{path} run once to count its loops' steps")
    doc = run_child("edgenn.profile.estimate", [str(path), json.dumps(shapes), json.dumps(
        list(read))], what, "choose a size the model takes (as its training data had)"
        if shapes else "profile it on the device instead (edgenn profile)")
    return ({int(k): v for k, v in doc["shapes"].items()},
            {int(k): v for k, v in doc["values"].items()})


def _sized_here(path: str, shapes: list[list[int]] | None, read: list[int]) -> dict:
    """The child's side of `_sized`."""
    import numpy as np

    from ..quiet import quiet_stderr
    from ..runtime.litert import _interpreter_class

    with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate"
        # no default delegate: XNNPACK keeps the shapes inside its partition to itself
        from ai_edge_litert import interpreter as litert

        interpreter = _interpreter_class()(
            model_path=str(path), experimental_op_resolver_type=(
                litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
            experimental_preserve_all_tensors=bool(read))
        for detail, shape in zip(interpreter.get_input_details(), shapes or ()):
            interpreter.resize_tensor_input(detail["index"], shape, strict=False)
        interpreter.allocate_tensors()
        # one run on zeros: a tensor whose shape a kernel computes as it runs (a dilated
        # convolution's SPACE_TO_BATCH_ND) keeps its stored shape until then
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        try:
            interpreter.invoke()
        except RuntimeError as err:  # its reasons go to the stderr quieted above
            raise RuntimeError(str(err).strip() or "LiteRT stopped without a message (the size "
                               "is too large to run, or one of its ops refuses it)") from None
        values = {i: int(np.asarray(interpreter.get_tensor(i)).ravel()[0]) for i in read}
    return {"shapes": {int(d["index"]): [int(x) for x in d["shape"]]
                       for d in interpreter.get_tensor_details()}, "values": values}


def estimate(path: str | Path, device, accelerator: str | None = None,
             strict: bool = False, input_shapes: list | None = None) -> Estimate:
    """Estimated latency (ms) and RAM (MB) of a .tflite model on ``device``."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        from .onnx_costs import onnx_costs

        costs = onnx_costs(p, input_shapes)
    elif p.suffix.lower() == ".tflite":
        costs = tflite_costs(p, input_shapes)
    else:
        raise UsageError(f"estimate reads .tflite and .onnx models; received {path}",
                         "convert a Keras model first: edgenn convert MODEL --to tflite -o m.tflite")
    t = device.throughput
    # an ONNX model runs on ONNX Runtime's CPU kernels, not the device's TFLite delegate
    accel = accelerator or ("cpu" if p.suffix.lower() == ".onnx" else device.accelerator.value)
    rates = {"int8": t.int8_gmacs, "float32": t.float32_gmacs}
    if accel == "gpu" and t.float16_gmacs:
        rates["float32"] = t.float16_gmacs
    parts, missing = {}, []
    for dtype, n in costs.macs.items():
        rate = rates.get(dtype)
        if not rate:
            missing.append(dtype)
            continue
        parts[dtype] = n / (rate * 1e9) * 1000
    if missing:
        raise UsageError(f"device {device.name} gives no {', '.join(missing)} throughput",
                         "add throughput.<dtype>_gmacs to its profile, or measure with "
                         "`edgenn profile --calibrate` on the device")
    ram_mb = (costs.arena_bytes + costs.weight_bytes) / 2**20
    return Estimate(str(p), device.name, accel, t.source, costs.macs, round(sum(parts.values()), 4),
                    {k: round(v, 4) for k, v in parts.items()}, round(ram_mb, 3), costs.arena_bytes,
                    costs.weight_bytes, costs.model_bytes,
                    device_checks(device, ram_mb, costs.model_bytes), strict, notes=costs.notes)


def device_checks(device, ram_mb: float, model_bytes: int) -> tuple:
    """The estimate against the device: its memory, and the limits its profile sets."""
    from .result import DeviceCheck

    c = device.constraints
    checks = [DeviceCheck("memory_mb", device.memory_mb, round(ram_mb, 3), ram_mb <= device.memory_mb)]
    if c.max_ram_mb is not None:
        checks.append(DeviceCheck("max_ram_mb", c.max_ram_mb, round(ram_mb, 3), ram_mb <= c.max_ram_mb))
    if c.max_model_bytes is not None:
        checks.append(DeviceCheck("max_model_bytes", c.max_model_bytes, model_bytes,
                                  model_bytes <= c.max_model_bytes))
    return tuple(checks)


if __name__ == "__main__":
    import json
    import sys

    from .isolate import child_output

    child_output(lambda: _sized_here(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])))
