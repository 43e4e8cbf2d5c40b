"""Technique registry: a recipe step's key names the function that runs it.

Every module in ``edgenn.compress.techniques`` registers its technique when imported; adding a
technique is adding a module there (and its key to ``recipe.Step``, which a test checks).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

TECHNIQUES: dict[str, Callable] = {}
NEEDS_TF_KERAS: set[str] = set()


def register(name: str, *, needs_tf_keras: bool = False):
    """Register a technique under its recipe key; the function is returned unchanged.

    ``needs_tf_keras``: the technique runs on tfmot, so a Keras 3 model is bridged first.
    """

    def decorate(func: Callable) -> Callable:
        if name in TECHNIQUES and TECHNIQUES[name] is not func:
            raise ValueError(f"technique {name!r} is registered twice")
        TECHNIQUES[name] = func
        if needs_tf_keras:
            NEEDS_TF_KERAS.add(name)
        return func

    return decorate


def needs_tf_keras(name: str) -> bool:
    """Whether technique ``name`` runs on tfmot (and so on tf_keras)."""
    _load_all()
    return name in NEEDS_TF_KERAS


def _load_all() -> None:
    from . import techniques

    for module in pkgutil.iter_modules(techniques.__path__):
        importlib.import_module(f"{techniques.__name__}.{module.name}")


def names() -> list[str]:
    """Every registered technique key."""
    _load_all()
    return sorted(TECHNIQUES)


def get(name: str) -> Callable:
    """The function that runs technique ``name``."""
    _load_all()
    if name not in TECHNIQUES:
        raise KeyError(f"unknown technique {name!r}; known: {', '.join(sorted(TECHNIQUES))}")
    return TECHNIQUES[name]
