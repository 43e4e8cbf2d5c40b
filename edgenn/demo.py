"""`edgenn demo`: the whole product end to end on an embedded default (digits or Fashion-MNIST).

Train a small reference CNN in Keras 3, save it, load it back through the safe loader and the
bridge, inspect it and compress it with a recipe (`--quick` stops there). The full demo then
compresses with two more recipes (pruning, distillation), converts to int8 ONNX and to the Edge
TPU, simulates a short federated run with LiteRT clients (a small MLP), and writes one
report.html that profiles every artifact here and estimates it on two device profiles. One
output folder.
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
    more: dict | None = None  # the full demo: other recipes, conversions, federated, report

    exit_code = 0
    failure = None

    def to_dict(self) -> dict:
        return {"data": self.data, "epochs": self.epochs, "train_accuracy": self.train_accuracy,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "model": self.model, "inspect": self.inspect, "compress": self.compress,
                "seconds": self.seconds, "next": list(self.next), "more": self.more}


FULL_RECIPES = ("prune-80-int8", "distill-half-int8")
DEVICES = ("raspberry-pi-4", "pixel-phone")


def run_demo(spec, recipe_name: str, out: Path, *, epochs: int | None = None, seed: int = 0,
             overwrite: bool = False, log=lambda m: None, on_epoch=None,
             quick: bool = False) -> DemoResult:
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
        if not quick:
            result = _more(result, staging, out, spec, seed, log, started)
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


def _more(result: DemoResult, staging: Path, out: Path, spec, seed: int, log,
          started: float) -> DemoResult:
    """The rest of the product on the trained model: what `--quick` leaves out."""
    from dataclasses import replace

    from . import recipe as rc
    from .artifacts import write_text
    from .compress.pipeline import run as compress
    from .convert.export import ExportSpec
    from .convert.run import convert
    from .federated.config import SimulationConfig
    from .federated.simulate import simulate
    from .overview import build, to_html

    model = str(staging / "model.keras")
    more: dict = {"recipes": {}, "convert": {}}
    runs = [staging / result.compress["recipe"]]
    for name in FULL_RECIPES:
        log(f"compressing with {name} ...")
        path = rc.resolve(name)
        report = compress(model, rc.load(str(path)), path, spec, staging / name, seed=seed)
        more["recipes"][name] = {"accuracy": report.metrics["final"]["accuracy"],
                                 "bytes": report.exported[0].bytes,
                                 "constraints_met": report.exit_code == 0}
        runs.append(staging / name)
    conversions = {"onnx-int8": ("onnx", "cpu", "model-int8.onnx"),
                   "edgetpu": ("tflite", "edgetpu", "model-edgetpu.tflite")}
    for label, (to, target, filename) in conversions.items():
        log(f"converting to {label} ...")
        done = convert(model, str(staging / filename), ExportSpec.resolve(to, target, "int8"),
                       data_spec=spec)
        preflight = done.artifact.preflight
        more["convert"][label] = {
            "file": str(out / filename), "bytes": done.artifact.bytes,
            "fidelity": done.fidelity.summary() if done.fidelity else None,
            "edgetpu": preflight.to_dict() if preflight is not None and target == "edgetpu"
            else None}
        runs.append(staging / filename)
    log("federated: 4 simulated devices train a small MLP in LiteRT for 3 rounds ...")
    cfg = SimulationConfig(model="builtin:mlp", data=spec.source, clients=4, rounds=3,
                           fraction_fit=1.0, local_epochs=1, batch_size=16, lr=0.05,
                           client_runtime="tflite", seed=seed)
    fl = simulate(cfg, staging / "federated")
    more["federated"] = {"rounds": len(fl.rounds), "accuracy": fl.rounds[-1].accuracy,
                         "initial_accuracy": fl.initial_accuracy}
    runs.append(staging / "federated")
    log("profiling every artifact here and estimating it on " + ", ".join(DEVICES) + " ...")
    overview = build(runs, list(DEVICES), measure=True)
    write_text(staging / "report.html", to_html(overview))
    more["report"] = str(out / "report.html")
    more["rows"] = [{"run": r.run, "accuracy": r.accuracy, "bytes": r.bytes,
                     "here_p50_ms": r.host_p50_ms, "estimates": r.estimates}
                    for r in overview.rows]
    result = replace(result, more=more, seconds=round(time.perf_counter() - started, 2),
                     next=(f"open {out / 'report.html'}",
                           f"edgenn fit {out / 'model.keras'} --data {spec.source} --device "
                           f"raspberry-pi-4 --max-drop 1 -o {out / 'fit'}"))
    write_text(staging / "demo.json", json.dumps(result.to_dict(), indent=2))
    return result
