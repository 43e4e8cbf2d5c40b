"""A plain numpy FedAvg of the builtin MLP, replaying an `edgenn federated simulate` run.

Issue 6 compares edgenn's FedAvg with "a plain numpy FedAvg of the same MLP and split (about
79%)". This script is that reference, written without Flower, LiteRT or TensorFlow: the same
initial weights (read from the run's trainable.tflite), the same client partitions, the same
clients each round (read from the run's history.json), the same local shuffles, SGD and
sample-weighted averaging. If edgenn's engine is faithful, the two accuracy curves agree to
float rounding; then the accuracy of a seed is what FedAvg gives for that draw of clients.

Usage: python bench/numpy_fedavg.py RUN_DIR [RUN_DIR ...]   (dirs written by federated simulate)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from edgenn.federated.replay import replay

    for run in sys.argv[1:]:
        result = replay(Path(run))
        result.pop("rounds")
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
