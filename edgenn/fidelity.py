"""How closely a converted artifact answers like its source model. Numpy only (device side)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_THRESHOLDS = {"float32": 0.99, "float16": 0.99, "dynamic": 0.97, "int8": 0.97,
                      "int16x8": 0.97}


@dataclass(frozen=True)
class OutputFidelity:
    """One output of the artifact against the same output of the source model."""

    output: int
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    snr_db: float
    top1_agreement: float | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.top1_agreement is None:
            del out["top1_agreement"]
        return out

    def summary(self) -> str:
        agree = f"top-1 agreement {self.top1_agreement:.4f}, " if self.top1_agreement is not None else ""
        return (f"{agree}max |diff| {self.max_abs_diff:.3g}, mean |diff| {self.mean_abs_diff:.3g}, "
                f"cosine {self.cosine:.5f}, SNR\u00a0{self.snr_db}\u00a0dB")


@dataclass(frozen=True)
class Fidelity:
    """The verdict on an artifact: per-output agreement on ``samples`` inputs from ``data``."""

    samples: int
    data: str
    threshold: float
    passed: bool
    top1_agreement: float | None
    outputs: tuple[OutputFidelity, ...]

    def to_dict(self) -> dict:
        return {"samples": self.samples, "data": self.data, "threshold": self.threshold,
                "passed": self.passed, "top1_agreement": self.top1_agreement,
                "outputs": [o.to_dict() for o in self.outputs]}


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[OutputFidelity]:
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
        results.append(OutputFidelity(
            output=i,
            max_abs_diff=float(np.max(np.abs(diff))) if diff.size else 0.0,
            mean_abs_diff=float(np.mean(np.abs(diff))) if diff.size else 0.0,
            cosine=float(np.mean(cos)),
            snr_db=float("inf") if noise == 0 else round(10 * np.log10(max(signal, 1e-30) / noise), 3),
            top1_agreement=float(np.mean(ref.argmax(1) == cand.argmax(1))) if ref.shape[1] > 1 else None,
        ))
    return results


def judge(reference: list[np.ndarray], candidate: list[np.ndarray], threshold: float,
          data: str) -> Fidelity:
    """Compare and decide: every output with classes must reach ``threshold`` top-1 agreement."""
    outputs = compare_outputs(reference, candidate)
    agreements = [o.top1_agreement for o in outputs if o.top1_agreement is not None]
    worst = min(agreements) if agreements else None
    passed = worst is None or worst >= threshold
    return Fidelity(int(len(reference[0])), data, threshold, passed, worst, tuple(outputs))
