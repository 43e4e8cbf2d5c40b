"""`edgenn demo`: the main job end to end on an embedded default (digits or Fashion-MNIST).

Train a small reference CNN in Keras 3, save it, load it back through the safe loader and the
bridge, inspect it and compress it with a recipe; everything in one output folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


@dataclass(frozen=True)
class DemoResult:
    """What the demo trained, saved and compressed."""

    data: dict
    epochs: int
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    model: str
    inspect: dict
    compress: dict
    seconds: float
    next: tuple[str, ...]

    exit_code = 0
    failure = None

    def to_dict(self) -> dict:
        return {"data": self.data, "epochs": self.epochs, "train_accuracy": self.train_accuracy,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "model": self.model, "inspect": self.inspect, "compress": self.compress,
                "seconds": self.seconds, "next": list(self.next)}


def run_demo(spec, recipe_name: str, out: Path, *, epochs: int | None = None, seed: int = 0,
             overwrite: bool = False, log=lambda m: None, on_epoch=None) -> DemoResult:
    """Train, save, inspect and compress; the folder appears only when all of it succeeded.

    ``on_epoch(total)`` returns a callback called after each training epoch (a progress bar).
    """
    from . import recipe as rc
    from .data import load, match_model
    from .models.reference import reference_cnn, train
    from .outdir import OutputDir

    recipe_path = rc.resolve(recipe_name)
    recipe = rc.load(str(recipe_path))
    outdir = OutputDir(out, "demo", overwrite=overwrite)
    outdir.check()  # before the training, not after
    started = time.perf_counter()
    log(f"loading {spec.source} ...")
    splits = load(spec)
    sample = splits.sample_shape
    input_shape = sample + (1,) if len(sample) == 2 else sample
    if len(input_shape) != 3:
        raise DataError(f"the demo's CNN needs images; {spec.source} has samples of shape "
                        f"{list(sample)}", "use an image dataset (digits, fashion-mnist, a folder)")
    model = reference_cnn(input_shape, splits.num_classes, seed=seed)
    splits = match_model(splits, (None, *input_shape), splits.num_classes)
    epochs = epochs or (25 if spec.source == "digits" else 3)
    callback = on_epoch(epochs) if on_epoch else None
    history = train(model, splits, epochs, seed=seed,
                    on_epoch=(lambda e, logs: callback()) if callback else None)
    _, test_acc = model.evaluate(splits.x_test, splits.y_test, verbose=0)

    staging = outdir.open()
    try:
        result = _write(model, staging, out, recipe, recipe_path, spec, seed, splits, epochs,
                        history, float(test_acc), started, log)
    except BaseException:
        outdir.abort()
        raise
    outdir.commit()
    result.inspect["path"] = str(out / "model.keras")
    return result


def _write(model, staging: Path, out: Path, recipe, recipe_path, spec, seed, splits, epochs,
           history, test_acc, started, log) -> DemoResult:
    """The demo's files, written into its staging folder; paths in them name ``out``."""
    from .artifacts import write_text
    from .compress.pipeline import run as compress
    from .models.describe import describe_keras
    from .models.formats import detect

    model.save(staging / "model.keras")
    described = describe_keras(detect(staging / "model.keras"))
    log(f"compressing with {recipe.name} ...")
    report = compress(str(staging / "model.keras"), recipe, recipe_path, spec, staging / recipe.name,
                      seed=seed)
    model_path = out / "model.keras"
    tflite = report.artifact_dict(next(a for a in report.artifacts if a.format == "tflite"))
    tflite["path"] = str(out / recipe.name / Path(tflite["path"]).name)
    result = DemoResult(
        data=splits.summary(), epochs=epochs,
        train_accuracy=float(history["accuracy"][-1]),
        val_accuracy=float(history["val_accuracy"][-1]), test_accuracy=test_acc,
        model=str(model_path), inspect=described,
        compress={"recipe": recipe.name, "report": str(out / recipe.name / "report.json"),
                  "tflite": tflite["path"], "bytes": tflite["bytes"],
                  "x_smaller_than_float32": tflite["x_smaller_than_float32"],
                  "accuracy": report.metrics["final"]["accuracy"],
                  "constraints_met": report.exit_code == 0},
        seconds=round(time.perf_counter() - started, 2),
        next=(f"edgenn inspect {tflite['path']}",
              f"edgenn compress {model_path} --recipe prune-80-int8 --data {spec.source} "
              f"-o {out / 'prune-80-int8'}"))
    write_text(staging / "demo.json", json.dumps(result.to_dict(), indent=2))
    return result
