"""Probe LiteRT's hardware accelerators (GPU via WebGPU/OpenCL/Vulkan). No TensorFlow."""

from __future__ import annotations

import gc
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..quiet import quiet_stderr


@dataclass(frozen=True)
class GpuProbe:
    """Whether LiteRT could compile the model for its GPU accelerator here."""

    available: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def probe_gpu(model: str | Path) -> GpuProbe:
    """Try to compile ``model`` for LiteRT's GPU accelerator; say plainly what happened."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    except ImportError as err:
        return GpuProbe(False, f"ai-edge-litert has no CompiledModel API ({err})")
    error = None
    with quiet_stderr():
        try:
            CompiledModel.from_file(str(model), hardware_accel=HardwareAccelerator.GPU)
        except RuntimeError as err:
            error = str(err)  # not the exception: its traceback would keep LiteRT's objects alive
        # LiteRT logs "INFO: ... DestroyAccelerator" when its environment is freed: free it here,
        # inside the silenced block, not later in the middle of the command's output.
        gc.collect()
    if error is not None:
        # LiteRT prefixes its C++ source location ("ERROR: [./litert/cc/...:1961]"): drop it.
        # What is left is often only tree-drawing characters: then there is no reason to give.
        reason = re.sub(r"ERROR:\s*\[[^\]]*\]\s*", "", " ".join(error.split()))
        reason = reason.strip(" \u2514\u251c\u2502\u2500:")[:160]
        detail = f": {reason}" if re.search(r"[A-Za-z]{3}", reason) else ""
        return GpuProbe(False, "LiteRT could not create its GPU accelerator on this machine (no "
                               f"GPU adapter{detail}); the pre-flight is static analysis only")
    return GpuProbe(True, "LiteRT compiled the model for the GPU accelerator")
