"""How closely a converted artifact answers like its source model. Numpy only (device side)."""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLDS = {"float32": 0.99, "float16": 0.99, "dynamic": 0.97, "int8": 0.97,
                      "int16x8": 0.97}


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[dict]:
    """Per-output agreement: top-1 agreement, max/mean |difference|, cosine, SNR (dB)."""
    results = []
    for i, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
        cand = np.asarray(cand, dtype=np.float64).reshape(len(cand), -1)
        if ref.shape != cand.shape:
            raise ValueError(f"output {i}: shapes differ {ref.shape} vs {cand.shape}")
        diff = ref - cand
        noise = float(np.sum(diff ** 2))
        signal = float(np.sum(ref ** 2))
        denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
        cos = np.where(denom > 0, np.sum(ref * cand, axis=1) / np.maximum(denom, 1e-30), 1.0)
        entry = {
            "output": i,
            "max_abs_diff": float(np.max(np.abs(diff))) if diff.size else 0.0,
            "mean_abs_diff": float(np.mean(np.abs(diff))) if diff.size else 0.0,
            "cosine": float(np.mean(cos)),
            "snr_db": float("inf") if noise == 0 else round(10 * np.log10(max(signal, 1e-30) / noise), 3),
        }
        if ref.shape[1] > 1:
            entry["top1_agreement"] = float(np.mean(ref.argmax(1) == cand.argmax(1)))
        results.append(entry)
    return results


def verdict(per_output: list[dict], threshold: float) -> tuple[bool, float | None]:
    """(passes, worst top-1 agreement); outputs without classes pass on agreement."""
    agreements = [o["top1_agreement"] for o in per_output if "top1_agreement" in o]
    worst = min(agreements) if agreements else None
    return (worst is None or worst >= threshold), worst
