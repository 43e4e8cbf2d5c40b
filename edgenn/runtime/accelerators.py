"""Probe LiteRT's hardware accelerators (GPU via WebGPU/OpenCL/Vulkan). No TensorFlow."""

from __future__ import annotations

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
    try:
        with quiet_stderr():
            CompiledModel.from_file(str(model), hardware_accel=HardwareAccelerator.GPU)
    except RuntimeError as err:
        # LiteRT prefixes its C++ source location ("ERROR: [./litert/cc/...:1961]"): drop it.
        reason = re.sub(r"ERROR:\s*\[[^\]]*\]\s*", "", " ".join(str(err).split()))[:160]
        return GpuProbe(False, "LiteRT could not create its GPU accelerator on this machine (no "
                               f"GPU adapter: {reason}); the pre-flight is static analysis only")
    return GpuProbe(True, "LiteRT compiled the model for the GPU accelerator")
