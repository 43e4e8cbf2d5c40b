"""Which layers a step touches, from a recipe's include/exclude selectors."""

from __future__ import annotations

import re

from ..recipe import LayerSelector, Scope


def _matches(layer, selector: LayerSelector) -> bool:
    if type(layer).__name__ in selector.classes:
        return True
    return any(re.fullmatch(pattern, layer.name) for pattern in selector.names)


def in_scope(layer, scope: Scope) -> bool:
    """True when the layer matches ``include`` (or include is empty) and not ``exclude``."""
    include = scope.include
    included = (not include.names and not include.classes) or _matches(layer, include)
    return included and not _matches(layer, scope.exclude)


def apply_to_layers(model, scope: Scope, wants, wrap, notes: list[str] | None = None):
    """Clone ``model``, replacing each layer in scope that ``wants(layer)`` with ``wrap(layer)``.

    Returns the clone and the names of the wrapped layers. The model is first copied (config
    and weights), so the wrappers never touch the caller's layers: tfmot's documented pattern
    wraps the original layer objects, which then belong to two models and break both.

    The copy has no activity regularization (``activity_regularizer=``, ActivityRegularization
    layers): tfmot's wrappers rebuild the model in a graph of their own, and the loss an activity
    regularizer added there is out of scope in the training step (QAT and clustering exited 1).
    It is a training-time penalty that computes nothing at inference; said in ``notes``.
    """
    from .._tf import tf_keras
    from ..models.layer_config import layer_config

    tfk = tf_keras()
    regularized: list[str] = []

    def without_activity_loss(layer):
        if type(layer).__name__ == "ActivityRegularization":  # rebuilt from l1/l2 by every clone
            regularized.append(layer.name)
            return tfk.layers.Identity(name=layer.name)
        config = layer_config(layer)
        if config.get("activity_regularizer") is not None:
            config["activity_regularizer"] = None
            regularized.append(layer.name)
        return layer.__class__.from_config(config)

    copy = tfk.models.clone_model(model, clone_function=without_activity_loss)
    copy.set_weights(model.get_weights())
    if regularized and notes is not None:
        notes.append("activity regularization left out while tfmot trains (its wrappers cannot "
                     f"carry the loss; it computes nothing at inference): {', '.join(regularized)}")
    model = copy
    wrapped: list[str] = []

    def clone(layer):
        if in_scope(layer, scope) and wants(layer):
            wrapped.append(layer.name)
            return wrap(layer)
        return layer

    new = tfk.models.clone_model(model, clone_function=clone)
    return new, wrapped


def nothing_in_scope(step: str, model):
    """The error for a step whose scope selects no layer it can work on."""
    from ..errors import UsageError

    classes = sorted({type(layer).__name__ for layer in model.layers})
    return UsageError(f"the {step} step's scope selects no layer it can {step}",
                      f"widen scope.include (the model has: {', '.join(classes)})")


class frozen_outside:
    """``with frozen_outside(model, names, on):`` only the wrapped layers ``names`` train.

    The other layers with weights are set ``trainable = False`` (Keras then also runs their
    BatchNormalization in inference mode) and given back their trainable flag afterwards, so
    the stripped model and the steps after it are not left frozen. ``on`` False: no change.
    """

    def __init__(self, model, names, on: bool):
        self.layers = []
        if on:
            wanted = set(names)
            for layer in model.layers:
                inner = getattr(layer, "layer", layer)  # tfmot wrappers keep the layer inside
                if inner.name not in wanted and layer.weights and layer.trainable:
                    self.layers.append(layer)

    def __enter__(self):
        for layer in self.layers:
            layer.trainable = False
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            layer.trainable = True
        return False
