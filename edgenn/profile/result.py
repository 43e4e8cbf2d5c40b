"""Profile results: one measurement (or failure) per model, and the run over all of them.

The agent (``agent.py``) speaks JSON so it can run on a device with nothing of edgenn; its
document becomes a ``Measurement`` here, at the boundary. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

UNSTABLE_CV = 0.05


@dataclass(frozen=True)
class Latency:
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True)
class Measurement:
    """What the agent measured for one model."""

    model: str
    runtime: str
    accelerator: str
    threads: int | None
    model_bytes: int
    init_ms: float
    first_ms: float
    warmup_mean_ms: float | None
    runs: int
    latency_ms: Latency
    cv: float | None
    throughput_per_s: float | None
    peak_rss_mb: float
    rss_growth_mb: float
    baseline_rss_mb: float
    op_profile: tuple[dict, ...] = ()
    times_ms: tuple[float, ...] = ()
    input_shapes: tuple[tuple[int, ...], ...] = ()  # what was fed, batch included

    @classmethod
    def from_agent(cls, doc: dict, model: str) -> Measurement:
        fields = {k: doc.get(k) for k in cls.__dataclass_fields__ if k not in ("model", "latency_ms")}
        fields["op_profile"] = tuple(doc.get("op_profile") or ())
        fields["times_ms"] = tuple(doc.get("times_ms") or ())
        fields["input_shapes"] = tuple(tuple(shape) for shape in doc.get("input_shapes") or ())
        return cls(model=model, latency_ms=Latency(**doc["latency_ms"]), **fields)

    def stability_warning(self) -> str | None:
        """A one-line warning when the timed runs spread too much to trust the mean, else None.

        Latency noise on a shared or busy machine shows up as a coefficient of variation
        (std/mean) over 5%; the p50 is then still a fair figure, the mean and std are not.
        """
        if self.cv is None or self.runs < 10 or self.cv <= UNSTABLE_CV:
            return None
        lat = self.latency_ms
        return (f"{self.model}: unstable timing, CV {self.cv:.1%} over {self.runs} runs (p50 "
                f"{lat.p50:.3f} ms, p99 {lat.p99:.3f} ms, max {lat.max:.3f} ms); quote the p50, "
                "or pin with --cpus, stop other work on the machine and raise --runs")


@dataclass(frozen=True)
class DeviceCheck:
    """A device profile's limit against a measurement or an estimate."""

    name: str
    limit: float
    value: float
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProfileRun:
    """One model: its measurement, or the error that stopped it (a crash is data, not a stop)."""

    model: str
    measurement: Measurement | None = None
    error: str | None = None
    hint: str | None = None
    cpus: tuple[int, ...] | None = None
    device: str | None = None
    device_checks: tuple[DeviceCheck, ...] = ()
    host: str | None = None  # USER@ADDRESS:PORT when measured on a device over ssh

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, times: bool = False) -> dict:
        out: dict = {"model": self.model}
        if self.measurement is not None:
            m = asdict(self.measurement)
            m["model"] = self.model
            m["op_profile"] = list(m["op_profile"])
            m["input_shapes"] = [list(shape) for shape in m["input_shapes"]]
            if times:
                m["times_ms"] = list(m["times_ms"])
            else:
                m.pop("times_ms")
            out.update(m)
            out["stable"] = self.measurement.stability_warning() is None
        if self.error is not None:
            out["error"] = self.error
            if self.hint:
                out["hint"] = self.hint
        out["cpus"] = list(self.cpus) if self.cpus else None
        if self.host is not None:
            out["host"] = self.host
        if self.device is not None:
            out["device"] = self.device
            out["device_checks"] = [c.to_dict() for c in self.device_checks]
        return out


@dataclass(frozen=True)
class ProfileReport:
    """Every model of a `profile` run, the fastest, and what the exit code is."""

    runs: tuple[ProfileRun, ...]
    device: str | None = None
    strict: bool = False
    calibration: dict | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fastest(self) -> str | None:
        ok = [r for r in self.runs if r.ok]
        return min(ok, key=lambda r: r.measurement.latency_ms.p50).model if ok else None

    @property
    def over_limits(self) -> list[tuple[str, DeviceCheck]]:
        return [(r.model, c) for r in self.runs for c in r.device_checks if not c.ok]

    @property
    def warnings(self) -> list[str]:
        out = [f"{model}: {c.name} {c.value:g} exceeds the device limit {c.limit:g}"
               for model, c in self.over_limits]
        return out + [w for r in self.runs if r.ok
                      for w in [r.measurement.stability_warning()] if w] + list(self.notes)

    @property
    def exit_code(self) -> int:
        """3 when a model failed to run; 4 when a device limit is exceeded under --strict."""
        if any(not r.ok for r in self.runs):
            return 3
        if self.strict and self.over_limits:
            return 4
        return 0

    @property
    def failure(self) -> str | None:
        failed = [r for r in self.runs if not r.ok]
        if failed:
            hint = failed[0].hint or ("the other models' results were reported" if len(self.runs) > 1
                                      else "check the model with `edgenn inspect`, or rerun with "
                                           "--debug for the runtime's own log")
            return "; ".join(f"{r.model}: {r.error}" for r in failed) + f": {hint}"
        if self.exit_code == 4:
            return (f"{len(self.over_limits)} device limit(s) exceeded on {self.device}: pick a "
                    "smaller model or another device, or drop --strict")
        return None

    def to_dict(self) -> dict:
        out = {"results": [r.to_dict() for r in self.runs], "fastest": self.fastest,
               "warnings": self.warnings}
        if self.calibration is not None:
            out["calibration"] = self.calibration
        return out
