"""Issue 5's bars: edgenn profile against a bare ai_edge_litert loop, overhead, and SSH.

Usage: python bench/profile_bench.py [--out bench/out/profile] [--rounds 3]

- Fidelity: MobileNetV2 224 float32 and int8 .tflite, 1 thread: edgenn's p50 within +-3% of a
  bare `Interpreter.invoke()` loop's p50 (same run, alternating), and CV <= 5% over 100 runs.
- Overhead: the whole `edgenn profile m.tflite --runs 50` process takes no more than the bare
  loop script's process + 0.5 s.
- Remote: profiling through a real sshd on 127.0.0.1 matches the local p50 within +-10%.
The models have random weights (latency does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

BARE = """
import sys, time, numpy as np
from ai_edge_litert.interpreter import Interpreter
interp = Interpreter(model_path=sys.argv[1], num_threads=1)
interp.allocate_tensors()
d = interp.get_input_details()[0]
x = (np.random.default_rng(0).random(d["shape"]) * 255 - 128).astype(d["dtype"])
interp.set_tensor(d["index"], x)
for _ in range(10):
    interp.invoke()
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); interp.invoke(); times.append((time.perf_counter() - t0) * 1000)
mean = sum(times) / len(times)
cv = (sum((t - mean) ** 2 for t in times) / len(times)) ** 0.5 / mean
times.sort()
print(times[len(times) // 2], cv)
"""


def make_models(out: Path) -> dict:
    from edgenn._tf import keras3
    from edgenn.convert.tflite import to_tflite
    from edgenn.models.load import load_keras
    from edgenn.recipe import Quantization

    paths = {"float32": out / "mnv2_float32.tflite", "int8": out / "mnv2_int8.tflite"}
    if all(p.is_file() for p in paths.values()):
        return paths
    keras = keras3()
    keras.utils.set_random_seed(0)
    k = out / "mnv2.keras"
    keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None).save(k)
    model = load_keras(k).tf_keras_model
    calib = np.random.default_rng(0).random((16, 224, 224, 3), dtype=np.float32)
    paths["float32"].write_bytes(to_tflite(model, Quantization.float32))
    paths["int8"].write_bytes(to_tflite(model, Quantization.int8, x_calib=calib, calibration_samples=16))
    return paths


def edgenn_cli(*args) -> tuple[dict, float]:
    exe = str(Path(sys.executable).parent / "edgenn")
    t0 = time.perf_counter()
    proc = subprocess.run([exe, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout), time.perf_counter() - t0


# edgenn profile --threads 1 pins its run to the last CPU; the bare loop gets the same CPU.
CPU = str(sorted(__import__("os").sched_getaffinity(0))[-1])


def bare(model: Path, runs: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(["taskset", "-c", CPU, sys.executable, "-c", BARE, str(model), str(runs)],
                          capture_output=True, text=True, check=True)
    p50, cv = proc.stdout.split()
    return float(p50), time.perf_counter() - t0, float(cv)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "profile"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = make_models(out)
    results = {}
    for kind, path in models.items():
        rows = []
        for _ in range(args.rounds):
            bare_p50, _, bare_cv = bare(path, 100)
            doc, _ = edgenn_cli("profile", str(path), "--runs", "100", "--threads", "1")
            r = doc["results"][0]
            rows.append({"bare_p50": bare_p50, "bare_cv": round(bare_cv, 4),
                         "edgenn_p50": r["latency_ms"]["p50"], "cv": round(r["cv"], 4)})
        bare_med = statistics.median(x["bare_p50"] for x in rows)
        edgenn_med = statistics.median(x["edgenn_p50"] for x in rows)
        results[kind] = {"rounds": rows, "bare_p50_ms": round(bare_med, 3),
                         "edgenn_p50_ms": round(edgenn_med, 3),
                         "diff_pct": round((edgenn_med / bare_med - 1) * 100, 2),
                         "cv": [x["cv"] for x in rows], "bare_cv": [x["bare_cv"] for x in rows]}
        print(kind, json.dumps(results[kind]), flush=True)

    # Overhead of the whole process: edgenn profile --runs 50 against the bare script.
    walls = {"edgenn": [], "bare": []}
    for _ in range(args.rounds):
        walls["bare"].append(bare(models["float32"], 50)[1])
        walls["edgenn"].append(edgenn_cli("profile", str(models["float32"]), "--runs", "50",
                                          "--threads", "1")[1])
    results["overhead"] = {"bare_s": round(statistics.median(walls["bare"]), 3),
                           "edgenn_s": round(statistics.median(walls["edgenn"]), 3)}
    results["overhead"]["extra_s"] = round(results["overhead"]["edgenn_s"] - results["overhead"]["bare_s"], 3)
    print("overhead", json.dumps(results["overhead"]), flush=True)

    # Remote through a real sshd on loopback.
    from helpers import sshd as server

    srv = server.start(out / "sshd")
    try:
        remote, local = [], []
        for _ in range(args.rounds):
            local.append(edgenn_cli("profile", str(models["float32"]), "--runs", "100", "--threads",
                                    "1")[0]["results"][0]["latency_ms"]["p50"])
            remote.append(edgenn_cli(
                "profile", str(models["float32"]), "--runs", "100", "--threads", "1", "--host",
                f"{srv.user}@127.0.0.1:{srv.port}", "--identity", str(srv.identity),
                "--known-hosts", str(srv.known_hosts), "--remote-python", sys.executable,
            )[0]["results"][0]["latency_ms"]["p50"])
    finally:
        srv.stop()
    lm, rm = statistics.median(local), statistics.median(remote)
    results["remote"] = {"local_p50_ms": round(lm, 3), "remote_p50_ms": round(rm, 3),
                         "diff_pct": round((rm / lm - 1) * 100, 2)}
    print("remote", json.dumps(results["remote"]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
