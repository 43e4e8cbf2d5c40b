"""Metrics of a model on a split: accuracy (with per-class) or MSE/MAE. Numpy only."""

from __future__ import annotations

import numpy as np


def top1(pred: np.ndarray) -> np.ndarray:
    """Each sample's predicted class from scores ``pred`` (N, C).

    With a class per position (a tagger, a segmenter), each position's from (N, *positions, C).

    A single score is a binary classifier's: class 1 above 0.5 when every score is a
    probability (a sigmoid output, all in [0, 1]), above 0 otherwise (a logit).
    """
    pred = np.asarray(pred)
    if pred.ndim >= 1 and pred.shape[-1] == 1:
        scores = pred[..., 0] if pred.ndim > 1 else pred
        probability = bool(scores.size) and float(scores.min()) >= 0 and float(scores.max()) <= 1
        return (scores > (0.5 if probability else 0.0)).astype(np.int64)
    return pred.argmax(axis=-1)


def classification_metrics(pred: np.ndarray, y: np.ndarray, num_classes: int | None = None) -> dict:
    """Top-1 accuracy and per-class accuracy from scores ``pred`` (N, C) and labels ``y``."""
    labels = top1(pred)
    n = num_classes or max(2, pred.shape[-1])
    per_class = {}
    for c in range(n):
        mask = y == c
        if mask.any():
            per_class[str(c)] = float(np.mean(labels[mask] == c))
    return {"accuracy": float(np.mean(labels == y)), "per_class": per_class, "samples": int(len(y))}


def label_note(y: np.ndarray, classes: int, output: str | None = None,
               share: float = 0.95) -> str | None:
    """A sentence when the labels scored leave classes unjudged, else None.

    SpliceAI's test labels were "neither" at every one of 40,000 positions: an 80% pruned copy
    that lost the splice sites scored accuracy 1.0 against the input's 0.9993, "constraint
    met". Named when one class holds ``share`` or more of the labels, or a class the model
    outputs never occurs.
    """
    y = np.asarray(y).ravel().astype(np.int64)
    if not y.size:
        return None
    counts = np.bincount(y, minlength=max(classes, 2))
    top = int(counts.argmax())
    missing = [str(c) for c in range(len(counts)) if counts[c] == 0]
    if counts[top] < share * y.size and not missing:
        return None
    unit = "positions" if y.size > 0 and output != "samples" else "samples"
    where = f"output {output}'s " if output and output != "samples" else ""
    absent = f" (class{'es' * (len(missing) > 1)} {', '.join(missing[:5])}" + \
        (" and more" if len(missing) > 5 else "") + " never occur)" if missing else ""
    return (f"{where}labels scored are class {top} at {counts[top] / y.size:.2%} of "
            f"{y.size:,} {unit}{absent}: accuracy mostly counts that class (per class: "
            "metrics per_class); score on data that holds the others")


def regression_metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    pred = pred.reshape(len(y), -1)
    target = y.reshape(len(y), -1)
    err = pred - target
    return {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err))),
            "samples": int(len(y))}


def metrics(pred: np.ndarray, y: np.ndarray, task: str) -> dict:
    """Metrics for ``task`` ('classification' or 'regression')."""
    if task == "regression":
        return regression_metrics(pred, y)
    return classification_metrics(pred, y)


def metrics_per_output(preds: list, ys: list, tasks: list[str], names: list[str]) -> dict:
    """Each output's metrics for its task; ``accuracy`` is the worst classification output's."""
    per = {name: metrics(np.asarray(p), np.asarray(y), task)
           for name, p, y, task in zip(names, preds, ys, tasks)}
    out = {"outputs": per}
    accuracies = [m["accuracy"] for m in per.values() if "accuracy" in m]
    if accuracies:
        out["accuracy"] = min(accuracies)
    return out


def paired_change(base_pred: np.ndarray, pred: np.ndarray, y: np.ndarray) -> dict:
    """How the answers changed from ``base_pred`` to ``pred`` on the same samples (top-1).

    ``lost``/``gained``: the fractions the base got right and the new model wrong, and the
    other way round; the accuracy drop is their difference. ``drop_se_pt``: the standard error
    of that drop in percentage points, from the paired samples (it shrinks with how few answers
    changed, so it is far smaller than two independent accuracies' errors would give).
    """
    was = top1(base_pred) == y
    now = top1(pred) == y
    n = max(1, len(y))
    lost, gained = float(np.mean(was & ~now)), float(np.mean(~was & now))
    var = max(0.0, (lost + gained - (lost - gained) ** 2) / n)
    return {"lost": lost, "gained": gained, "drop_se_pt": round(100 * var ** 0.5, 4)}


def worst_class_drop(baseline: dict, final: dict) -> dict | None:
    """The class whose accuracy fell most, in percentage points."""
    before, after = baseline.get("per_class"), final.get("per_class")
    if not before or not after:
        return None
    drops = {c: (before[c] - after.get(c, 0.0)) * 100 for c in before}
    worst = max(drops, key=drops.get)
    return {"class": worst, "drop_pt": round(drops[worst], 3),
            "baseline": before[worst], "final": after.get(worst)}


def keras_predict(model, x, batch_size: int = 512, every_output: bool = False):
    """Model outputs on ``x`` (an array, or a list with one per input) without training mode.

    The first output, or with ``every_output`` a list of all of them in the model's order.
    """
    out = model.predict(as_feed(model, list(x) if isinstance(x, (list, tuple)) else x),
                        batch_size=batch_size, verbose=0)
    outs = flat_outputs(out)
    return outs if every_output else outs[0]


def as_feed(model, x):
    """``x`` (an array per input, in ``model.inputs`` order) as the model takes it.

    A model built on a dict of inputs gets the dict (a list works too, with a warning on every
    call, and fails where the dict's keys were not written in sorted order).
    """
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict) and isinstance(x, (list, tuple)) and len(x) == len(struct):
        return dict(zip(sorted(struct), x))  # Keras flattens a dict in sorted key order
    return x


def inference_call(model):
    """``call(*xs)``: the model in inference mode, as the exporters trace it.

    It takes one tensor per input (``model.inputs`` order) and answers with its outputs in
    ``model.outputs`` order.
    """
    def call(*xs):
        out = model(as_feed(model, list(xs) if len(xs) > 1 else xs[0]), training=False)
        return _in_model_order(out) if isinstance(out, dict) else out
    return call


def _in_model_order(out: dict) -> list:
    return [out[k] for k in sorted(out)]  # Keras flattens a dict in sorted key order


def flat_outputs(out) -> list[np.ndarray]:
    """A model's answer as a list in ``model.outputs`` order.

    A dict of outputs comes back in the order its keys were written, while ``model.outputs``
    lists them by sorted key.
    """
    if isinstance(out, dict):
        return [np.asarray(o) for o in _in_model_order(out)]
    if isinstance(out, (list, tuple)):
        return [np.asarray(o) for o in out]
    return [np.asarray(out)]


def tflite_predict(model: bytes | str, x: np.ndarray) -> np.ndarray:
    """Outputs of a .tflite model run by LiteRT's interpreter (not by Keras)."""
    from .runtime.litert import TFLiteRunner

    return TFLiteRunner(model).predict(x)[0]


def predict_file_all(path, x) -> list[np.ndarray]:
    """Every output of an exported file (in the model's order), run by its own runtime.

    ``x``: an array, or a list with one array per input.
    """
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if str(path).endswith(".onnx"):
        from .runtime.onnx_runner import ONNXRunner

        return ONNXRunner(path).predict(*xs)
    from .runtime.litert import TFLiteRunner

    return TFLiteRunner(str(path)).predict(*xs)


def predict_file(path, x: np.ndarray) -> np.ndarray:
    """The first output of an exported file, run by its own runtime (LiteRT or ONNX Runtime)."""
    if str(path).endswith(".onnx"):
        from .runtime.onnx_runner import ONNXRunner

        return ONNXRunner(path).predict(x)[0]
    return tflite_predict(str(path), x)
