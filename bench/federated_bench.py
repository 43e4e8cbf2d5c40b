"""Issue 6's bars on the issue's reference config (recipes/federated/fashion-mnist-fedavg.yaml).

Usage:
  python bench/federated_bench.py [--seeds 0,1,2] [--only fedavg,fedprox] [--out DIR]
  python bench/federated_bench.py --sweep          # choose server settings on validation

The default mode runs the config verbatim with fedavg, then each shipped strategy with its
default server settings, int8 and top-k update compression, 20% client failures and Keras
clients, for every seed. It scores the global model on the test split and reports the mean of
the last 3 rounds, bytes sent up, the seconds each client spent per local epoch and the wall
time. Sampling is seeded, so variants with the same seed see the same clients each round.

--sweep scores on the validation split (held out from the clients' data) instead, over a grid
of server learning rates / momenta / mu, so that the shipped defaults are not picked on test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "fedavg": {},
    "fedprox": {"strategy": "fedprox"},
    "fedavgm": {"strategy": "fedavgm"},
    "fedadam": {"strategy": "fedadam"},
    "fedyogi": {"strategy": "fedyogi"},
    # the shipped recipes/federated/fashion-mnist-fedyogi.yaml, chosen on validation (3 seeds)
    "fedyogi-cosine": {"strategy": "fedyogi", "server_lr": 0.02, "server_lr_schedule": "cosine"},
    "fedadagrad": {"strategy": "fedadagrad"},
    "fedavg-int8": {"compression": "int8"},
    "fedavg-topk10": {"compression": {"topk": 0.1}},
    "fedavg-failures20": {"failure_rate": 0.2},
    "fedavg-keras": {"client_runtime": "keras"},
}

SWEEP = {
    **{f"fedavgm-lr{lr}-m{m}": {"strategy": "fedavgm", "server_lr": lr, "server_momentum": m}
       for lr in (0.5, 1.0) for m in (0.5, 0.7, 0.9)},
    **{f"fedadam-eta{eta}": {"strategy": "fedadam", "server_lr": eta}
       for eta in (0.003, 0.01, 0.03)},
    **{f"fedyogi-eta{eta}": {"strategy": "fedyogi", "server_lr": eta}
       for eta in (0.003, 0.01, 0.03)},
    **{f"fedprox-mu{mu}": {"strategy": "fedprox", "mu": mu} for mu in (0.01, 0.1)},
    "fedavg": {},
    # a finer grid around the best of the first one
    **{f"fedavgm-lr{lr}-m{m}": {"strategy": "fedavgm", "server_lr": lr, "server_momentum": m}
       for lr in (1.0, 1.5) for m in (0.6, 0.8)},
    **{f"fedyogi-eta{eta}": {"strategy": "fedyogi", "server_lr": eta} for eta in (0.006, 0.015)},
    # the adaptivity tau (Flower's default 1e-3): eta * m / (sqrt(v) + tau)
    **{f"fedyogi-eta{eta}-tau{tau}": {"strategy": "fedyogi", "server_lr": eta, "server_tau": tau}
       for eta, tau in ((0.01, 0.01), (0.03, 0.01), (0.1, 0.01), (0.003, 1e-4), (0.01, 1e-4),
                        (0.001, 1e-4), (0.001, 1e-5), (0.003, 1e-5), (0.006, 1e-5), (0.01, 1e-5),
                        (0.003, 1e-6), (0.015, 1e-5), (0.02, 1e-5))},
    # a cosine decay of the server learning rate over the rounds (server_lr_schedule)
    **{f"fedyogi-eta{eta}-cos": {"strategy": "fedyogi", "server_lr": eta,
                                 "server_lr_schedule": "cosine"} for eta in (0.01, 0.015, 0.02, 0.03, 0.04)},
    **{f"fedadam-eta{eta}-cos": {"strategy": "fedadam", "server_lr": eta,
                                 "server_lr_schedule": "cosine"} for eta in (0.03, 0.05)},
    **{f"fedavgm-lr{lr}-m0.7-cos": {"strategy": "fedavgm", "server_lr": lr,
                                    "server_lr_schedule": "cosine"} for lr in (1.0, 1.5)},
}


def run(name: str, overrides: dict, seed: int, out: Path, validation: bool) -> dict:
    from edgenn.federated.config import SimulationConfig
    from edgenn.federated.simulate import simulate

    base = yaml.safe_load((ROOT / "recipes" / "federated" / "fashion-mnist-fedavg.yaml").read_text())
    extra = {"seed": seed}
    if validation:
        extra.update(evaluate_on="validation", centralized_reference=False)
    cfg = SimulationConfig.model_validate({**base, **overrides, **extra})
    t0 = time.perf_counter()
    doc = simulate(cfg, out / f"{name}-s{seed}").to_dict()
    rounds = doc["rounds"]
    per_epoch = [r["client_seconds_per_epoch"] for r in rounds if r["client_seconds_per_epoch"]]
    ref = doc.get("centralized_reference") or {}
    return {"accuracy_last3": round(sum(r["accuracy"] for r in rounds[-3:]) / 3, 4),
            "bytes_up": sum(r["bytes_up"] for r in rounds),
            "dropped": sum(r["dropped"] for r in rounds),
            "client_seconds_per_epoch": round(statistics.median(per_epoch), 5) if per_epoch else None,
            "centralized_reference": ref.get("accuracy"),
            "server": doc.get("server"),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "federated"))
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--sweep", action="store_true", help="the validation grid instead")
    args = parser.parse_args()
    table = SWEEP if args.sweep else VARIANTS
    names = args.only.split(",") if args.only else list(table)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out) / ("sweep" if args.sweep else "test")
    results: dict = {}
    for name in names:
        per_seed = {seed: run(name, table[name], seed, out, args.sweep) for seed in seeds}
        accs = [r["accuracy_last3"] for r in per_seed.values()]
        results[name] = {"seeds": per_seed, "accuracy_mean": round(statistics.mean(accs), 4),
                         "accuracy_min": min(accs), "accuracy_max": max(accs)}
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "seeds"}),
              json.dumps(per_seed), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
