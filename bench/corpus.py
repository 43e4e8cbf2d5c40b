"""Model files nobody wrote for edgenn, through every edgenn command that takes them.

    python bench/corpus.py [--jobs 2] [--only SUBSTRING] [--out DIR] [--commands ...] [DIR ...]

Without DIR: every ONNX file the onnx and onnxruntime wheels ship. The onnx wheel carries its
backend test models (PyTorch-exported operators and modules, small hand-built graphs with
sequences, strings and gradients, and "light" copies of model-zoo networks: ResNet50,
Inception, DenseNet, SqueezeNet, VGG19...). With DIR: the .onnx and .tflite files under it
(Session 12 used the test data of the LiteRT repository: see bench/RESULTS.md).

Each file goes through `inspect`, `profile` (3 runs), `quantize --mode dynamic-int8` (random
inputs, 20 samples) and `quantize --mode int8` (calibrated and checked on an .npz of 20 random
samples per input, laid out as edgenn's --data takes them); a .tflite also through `check
--target edgetpu` and `estimate --device raspberry-pi-4`. A row is a defect when a command
exits 1, prints a traceback, times out, or leaves an output behind after failing. Prints one
line per file and a count per exit code.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

EDGENN = [sys.executable, "-m", "edgenn"]
COMMANDS = ("inspect", "check", "estimate", "profile", "dynamic-int8", "int8", "tflite", "onnx")
APPLIES = {".onnx": ("inspect", "profile", "dynamic-int8", "int8"),
           ".tflite": ("inspect", "check", "estimate", "profile", "dynamic-int8", "int8"),
           "savedmodel": ("inspect", "tflite", "onnx", "int8")}


def kind(path: Path) -> str:
    return "savedmodel" if path.is_dir() else path.suffix


def corpus(dirs: list[str]) -> list[Path]:
    if dirs:
        found = [p for d in dirs for p in Path(d).rglob("*") if p.suffix in (".onnx", ".tflite")
                 and p.stat().st_size]
        found += [p.parent for d in dirs for p in Path(d).rglob("saved_model.pb")]
        return sorted(found)
    roots = [Path(onnx.__file__).parent / "backend" / "test" / "data",
             Path(onnxruntime.__file__).parent / "datasets"]
    return sorted(p for root in roots for p in root.rglob("*.onnx"))


def input_specs(path: Path) -> list[tuple[str, list, str]] | None:
    """(name, dims, numpy type name) per input, as the file's runtime reports; None if it refuses."""
    try:
        if path.is_dir():  # a SavedModel: its serving signature, as edgenn reads it
            proc = subprocess.run([*EDGENN, "inspect", str(path), "--json"], capture_output=True,
                                  text=True, timeout=300)
            sigs = {s["key"]: s for s in json.loads(proc.stdout).get("signatures", [])}
            sig = sigs.get("serving_default") or sigs[sorted(sigs)[0]]
            return [(name, [d if d is not None else -1 for d in spec["shape"]],
                     {"string": "string"}.get(spec["dtype"], spec["dtype"]))
                    for name, spec in sig["inputs"].items()]
        if path.suffix == ".onnx":
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            inputs = onnxruntime.InferenceSession(str(path), options).get_inputs()
            out = []
            for i in inputs:
                kind = i.type[len("tensor("):-1] if i.type.startswith("tensor(") else "string"
                out.append((i.name, list(i.shape), {"float": "float32", "double": "float64"}
                            .get(kind, kind)))
            return out
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path))
        runner = interp.get_signature_runner() if interp.get_signature_list() else None
        details = (runner.get_input_details().items() if runner is not None
                   else ((d["name"], d) for d in interp.get_input_details()))
        return [(name, [int(v) for v in d.get("shape_signature", d["shape"])],
                 np.dtype(d["dtype"]).name) for name, d in details]
    except Exception:  # noqa: BLE001 - a file its runtime refuses gets no data
        return None


def random_data(path: Path, target: Path) -> bool:
    """An .npz of 20 random samples per input (x_<name>), samples first; False if none fits.

    Floats are uniform in [0, 1), integers 0 (ids and lengths), booleans random. An input
    without a batch axis is stored once, as a setting.
    """
    from edgenn.runtime.layout import batch_axes

    specs = input_specs(path)
    if not specs or any(kind in ("string", "object", "bytes_") for _, _, kind in specs):
        return False
    rng = np.random.default_rng(0)
    arrays = {}
    for (name, dims, kind), axis in zip(specs, batch_axes([d for _, d, _ in specs])[0]):
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        shape = dims if axis is None else [20] + [d for k, d in enumerate(dims) if k != axis]
        dtype = np.dtype(kind)
        value = (rng.random(shape) if dtype.kind == "f" else rng.integers(0, 2, shape)
                 if dtype.kind == "b" else np.zeros(shape))
        arrays[f"x_{name}"] = value.astype(dtype)
    np.savez(target, **arrays)
    return True


def run_one(path: Path, command: str, work: Path) -> dict:
    out = work / f"{path.parent.name}-{path.stem}-{command}{path.suffix}"
    if command not in APPLIES[kind(path)]:
        return {"code": "-", "line": "", "defect": False}
    if path.is_dir():
        out = out.with_suffix(".onnx" if command == "onnx" else ".tflite")
    if path.is_dir() and command != "inspect":
        args = ["convert", str(path), "--to", "onnx" if command == "onnx" else "tflite",
                "-o", str(out), "--samples", "20"]
        data = work / f"{path.name}.npz"
        if random_data(path, data):
            args += ["--data", str(data)]
        if command == "int8":
            args += ["--quantize", "int8"]
    elif command == "inspect":
        args = ["inspect", str(path)]
    elif command == "check":
        args = ["check", str(path), "--target", "edgetpu"]
    elif command == "estimate":
        args = ["estimate", str(path), "--device", "raspberry-pi-4"]
    elif command == "profile":
        args = ["profile", str(path), "--runs", "3", "--warmup", "1", "--timeout", "120"]
    else:
        args = ["quantize", str(path), "--mode", command, "--samples", "20", "-o", str(out)]
        data = work / f"{path.parent.name}-{path.stem}.npz"
        if command == "int8" and random_data(path, data):
            args += ["--data", str(data)]
    try:
        proc = subprocess.run([*EDGENN, *args, "--json"], capture_output=True, text=True,
                              timeout=300)
    except subprocess.TimeoutExpired:
        return {"code": "timeout", "line": "", "defect": True}
    line = ""
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
        if "error" in doc:
            line = doc["error"]["message"]
    except json.JSONDecodeError:
        line = "stdout is not one JSON document: " + proc.stdout[:120]
    trace = "Traceback" in proc.stderr
    leftover = proc.returncode != 0 and command not in ("inspect", "check", "estimate", "profile") \
        and out.exists() and proc.returncode != 3
    defect = (proc.returncode == 1 or proc.returncode < 0 or trace or leftover
              or line.startswith("stdout is not"))
    if proc.returncode < 0 and not line:
        line = f"killed by signal {-proc.returncode}"
    if trace and not line:
        line = proc.stderr.strip().splitlines()[-1]
    return {"code": proc.returncode, "line": line[:200], "defect": defect}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("dirs", nargs="*")
    ns = ap.parse_args()
    commands = tuple(c for c in COMMANDS if c in ns.commands.split(","))
    files = [p for p in corpus(ns.dirs) if ns.only in str(p)]
    work = Path(ns.out or tempfile.mkdtemp(prefix="edgenn-corpus-"))
    work.mkdir(parents=True, exist_ok=True)
    tasks = [(p, c) for p in files for c in commands]
    results: dict[tuple[Path, str], dict] = {}
    with concurrent.futures.ThreadPoolExecutor(ns.jobs) as pool:
        futures = {pool.submit(run_one, p, c, work): (p, c) for p, c in tasks}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
    counts = collections.Counter()
    defects = 0
    for p in files:
        row = [results[(p, c)] for c in commands]
        codes = " ".join(f"{c}={r['code']}" for c, r in zip(commands, row))
        print(f"{p.parent.name}/{p.name}: {codes}")
        for c, r in zip(commands, row):
            counts[(c, r["code"])] += 1
            if r["defect"]:
                defects += 1
                print(f"  DEFECT {c}: {r['line']}")
            elif r["code"] not in (0,) and r["line"]:
                print(f"  {c}: {r['line']}")
    print(f"\n{len(files)} files; defects: {defects}")
    for (c, code), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {c} exit {code}: {n}")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
