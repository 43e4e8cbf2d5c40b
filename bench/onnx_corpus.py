"""Every ONNX file the onnx and onnxruntime wheels ship, through every edgenn command that takes one.

    python bench/onnx_corpus.py [--jobs 2] [--only SUBSTRING] [--out DIR]

The onnx wheel carries its backend test models (PyTorch-exported operators and modules, small
hand-built graphs with sequences, strings and gradients, and "light" copies of model-zoo
networks: ResNet50, Inception, DenseNet, SqueezeNet, VGG19...). None was written by or for
edgenn, which makes them a corpus of files users bring. Each file goes through `inspect`,
`profile` (3 runs), `quantize --mode dynamic-int8` (random inputs, 20 samples) and `quantize
--mode int8` (calibrated and checked on an .npz of 20 random samples per input, laid out as
edgenn's --data takes them). A row is a defect when a command exits 1, prints a traceback, times out, or
leaves an output behind after failing. Prints one line per file and a count per exit code.
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

import onnx
import onnxruntime

EDGENN = [sys.executable, "-m", "edgenn"]
COMMANDS = ("inspect", "profile", "dynamic-int8", "int8")


def corpus() -> list[Path]:
    roots = [Path(onnx.__file__).parent / "backend" / "test" / "data",
             Path(onnxruntime.__file__).parent / "datasets"]
    return sorted(p for root in roots for p in root.rglob("*.onnx"))


def random_data(path: Path, target: Path) -> bool:
    """An .npz of 20 random samples per input (x_<name>), samples first; False if none fits.

    Floats are uniform in [0, 1), integers 0 (ids and lengths), booleans random. An input
    without a batch axis is stored once, as a setting.
    """
    import numpy as np

    from edgenn.runtime.layout import batch_axes

    try:
        inputs = onnxruntime.InferenceSession(str(path)).get_inputs()
    except Exception:  # noqa: BLE001 - a file its runtime refuses gets no data
        return False
    rng = np.random.default_rng(0)
    arrays = {}
    for spec, axis in zip(inputs, batch_axes([i.shape for i in inputs])[0]):
        kind = spec.type[len("tensor("):-1] if spec.type.startswith("tensor(") else None
        kind = {"float": "float32", "double": "float64"}.get(kind, kind)
        if kind in (None, "string"):
            return False
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        shape = dims if axis is None else [20] + [d for k, d in enumerate(dims) if k != axis]
        dtype = np.dtype(kind)
        value = (rng.random(shape) if dtype.kind == "f" else rng.integers(0, 2, shape)
                 if dtype.kind == "b" else np.zeros(shape))
        arrays[f"x_{spec.name}"] = value.astype(dtype)
    np.savez(target, **arrays)
    return True


def run_one(path: Path, command: str, work: Path) -> dict:
    out = work / f"{path.parent.name}-{path.stem}-{command}.onnx"
    if command == "inspect":
        args = ["inspect", str(path)]
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
    leftover = proc.returncode != 0 and command not in ("inspect", "profile") and out.exists() \
        and proc.returncode != 3
    defect = (proc.returncode == 1 or trace or leftover or line.startswith("stdout is not"))
    if trace and not line:
        line = proc.stderr.strip().splitlines()[-1]
    return {"code": proc.returncode, "line": line[:200], "defect": defect}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ns = ap.parse_args()
    commands = tuple(c for c in COMMANDS if c in ns.commands.split(","))
    files = [p for p in corpus() if ns.only in str(p)]
    work = Path(ns.out or tempfile.mkdtemp(prefix="edgenn-onnx-corpus-"))
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
