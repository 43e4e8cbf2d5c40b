"""Is edgenn's run-to-run spread its own or the machine's? (issue 5's CV bar)

Usage: python bench/profile_cv.py [--rounds 8]   (after bench/profile_bench.py made the models)

Alternates, round by round, the bare ai_edge_litert loop of bench/profile_bench.py and edgenn's
profiling agent (`run_local`, as `edgenn profile --threads 1` calls it), both pinned to the same
CPU, 100 timed runs each, on MobileNetV2 224 int8 and float32. Prints each round's CV (std/mean)
for both and the runs slower than 1.3x that round's median, with their index.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from profile_bench import BARE  # noqa: E402

# The same loop, printing every time instead of p50 and CV.
BARE_TIMES = BARE.replace("mean = sum(times)", "print(__import__('json').dumps(times)); mean = sum(times)")
BARE_TIMES = BARE_TIMES.replace("print(times[len(times) // 2], cv)", "")


def cv(times: list[float]) -> float:
    mean = sum(times) / len(times)
    return (sum((t - mean) ** 2 for t in times) / len(times)) ** 0.5 / mean


def slow(times: list[float]) -> list[tuple[int, float]]:
    med = statistics.median(times)
    return [(i, round(t / med, 2)) for i, t in enumerate(times) if t > 1.3 * med]


def main() -> int:
    from edgenn.profile.isolate import run_local

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--models", default=str(ROOT / "bench" / "out" / "profile"))
    args = parser.parse_args()
    cpu = sorted(os.sched_getaffinity(0))[-1]
    summary = {}
    for kind in ("int8", "float32"):
        model = Path(args.models) / f"mnv2_{kind}.tflite"
        if not model.is_file():
            parser.error(f"{model} does not exist: run bench/profile_bench.py first")
        rows = []
        for _ in range(args.rounds):
            proc = subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-c", BARE_TIMES,
                                   str(model), "100"], capture_output=True, text=True, check=True)
            bare = json.loads(proc.stdout.splitlines()[0])
            agent = run_local({"model": str(model), "runtime": "litert", "accelerator": "xnnpack",
                               "threads": 1, "warmup": 10, "runs": 100, "keep_times": True},
                              cpus=[cpu])["times_ms"]
            rows.append({"bare_cv": round(cv(bare), 4), "edgenn_cv": round(cv(agent), 4),
                         "bare_slow": slow(bare), "edgenn_slow": slow(agent)})
            print(kind, json.dumps(rows[-1]), flush=True)
        summary[kind] = {"rounds": len(rows),
                         "bare_over_5pct": sum(r["bare_cv"] > 0.05 for r in rows),
                         "edgenn_over_5pct": sum(r["edgenn_cv"] > 0.05 for r in rows),
                         "bare_cv_median": statistics.median(r["bare_cv"] for r in rows),
                         "edgenn_cv_median": statistics.median(r["edgenn_cv"] for r in rows)}
        print(kind, "summary", json.dumps(summary[kind]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
