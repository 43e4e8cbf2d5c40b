"""Distillation machinery shared by the distill step and prune's self-distillation.

loss = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

Models that end in a softmax give probabilities; log-probabilities are logits up to a constant
per sample, which softmax(. / T) cancels, so both kinds of model distil the same way.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .._tf import is_keras3, keras_of, tf
from ..data.augment import changes
from ..data.multi import count
from ..errors import UsageError
from ..evaluate import keras_predict
from ..recipe import Training
from .step import StepContext
from .train import (
    adapt_batch_norm,
    fit,
    make_optimizer,
    output_is_probability,
    output_is_sigmoid,
    schedule,
    single_score,
)

_WIDTH_KEYS = ("filters", "units")


# A model whose widths cannot all shrink together (an Attention that needs its query as wide
# as its unscaled value, a residual from the input): up to this many layers are tried one by
# one, each narrowed only if the model still builds.
MAX_ONE_BY_ONE = 120


def _layers(model) -> list:
    """The layers a clone rebuilds: nested models' too in Keras 3, the top level in tf_keras."""
    return (list(model._flatten_layers(include_self=False)) if is_keras3(model)  # noqa: SLF001
            else list(model.layers))


def _has_width(layer) -> bool:
    return any(isinstance(layer.get_config().get(k), int) for k in _WIDTH_KEYS)


def output_width_layers(model) -> set[str]:
    """The layers whose width is an output's width.

    Each output's producer, or, when that layer keeps the width it reads (a pooling, an
    activation, a sum, a nested model), the width layers behind it on every path.

    A mini-Xception ends Conv2D(classes) -> GlobalAveragePooling2D -> softmax: narrowing that
    Conv2D gave a student with 3 outputs for the teacher's 7, and distillation died on the shapes.
    """
    from ..fidelity import _producer
    from ..models.describe import inbound_layers

    found: set[str] = set()
    seen: set[int] = set()
    todo = [p for p in (_producer(t) for t in model.outputs) if p is not None]
    while todo:
        layer = todo.pop()
        if id(layer) in seen or type(layer).__name__ == "InputLayer":
            continue
        seen.add(id(layer))
        if _has_width(layer):
            found.add(layer.name)
        elif getattr(layer, "outputs", None) and hasattr(layer, "layers"):  # a nested model
            todo += [p for p in (_producer(t) for t in layer.outputs) if p is not None]
        else:
            todo += inbound_layers(layer)
    return found


def narrowable(model) -> list[str]:
    """Names of the layers ``width_student`` may narrow.

    Conv/Dense widths, except those that set an output's width (``output_width_layers``).

    Layers of nested models count in Keras 3 (the clone recurses into them); tf_keras clones
    the top level only.
    """
    from ..fidelity import output_names

    # a Keras 3 Sequential has no .output_names
    keep = set(output_names(model)) | output_width_layers(model)
    return [layer.name for layer in _layers(model) if layer.name not in keep and _has_width(layer)]


def width_student(teacher, width: float, x=None):
    """The teacher's architecture with Conv/Dense widths scaled by ``width`` (fresh weights).

    The layers that produce the model's outputs keep their width (the number of classes).
    A model nested as a layer (a transfer-learning backbone) is narrowed inside too (Keras 3),
    and every layer of the student trains, frozen in the teacher or not. When narrowing every
    layer breaks a shape the architecture ties (an attention's query and value, a sum with the
    input), the layers are narrowed one at a time, each kept only if the model still builds;
    the others keep the teacher's width (``kept_width`` names them).
    """
    tfk = keras_of(teacher)
    candidates = narrowable(teacher)

    from ..models.layer_config import layer_config

    def build(narrow: set[str]):
        def clone(layer):
            config = layer_config(layer)
            if layer.name in narrow:
                for key in _WIDTH_KEYS:
                    if isinstance(config.get(key), int):
                        config[key] = max(1, int(round(config[key] * width)))
            config["name"] = layer.name
            if "trainable" in config:  # not every layer's config has it (SpatialDropout2D)
                config["trainable"] = True
            clone = layer.__class__.from_config(config)
            clone.trainable = True
            return clone

        nested = {"recursive": True} if is_keras3(teacher) else {}  # tf_keras has no recursion
        student = tfk.models.clone_model(teacher, clone_function=clone, **nested)
        student.trainable = True
        student._name = f"{teacher.name}_student"
        # Keras 3 builds some layers symbolically without checking the shapes their call ties
        # (Attention's query and value): one real call finds those.
        got = student(sample if len(sample) > 1 else sample[0], training=False)
        got = got if isinstance(got, (list, tuple)) else list(got.values()) \
            if isinstance(got, dict) else [got]
        # a width reached an output after all (dicts: any order; an open axis takes any size)
        want = sorted(tuple(t.shape)[1:] for t in teacher.outputs)
        have = sorted(tuple(g.shape)[1:] for g in got)
        fits = len(have) == len(want) and all(
            len(h) == len(w) and all(a is None or a == b for a, b in zip(w, h))
            for h, w in zip(have, [tuple(None if d is None else int(d) for d in w) for w in want]))
        if not fits:
            raise ValueError(f"the student's outputs are {[str(h) for h in have]}, the "
                             f"teacher's {[str(w) for w in want]}")
        return student

    from ..models.bridge import random_inputs

    # a real sample where there is one (``x``: the training inputs, an array or one per
    # input): an open axis made up at 8 steps broke SpliceAI's Cropping1D of 5,000 per side
    if x is not None and len(x[0] if isinstance(x, (list, tuple)) else x):
        sample = [np.asarray(a[:1]) for a in x] if isinstance(x, (list, tuple)) \
            else [np.asarray(x[:1])]
    else:
        sample = random_inputs(teacher, seed=0, batch=1)

    try:
        return build(set(candidates))
    except Exception as err:  # noqa: BLE001 - Keras raises ValueError, TF InvalidArgumentError...
        first = " ".join(str(err).split())[:200]
    if len(candidates) > MAX_ONE_BY_ONE:
        raise UsageError(f"the student cannot be narrowed to width {width:g}: the shapes of "
                         f"{len(candidates)} layers are tied ({first})",
                         "distil into a student model of your own (student: PATH)")
    narrow: set[str] = set()
    for name in candidates:
        try:
            build(narrow | {name})
        except Exception:  # noqa: BLE001 - this one must keep its width
            continue
        narrow.add(name)
    if not narrow:
        raise UsageError(f"no layer of the teacher can be narrowed to width {width:g} without "
                         f"breaking a shape ({first})",
                         "distil into a student model of your own (student: PATH)")
    return build(narrow)


def kept_width(teacher, student) -> list[str]:
    """The narrowable layers the student left at the teacher's width (see width_student)."""
    layers = {layer.name: layer for layer in _layers(student)}
    teacher_layers = {layer.name: layer for layer in _layers(teacher)}

    def widths(layer):
        config = layer.get_config()
        return [config.get(k) for k in _WIDTH_KEYS]

    return [name for name in narrowable(teacher) if name in layers
            and widths(layers[name]) == widths(teacher_layers[name])]


def make_distiller(teacher, student, alpha: float, temperature: float, cached: bool = False):
    """A model (in the student's Keras) whose train_step distils ``teacher`` into ``student``.

    ``cached``: each batch's labels carry the teacher's logits already (`with_teacher_logits`),
    so the teacher does not run in the training loop.
    """
    tensorflow = tf()
    tfk = keras_of(student)
    binary = single_score(teacher)  # one sigmoid probability or logit: Bernoulli, not softmax
    if binary:
        t_prob, s_prob = output_is_sigmoid(teacher), output_is_sigmoid(student)
    else:
        t_prob, s_prob = output_is_probability(teacher), output_is_probability(student)

    def logits(y, is_prob):
        if not is_prob:
            return y
        if binary:  # log(p / (1 - p))
            y = tensorflow.clip_by_value(y, 1e-7, 1 - 1e-7)
            return tensorflow.math.log(y) - tensorflow.math.log(1 - y)
        return tensorflow.math.log(tensorflow.clip_by_value(y, 1e-7, 1.0))

    def softened(z):
        if binary:
            return tensorflow.math.sigmoid(z / temperature)
        return tensorflow.nn.softmax(z / temperature)

    class Distiller(tfk.Model):
        def __init__(self):
            super().__init__()
            self.teacher, self.student = teacher, student
            if binary:  # the soft loss: cross-entropy of two Bernoullis (KL's gradient)
                self.ce = tfk.losses.BinaryCrossentropy(from_logits=not s_prob)
                self.kl = tfk.losses.BinaryCrossentropy()
            else:
                self.ce = tfk.losses.SparseCategoricalCrossentropy(from_logits=not s_prob)
                self.kl = tfk.losses.KLDivergence()
            # The loss the history reports: Keras 3 reports its compiled metrics (an untouched
            # tracker reads 0.0) rather than what train_step returns.
            self.loss_tracker = tfk.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker]

        def call(self, x, training=False):
            return self.student(x, training=training)

        def train_step(self, data):
            x, y = data
            if isinstance(y, (tuple, list)):  # several inputs: the one output's labels
                y = y[0]
            if cached:  # last axis, 0: the label; the rest: the teacher's logits
                y, t = (y[..., :1] if binary else tensorflow.cast(y[..., 0], "int32")), y[..., 1:]
            else:
                t = logits(self.teacher(x, training=False), t_prob)
            with tensorflow.GradientTape() as tape:
                s_out = self.student(x, training=True)
                if binary:  # one score per sample or per position, shaped as the output
                    y = tensorflow.reshape(tensorflow.cast(y, "float32"), tensorflow.shape(s_out))
                s = logits(s_out, s_prob)
                soft = self.kl(softened(t), softened(s))
                loss = alpha * self.ce(y, s_out) + (1 - alpha) * temperature ** 2 * soft
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    return Distiller()


def fit_distilled(teacher, student, config: Training, ctx: StepContext, alpha: float,
                  temperature: float, description: str, callbacks=()) -> dict:
    """Train ``student`` on the labels and on ``teacher``'s softened outputs; returns history.

    The teacher is a copy of ``teacher`` with re-estimated BatchNorm statistics (see
    adapt_batch_norm), frozen while the student trains; ``teacher`` itself is left as it was.
    """
    teacher = adapt_batch_norm(teacher, ctx.splits.x_train, seed=ctx.seed)
    was_trainable = teacher.trainable
    teacher.trainable = False
    splits = ctx.splits
    cached = not changes(config.augment)
    several = isinstance(splits.x_train, (list, tuple))  # several inputs, one output
    if cached:
        # Without augmentation every epoch shows the teacher the same images: its logits are
        # computed once, not once per epoch (about a quarter of a distilled epoch's work).
        labels = splits.y_train[0] if several else splits.y_train
        y_train = with_teacher_logits(teacher, splits.x_train, labels)
        splits = SimpleNamespace(x_train=splits.x_train,
                                 y_train=[y_train] if several else y_train)
    try:
        distiller = make_distiller(teacher, student, alpha, temperature, cached=cached)
        total = schedule(count(ctx.splits.x_train), config, ctx.epochs_scale)[2]
        distiller.compile(optimizer=make_optimizer(config, total, student))
        return fit(distiller, splits, config, ctx, description, callbacks=callbacks,
                   compile_model=False)
    finally:
        teacher.trainable = was_trainable


def with_teacher_logits(teacher, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, 1 + classes) float32: each sample's label, then the teacher's logits for it.

    With a class per position, (N, *positions, 1 + classes): each position's label and logits.

    A softmax teacher's probabilities become log-probabilities (logits up to a constant per
    sample, which the softened softmax cancels), clipped as in the training step.
    """
    out = np.asarray(keras_predict(teacher, x), dtype=np.float32)
    if single_score(teacher):
        if output_is_sigmoid(teacher):  # a binary probability: its logit
            p = np.clip(out, 1e-7, 1 - 1e-7)
            out = np.log(p) - np.log(1 - p)
    elif output_is_probability(teacher):
        out = np.log(np.clip(out, 1e-7, 1.0))
    labels = np.asarray(y, dtype=np.float32).reshape(out.shape[:-1] + (1,))
    return np.concatenate([labels, out], axis=-1)
