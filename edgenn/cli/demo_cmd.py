"""`edgenn demo`: the main job end to end on an embedded default."""

from __future__ import annotations

from pathlib import Path

import click

from .data_options import data_options, make_spec
from .model_options import limit_option, overwrite_option
from .output import common_options, console, finish, guarded_stdout, info, progress


@click.command("demo")
@data_options(default="digits")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (default: 25 for digits, 3 otherwise).")
@click.option("--recipe", "recipe_name", default="int8-ptq", show_default=True,
              help="The compression recipe the demo applies after training.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="edgenn-demo",
              show_default=True, help="Folder for the model and the report.")
@limit_option
@overwrite_option
@common_options
@guarded_stdout
def demo_cmd(data, seed, scale, mean, std, resize, channels, limit, epochs, recipe_name,
             output, overwrite) -> None:
    """Train a small reference CNN (Keras 3), inspect it, compress it with a recipe.

    With no arguments it uses scikit-learn's digits and takes a few seconds; --data
    fashion-mnist uses the benchmark set. The model is loaded back through edgenn's safe loader
    and Keras 3 -> tf_keras bridge, then compressed (int8-ptq by default) and the .tflite is
    evaluated by LiteRT. As edgenn grows, so does the demo (convert, verify, profile).
    """
    from ..demo import run_demo

    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    out = Path(output)
    with progress("training") as bar:
        def on_epoch(total):
            task = bar.add_task("training", total=total)
            return lambda: bar.update(task, advance=1)

        result = run_demo(spec, recipe_name, out, epochs=epochs, seed=seed, overwrite=overwrite,
                          log=info, on_epoch=on_epoch)

    def human():
        con = console()
        d, described = result.data, result.inspect
        con.print(f"trained {described['name']} on {spec.source}: {d['train']} train / "
                  f"{d['test']} test samples, {result.epochs} epochs")
        con.print(f"test accuracy {result.test_accuracy:.2%}  (val {result.val_accuracy:.2%})")
        con.print(f"saved {result.model} ({described['bytes']:,} bytes, Keras "
                  f"{described['keras_version']}); {described['params']:,} params, "
                  f"{described['macs']:,} MACs per sample")
        bridge = described.get("bridge", {})
        if bridge.get("ok"):
            con.print(f"bridged to tf_keras for compression: max |difference| "
                      f"{bridge['max_abs_diff']:.1e}")
        c = result.compress
        con.print(f"{c['recipe']}: {c['tflite']} ({c['bytes']:,} bytes, "
                  f"{c['x_smaller_than_float32']:.2f}x smaller than float32), accuracy on LiteRT "
                  f"{c['accuracy']:.2%}")
        con.print(f"report: {out / 'demo.json'}, {c['report']}  ({result.seconds} s)")
        for line in result.next:
            con.print(f"next: {line}")

    finish(result, human)
