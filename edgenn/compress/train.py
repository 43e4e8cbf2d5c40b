"""Training loop shared by the techniques: optimizer, loss, fractional epochs, progress."""

from __future__ import annotations

import math

import numpy as np

from .._tf import keras_of
from ..data.augment import dataset
from ..recipe import LRSchedule, Optimizer, Training


def _last_activation(model) -> str:
    """The name of the model's last activation ("Softmax" for a Softmax layer).

    tfmot wrappers (pruning, clustering, QAT) hide the layer and its activation one level
    down; they are looked through.
    """
    last = model.layers[-1]
    while hasattr(last, "layer"):  # PruneLowMagnitude, ClusterWeights, QuantizeWrapper
        last = last.layer
    if type(last).__name__ == "Softmax":
        return "softmax"
    activation = getattr(last, "activation", None)
    while hasattr(activation, "activation"):  # QuantizeAwareActivation
        activation = activation.activation
    return getattr(activation, "__name__", None) or getattr(activation, "name", "") or ""


def output_is_probability(model) -> bool:
    """Whether the model ends in a softmax (its outputs are probabilities, not logits)."""
    return _last_activation(model) == "softmax"


def make_optimizer(config: Training, total_steps: int | None = None, model=None):
    """The step's optimizer, in ``model``'s Keras.

    With ``lr_schedule: cosine`` the rate decays to 0 over ``total_steps``.
    """
    from .._tf import tf_keras

    tfk = keras_of(model) if model is not None else tf_keras()
    lr = config.learning_rate
    if config.lr_schedule is LRSchedule.cosine:
        if not total_steps:
            raise ValueError("a cosine learning-rate schedule needs the step's total steps")
        lr = tfk.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
    return {
        Optimizer.adam: lambda lr: tfk.optimizers.Adam(lr),
        Optimizer.sgd: lambda lr: tfk.optimizers.SGD(lr, momentum=0.9),
        Optimizer.rmsprop: lambda lr: tfk.optimizers.RMSprop(lr),
    }[config.optimizer](lr)


def single_score(model) -> bool:
    """Whether the model is a binary classifier with one score per sample (sigmoid or logit)."""
    outputs = getattr(model, "outputs", None) or []
    return len(outputs) == 1 and tuple(outputs[0].shape)[-1] == 1


def output_is_sigmoid(model) -> bool:
    """Whether the model's last layer ends in a sigmoid (probabilities of class 1)."""
    return _last_activation(model) == "sigmoid"


def loss_for(model, task: str):
    tfk = keras_of(model)
    if task == "regression":
        return tfk.losses.MeanSquaredError()
    if single_score(model):  # a binary classifier: one sigmoid probability or logit
        return tfk.losses.BinaryCrossentropy(from_logits=not output_is_sigmoid(model))
    return tfk.losses.SparseCategoricalCrossentropy(from_logits=not output_is_probability(model))


def losses_for_outputs(model, y_train: list) -> list:
    """One loss per output of a multi-output model, from its head and its labels.

    Integer labels on an output wider than one value: sparse cross-entropy (from logits unless
    the head ends in a softmax); a sigmoid multi-label head: binary cross-entropy; otherwise
    mean squared error.
    """
    from ..fidelity import Task, _producer, detect_tasks

    tfk = keras_of(model)
    losses = []
    for tensor, task, y in zip(model.outputs, detect_tasks(model), y_train):
        units = int(tuple(tensor.shape)[-1] or 0)
        if task is Task.multilabel:
            losses.append(tfk.losses.BinaryCrossentropy())
        elif np.issubdtype(np.asarray(y).dtype, np.integer) and units > 1:
            head = _producer(tensor)
            prob = task is Task.classification or type(head).__name__ == "Softmax"
            losses.append(tfk.losses.SparseCategoricalCrossentropy(from_logits=not prob))
        else:
            losses.append(tfk.losses.MeanSquaredError())
    return losses


def schedule(n_samples: int, config: Training, epochs_scale: float) -> tuple[int, int, int]:
    """(epochs, steps per epoch, total steps) for possibly fractional, scaled epochs."""
    per_epoch = max(1, math.ceil(n_samples / config.batch_size))
    total = max(1, round(per_epoch * config.epochs * epochs_scale))
    epochs = max(1, math.ceil(total / per_epoch))
    steps = math.ceil(total / epochs)
    return epochs, steps, steps * epochs


class ProgressCallback:
    """Adapts an edgenn progress hook to a Keras callback (advances once per batch)."""

    def __new__(cls, advance, model):
        tfk = keras_of(model)

        class _Callback(tfk.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                advance(1)

        return _Callback()


def fit(model, splits, config: Training, ctx, description: str, callbacks=(), compile_model=True):
    """Compile (unless asked not to) and train ``model`` on the train split; returns history."""
    from ..data.multi import count

    keras_of(model).utils.set_random_seed(ctx.seed)
    several = isinstance(splits.x_train, (list, tuple))  # a model with several inputs/outputs
    epochs, steps, total = schedule(count(splits.x_train), config, ctx.epochs_scale)
    if compile_model and several:
        model.compile(optimizer=make_optimizer(config, total, model),
                      loss=losses_for_outputs(model, splits.y_train))
    elif compile_model:
        model.compile(optimizer=make_optimizer(config, total, model), loss=loss_for(model, ctx.task),
                      metrics=["accuracy"] if ctx.task == "classification" else ["mae"])
    cbs = list(callbacks)
    close = None
    if ctx.progress is not None:
        advance, close = ctx.progress(description, total)
        cbs.append(ProgressCallback(advance, model))
    try:
        history = model.fit(dataset(splits.x_train, splits.y_train, config.batch_size, ctx.seed,
                                    config.augment),
                            epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=cbs,
                            shuffle=False)  # the dataset shuffles itself (seeded)
    finally:
        if close is not None:
            close()
    return history.history


def is_batch_norm(layer) -> bool:
    return type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")


def adapt_batch_norm(model, x: np.ndarray, seed: int, batches: int = 100, batch_size: int = 64):
    """A copy of ``model`` whose BatchNormalization statistics are re-estimated on ``x``.

    A teacher's inference-mode outputs are the distillation target. If its moving statistics
    lag its weights (a model stopped early), those outputs are worse than what the network
    computes and a student chasing them collapses (a 12-epoch digits CNN: 81% pruned without
    distillation, 40% with). The moving statistics are replaced by the plain average of
    ``batches`` training batches' statistics, dropout off; a converged model barely changes.
    Returns ``model`` itself when it has no BatchNormalization.
    """
    if not any(is_batch_norm(layer) for layer in model.layers):
        return model
    tfk = keras_of(model)
    copy = tfk.models.clone_model(model)
    copy.set_weights(model.get_weights())
    bns = [layer for layer in copy.layers if is_batch_norm(layer)]
    drops = [layer for layer in copy.layers if isinstance(layer, tfk.layers.Dropout)]
    momenta, rates = [layer.momentum for layer in bns], [layer.rate for layer in drops]
    for layer in drops:
        layer.rate = 0.0
    from ..data.multi import count, take

    rng = np.random.default_rng(seed)
    n = count(x)  # x: one array, or one per input
    try:
        for k in range(batches):  # momentum k/(k+1): the running mean of the batches so far
            for layer in bns:
                layer.momentum = k / (k + 1)
            copy(take(x, rng.choice(n, size=min(batch_size, n), replace=False)), training=True)
    finally:
        for layer, momentum in zip(bns, momenta):
            layer.momentum = momentum
        for layer, rate in zip(drops, rates):
            layer.rate = rate
    return copy
