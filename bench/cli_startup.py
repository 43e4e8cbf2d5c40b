"""Wall time of `edgenn --help` (and `edgenn devices list`), the start-up every user pays.

Usage: python bench/cli_startup.py [--runs N]
Bar (issue 2): median <= 0.3 s on the 2-core CI machine, with no TensorFlow imported.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def time_command(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, capture_output=True, check=True)  # warm the file cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    exe = shutil.which("edgenn") or str(Path(sys.executable).parent / "edgenn")
    rows = []
    for argv in ([exe, "--help"], [exe, "devices", "list"], [sys.executable, "-c", "pass"]):
        t = time_command(argv, args.runs)
        rows.append((" ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)),
                     statistics.median(t), min(t), max(t)))
    print(f"{'command':32} {'median s':>9} {'min s':>7} {'max s':>7}   ({args.runs} runs)")
    for name, med, lo, hi in rows:
        print(f"{name:32} {med:9.3f} {lo:7.3f} {hi:7.3f}")
    help_median = rows[0][1]
    ok = help_median <= 0.3
    print(f"edgenn --help median {help_median:.3f} s: {'meets' if ok else 'MISSES'} the 0.3 s bar")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
