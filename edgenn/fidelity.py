"""How closely a converted artifact answers like its source model. Numpy only (device side).

What "agrees" means depends on the task. A classifier agrees when it picks the same class
(top-1 agreement); a multi-label model when each label lands on the same side of 0.5; a model
whose outputs are values (regression, reconstruction, embeddings, logits with no softmax) when
its outputs are close, measured as the signal-to-noise ratio of the difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np


class Task(str, Enum):
    auto = "auto"
    classification = "classification"
    multilabel = "multilabel"
    regression = "regression"


# Agreement a classifier's / multi-label model's artifact must reach, by quantization.
DEFAULT_THRESHOLDS = {"float32": 0.99, "float16": 0.99, "dynamic": 0.97, "int8": 0.97,
                      "int16x8": 0.97}
# SNR (dB) a value-output model's artifact must reach: float32 differs by rounding only; float16
# weights keep ~3 significant digits; int8 keeps ~20-35 dB on the models measured here (an FC
# autoencoder: 34 dB, cosine 0.9998).
DEFAULT_MIN_SNR = {"float32": 60.0, "float16": 35.0, "dynamic": 25.0, "int8": 20.0,
                   "int16x8": 30.0}


def detect_task(model, loss=None) -> Task:
    """The task a Keras model's output layer suggests.

    A softmax output is a classifier; a sigmoid over a few units (at most 64) a multi-label
    model; anything else outputs values, unless ``loss`` (what the model was compiled with,
    `FormatInfo.loss`) is a categorical cross-entropy: then its linear output is logits, judged
    by top-1 agreement like a softmax. --task overrides either.
    """
    if len(model.outputs) > 1:
        tasks = detect_tasks(model, loss)
        return tasks[0] if len(set(tasks)) == 1 else Task.auto  # auto: judged per output
    return _logits(_task_of(model.layers[-1], model.outputs[0]), _losses(loss, model)[0])


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None) or getattr(history, "layer", None)
    if layer is None and isinstance(history, tuple) and history:
        layer = history[0]
    return layer


def detect_tasks(model, loss=None) -> list[Task]:
    """One task per output, each from the layer that produces it (and its loss, if saved)."""
    return [_logits(_task_of(_producer(t) or model.layers[-1], t), each)
            for t, each in zip(model.outputs, _losses(loss, model))]


_CLASS_LOSSES = ("categorical_crossentropy", "categoricalcrossentropy", "categorical_focal",
                 "categoricalfocal", "categorical_hinge", "categoricalhinge")


def _logits(task: Task, loss) -> Task:
    """A value output trained with a categorical cross-entropy is a classifier's logits."""
    if task is not Task.regression or loss is None:
        return task
    if isinstance(loss, dict):
        loss = loss.get("class_name") or (loss.get("config") or {}).get("name")
    name = str(loss or "").lower()
    return Task.classification if any(k in name for k in _CLASS_LOSSES) else task


def _losses(loss, model) -> list:
    """``loss`` as saved (one for all outputs, a list, or a dict by output name), per output."""
    outputs = list(model.outputs)
    if isinstance(loss, list) and len(loss) == len(outputs):
        return loss
    if isinstance(loss, dict) and "class_name" not in loss:
        return [loss.get(n) for n in output_names(model)]
    return [loss] * len(outputs)


def output_names(model) -> list[str]:
    """Each output's name: the layer that produces it.

    A layer that produces several outputs (a subclassed model's heads, seen through its
    functional view: mtcnn's ONet gave "o_net" three times, and compress asked for three arrays
    all named y_o_net) names them ``<layer>_0``, ``<layer>_1``...
    """
    from collections import Counter

    names = [getattr(_producer(t), "name", None) or f"output_{i}"
             for i, t in enumerate(model.outputs)]
    repeated = {name for name, n in Counter(names).items() if n > 1}
    return [f"{name}_{names[:i].count(name)}" if name in repeated else name
            for i, name in enumerate(names)]


def bounded_output(model) -> str | None:
    """The activation of a single output that cannot be class scores (sigmoid, tanh, relu...).

    None for softmax and linear outputs (probabilities or logits): those may be classifiers.
    """
    if len(model.outputs) != 1:
        return None
    layers = getattr(model, "layers", None) or []
    last = _producer(model.outputs[0]) or (layers[-1] if layers else None)
    if last is None:  # a SavedModel signature: no layers to read an activation from
        return None
    while hasattr(last, "layer"):
        last = last.layer
    activation = getattr(last, "activation", None)
    act = getattr(activation, "__name__", None) or getattr(activation, "name", "") or ""
    units = int(tuple(model.outputs[0].shape)[-1] or 0)
    if act in ("sigmoid", "tanh", "relu", "relu6", "hard_sigmoid", "softplus") and units > 1:
        return f"{units} {act} values"
    return None


def _task_of(last, output) -> Task:
    while hasattr(last, "layer"):  # wrappers (tfmot, TimeDistributed)
        last = last.layer
    name = type(last).__name__
    activation = getattr(last, "activation", None)
    act = getattr(activation, "__name__", None) or getattr(activation, "name", "") or ""
    rank2 = len(tuple(output.shape)) == 2
    units = int(tuple(output.shape)[-1] or 0)
    if name == "Softmax" or act in ("softmax", "log_softmax"):  # per sample or per position
        return Task.classification
    if act == "sigmoid" and rank2 and 1 <= units <= 64:
        return Task.multilabel
    return Task.regression


@dataclass(frozen=True)
class OutputFidelity:
    """One output of the artifact against the same output of the source model."""

    output: int
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    snr_db: float
    top1_agreement: float | None = None
    label_agreement: float | None = None  # multi-label: same side of 0.5, per label
    name: str | None = None  # the model's name for this output, when it has several
    verdict: dict | None = None  # its own task, metric, value, threshold and passed (several)
    # top-1 answers that changed, and how many of them the source model nearly tied: its two top
    # scores closer than one step of the artifact's quantized output (``output_step``)
    changed: int | None = None
    near_ties: int | None = None
    output_step: float | None = None
    # where the source model gives one answer almost everywhere (a per-position tagger's
    # background, a splice-site model's "neither"): that class, its share of the positions, how
    # many positions have another answer, and the artifact's agreement on those
    common: dict | None = None
    one_sided: bool | None = None  # every value on one side of 0.5 (what a label check needs)

    def to_dict(self) -> dict:
        optional = ("top1_agreement", "label_agreement", "name", "verdict", "changed", "near_ties",
                    "output_step", "common", "one_sided")
        return {k: v for k, v in asdict(self).items() if not (k in optional and v is None)}

    def ties(self) -> str:
        """How many changed answers were near-ties, for a failure message ('' if unknown)."""
        if not self.changed or self.near_ties is None:
            return ""
        return (f"; {self.near_ties} of the {self.changed} changed answers were near-ties (the "
                f"source model's two top scores closer than one step, {self.output_step:.3g}, "
                "of the quantized output)")

    def summary(self) -> str:
        agree = f"top-1 agreement {self.top1_agreement:.4f}, " if self.top1_agreement is not None else ""
        return (f"{agree}max |diff| {self.max_abs_diff:.3g}, mean |diff| {self.mean_abs_diff:.3g}, "
                f"cosine {self.cosine:.5f}, SNR\u00a0{self.snr_db}\u00a0dB")


@dataclass(frozen=True)
class Fidelity:
    """The verdict on an artifact: per-output agreement on ``samples`` inputs from ``data``."""

    samples: int
    data: str
    threshold: float
    passed: bool
    top1_agreement: float | None
    outputs: tuple[OutputFidelity, ...]
    task: str = "classification"
    metric: str = "top-1 agreement"
    value: float | None = None  # the worst output's value of ``metric``
    answers: int | None = None  # rows compared, where a model answers once per several samples

    def to_dict(self) -> dict:
        return {"samples": self.samples, "answers": self.answers or self.samples, "data": self.data,
                "task": self.task, "metric": self.metric, "value": self.value,
                "threshold": self.threshold, "passed": self.passed,
                "top1_agreement": self.top1_agreement,
                "outputs": [o.to_dict() for o in self.outputs], "caveats": self.caveats()}

    @property
    def on(self) -> str:
        """What the figures were taken on: "500 samples (digits test split)".

        A model whose output batch differs from its input's (ICLabel averages 4 rows into one
        answer) says how many answers were compared.
        """
        answers = f", {self.answers} answers compared" if self.answers not in (None, self.samples) else ""
        return f"{self.samples} samples ({self.data}{answers})"

    @property
    def override_flag(self) -> str:
        """The flag that lowers this verdict's bar."""
        return "--min-snr" if self.metric == "SNR dB" else "--threshold"

    def failure(self, path: str, advice: str) -> str:
        """The one-line error of a failed check whose artifact ``path`` was kept."""
        ties = ""
        if self.metric == "top-1 agreement":
            failing = [o for o in self.outputs if o.top1_agreement is not None and (
                o.verdict is None or not o.verdict.get("passed", True))]
            ties = failing[0].ties() if failing else ""
        elif self.metric == "SNR dB":  # values with no softmax: logits look the same
            # named where it would pass as a classifier (not a detector's box columns at 0.83)
            failing = [o for o in self.outputs if o.verdict is None or not o.verdict["passed"]]
            agreement = failing[0].top1_agreement if failing else None
            if agreement is not None and agreement >= min(DEFAULT_THRESHOLDS.values()):
                ties = (f"; its top-1 agreement over the last axis is {agreement:.4f}: if the "
                        "output is class scores (logits), --task classification judges it by that")
        return (f"fidelity check failed: {self.summary()} on {self.on}{ties}; {path} was "
                f"written for inspection: {advice}")

    def caveats(self) -> list[str]:
        """Where this check says less than its figure suggests, one sentence each."""
        notes = []
        for o in self.outputs:
            task = o.verdict["task"] if o.verdict else self.task
            name = repr(o.name) if o.name else str(o.output)
            if task == "classification" and o.common:
                c = o.common
                rest = (f"on the other {c['others']:,} its agreement is {c['others_agreement']:.4f}"
                        if c["others"] else "it never gives another answer on these inputs, so "
                        "the check says little: check on inputs where it does (--data)")
                notes.append(f"output {name}: the source model answers class {c['class']} at "
                             f"{c['share']:.2%} of {c['positions']:,} positions, so top-1 "
                             f"agreement mostly counts that answer; {rest}")
            if task == "multilabel" and o.one_sided:
                notes.append(f"output {name} never crosses 0.5 on these inputs, so its label "
                             "agreement says little: check on inputs where it does (--data)")
        return notes

    def summary(self) -> str:
        shown = "-" if self.value is None else (f"{self.value:.4f}" if self.metric != "SNR dB"
                                                  else f"{self.value:.1f}")
        bound = "<" if not self.passed else ">="
        return f"{self.metric} {shown} {bound} {self.threshold:g} ({self.task})"


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[OutputFidelity]:
    """Per-output agreement: top-1 agreement, max/mean |difference|, cosine, SNR (dB)."""
    results = []
    for i, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        # top-1 over the last axis, per position (a tagger's (N, T, C), a segmenter's
        # (N, H, W, C)); one position per sample for a plain classifier
        classes = np.asarray(ref).shape[-1] if np.asarray(ref).ndim > 1 else 1
        ref_pos = np.asarray(ref).reshape(-1, classes)
        cand_pos = np.asarray(cand).reshape(-1, classes) if np.asarray(cand).size == ref_pos.size \
            else None
        ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
        cand = np.asarray(cand, dtype=np.float64).reshape(len(cand), -1)
        if ref.shape != cand.shape:
            raise ValueError(f"output {i}: shapes differ {ref.shape} vs {cand.shape}")
        diff = ref - cand
        noise = float(np.sum(diff ** 2))
        signal = float(np.sum(ref ** 2))
        # One value per sample (a binary head, a score): the cosine of each sample's 1-vector
        # is its sign, 1.0 for any sigmoid however wrong, so the column of samples is compared.
        rows_of = (lambda a: a.reshape(1, -1)) if ref.shape[1] == 1 else (lambda a: a)
        denom = np.linalg.norm(rows_of(ref), axis=1) * np.linalg.norm(rows_of(cand), axis=1)
        cos = np.where(denom > 0, np.sum(rows_of(ref) * rows_of(cand), axis=1)
                       / np.maximum(denom, 1e-30), 1.0)
        if not (np.isfinite(ref).all() and np.isfinite(cand).all()):
            which = "source model" if not np.isfinite(ref).all() else "artifact"
            raise_nonfinite(which, i)
        changed, ties, step = _near_ties(ref_pos, cand_pos) if classes > 1 else (None, None, None)
        common = _common_answer(ref_pos, cand_pos) if classes > 1 else None
        results.append(OutputFidelity(
            output=i,
            max_abs_diff=float(np.max(np.abs(diff))) if diff.size else 0.0,
            mean_abs_diff=float(np.mean(np.abs(diff))) if diff.size else 0.0,
            cosine=float(np.mean(cos)),
            snr_db=float("inf") if noise == 0 else round(10 * np.log10(max(signal, 1e-30) / noise), 3),
            top1_agreement=(float(np.mean(ref_pos.argmax(1) == cand_pos.argmax(1)))
                            if classes > 1 and cand_pos is not None else None),
            label_agreement=float(np.mean((ref > 0.5) == (cand > 0.5))),
            changed=changed, near_ties=ties, output_step=step, common=common,
            one_sided=bool((ref >= 0.5).all() or (ref < 0.5).all()),
        ))
    return results


def _common_answer(ref_pos: np.ndarray, cand_pos: np.ndarray | None, share: float = 0.95,
                   positions: int = 100) -> dict | None:
    """The source's answer at ``share`` or more of at least ``positions`` positions, or None.

    Top-1 agreement then mostly counts that answer: a splice-site model answers "neither" at
    all but a handful of 200,000 positions, and an int8 file that moved every site's
    probability still agreed 1.0. The agreement on the other answers is what the user needs.
    """
    if cand_pos is None or len(ref_pos) < positions:
        return None
    answers = ref_pos.argmax(1)
    counts = np.bincount(answers, minlength=ref_pos.shape[1])
    top = int(counts.argmax())
    if counts[top] < share * len(answers):
        return None
    others = answers != top
    agree = float(np.mean(cand_pos[others].argmax(1) == answers[others])) if others.any() else None
    return {"class": top, "share": float(counts[top] / len(answers)), "positions": len(answers),
            "others": int(others.sum()), "others_agreement": agree}


MIN_GRID_STEPS = 4  # steps of a quantized output from zero to the source's scores


def _near_ties(ref_pos: np.ndarray, cand_pos: np.ndarray | None, sample: int = 100_000):
    """(changed answers, how many were near-ties, the quantized output's step), or Nones.

    A quantized output takes few distinct values (an int8 one at most 256), spaced by its scale;
    where the source model's two top scores are closer than that, the artifact cannot tell them
    apart however good its body is. A float output has no such step: (changed, None, None);
    nor has an output that collapsed to a few values (an int8 file that lost its input's
    features answered 0 or 0.996), whose gaps are not its step: a quantized range always holds
    zero, so a step counts when the source's scores reach MIN_GRID_STEPS of it from zero (an
    unconfident softmax near 0.1 has 25 of int8's 1/256, a flat 101-class age softmax up to 0.05
    has 12; that file's 0.996, one).
    """
    if cand_pos is None:
        return None, None, None
    changed = ref_pos.argmax(1) != cand_pos.argmax(1)
    values = np.unique(cand_pos.ravel()[:sample])
    if not changed.any() or len(values) < 2 or len(values) > 65536:
        return int(changed.sum()), None, None
    step = float(np.min(np.diff(values)))
    if (values[-1] - values[0]) / step > 65535:  # not a grid of 16 bits or fewer: a float output
        return int(changed.sum()), None, None
    if max(float(np.max(ref_pos)), 0.0) - min(float(np.min(ref_pos)), 0.0) < MIN_GRID_STEPS * step:
        return int(changed.sum()), None, None
    top2 = np.partition(ref_pos[changed], -2, axis=1)[:, -2:]
    gaps = top2[:, 1] - top2[:, 0]
    return int(changed.sum()), int(np.sum(gaps < step)), step


def raise_nonfinite(which: str, output: int):
    from .errors import ConversionError

    if which == "source model":
        raise ConversionError(f"the source model outputs NaN or infinity (output {output}) on the "
                              "check inputs, so no comparison means anything",
                              "check the model on real data (--data), or its weights")
    raise ConversionError(f"the artifact outputs NaN or infinity (output {output}) where the "
                          "source model does not", "report the model to edgenn; try another "
                          "quantization or --to onnx")


def judge(reference: list[np.ndarray], candidate: list[np.ndarray], task,
          quantization: str, data: str, threshold: float | None = None,
          min_snr: float | None = None, names: list[str] | None = None,
          samples: int | None = None) -> Fidelity:
    """Compare and decide by the task's measure; the worst output decides.

    classification: top-1 agreement >= ``threshold``; multilabel: label agreement >=
    ``threshold``; regression: SNR >= ``min_snr`` dB. Defaults depend on the quantization.
    ``task`` may be a list with one task per output (a classifier head beside a regression
    head): each output is judged by its own measure, and every one must pass. ``samples``: the
    inputs fed, where they differ from the rows the outputs hold.
    """
    from dataclasses import replace

    rows = int(len(reference[0]))
    if isinstance(task, (list, tuple)):
        verdict = _judge_each(reference, candidate, [Task(t) for t in task], quantization, data,
                              threshold, min_snr, names)
    else:
        outputs = compare_outputs(reference, candidate)
        kind, metric, value, limit = _decide(outputs, Task(task), quantization, threshold, min_snr)
        agreements = [o.top1_agreement for o in outputs if o.top1_agreement is not None]
        verdict = Fidelity(rows, data, limit, bool(value >= limit),
                           min(agreements) if agreements else None, tuple(outputs), kind.value,
                           metric, float(value))
    if samples is not None and samples != rows:
        verdict = replace(verdict, samples=int(samples), answers=rows)
    return verdict


def _decide(outputs: list[OutputFidelity], task: Task, quantization: str, threshold, min_snr):
    """(task, metric, worst value, limit) of compared outputs judged by ``task``'s measure."""
    agreements = [o.top1_agreement for o in outputs if o.top1_agreement is not None]
    if task is Task.classification and agreements:
        limit = threshold if threshold is not None else DEFAULT_THRESHOLDS[quantization]
        return task, "top-1 agreement", min(agreements), limit
    if task is Task.multilabel:
        limit = threshold if threshold is not None else DEFAULT_THRESHOLDS[quantization]
        return task, "label agreement", min(o.label_agreement for o in outputs), limit
    limit = min_snr if min_snr is not None else DEFAULT_MIN_SNR[quantization]
    return Task.regression, "SNR dB", min(o.snr_db for o in outputs), limit


def _judge_each(reference, candidate, tasks: list[Task], quantization: str, data: str,
                threshold, min_snr, names) -> Fidelity:
    """Each output by its own task; the first that fails (else the weakest margin) is shown."""
    from dataclasses import replace

    outputs = compare_outputs(reference, candidate)
    if len(tasks) != len(outputs):
        raise ValueError(f"{len(tasks)} tasks for {len(outputs)} outputs")
    judged = []
    for i, (o, task) in enumerate(zip(outputs, tasks)):  # each compared once, judged alone
        kind, metric, value, limit = _decide([o], task, quantization, threshold, min_snr)
        judged.append(replace(o, name=names[i] if names else None,
                              verdict={"task": kind.value, "metric": metric, "value": float(value),
                                       "threshold": limit, "passed": bool(value >= limit)}))
    failing = [o for o in judged if not o.verdict["passed"]]
    shown = (failing or judged)[0].verdict
    agreements = [o.top1_agreement for o in judged if o.top1_agreement is not None
                  and o.verdict["task"] == "classification"]
    kinds = list(dict.fromkeys(o.verdict["task"] for o in judged))
    return Fidelity(int(len(reference[0])), data, shown["threshold"], not failing,
                    min(agreements) if agreements else None, tuple(judged), "+".join(kinds),
                    shown["metric"], shown["value"])
