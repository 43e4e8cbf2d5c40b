"""The federated simulation config (YAML), validated like recipes: unknown keys list valid ones."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, field_validator

from ..yamlio import Strict


class Strategy(str, Enum):
    fedavg = "fedavg"
    fedavgm = "fedavgm"
    fedprox = "fedprox"
    fedadam = "fedadam"
    fedyogi = "fedyogi"
    fedadagrad = "fedadagrad"


class ClientRuntime(str, Enum):
    tflite = "tflite"
    keras = "keras"


class SimulationConfig(Strict):
    model: str = "builtin:mlp"
    data: str = "fashion-mnist"
    clients: int = Field(10, ge=1)
    partition: Any = "iid"
    rounds: int = Field(5, ge=1)
    fraction_fit: float = Field(0.1, gt=0, le=1)
    min_fit_clients: int = Field(1, ge=1)
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    strategy: Strategy = Strategy.fedavg
    mu: float = Field(0.01, ge=0, description="FedProx proximal weight")
    server_lr: float | None = Field(
        None, gt=0, description="default: 1.0 fedavgm, 0.01 fedadam/fedyogi, 0.1 fedadagrad")
    server_momentum: float = Field(0.9, ge=0, lt=1)
    client_runtime: ClientRuntime = ClientRuntime.tflite
    compression: Any = "none"
    failure_rate: float = Field(0.0, ge=0, lt=1, description="chance a sampled client fails")
    seed: int = 0

    @field_validator("partition")
    @classmethod
    def _partition(cls, value):
        if value == "iid":
            return value
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "dirichlet" and isinstance(arg, (int, float)) and arg > 0:
                return {"dirichlet": float(arg)}
            if key == "shards" and isinstance(arg, int) and arg >= 1:
                return {"shards": arg}
        raise ValueError("partition must be iid, {dirichlet: ALPHA > 0} or {shards: K >= 1}; "
                         f"received {value!r}")

    @field_validator("compression")
    @classmethod
    def _compression(cls, value):
        if value in ("none", "int8"):
            return value
        if isinstance(value, dict) and set(value) == {"topk"} and 0 < float(value["topk"]) < 1:
            return {"topk": float(value["topk"])}
        raise ValueError(f"compression must be none, int8 or {{topk: FRACTION}}; received {value!r}")
