"""`edgenn compress MODEL --recipe R --data D -o OUT`."""

from __future__ import annotations

import click

from .data_options import data_options, make_spec
from .model_options import bridge_option, model_options, overwrite_option
from .output import STATE, common_options, console, finish, guarded_stdout, info


def _progress_hook(bar):
    """A StepContext progress hook drawing one rich bar per training phase."""

    def start(description: str, total: int):
        task = bar.add_task(description, total=total)
        return (lambda n=1: bar.update(task, advance=n)), (lambda: bar.update(task, completed=total))

    return start


@click.command("compress")
@click.argument("model", type=click.Path())
@click.option("--recipe", "-r", "recipe_name", required=True,
              help="A built-in recipe name (edgenn recipes list) or a YAML file.")
@data_options()
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output folder for the .tflite, .keras and report.{json,md}.")
@click.option("--epochs-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Multiply every training step's epochs (e.g. 0.1 to try).")
@model_options
@bridge_option
@overwrite_option
@common_options
@guarded_stdout
def compress_cmd(model, recipe_name, data, seed, scale, mean, std, resize, channels, limit, output,
                 epochs_scale, allow_unsafe, custom_objects, bridge_tolerance, overwrite) -> None:
    """Apply a compression recipe to MODEL, export .tflite and report what it cost.

    Accuracy is measured on the input model, after every step (Keras), and on each exported
    .tflite run by the LiteRT interpreter. A recipe constraint not met exits with code 4.
    """
    from .. import recipe as rc
    from ..compress.pipeline import run

    recipe_path = rc.resolve(recipe_name)
    recipe = rc.load(str(recipe_path))
    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    from .output import progress

    with progress("compress") as bar:
        report = run(model, recipe, recipe_path, spec, output, seed=seed,
                     epochs_scale=epochs_scale, allow_unsafe=allow_unsafe,
                     custom_objects_file=custom_objects, overwrite=overwrite,
                     bridge_tolerance=bridge_tolerance,
                     progress=None if (STATE.quiet or STATE.json) else _progress_hook(bar),
                     log=info)
    finish(report, lambda: _human(report, output))


def _human(report, output) -> None:
    con = console()
    metric = report.metrics["metric"]
    first = report.exported[0]
    runtime = "LiteRT" if first.format == "tflite" else "ONNX Runtime"
    base = report.metrics["baseline"].get(metric)
    final = report.metrics["final"].get(metric)
    if base is None or final is None:  # several outputs, none of them scored by this metric
        for name, m in report.metrics["final"].get("outputs", {}).items():
            before = report.metrics["baseline"]["outputs"][name]
            shown = ", ".join(f"{k} {before[k]:.4f} -> {m[k]:.4f}" for k in ("accuracy", "mse")
                              if k in m)
            con.print(f"{report.recipe['name']}: output {name}: {shown} (input, Keras -> "
                      f".{first.format} on {runtime})")
    else:
        con.print(f"{report.recipe['name']}: {metric} {base:.4f} (input, Keras) -> {final:.4f} "
                  f"(.{first.format} on {runtime})"
                  + (f", {100 * (final - base):+.2f} pt" if metric == "accuracy" else ""))
    from ..report import stage_value

    for step in report.steps:
        con.print(f"  after {step.name}: {stage_value(step.metrics, metric)} ({step.seconds:.1f} s)")
    for art in report.artifacts:
        entry = report.artifact_dict(art)
        extra = ""
        if "x_smaller_than_float32" in entry:
            ratio = entry["x_smaller_than_float32"]
            size = (f"{ratio:.2f}x smaller than float32" if ratio >= 1 else
                    f"{1 / ratio:.2f}x larger than float32")
            extra = f", {size} ({art.gzip_bytes:,} gzipped)"
        con.print(f"  wrote {art.path} ({art.bytes:,} bytes{extra})")
        if getattr(art, "preflight", None) is not None and art.spec.target.value != "cpu":
            con.print(f"    pre-flight: {art.preflight.summary()}")
        if getattr(art, "compiler", None) is not None:
            con.print(f"    {art.compiler.summary()}")
    for c in report.constraints:
        con.print(f"  constraint {c.name}: {c.value:g}{c.unit} vs {c.limit:g}{c.unit}: "
                  f"{'met' if c.ok else 'NOT MET'}")
    con.print(f"  report: {output}/report.md")
