"""Issue 17's selective-quantization bar: fit recovers most of what full int8 PTQ loses.

    python bench/selective_fit.py [--model M.keras] [--train-limit 4000] [--epochs 6]
        [--trials 12] [--workers 2] [--time-budget 25] [--recover 0.75] [--out bench/out/selective]

Status (2026-11-28, session 5): **met** on bench/out/zoo2's MobileNetV3Small (`--model`), see
bench/RESULTS.md: full int8 loses 34.1 pt on the test split, fit's best (three layers kept
float, found through their tensors' signal-to-quantization-noise ratio) loses 7.0 (79%
recovered) at 1.06x the int8 latency estimate.

The model: keras.applications MobileNetV3Small (depthwise convolutions, hard-swish, its
built-in preprocessing kept as Keras ships it: Rescaling(1/127.5, offset -1), which expects
0-255 pixels), weights=None, 32x32x3, trained on Fashion-MNIST scaled to [0, 1] (edgenn's
default scaling, and what many users feed it), its BatchNorm statistics then set from the data
(bench/zoo.py's builder: without that, its moving statistics never catch up with a signal this
small and the saved model answers at chance). It learns in float; in int8 its first tensor,
[0, 1] mapped to [-1, -0.992], keeps about two quantization levels. Steps, all through the CLI:
1. train and save the model (Keras 3 `.keras`), unless --model;
2. `compress -r int8-ptq` on the test split: the loss L (input model's test accuracy minus the
   int8 file's) and the int8 file's latency estimate T on raspberry-pi-4; the same on the
   validation split sets fit's accuracy budget (test is never used to choose);
3. `edgenn fit --max-drop (1 - recover) * L_val --max-latency-ms 1.3 T --no-distill`;
4. the bar: fit's best recovers >= 75% of L on the test split at <= 1.3 T (estimate); both
   files' p50 measured here (1 thread) beside it.
Results: OUT/results.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_fashion import cli  # noqa: E402  (the same CLI runner: exit code, JSON, seconds)

DATA = ["--data", "fashion-mnist", "--seed", "0", "--resize", "32x32", "--channels", "3"]
DEVICE = "raspberry-pi-4"


def train(path: Path, limit: int, epochs: int) -> dict:
    import zoo  # the zoo's builder: trained, then BatchNorm statistics from the data

    from edgenn.data import DataSpec, load

    splits = load(DataSpec("fashion-mnist", limit=limit, resize=(32, 32), channels=3))
    t0 = time.monotonic()
    model = zoo.build("MobileNetV3Small", (32, 32, 3), splits.x_train, splits.y_train, epochs)
    acc = float((model.predict(splits.x_test, verbose=0).argmax(1) == splits.y_test).mean())
    model.save(path)
    return {"train_images": len(splits.x_train), "epochs": epochs, "keras_test_accuracy": acc,
            "seconds": round(time.monotonic() - t0, 1)}


def ptq(model: Path, out: Path, split: str) -> dict:
    recipe = out / f"ptq-{split}.yaml"
    recipe.write_text(f"name: ptq-{split}\nexport: {{format: tflite, quantization: int8}}\n"
                      f"evaluate: {{metric: accuracy, split: {split}}}\n")
    code, rep, _ = cli("compress", str(model), "-r", str(recipe), *DATA,
                       "-o", str(out / f"ptq-{split}"), "--overwrite")
    if code != 0:
        raise SystemExit(f"int8-ptq ({split}): exit {code}: {rep.get('error')}")
    art = next(a for a in rep["artifacts"] if a.get("format") != "keras")
    _, est, _ = cli("estimate", art["path"], "--device", DEVICE)
    return {"input": rep["metrics"]["baseline"]["accuracy"], "int8": art["metrics"]["accuracy"],
            "loss_pt": round((rep["metrics"]["baseline"]["accuracy"]
                              - art["metrics"]["accuracy"]) * 100, 3),
            "latency_ms": est["latency_ms"], "bytes": art["bytes"], "path": art["path"]}


def p50(path: str) -> float | None:
    code, prof, _ = cli("profile", path, "--threads", "1", "--runs", "300")
    return prof["results"][0]["latency_ms"]["p50"] if code == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a trained model (skips step 1)")
    parser.add_argument("--train-limit", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-budget", type=float, default=25)
    parser.add_argument("--recover", type=float, default=0.75)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "selective"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model).resolve() if args.model else out / "mobilenetv3small.keras"
    results: dict = {"args": vars(args)}
    if not model.exists():
        results["train"] = train(model, args.train_limit, args.epochs)
        print(f"trained: {results['train']}", flush=True)

    test, val = ptq(model, out, "test"), ptq(model, out, "val")
    results["ptq"] = {"test": test, "val": val}
    print(f"int8 PTQ: test loss {test['loss_pt']} pt, val loss {val['loss_pt']} pt, "
          f"{test['latency_ms']} ms estimated", flush=True)
    if test["loss_pt"] < 2:
        print("full int8 loses < 2 pt on this model: not the bar's case", flush=True)
    max_drop = round((1 - args.recover) * val["loss_pt"], 3)
    max_latency = round(1.3 * test["latency_ms"], 4)
    code, doc, seconds = cli("fit", str(model), *DATA, "--device", DEVICE, "--no-distill",
                             "--max-drop", str(max_drop), "--max-latency-ms", str(max_latency),
                             "--trials", str(args.trials), "--workers", str(args.workers),
                             "--time-budget", str(args.time_budget), "-o", str(out / "fit"),
                             "--overwrite")
    results["fit"] = {"exit_code": code, "seconds": seconds, "max_drop": max_drop,
                      "max_latency_ms": max_latency}
    print(f"fit: exit {code} in {seconds:.0f} s (--max-drop {max_drop} --max-latency-ms "
          f"{max_latency})", flush=True)
    front = json.loads((out / "fit" / "front.json").read_text())
    results["trials"] = [{k: t.get(k) for k in ("number", "label", "status", "accuracy",
                                                 "drop_pt", "drop_se_pt", "latency_ms", "bytes",
                                                 "error")}
                         for t in front["trials"] if t["kind"] == "search"]
    if front["best"] is not None:
        best = next(t for t in front["trials"] if t.get("number") == front["best"]
                    and t["kind"] == "search")
        base = front["test"]["reference"]["accuracy"]
        best_test = front["test"][str(front["best"])]["accuracy"]
        loss = (base - best_test) * 100
        recovered = 1 - loss / test["loss_pt"] if test["loss_pt"] > 0 else None
        results["bar"] = {
            "best": best["label"], "best_test": best_test, "input_test": base,
            "int8_test": test["int8"], "int8_loss_pt": test["loss_pt"],
            "best_loss_pt": round(loss, 3), "recovered": recovered and round(recovered, 3),
            "latency_ratio": round(best["latency_ms"] / test["latency_ms"], 3),
            "measured_p50_ms_here": {"best": p50(str(out / "fit" / "best.tflite")),
                                     "int8": p50(test["path"])},
            "met": test["loss_pt"] >= 2 and recovered is not None
            and recovered >= args.recover and best["latency_ms"] <= 1.3 * test["latency_ms"]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: results.get(k) for k in ("train", "fit", "bar")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
