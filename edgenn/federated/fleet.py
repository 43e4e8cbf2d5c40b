"""The simulated fleet: which device each client is, how fast it trains, whether the model fits.

Simulated time, not wall time, decides who is a straggler, so a run is reproducible on any
machine. A client's simulated round time is

    compute = samples trained * seconds per sample on this machine / speed
    network = bytes down * 8 / downlink + bytes up * 8 / uplink       (when bandwidths are given)

where *seconds per sample* is measured once per run on the trainable .tflite in LiteRT (the
artifact the clients execute), and *speed* is the device's training speed relative to this
machine: given in the config, or the device profile's float32 throughput over the host
profile's. A client whose model does not fit (the trainable model's training-memory bound over
the device's memory limit) is excluded: it receives the round's request and declines.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class ClientDevice:
    device: str
    speed: float
    dropout: float
    memory_mb: float | None
    fits: bool
    uplink_mbps: float | None
    downlink_mbps: float | None

    def seconds(self, samples: int, seconds_per_sample: float, bytes_down: int,
                bytes_up: int) -> float:
        t = samples * seconds_per_sample / self.speed
        if self.downlink_mbps:
            t += bytes_down * 8 / (self.downlink_mbps * 1e6)
        if self.uplink_mbps:
            t += bytes_up * 8 / (self.uplink_mbps * 1e6)
        return float(t)


HOST = ClientDevice("host", 1.0, 0.0, None, True, None, None)


def _counts(fractions: list[float], n: int) -> list[int]:
    """Largest-remainder rounding of n * fractions (sums to n)."""
    raw = np.asarray(fractions) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [int(c) for c in counts]


def plan(cfg, need_bytes: int) -> list[ClientDevice]:
    """One ClientDevice per partition id, assigned by a seeded shuffle in the given fractions."""
    if not cfg.devices:
        return [HOST] * cfg.clients
    from .. import devices as catalog

    host = catalog.load("host")
    kinds = []
    for share in cfg.devices:
        profile = catalog.load(share.profile)
        speed = share.speed
        if speed is None:
            mine, ref = profile.throughput.float32_gmacs, host.throughput.float32_gmacs
            if not (mine and ref):
                raise UsageError(f"device {profile.name} has no float32 throughput to derive a "
                                 "training speed from", f"give speed: for {share.profile} in devices")
            speed = mine / ref
        memory = share.memory_mb or profile.constraints.max_ram_mb or profile.memory_mb
        kinds.append(ClientDevice(profile.name, float(speed), share.dropout, float(memory),
                                  need_bytes <= memory * 2**20, share.uplink_mbps,
                                  share.downlink_mbps))
    counts = _counts([d.fraction for d in cfg.devices], cfg.clients)
    order = np.random.default_rng([cfg.seed, 7]).permutation(cfg.clients)
    fleet: list[ClientDevice] = [HOST] * cfg.clients
    start = 0
    for kind, count in zip(kinds, counts):
        for pid in order[start:start + count]:
            fleet[int(pid)] = kind
        start += count
    return fleet


def summary(fleet: list[ClientDevice], need_bytes: int) -> list[dict]:
    """Per device kind: how many clients, its speed and whether the model fits."""
    seen: dict[str, dict] = {}
    for d in fleet:
        row = seen.setdefault(d.device, {**asdict(d), "clients": 0,
                                         "need_mb": round(need_bytes / 2**20, 3)})
        row["clients"] += 1
    return list(seen.values())


def seconds_per_sample(runner, x: np.ndarray, y: np.ndarray, lr: float, batches: int = 20,
                       repeats: int = 3) -> float:
    """Measure training seconds per sample of the trainable model here (best of a few passes)."""
    b = runner.batch_size
    n = min(len(x) // b, batches) * b
    if n == 0:
        raise UsageError(f"the training set has fewer than batch_size={b} samples",
                         "lower batch_size")
    saved = runner.get_weights()
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        runner.train_epoch(x[:n], y[:n], lr, seed=r)
        best = min(best, time.perf_counter() - t0)
    runner.set_weights(saved)
    return best / n
