"""CPU pre-flight: builtin ops only (XNNPACK and the reference kernels); Flex and custom ops flagged."""

from __future__ import annotations

from pathlib import Path

from ..runtime.tflite_info import describe
from .compat import read_ops


def analyse(path: str | Path) -> dict:
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
        rows.append({"index": op.index, "op": op.name, "layer": op.layer, "maps": problem is None,
                     "problem": problem, "note": note})
    problems = [r for r in rows if r["problem"]]
    return {"target": "cpu", "model": str(path), "ops": len(rows),
            "mapped": sum(r["maps"] for r in rows), "whole_graph_maps": not problems,
            "problems": problems, "flex_ops": info["flex_ops"], "custom_ops": info["custom_ops"],
            "per_op": rows}
