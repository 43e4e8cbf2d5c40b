"""Probe LiteRT's hardware accelerators (GPU via WebGPU/OpenCL/Vulkan). No TensorFlow."""

from __future__ import annotations

from pathlib import Path

from ..quiet import quiet_stderr


def probe_gpu(model: str | Path) -> dict:
    """Try to compile ``model`` for LiteRT's GPU accelerator; say plainly what happened."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    except ImportError as err:
        return {"available": False, "message": f"ai-edge-litert has no CompiledModel API ({err})"}
    try:
        with quiet_stderr():
            CompiledModel.from_file(str(model), hardware_accel=HardwareAccelerator.GPU)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:200]
        return {"available": False,
                "message": "LiteRT could not create its GPU accelerator on this machine (no GPU "
                           f"adapter found: {first}); the pre-flight above is static analysis only"}
    return {"available": True, "message": "LiteRT compiled the model for the GPU accelerator"}
