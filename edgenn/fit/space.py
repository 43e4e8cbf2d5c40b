"""The search space of `edgenn fit`: every point is a recipe `edgenn compress` can run.

A point chooses the export quantization, then optional steps in the order the shipped recipes
use: a distilled student of a smaller width, pruning (sparsity, block shape), clustering, and
quantization-aware training; and, where a step trains, its epochs and learning rate. Choices
are categorical so that trials which share their training steps share a cached model.

No TensorFlow here: the driver of a search only writes recipes and reads reports.
"""

from __future__ import annotations

import hashlib
import json

QUANTIZATIONS = ("float16", "dynamic", "int8", "int16x8")
WIDTHS = (1.0, 0.75, 0.5, 0.35)
SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)
BLOCKS = ("1x1", "4x1", "16x1")  # 16x1: the int8 blocks LiteRT stores and runs sparse
CLUSTERS = (0, 16, 32)
EPOCHS = (2, 4, 8)
RATES = (1e-4, 3e-4, 1e-3)
KEEP_FLOAT_MAX = 3  # selective quantization: up to this many of the most sensitive layers


def suggest(trial, *, distill: bool = True, sensitive: int = 0) -> dict:
    """Draw a point from an Optuna trial (define-by-run: a choice asks only what it needs).

    ``sensitive``: how many layers the int8 ranking offers to keep in float (0: none).
    """
    p = {"quantization": trial.suggest_categorical("quantization", list(QUANTIZATIONS))}
    p["width"] = trial.suggest_categorical("width", list(WIDTHS)) if distill else 1.0
    p["sparsity"] = trial.suggest_categorical("sparsity", list(SPARSITIES))
    if p["sparsity"]:
        p["block"] = trial.suggest_categorical("block", list(BLOCKS))
    p["clusters"] = trial.suggest_categorical("clusters", list(CLUSTERS))
    if p["quantization"] == "int8":
        p["qat"] = trial.suggest_categorical("qat", [False, True])
        # QAT renames the layers it wraps; sparse storage and float layers do not combine
        if sensitive and not p["qat"] and not sparse(p):
            p["keep_float"] = trial.suggest_categorical(
                "keep_float", list(range(min(KEEP_FLOAT_MAX, sensitive) + 1)))
    if trains(p):
        p["epochs"] = trial.suggest_categorical("epochs", list(EPOCHS))
        p["learning_rate"] = trial.suggest_categorical("learning_rate", list(RATES))
    return p


def dense_only(p: dict) -> bool:
    """Whether the point prunes (and trains) the Dense layers only: pruning in 16x1 blocks.

    16x1 is the block LiteRT stores and runs sparse in int8, for Dense kernels only; the point
    trains the same model whatever its export, so its other exports reuse that model.
    """
    return bool(p.get("sparsity")) and p.get("block") == "16x1"


def sparse(p: dict) -> bool:
    """Whether the point's int8 file stores its pruned Dense kernels sparse (16x1 blocks)."""
    return dense_only(p) and p["quantization"] == "int8"


def siblings(p: dict) -> list[dict]:
    """The same trained model at the other export quantizations (an export each, no training).

    None for a QAT point (QAT trains for int8 only).
    """
    if p.get("qat"):
        return []
    base = {k: v for k, v in p.items() if k not in ("qat", "keep_float")}
    out = []
    for q in QUANTIZATIONS:
        if q != p["quantization"]:
            out.append({**base, "quantization": q}
                       | ({"qat": False, "keep_float": 0} if q == "int8" else {}))
    return out


def trains(p: dict) -> bool:
    return p.get("width", 1.0) < 1.0 or bool(p.get("sparsity")) or bool(p.get("clusters")) \
        or bool(p.get("qat"))


def recipe(p: dict, name: str, *, max_drop: float | None = None, split: str = "val",
           sensitive: list[str] = (), threads: int | None = None,
           epochs_scale: float = 1.0) -> dict:
    """The recipe (a plain dict, as YAML holds it) of point ``p``.

    ``sensitive``: the layers int8 hurts most, worst first (`convert --explain`'s ranking of the
    input model); a point with ``keep_float: k`` keeps the first k of them in float.
    """
    steps = []
    epochs, rate = p.get("epochs", 2), p.get("learning_rate", 3e-4)
    if p.get("width", 1.0) < 1.0:
        steps.append({"distill": {"student": f"builtin:width={p['width']:g}", "epochs": epochs,
                                  "learning_rate": max(rate, 1e-3), "temperature": 4,
                                  "alpha": 0.1}})
    if p.get("sparsity"):
        prune = {"target_sparsity": p["sparsity"], "schedule": "polynomial", "frequency": 50,
                 "epochs": epochs, "learning_rate": rate,
                 "distill": {"temperature": 4, "alpha": 0.1}}
        if p.get("block", "1x1") != "1x1":
            prune["block_size"] = [int(v) for v in p["block"].split("x")]
        if dense_only(p):
            # Only Dense kernels are stored sparse in an int8 file: pruning the convolutions
            # too would cost accuracy and save no byte (measured on the Fashion-MNIST teacher,
            # 80% of every layer: -0.63 pt on validation). The rest of the network is frozen
            # and the labels alone teach: on that teacher, Dense 80% for 4 epochs gave 93.78%
            # in 214 s, against 93.67% in 659 s training everything with distillation (93.53%
            # frozen with it).
            prune["scope"] = {"include": {"classes": ["Dense"]}}
            prune["freeze_rest"] = True
            del prune["distill"]
        steps.append({"prune": prune})
    if p.get("clusters"):
        steps.append({"cluster": {"clusters": p["clusters"], "epochs": max(1, epochs // 2),
                                  "learning_rate": rate,
                                  "preserve_sparsity": bool(p.get("sparsity"))}})
    if p.get("qat"):
        steps.append({"quantize": {"epochs": max(1, epochs // 2), "learning_rate": min(rate, 1e-4),
                                   "freeze_batch_norm": True}})
    export = {"format": "tflite", "quantization": p["quantization"]}
    if p.get("keep_float"):
        # an entry "a+b" is a starved tensor's layer and its readers, kept float together
        export["keep_float"] = [n for group in sensitive[: p["keep_float"]] for n in group.split("+")]
    elif sparse(p):
        export["sparse_weights"] = True
    if epochs_scale != 1.0:  # what the trial ran with --epochs-scale, written into the recipe
        for step in steps:
            config = next(iter(step.values()))
            config["epochs"] = config["epochs"] * epochs_scale
    doc = {"name": name,
           "description": "found by edgenn fit: " + describe(p),
           "steps": steps,
           "export": export,
           "evaluate": {"metric": "accuracy", "split": split}}
    if threads:  # training and calibration sum in another order on another thread count
        doc["threads"] = threads
    if max_drop is not None:
        doc["constraints"] = {"max_accuracy_drop": max_drop}
    return doc


def describe(p: dict) -> str:
    """A short label: 'w0.5 + prune 0.8 (4x1) + cluster 16 + QAT, int8, 4 ep @ 3e-4'."""
    parts = []
    if p.get("width", 1.0) < 1.0:
        parts.append(f"distil w{p['width']:g}")
    if p.get("sparsity"):
        block = p.get("block", "1x1")
        shape = ", ".join([block] * (block != "1x1") + ["Dense only"] * dense_only(p)
                          + ["sparse"] * sparse(p))
        parts.append(f"prune {p['sparsity']:g}" + (f" ({shape})" if shape else ""))
    if p.get("clusters"):
        parts.append(f"cluster {p['clusters']}")
    if p.get("qat"):
        parts.append("QAT")
    label = " + ".join(parts) or "no training"
    label += f", {p['quantization']}"
    if p.get("keep_float"):
        label += f" ({p['keep_float']} layer{'s' * (p['keep_float'] > 1)} float)"
    if trains(p):
        label += f", {p['epochs']} ep @ {p['learning_rate']:g}"
    return label


def steps_key(recipe_doc: dict) -> str | None:
    """A key for the model the recipe's steps produce (None when it has no steps).

    Two recipes with the same steps train the same model (the seed and data are the search's),
    so the second reuses the first's saved model and only exports it.
    """
    if not recipe_doc.get("steps"):
        return None
    text = json.dumps([recipe_doc["steps"], recipe_doc.get("threads")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lower_bound(p: dict, reference: dict) -> dict:
    """Latency, bytes and RAM the point cannot go below, from the input model's own exports.

    ``reference`` maps each quantization to the input model's estimate at it. A width-w student
    has about w^2 of the MACs and weights (first and last layers shrink by w only, so w^2 is a
    lower bound); pruning and clustering change neither the file (unless it is stored sparse)
    nor the MACs the runtime computes. A point whose lower bound breaks a budget is not worth training.
    """
    ref = reference[p["quantization"]]
    w2 = p.get("width", 1.0) ** 2
    kept = 1.0 - p["sparsity"] if sparse(p) else 1.0  # sparse storage keeps the unpruned share
    return {"latency_ms": ref["latency_ms"] * w2, "bytes": ref["bytes"] * w2 * kept,
            "ram_mb": ref["ram_mb"] * w2}
