"""`edgenn estimate MODEL --device NAME`."""

from __future__ import annotations

import click

from .data_options import parse_input_shapes
from .output import common_options, console, finish, warn


@click.command("estimate")
@click.argument("model", type=click.Path())
@click.option("--device", required=True, help="A device profile (name or YAML).")
@click.option("--accelerator", default=None, help="Override the device's default accelerator.")
@click.option("--strict", is_flag=True,
              help="Exit 4 when the estimate exceeds the device's memory or limits (default: warn).")
@click.option("--input-shape", "input_shapes", callback=parse_input_shapes, default=None,
              help="Input shape(s) to estimate at, e.g. 1x11000x4 (comma-separated, one per "
                   "input, or NAME=SHAPE): needed by a model whose input size is open.")
@common_options
def estimate_cmd(model, device, accelerator, strict, input_shapes) -> None:
    """Estimate latency and RAM of a .tflite or .onnx MODEL on a device you do not have.

    An estimate, not a measurement: MACs per op over the profile's sustained throughput per
    dtype, and the tensor arena's peak plus the weights for RAM. Measure with `edgenn profile`.
    """
    from .. import devices as dv
    from ..models.formats import detect
    from ..profile.estimate import estimate
    from ..profile.run import check_accelerator

    if accelerator:
        check_accelerator(accelerator)
    info = detect(model)
    profile = dv.load(device)
    result = estimate(info.path, profile, accelerator, strict=strict, input_shapes=input_shapes)

    def human():
        con = console()
        macs = ", ".join(f"{v:,} {k}" for k, v in result.macs.items())
        con.print(f"ESTIMATE for {result.model} on {result.device} ({result.accelerator}, "
                  f"throughput {result.throughput_source}): {result.latency_ms:.3f} ms per "
                  f"inference, {result.ram_mb:.2f} MB RAM")
        con.print(f"  MACs: {macs}; arena {result.arena_bytes:,} B + weights "
                  f"{result.weight_bytes:,} B")
        con.print(f"  method: {result.method}")

    finish(result, human)
    for message in result.warnings:
        warn(message)
