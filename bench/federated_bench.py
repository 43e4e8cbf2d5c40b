"""Issue 6's bars on the issue's reference config (recipes/federated/fashion-mnist-fedavg.yaml).

Usage: python bench/federated_bench.py [--out bench/out/federated]

Runs the config verbatim with fedavg, then each other shipped strategy, then int8 and top-k
update compression and 20% client failures. Reports global accuracy as the mean of the last 3
rounds, bytes sent up, and the wall time on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "fedavg": {},
    "fedavgm": {"strategy": "fedavgm"},
    "fedadam": {"strategy": "fedadam"},
    "fedyogi": {"strategy": "fedyogi"},
    "fedadagrad": {"strategy": "fedadagrad"},
    "fedavg-int8": {"compression": "int8"},
    "fedavg-topk10": {"compression": {"topk": 0.1}},
    "fedavg-failures20": {"failure_rate": 0.2},
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "federated"))
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    args = parser.parse_args()
    from edgenn.federated.config import SimulationConfig
    from edgenn.federated.simulate import simulate

    base = yaml.safe_load((ROOT / "recipes" / "federated" / "fashion-mnist-fedavg.yaml").read_text())
    results = {}
    names = args.only.split(",") if args.only else list(VARIANTS)
    for name in names:
        cfg = SimulationConfig.model_validate({**base, **VARIANTS[name]})
        t0 = time.perf_counter()
        doc = simulate(cfg, Path(args.out) / name)
        last3 = [r["accuracy"] for r in doc["rounds"][-3:]]
        results[name] = {"accuracy_last3": round(sum(last3) / 3, 4),
                         "bytes_up": sum(r["bytes_up"] for r in doc["rounds"]),
                         "dropped": sum(r["dropped"] for r in doc["rounds"]),
                         "seconds": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps(results[name]), flush=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
