"""The federated simulation config (YAML), validated like recipes: unknown keys list valid ones."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..yamlio import Strict
from .strategies import STRATEGIES, Strategy


class ClientRuntime(str, Enum):
    tflite = "tflite"
    keras = "keras"


class DeviceShare(Strict):
    """One kind of device in the simulated fleet and the share of clients that are one."""

    profile: str = Field(description="a device profile name (edgenn devices list) or YAML path")
    fraction: float = Field(gt=0, le=1)
    speed: float | None = Field(
        None, gt=0, description="training speed relative to this machine; default: the profile's "
        "float32 throughput over the host profile's")
    dropout: float = Field(0.0, ge=0, lt=1, description="chance a sampled client never replies")
    memory_mb: float | None = Field(
        None, gt=0, description="memory a client may use for training; default: the profile's "
        "constraints.max_ram_mb, else memory_mb")
    uplink_mbps: float | None = Field(None, gt=0, description="upload bandwidth; none: free")
    downlink_mbps: float | None = Field(None, gt=0, description="download bandwidth; none: free")




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
        None, gt=0, description="default: 1.0 fedavgm, 0.03 fedadam, 0.01 fedyogi, 0.1 fedadagrad")
    server_momentum: float = Field(0.7, ge=0, lt=1, description="fedavgm's server momentum")
    server_tau: float | None = Field(
        None, gt=0, description="fedadam/fedyogi/fedadagrad adaptivity, eta * m / (sqrt(v) + tau); "
        "default: 1e-5 fedyogi, 1e-3 (Flower's) fedadam/fedadagrad")
    server_lr_schedule: str = Field(
        "constant", pattern="^(constant|cosine)$",
        description="cosine: the server learning rate of round r is server_lr * (1 + cos(pi * "
        "(r - 1) / rounds)) / 2 (fedavgm, fedadam, fedyogi, fedadagrad)")
    client_runtime: ClientRuntime = ClientRuntime.tflite
    compression: Any = "none"
    failure_rate: float = Field(0.0, ge=0, lt=1, description="chance a sampled client fails")
    devices: list[DeviceShare] | None = None
    round_deadline: float | None = Field(
        None, gt=0, description="simulated seconds; later replies are stragglers, left out")
    host_seconds_per_sample: float | None = Field(
        None, gt=0, description="this machine's training time per sample; default: measured at "
        "the start of the run. Pin it to make simulated times equal across machines")
    evaluate_on: str = Field(
        "test", pattern="^(test|validation)$",
        description="the split the global model is scored on each round; validation (held out "
        "from training) is for choosing hyper-parameters")
    centralized_reference: bool = Field(
        True, description="also train centrally for the same sample passes, for reference")
    seed: int = 0

    @model_validator(mode="after")
    def _server_schedule(self):
        rated = [s.name.value for s in STRATEGIES.values() if s.has_server_rate]
        if self.server_lr_schedule != "constant" and not STRATEGIES[self.strategy].has_server_rate:
            raise ValueError(f"server_lr_schedule {self.server_lr_schedule} needs a strategy with "
                             f"a server learning rate ({', '.join(rated)}); "
                             f"{self.strategy.value} has none")
        return self

    @field_validator("devices")
    @classmethod
    def _devices(cls, value):
        if value is not None:
            if not value:
                raise ValueError("devices needs at least one entry")
            total = sum(d.fraction for d in value)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"device fractions must add up to 1; they add up to {total:g}")
        return value

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
