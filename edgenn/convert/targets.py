"""The pre-flight of each target, by name: a .tflite against the ops that target runs."""

from __future__ import annotations

from pathlib import Path

from .preflight import Preflight


def preflight(path: str | Path, target: str) -> Preflight:
    """The target's static compatibility analysis of a .tflite file (no TensorFlow)."""
    if target == "edgetpu":
        from .edgetpu import analyse
    elif target == "gpu":
        from .gpu import analyse
    else:
        from .cpu import analyse
    return analyse(path)
