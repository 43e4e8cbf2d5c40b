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
@click.option("--quick", is_flag=True,
              help="Train and compress with one recipe only (under a minute on digits).")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="edgenn-demo",
              show_default=True, help="Folder for the model and the report.")
@limit_option
@overwrite_option
@common_options
@guarded_stdout
def demo_cmd(data, seed, scale, mean, std, resize, channels, limit, epochs, recipe_name, quick,
             output, overwrite) -> None:
    """The whole product on a small example: train, compress, convert, federate, report.

    With no arguments it uses scikit-learn's digits: a reference CNN (Keras 3) is trained,
    loaded back through edgenn's safe loader and bridge, and compressed with three recipes
    (int8-ptq, prune-80-int8, distill-half-int8); it is converted to int8 ONNX and to the Edge
    TPU; 4 simulated devices train a small MLP federated with LiteRT clients; report.html profiles every
    artifact here and estimates it on two devices. A few minutes on 2 cores; --quick stops after
    the first recipe (under a minute).
    """
    from ..demo import run_demo

    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    out = Path(output)
    with progress("training") as bar:
        def on_epoch(total):
            task = bar.add_task("training", total=total)
            return lambda: bar.update(task, advance=1)

        result = run_demo(spec, recipe_name, out, epochs=epochs, seed=seed, overwrite=overwrite,
                          log=info, on_epoch=on_epoch, quick=quick)

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
        more = result.more
        if more:
            for name, r in more["recipes"].items():
                con.print(f"{name}: accuracy on LiteRT {r['accuracy']:.2%}, {r['bytes']:,} bytes"
                          + ("" if r["constraints_met"] else " (recipe constraint not met)"))
            for name, r in more["convert"].items():
                con.print(f"{name}: {r['file']} ({r['bytes']:,} bytes); {r['fidelity']}")
            f = more["federated"]
            con.print(f"federated: {f['rounds']} rounds, global accuracy "
                      f"{f['initial_accuracy']:.2%} -> {f['accuracy']:.2%}")
            con.print(f"report: {more['report']} (every artifact profiled here and estimated on "
                      "raspberry-pi-4 and pixel-phone)")
        con.print(f"details: {out / 'demo.json'}, {c['report']}  ({result.seconds} s)")
        for line in result.next:
            con.print(f"next: {line}")

    finish(result, human)
