"""`edgenn fit --host`: each trial's latency measured on the board over SSH.

The profile agent runs the exported file on the device (`edgenn profile --host`, the same
transport and runtime selection); its p50 replaces the device estimate as the latency
objective and budget (RAM stays the tensor-arena estimate; the board's peak RSS, which counts
the runtime and the interpreter, is kept beside it). Measurements run one at a time in the driver,
so two trials never share the board while it is timed; training goes on in the workers
meanwhile. No TensorFlow import here.
"""

from __future__ import annotations

from pathlib import Path

# Timed runs per model: enough for a stable p50 of a small model, a few seconds on a board.
RUNS = 50
WARMUP = 5


class Board:
    """The device at ``--host``; `measure` one .tflite at a time."""

    def __init__(self, settings):
        from .. import devices
        from ..profile.run import remote_for

        self.device = devices.load(settings.device)
        self.remote = remote_for(settings.host, self.device, settings.ssh_identity,
                                 settings.known_hosts, settings.remote_python)
        self.where = settings.host
        self.timeout = settings.trial_timeout or 300

    def reach(self) -> None:
        """Log in and run the board's Python once, before anything is trained (exit 3 if not)."""
        import shlex

        if self.remote is None:  # pragma: no cover - settings.host is set when a Board exists
            return
        probe = f"{shlex.quote(self.remote.python)} -c 'import numpy'"
        self.remote.check(self.remote.ssh(probe, timeout=60), "reaching the board")

    def measure(self, path: str | Path) -> dict:
        """{'latency_ms': p50, 'rss_mb': peak RSS} on the board, or {'error': why}."""
        from ..profile.run import profile_models

        report = profile_models([Path(path)], device=self.device, remote=self.remote,
                                warmup=WARMUP, runs=RUNS, timeout=self.timeout)
        run = report.runs[0]
        if not run.ok:
            return {"error": f"measuring on {self.where} failed: {run.error}"}
        m = run.measurement
        return {"latency_ms": round(m.latency_ms.p50, 4), "rss_mb": round(m.peak_rss_mb, 1)}

    def apply(self, row: dict) -> dict:
        """``row`` (a trial's result) with the board's latency; the estimate kept beside it."""
        if row.get("status") != "complete" or not row.get("tflite"):
            return row
        got = self.measure(row["tflite"])
        if "error" in got:
            return {**row, "status": "failed", "error": got["error"]}
        return {**row, "estimate_ms": row.get("latency_ms"), **got, "measured_on": self.where}
