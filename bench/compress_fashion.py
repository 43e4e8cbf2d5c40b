"""Issue 3's bar: compression recipes on Fashion-MNIST with a reference CNN this script trains.

Usage: python bench/compress_fashion.py [--teacher-epochs 30] [--teacher-decay-epochs 5]
       [--teacher-width 3] [--[no-]teacher-augment] [--out bench/out/compress] [--recipes A,B]
       [--reuse-teacher | --teacher PATH] [--seed N] [--data-seed N]

The defaults train the teacher of the current figures in bench/RESULTS.md: the reference CNN at
width 3 on flipped and shifted images, 30 epochs then 5 at a tenth of the learning rate.

Bars: int8-ptq >= 3.9x smaller than the float32 .tflite and <= 0.5 pt drop; int8-qat <= 0.2 pt
drop; prune-80-int8 gzip >= 12x smaller than the float32 .tflite gzipped and <= 1.0 pt drop;
distill-half-int8 student <= 1/4 of the teacher's params and >= 0.5 pt above the same student
trained without the teacher for the same epochs. Accuracy of .tflite files is measured by the
LiteRT interpreter on the 10,000-image test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPES = ["int8-ptq", "int8-qat", "prune-80-int8", "distill-half-int8",
           str(ROOT / "bench" / "recipes" / "prune-80-unstructured-int8.yaml")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--teacher-decay-epochs", type=int, default=5,
                        help="then this many more epochs at a tenth of the learning rate")
    parser.add_argument("--teacher-width", type=float, default=3.0,
                        help="the reference CNN's width multiplier (3.0: conv 48/96, dense 384; "
                             "the teacher of the current RESULTS figures)")
    parser.add_argument("--teacher-augment", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="train the teacher on flipped and shifted (2 px) images (default); "
                             "the recipes and the student-alone baseline are unchanged")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "compress"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the train/val split (default: --seed); keep the teacher's "
                             "split when a copied teacher is scored on validation")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--reuse-teacher", action="store_true",
                        help="Use the teacher.keras already in --out instead of training one.")
    parser.add_argument("--teacher", default=None,
                        help="Use this teacher.keras (e.g. another --out's, to score it on "
                             "another --seed) instead of training one; its folder's "
                             "results.json gives the teacher's record")
    args = parser.parse_args()
    out = Path(args.out)
    teacher_path = Path(args.teacher) if args.teacher else out / "teacher.keras"
    reuse = args.reuse_teacher or args.teacher is not None
    if reuse and not teacher_path.is_file():  # before the data is loaded
        parser.error(f"the teacher {teacher_path} does not exist")
    out.mkdir(parents=True, exist_ok=True)

    from edgenn.data import DataSpec, load, match_model
    from edgenn.models.reference import reference_cnn, train

    spec = DataSpec("fashion-mnist", seed=args.seed if args.data_seed is None else args.data_seed)
    splits = load(spec)
    splits = match_model(splits, (None, 28, 28, 1), 10)
    if reuse:
        results_path = out / "results.json"
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        own = teacher_path.parent / "results.json"  # another folder's teacher: its record
        if "teacher" not in results and own != results_path and own.is_file():
            results["teacher"] = json.loads(own.read_text()).get("teacher")
        return run_recipes(args, out, spec, splits, teacher_path, results)
    t0 = time.perf_counter()
    # Width 2: conv 32/64, dense 256 (~0.8 M params); width 3 (default): 48/96, 384 (1.85 M).
    model = reference_cnn((28, 28, 1), 10, width=args.teacher_width, seed=args.seed, fc_units=128,
                          name="fashion_cnn")
    augment = None
    if args.teacher_augment:
        from edgenn.recipe import Augment

        augment = Augment(horizontal_flip=True, shift=2)
    train(model, splits, args.teacher_epochs, batch_size=128, seed=args.seed, augment=augment)
    if args.teacher_decay_epochs:  # a step decay: Adam 1e-3 plateaus near 91% on this model
        train(model, splits, args.teacher_decay_epochs, batch_size=128, learning_rate=1e-4,
              seed=args.seed + 1, augment=augment)
    model.save(teacher_path)
    results = {"teacher": {"path": str(teacher_path), "params": int(model.count_params()),
                           "train_seconds": round(time.perf_counter() - t0, 1),
                           "epochs": args.teacher_epochs, "width": args.teacher_width,
                           "decay_epochs": args.teacher_decay_epochs,
                           "augment": args.teacher_augment}}
    print(f"teacher: {results['teacher']}", flush=True)
    return run_recipes(args, out, spec, splits, teacher_path, results)


def run_recipes(args, out, spec, splits, teacher_path, results) -> int:
    from edgenn import recipe as rc
    from edgenn.compress.pipeline import run

    for item in args.recipes.split(","):
        t0 = time.perf_counter()
        recipe_path = rc.resolve(item)
        name = rc.load(item).name
        report = run(str(teacher_path), rc.load(item), recipe_path, spec, out / name,
                     seed=args.seed, split_seed=spec.seed, log=lambda m: print(m, flush=True))
        doc = report.to_dict()
        tfl = [a for a in doc["artifacts"] if a["format"] == "tflite"][0]
        base = report.metrics["baseline"]["accuracy"]
        final = report.metrics["final"]["accuracy"]
        row = {"baseline_accuracy": base, "final_accuracy": final,
               "drop_pt": round((base - final) * 100, 3),
               "bytes": tfl["bytes"], "gzip_bytes": tfl["gzip_bytes"],
               "float32_bytes": report.reference["float32_tflite_bytes"],
               "float32_gzip_bytes": report.reference["float32_tflite_gzip_bytes"],
               "x_smaller": tfl["x_smaller_than_float32"],
               "gzip_x_smaller": tfl["gzip_x_smaller_than_float32"],
               "steps": [{"name": s.name, "accuracy": s.metrics["accuracy"],
                          "details": s.details} for s in report.steps],
               "seconds": round(time.perf_counter() - t0, 1)}
        recipe = rc.load(item)
        if recipe.steps and recipe.steps[0].technique == "distill":
            row["distill_baseline"] = student_alone_cached(teacher_path, recipe, splits,
                                                           args.seed, results)
            row["distill_gain_pt"] = round(
                (row["steps"][0]["accuracy"] - row["distill_baseline"]["accuracy"]) * 100, 3)
        results[name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


def student_alone_cached(teacher_path: Path, recipe, splits, seed: int, results: dict) -> dict:
    """student_without_teacher, reused across recipes that share its schedule and split."""
    step = recipe.steps[0].config
    key = (f"student_alone:{step.student}:e{step.epochs}:lr{step.learning_rate}:"
           f"{step.lr_schedule.value}:{step.optimizer.value}:b{step.batch_size}:"
           f"{recipe.evaluate.split.value}:seed{seed}")
    if step.augment is not None:  # the student alone trains on the same augmented batches
        key += f":aug-flip{int(step.augment.horizontal_flip)}-shift{step.augment.shift}"
    if key not in results:
        results[key] = student_without_teacher(teacher_path, recipe, splits, seed)
    return results[key]


def student_without_teacher(teacher_path: Path, recipe, splits, seed: int) -> dict:
    """The distill step's student, trained on labels alone with the same schedule."""
    from edgenn.compress.distiller import width_student
    from edgenn.compress.step import StepContext
    from edgenn.compress.train import fit
    from edgenn.evaluate import classification_metrics, keras_predict
    from edgenn.models.load import load_keras

    step = recipe.steps[0].config
    teacher = load_keras(teacher_path).tf_keras_model
    student = width_student(teacher, float(step.student.split("=")[1]))
    t0 = time.perf_counter()
    fit(student, splits, step, StepContext(splits=splits, seed=seed), "student alone")
    x, y = ((splits.x_test, splits.y_test) if recipe.evaluate.split.value == "test"
            else (splits.x_val, splits.y_val))
    acc = classification_metrics(keras_predict(student, x), y)["accuracy"]
    return {"accuracy": acc, "split": recipe.evaluate.split.value,
            "params": int(student.count_params()),
            "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    sys.exit(main())
