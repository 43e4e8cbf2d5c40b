"""`edgenn report RUN_DIR... -o report.html`: compare runs on one page."""

from __future__ import annotations

import click

from .output import common_options, finish, guarded_stdout, info


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="report.html (self-contained page) or report.md.")
@click.option("--device", "devices", multiple=True, default=("raspberry-pi-4",), show_default=True,
              help="Device profiles to estimate latency and RAM on (repeat the flag).")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Also measure each .tflite/.onnx here (profiling agent, 1 thread, p50 of 50 runs).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@common_options
@guarded_stdout
def report_cmd(runs, output, devices, measure, overwrite) -> None:
    """Compare the output folders of compress, fit and federated simulate on one page.

    A table (accuracy, drop, size, gzip size, latency estimate per device, RAM, latency measured
    here), accuracy against latency with size as marker area, federated curves, each run's details.
    No TensorFlow needed.
    """
    from pathlib import Path

    from ..artifacts import write_text
    from ..errors import UsageError
    from ..overview import build, markdown, to_html

    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise UsageError(f"{output}: the report is .html or .md", "name it report.html or report.md")
    if out.exists() and not overwrite:
        raise UsageError(f"{output} exists", "pass --overwrite to replace it, or another -o")
    for run in runs:
        if Path(run).resolve() == out.resolve():
            raise UsageError(f"{output} is one of the runs", "write the report elsewhere")
    overview = build([Path(r) for r in runs], list(devices), measure, log=info)
    text = markdown(overview) if out.suffix.lower() == ".md" else to_html(overview)
    write_text(out, text)
    finish(overview, lambda: info(f"wrote {output} ({len(overview.rows)} model file(s) from "
                                  f"{len(overview.details)} run(s))"))
