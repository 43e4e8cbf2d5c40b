"""Compress client updates (weight deltas) on the way up: int8 quantization or top-k sparsity.

Each codec returns what travels (with its byte count) and decodes it on the server. Top-k keeps
the residual it did not send and adds it to the next round's delta (error feedback), so nothing
is lost for good, only delayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def nbytes(update: dict[str, np.ndarray]) -> int:
    return int(sum(v.nbytes for v in update.values()))


def quantize_int8(delta: dict[str, np.ndarray]) -> tuple[dict, int]:
    """Symmetric per-tensor int8: 1 byte per value plus a float32 scale per tensor."""
    packed, size = {}, 0
    for name, value in delta.items():
        scale = float(np.max(np.abs(value))) / 127.0 if value.size else 0.0
        q = np.zeros(value.shape, np.int8) if scale == 0 else np.clip(
            np.round(value / scale), -127, 127).astype(np.int8)
        packed[name] = (q, np.float32(scale))
        size += q.nbytes + 4
    return packed, size


def dequantize_int8(packed: dict) -> dict[str, np.ndarray]:
    return {name: q.astype(np.float32) * scale for name, (q, scale) in packed.items()}


@dataclass
class TopK:
    """Keep the largest ``fraction`` of each tensor's entries; remember the rest."""

    fraction: float
    residual: dict[str, np.ndarray] = field(default_factory=dict)

    def encode(self, delta: dict[str, np.ndarray]) -> tuple[dict, int]:
        packed, size = {}, 0
        for name, value in delta.items():
            full = value + self.residual.get(name, 0.0)
            flat = full.ravel()
            k = max(1, int(round(self.fraction * flat.size)))
            idx = np.argpartition(np.abs(flat), -k)[-k:].astype(np.int32)
            vals = flat[idx].astype(np.float32)
            sent = np.zeros_like(flat)
            sent[idx] = vals
            self.residual[name] = (flat - sent).reshape(value.shape)
            packed[name] = (idx, vals, value.shape)
            size += idx.nbytes + vals.nbytes
        return packed, size

    @staticmethod
    def decode(packed: dict) -> dict[str, np.ndarray]:
        out = {}
        for name, (idx, vals, shape) in packed.items():
            flat = np.zeros(int(np.prod(shape)), np.float32)
            flat[idx] = vals
            out[name] = flat.reshape(shape)
        return out
