"""CPU pre-flight: builtin ops only (XNNPACK and the reference kernels); Flex and custom ops flagged."""

from __future__ import annotations

from pathlib import Path

from ..runtime.tflite_info import describe
from ..runtime.tflite_ops import read_ops
from .preflight import OpCheck, Preflight


def analyse(path: str | Path) -> Preflight:
    """Ops the stock LiteRT CPU runtime cannot run (Select TF ops need the Flex delegate)."""
    info = describe(path)
    ops, _ = read_ops(path)
    rows = []
    for op in ops:
        problem = None
        if op.name.startswith("Flex"):
            problem = f"{op.name} is a Select TF (Flex) op: stock ai-edge-litert and tflite-runtime lack it"
        elif op.name in info["custom_ops"]:
            problem = f"{op.name} is a custom op: the runtime needs its kernel registered"
        dynamic = [t for t in op.outputs if any(d < 0 for d in t.signature[1:])]
        note = "dynamic shape (XNNPACK re-plans on resize)" if dynamic else None
        rows.append(OpCheck(op.index, op.name, op.layer, problem is None, problem, note))
    problems = tuple(r for r in rows if r.problem)
    return Preflight("cpu", str(path), len(rows), sum(r.maps for r in rows), not problems,
                     problems, tuple(rows), flex_ops=tuple(info["flex_ops"]),
                     custom_ops=tuple(info["custom_ops"]))
