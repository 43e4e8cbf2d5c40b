"""Time and memory of edgenn refusing the hostile corpus's bombs, each in its own process.

    python bench/hostile_bench.py [--repeat 3]

Builds the corpus with tests/hostile/generate.py (seeded), then runs each bomb case as a user
would (a fresh `edgenn` process) and reports wall seconds (median of --repeat) and peak RSS.
The issue's bar: every bomb ends in under 5 s with exit 2 and under 500 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ["bomb_keras/inspect", "bomb_keras/convert", "bomb_fill_h5/inspect", "bomb_npz/convert",
         "yaml_bomb/recipe", "yaml_bomb/device", "yaml_bomb/federated", "deep_50000/inspect",
         "yaml_deep/recipe", "zip_slip/inspect"]


# The CLI runs as the child of a small launcher, whose RUSAGE_CHILDREN is that child's peak (a
# child's ru_maxrss would include a big parent's pages, inherited by fork, surviving exec).
LAUNCHER = """
import resource, subprocess, sys, time
t0 = time.monotonic()
proc = subprocess.run([sys.executable, "-c", "from edgenn.cli.main import main; main()",
                       *sys.argv[1:]], capture_output=True)
print(proc.returncode, time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run(args: list[str], _unused: Path) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *args], capture_output=True, text=True,
                         timeout=120).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        subprocess.run([sys.executable, str(ROOT / "tests" / "hostile" / "generate.py"), str(corpus)],
                       check=True, capture_output=True)
        cases = {c["name"]: c for c in json.loads((corpus / "cases.json").read_text())}
        print("| case | file size | exit | seconds (median) | peak RSS MB |")
        print("|---|---|---|---|---|")
        worst_s = worst_mb = 0.0
        for name in CASES:
            args = cases[name]["args"]
            target = Path(next(a for a in args if Path(a).exists() and any(
                k in Path(a).name for k in ("bomb", "deep", "slip"))))
            runs = [run(args, Path(tmp) / "rss") for _ in range(opts.repeat)]
            codes = {r[0] for r in runs}
            seconds = statistics.median(r[1] for r in runs)
            mb = max(r[2] for r in runs)
            worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, mb)
            print(f"| {name} | {target.stat().st_size:,} B | {','.join(map(str, sorted(codes)))} | "
                  f"{seconds:.2f} | {mb:.0f} |")
        print(f"\nworst: {worst_s:.2f} s, {worst_mb:.0f} MB (bar: < 5 s, < 500 MB)")


if __name__ == "__main__":
    main()
