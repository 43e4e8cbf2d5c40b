"""A layer's config as its clone needs it: the functions it holds, live where they must be."""

from __future__ import annotations

import inspect


def layer_config(layer) -> dict:
    """``layer.get_config()``, with each function that did not serialize by name kept live.

    tf_keras serializes a lambda (DeepLC's leaky ReLU, ``activation=lambda x: relu(x, 0.1,
    20)``, loaded with ``custom_objects={"<lambda>": ...}``) as marshalled bytecode, which its
    own ``from_config`` cannot read: every clone of such a layer (pruning's, clustering's,
    QAT's, a width student's) exited 1. A function serialized by name (a string, or a dict with
    ``class_name``) stays as it is, so the config still saves.
    """
    import warnings

    with warnings.catch_warnings():  # tf_keras prints the lambda's source line as it dumps it
        warnings.filterwarnings("ignore", message=".*includes a `lambda`.*")
        config = layer.get_config()
    for key, value in list(config.items()):
        live = getattr(layer, key, None)
        if inspect.isfunction(live) and not _by_name(value):
            config[key] = live
    return config


def _by_name(value) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and "class_name" in value)
