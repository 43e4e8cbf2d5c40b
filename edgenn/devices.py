"""Device profiles: the schema of `devices/*.yaml` and lookup by name or path."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator

from .builtin import Catalog
from .yamlio import Strict, load_model_file  # noqa: F401 (re-exported)


class Arch(str, Enum):
    x86_64 = "x86_64"
    aarch64 = "aarch64"
    armv7l = "armv7l"


class Runtime(str, Enum):
    litert = "litert"
    tflite_runtime = "tflite-runtime"
    onnxruntime = "onnxruntime"


class Accelerator(str, Enum):
    cpu = "cpu"
    xnnpack = "xnnpack"
    gpu = "gpu"
    edgetpu = "edgetpu"
    nnapi = "nnapi"


class TransportKind(str, Enum):
    local = "local"
    ssh = "ssh"


class Transport(Strict):
    type: TransportKind = TransportKind.local
    host: str | None = None
    user: str | None = None
    port: int = Field(22, gt=0, lt=65536)

    @model_validator(mode="after")
    def _check(self):
        if self.type is TransportKind.local and self.host:
            raise ValueError("a local transport takes no host; use type: ssh")
        return self


class DeviceConstraints(Strict):
    max_model_bytes: int | None = Field(None, gt=0)
    max_ram_mb: float | None = Field(None, gt=0)


class Throughput(Strict):
    """Sustained multiply-accumulates per second, for `edgenn estimate` (GMAC/s)."""

    float32_gmacs: float | None = Field(None, gt=0)
    float16_gmacs: float | None = Field(None, gt=0)
    int8_gmacs: float | None = Field(None, gt=0)
    source: str = Field("published", description="published | measured | guessed")


class DeviceProfile(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    arch: Arch
    cores: int = Field(gt=0)
    memory_mb: int = Field(gt=0)
    transport: Transport = Field(default_factory=Transport)
    runtimes: list[Runtime] = Field(min_length=1)
    accelerators: list[Accelerator] = Field(min_length=1)
    default_runtime: Runtime | None = None
    default_accelerator: Accelerator | None = None
    constraints: DeviceConstraints = Field(default_factory=DeviceConstraints)
    throughput: Throughput = Field(default_factory=Throughput)

    @model_validator(mode="after")
    def _defaults_are_listed(self):
        if self.default_runtime and self.default_runtime not in self.runtimes:
            raise ValueError(
                f"default_runtime {self.default_runtime.value!r} is not in runtimes "
                f"({', '.join(r.value for r in self.runtimes)})"
            )
        if self.default_accelerator and self.default_accelerator not in self.accelerators:
            raise ValueError(
                f"default_accelerator {self.default_accelerator.value!r} is not in accelerators "
                f"({', '.join(a.value for a in self.accelerators)})"
            )
        return self

    @property
    def runtime(self) -> Runtime:
        return self.default_runtime or self.runtimes[0]

    @property
    def accelerator(self) -> Accelerator:
        return self.default_accelerator or self.accelerators[0]


CATALOG = Catalog("devices", "device profile", DeviceProfile)
builtin_devices = CATALOG.builtin
resolve = CATALOG.resolve
load = CATALOG.load
