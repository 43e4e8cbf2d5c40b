"""`edgenn demo`: the main job end to end on an embedded default."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .data_options import data_options, make_spec
from .model_options import limit_option, overwrite_option
from .output import common_options, console, emit, guarded_stdout, info, progress


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
    from .. import recipe as rc
    from ..data import load, match_model
    from ..models.reference import reference_cnn, train
    from ..outdir import OutputDir

    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    recipe_path = rc.resolve(recipe_name)
    recipe = rc.load(str(recipe_path))
    out = Path(output)
    OutputDir(out, "demo", overwrite=overwrite).check()  # before the training, not after
    started = time.perf_counter()
    info(f"loading {spec.source} ...")
    splits = load(spec)
    sample = splits.sample_shape
    input_shape = sample + (1,) if len(sample) == 2 else sample
    if len(input_shape) != 3:
        from ..errors import DataError

        raise DataError(f"the demo's CNN needs images; {spec.source} has samples of shape "
                        f"{list(sample)}", "use an image dataset (digits, fashion-mnist, a folder)")
    model = reference_cnn(input_shape, splits.num_classes, seed=seed)
    splits = match_model(splits, (None, *input_shape), splits.num_classes)
    epochs = epochs or (25 if spec.source == "digits" else 3)

    with progress("training") as bar:
        task = bar.add_task(f"training on {len(splits.x_train)} samples", total=epochs)
        history = train(model, splits, epochs, seed=seed,
                        on_epoch=lambda e, logs: bar.update(task, advance=1))
    _, test_acc = model.evaluate(splits.x_test, splits.y_test, verbose=0)

    outdir = OutputDir(out, "demo", overwrite=overwrite)
    staging = outdir.open()
    try:
        document, described, report = _write(model, staging, out, recipe, recipe_path, spec, seed,
                                             splits, epochs, history, test_acc, started)
    except BaseException:
        outdir.abort()
        raise
    outdir.commit()
    model_path = out / "model.keras"
    described["path"] = str(model_path)

    def human():
        con = console()
        con.print(f"trained {described['name']} on {spec.source}: {len(splits.x_train)} train / "
                  f"{len(splits.x_test)} test samples, {epochs} epochs")
        con.print(f"test accuracy {test_acc:.2%}  (val {document['val_accuracy']:.2%})")
        con.print(f"saved {model_path} ({described['bytes']:,} bytes, Keras {described['keras_version']})"
                  f"; {described['params']:,} params, {described['macs']:,} MACs per sample")
        bridge = described.get("bridge", {})
        if bridge.get("ok"):
            con.print(f"bridged to tf_keras for compression: max |difference| "
                      f"{bridge['max_abs_diff']:.1e}")
        c = document["compress"]
        con.print(f"{c['recipe']}: {c['tflite']} ({c['bytes']:,} bytes, "
                  f"{c['x_smaller_than_float32']:.2f}x smaller than float32), accuracy on LiteRT "
                  f"{c['accuracy']:.2%}")
        con.print(f"report: {out / 'demo.json'}, {c['report']}  ({document['seconds']} s)")
        for line in document["next"]:
            con.print(f"next: {line}")

    emit(document, human)


def _write(model, staging, out, recipe, recipe_path, spec, seed, splits, epochs, history, test_acc,
           started):
    """The demo's files, written into its staging folder; paths in them name ``out``."""
    import json

    from ..artifacts import write_text
    from ..compress.pipeline import run as compress
    from ..models.describe import describe_keras
    from ..models.formats import detect

    model_path = staging / "model.keras"
    model.save(model_path)
    described = describe_keras(detect(model_path))
    info(f"compressing with {recipe.name} ...")
    report = compress(str(model_path), recipe, recipe_path, spec, staging / recipe.name, seed=seed)
    model_path = out / "model.keras"
    tflite = dict(next(a for a in report.artifacts if a["format"] == "tflite"))
    tflite["path"] = str(out / recipe.name / Path(tflite["path"]).name)
    document = {
        "data": splits.summary(),
        "epochs": epochs,
        "train_accuracy": float(history["accuracy"][-1]),
        "val_accuracy": float(history["val_accuracy"][-1]),
        "test_accuracy": float(test_acc),
        "model": str(model_path),
        "inspect": described,
        "compress": {"recipe": recipe.name, "report": str(out / recipe.name / "report.json"),
                     "tflite": tflite["path"], "bytes": tflite["bytes"],
                     "x_smaller_than_float32": tflite["x_smaller_than_float32"],
                     "accuracy": report.metrics["final"]["accuracy"],
                     "constraints_met": report.exit_code == 0},
        "seconds": round(time.perf_counter() - started, 2),
        "next": [f"edgenn inspect {tflite['path']}",
                 f"edgenn compress {model_path} --recipe prune-80-int8 --data {spec.source} "
                 f"-o {out / 'prune-80-int8'}"],
    }
    write_text(staging / "demo.json", json.dumps(document, indent=2))
    return document, described, report

