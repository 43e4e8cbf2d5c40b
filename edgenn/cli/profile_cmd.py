"""`edgenn profile MODEL...`: latency and memory, locally or on a device over SSH."""

from __future__ import annotations

from pathlib import Path

import click

from .data_options import parse_input_shapes
from .output import common_options, console, finish, guarded_stdout, warn


def _cpus(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated CPU numbers; received {value!r}") from None


@click.command("profile")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--device", default=None, help="A device profile (name or YAML): runtime, accelerator, limits.")
@click.option("--host", default=None, help="Profile on USER@ADDRESS[:PORT] over SSH.")
@click.option("--identity", type=click.Path(), default=None, help="SSH private key for --host.")
@click.option("--known-hosts", type=click.Path(), default=None,
              help="known_hosts file for --host (host-key checking is always on).")
@click.option("--remote-python", default="python3", show_default=True)
@click.option("--runtime", type=click.Choice(["auto", "litert", "tflite-runtime", "onnxruntime"]),
              default="auto", show_default=True)
@click.option("--accelerator", default=None,
              help="cpu | xnnpack | gpu | edgetpu | delegate:PATH | ep:NAME (default: device's or xnnpack).")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--cpus", callback=_cpus, default=None,
              help="Pin the measurement to these CPUs, e.g. 0,1 (default with --threads N: the "
                   "last N CPUs, so the scheduler cannot move the run between cores).")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=None, help="Timed runs (default 100).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time for this many seconds instead of a run count.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True)
@click.option("--memory-limit", type=click.IntRange(min=64), default=None,
              help="Memory limit for the measuring process, MB.")
@click.option("--op-profile", is_flag=True,
              help="Per-op times where the runtime exposes them (ONNX Runtime).")
@click.option("--calibrate", is_flag=True,
              help="Write the measured GMAC/s back into the --device YAML file (for `estimate`).")
@click.option("--strict", is_flag=True, help="Exit 4 when a device limit is exceeded (default: warn).")
@click.option("--input-shape", "input_shapes", callback=parse_input_shapes, default=None,
              help="Input shape(s) to measure at, e.g. 1x224x224x3 (comma-separated, one per "
                   "input) or by input name, audio=1x512 (the others keep theirs; `scalar` "
                   "for none): needed by a model whose input size is open.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a latency histogram/CDF PNG.")
@common_options
@guarded_stdout
def profile_cmd(models, device, host, identity, known_hosts, remote_python, runtime, accelerator,
                threads, cpus, warmup, runs, duration, timeout, memory_limit, op_profile, calibrate,
                strict, input_shapes, plot) -> None:
    """Measure latency and memory of .tflite/.onnx MODELS in one schema for every runtime.

    Each model runs in its own child process (or on the --host device) with a timeout and a
    memory limit; a crash is an error for that model (exit 3) and the others still report.
    A device profile whose transport is ssh with a host measures there; its user and port fill
    in what --host leaves out.
    """
    from ..profile.run import profile_models, remote_for

    profile = None
    if device:
        from .. import devices as dv

        profile = dv.load(device)
    remote = remote_for(host, profile, identity, known_hosts, remote_python)
    if profile is not None and remote is None and profile.transport.type.value == "ssh":
        warn(f"{profile.name} is reached over ssh but no host is known: measuring on this machine "
             "against its limits; pass --host ADDRESS to measure on the device")
    if plot:
        from ..artifacts import check_writable

        check_writable(Path(plot))
    report = profile_models([Path(m) for m in models], device=profile, remote=remote,
                            runtime=runtime, accelerator=accelerator, threads=threads, cpus=cpus,
                            warmup=warmup, runs=runs, duration=duration, timeout=timeout,
                            memory_limit=memory_limit, op_profile=op_profile, strict=strict,
                            input_shapes=input_shapes)
    measured = [r.measurement for r in report.runs if r.ok]
    if calibrate:
        from dataclasses import replace

        from ..profile.calibrate import calibrate_device

        report = replace(report, calibration=calibrate_device(device, measured))
    if plot:
        from ..profile.plot import plot_latency

        plot_latency(measured, Path(plot))
    finish(report, lambda: _human(report))
    for message in report.warnings:
        warn(message)


def _human(report) -> None:
    from rich.table import Table

    table = Table("model", "runtime", "accel", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
                  "mean ± std", "CV", "peak RSS MB", "bytes", box=None)
    fastest = report.fastest
    if not any(r.ok for r in report.runs):
        return  # nothing measured: the error line that follows names each failure
    for r in report.runs:
        if not r.ok:
            table.add_row(r.model, "-", "-", "-", "-", "-", "-", "-", "failed (see below)", "",
                          "", "")
            continue
        m, lat = r.measurement, r.measurement.latency_ms
        mark = " *" if r.model == fastest and sum(r.ok for r in report.runs) > 1 else ""
        table.add_row(r.model + mark, m.runtime, m.accelerator, f"{m.init_ms:.1f}",
                      f"{m.first_ms:.2f}", f"{lat.p50:.3f}", f"{lat.p90:.3f}", f"{lat.p99:.3f}",
                      f"{lat.mean:.3f} ± {lat.std:.3f}", f"{m.cv:.1%}",
                      f"{m.peak_rss_mb:.0f}", f"{m.model_bytes:,}")
    con = console()
    con.print(table)
    if fastest and sum(r.ok for r in report.runs) > 1:
        con.print(f"* fastest (p50): {fastest}")
    for r in report.runs:  # a failed run's error is in the error line that follows
        if r.ok and r.measurement.op_profile:
            con.print(f"slowest ops in {r.model}:")
            for op in r.measurement.op_profile[:10]:
                con.print(f"  {op['op']:<24} {op['total_ms']:.3f} ms  {op['node']}")
