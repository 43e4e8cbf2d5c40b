"""What `edgenn fit` was asked: the model, data, device, budgets and how to search."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class FitSettings:
    """What `edgenn fit` was asked (the CLI's flags)."""

    model: str
    data_args: list[str]
    device: str
    max_drop: float | None = None  # percentage points of validation accuracy
    max_latency_ms: float | None = None
    max_bytes: int | None = None
    max_ram_mb: float | None = None
    trials: int = 20
    time_budget_min: float | None = None
    workers: int = 1
    ray_address: str | None = None
    seed: int = 0
    epochs_scale: float = 1.0
    compare: tuple[str, ...] = ()
    distill: bool = True
    trial_timeout: float | None = None
    allow_unsafe: bool = False
    custom_objects: str | None = None
    host: str | None = None  # USER@ADDRESS[:PORT]: latency measured on the board over SSH
    ssh_identity: str | None = None  # --identity
    known_hosts: str | None = None
    remote_python: str = "python3"

    def identity(self) -> dict:
        """What a journal must match to be resumed (budgets and counts may change)."""
        from ..artifacts import sha256

        model = Path(self.model)
        return {"model": str(model.resolve()),
                "model_sha256": sha256(model) if model.is_file() else None,
                "data_args": list(self.data_args), "device": self.device, "seed": self.seed,
                "epochs_scale": self.epochs_scale, "distill": self.distill,
                "host": self.host}  # measured and estimated latencies do not mix

    def budgets(self) -> dict:
        return {k: v for k, v in (("max_drop", self.max_drop),
                                  ("max_latency_ms", self.max_latency_ms),
                                  ("max_bytes", self.max_bytes),
                                  ("max_ram_mb", self.max_ram_mb)) if v is not None}
