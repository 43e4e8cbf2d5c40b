"""`edgenn profile MODEL...`: latency and memory, locally or on a device over SSH."""

from __future__ import annotations

from pathlib import Path

import click

from .output import common_options, console, emit, emit_failure, guarded_stdout, warn


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
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a latency histogram/CDF PNG.")
@common_options
@guarded_stdout
def profile_cmd(models, device, host, identity, known_hosts, remote_python, runtime, accelerator,
                threads, cpus, warmup, runs, duration, timeout, memory_limit, op_profile, calibrate,
                strict, plot) -> None:
    """Measure latency and memory of .tflite/.onnx MODELS in one schema for every runtime.

    Each model runs in its own child process (or on the --host device) with a timeout and a
    memory limit; a crash is an error for that model (exit 3) and the others still report.
    """
    from ..errors import ConstraintError, RuntimeFailure
    from ..profile.isolate import run_local
    from ..profile.run import (
        check_accelerator,
        check_cpus,
        check_device,
        check_model_file,
        pick_accelerator,
        pick_runtime,
    )

    profile = None
    if device:
        from .. import devices as dv

        profile = dv.load(device)
    remote = None
    if host:
        from ..profile.ssh import Remote

        remote = Remote.parse(host, identity=identity, known_hosts=known_hosts, python=remote_python)
    if runs is not None and duration is not None:
        from ..errors import UsageError

        raise UsageError("--runs and --duration exclude each other", "pass one of them")
    if accelerator:
        check_accelerator(accelerator)
    if cpus is not None and remote is None:
        check_cpus(cpus)
    if plot:
        from ..artifacts import check_writable

        check_writable(Path(plot))
    paths = [Path(name) for name in models]
    for path in paths:
        check_model_file(path)
    if cpus is None and threads and remote is None:
        import os

        allowed = sorted(os.sched_getaffinity(0))
        cpus = allowed[-threads:] if threads < len(allowed) else None
    results = []
    for name, path in zip(models, paths):
        rt = pick_runtime(path, runtime, profile)
        accel = pick_accelerator(rt, accelerator, profile)
        config = {"model": str(path.resolve()), "runtime": rt, "accelerator": accel,
                  "threads": threads, "warmup": warmup, "runs": runs, "duration": duration,
                  "op_profile": op_profile, "keep_times": True}
        if remote is not None:
            from ..profile.ssh import run_remote

            result = run_remote(remote, config, timeout=timeout)
        else:
            result = run_local(config, timeout=timeout, memory_mb=memory_limit, cpus=cpus)
        result["model"] = name
        result["cpus"] = cpus
        if profile is not None and "error" not in result:
            result["device"] = profile.name
            result["device_checks"] = check_device(result, profile)
        results.append(result)

    if calibrate:
        from ..profile.calibrate import calibrate_device

        calibration = calibrate_device(device, [r for r in results if "error" not in r])
    if plot:
        from ..profile.plot import plot_latency

        plot_latency([r for r in results if "error" not in r], Path(plot))
    ok = [r for r in results if "error" not in r]
    from ..profile.run import stability

    unstable = []
    for r in ok:
        msg = stability(r)
        r["stable"] = msg is None
        unstable += [msg] if msg else []
    fastest = min(ok, key=lambda r: r["latency_ms"]["p50"])["model"] if ok else None
    document = {"results": [{k: v for k, v in r.items() if k != "times_ms"} for r in results],
                "fastest": fastest}
    if calibrate:
        document["calibration"] = calibration
    failed = [r for r in results if "error" in r]
    over = [(r["model"], c) for r in ok for c in r.get("device_checks", []) if not c["ok"]]
    human = lambda: _human(results, fastest)  # noqa: E731
    if failed:
        emit_failure(document, human, RuntimeFailure(
            "; ".join(f"{r['model']}: {r['error']}" for r in failed),
            failed[0].get("hint") or ("the other models' results were reported" if len(results) > 1
                                      else "check the model with `edgenn inspect`, or rerun with "
                                      "--debug for the runtime's own log")))
    if over and strict:
        emit_failure(document, human, ConstraintError(
            f"{len(over)} device limit(s) exceeded on {profile.name}",
            "pick a smaller model or another device, or drop --strict"))
    emit(document, human)
    for model, c in over:
        warn(f"{model}: {c['name']} {c['value']:g} exceeds the device limit {c['limit']:g}")
    for msg in unstable:
        warn(msg)


def _human(results, fastest) -> None:
    from rich.table import Table

    table = Table("model", "runtime", "accel", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
                  "mean ± std", "CV", "peak RSS MB", "bytes", box=None)
    for r in results:
        if "error" in r:
            table.add_row(r["model"], "-", "-", "-", "-", "-", "-", "-", f"error: {r['error']}", "",
                          "", "")
            continue
        lat = r["latency_ms"]
        mark = " *" if r["model"] == fastest and len(results) > 1 else ""
        table.add_row(r["model"] + mark, r["runtime"], r["accelerator"], f"{r['init_ms']:.1f}",
                      f"{r['first_ms']:.2f}", f"{lat['p50']:.3f}", f"{lat['p90']:.3f}",
                      f"{lat['p99']:.3f}", f"{lat['mean']:.3f} ± {lat['std']:.3f}", f"{r['cv']:.1%}",
                      f"{r['peak_rss_mb']:.0f}", f"{r['model_bytes']:,}")
    con = console()
    con.print(table)
    if fastest and len(results) > 1:
        con.print(f"* fastest (p50): {fastest}")
    for r in results:
        if r.get("op_profile"):
            con.print(f"slowest ops in {r['model']}:")
            for op in r["op_profile"][:10]:
                con.print(f"  {op['op']:<24} {op['total_ms']:.3f} ms  {op['node']}")
