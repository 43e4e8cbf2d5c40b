"""A plain numpy FedAvg that replays a `federated simulate` run (no Flower, LiteRT or TensorFlow).

The reference for the engine: the same initial weights (read from the run's trainable.tflite),
client partitions, clients each round (history.json's ``sampled``), local shuffles, SGD and
sample-weighted averaging, written out in numpy for the builtin MLP. A faithful engine agrees
with it to float rounding (bench/numpy_fedavg.py; tests/test_federated.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UsageError


def local_sgd(w: list[np.ndarray], x, y, lr: float, batch: int, epochs: int, seed: int):
    """Plain minibatch SGD on softmax cross-entropy; a short last batch is dropped (static batch)."""
    w0, b0, w1, b1 = (a.astype(np.float64) for a in w)
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(len(x))
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start:start + batch]
            xb, yb = x[idx].astype(np.float64), y[idx]
            h_pre = xb @ w0 + b0
            h = np.maximum(h_pre, 0)
            logits = h @ w1 + b1
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = p
            g[np.arange(len(yb)), yb] -= 1
            g /= len(yb)
            gw1, gb1 = h.T @ g, g.sum(0)
            gh = (g @ w1.T) * (h_pre > 0)
            gw0, gb0 = xb.T @ gh, gh.sum(0)
            w0 -= lr * gw0
            b0 -= lr * gb0
            w1 -= lr * gw1
            b1 -= lr * gb1
    return [w0, b0, w1, b1]


def accuracy(w, x, y) -> float:
    """The MLP's top-1 accuracy with weights [w0, b0, w1, b1]."""
    h = np.maximum(x @ w[0] + w[1], 0)
    return float(np.mean((h @ w[2] + w[3]).argmax(1) == y))


def replay(run: Path) -> dict:
    """Replay the run in ``run`` (an output folder of federated simulate); compare accuracies."""
    from ..data import DataSpec, load
    from ..runtime.trainable import TrainableRunner
    from .partition import partition

    doc = json.loads((run / "history.json").read_text())
    cfg = doc["config"]
    if cfg["strategy"] != "fedavg" or cfg["compression"] != "none" or cfg["failure_rate"]:
        raise UsageError(f"{run} is not a plain FedAvg run",
                         "replay runs with strategy fedavg, compression none, failure_rate 0")
    splits = load(DataSpec(cfg["data"], seed=cfg["seed"]))
    x = splits.x_train.reshape(len(splits.x_train), -1)
    x_eval, y_eval = ((splits.x_val, splits.y_val) if cfg["evaluate_on"] == "validation"
                      else (splits.x_test, splits.y_test))
    x_eval = x_eval.reshape(len(x_eval), -1)
    parts = partition(splits.y_train, cfg["clients"], cfg["partition"], seed=cfg["seed"])
    start = TrainableRunner(run / "trainable.tflite").get_weights()
    w = [start[k].astype(np.float64) for k in ("w0", "b0", "w1", "b1")]
    rows = []
    for row in doc["rounds"]:
        updates, sizes = [], []
        for pid in row["sampled"]:
            idx = parts[pid]
            updates.append(local_sgd(w, x[idx], splits.y_train[idx], cfg["lr"], cfg["batch_size"],
                                     cfg["local_epochs"], seed=row["round"] * 1000 + pid))
            sizes.append(len(idx))
        share = np.array(sizes, dtype=np.float64) / sum(sizes)
        w = [sum(s * u[i] for s, u in zip(share, updates)) for i in range(4)]
        rows.append({"round": row["round"], "numpy": accuracy(w, x_eval, y_eval),
                     "edgenn": row["accuracy"]})
    last3 = {k: round(float(np.mean([r[k] for r in rows[-3:]])), 4) for k in ("numpy", "edgenn")}
    gap = max(abs(r["numpy"] - r["edgenn"]) for r in rows)
    return {"run": str(run), "seed": cfg["seed"], "last3": last3, "max_round_gap": round(gap, 5),
            "rounds": rows}
