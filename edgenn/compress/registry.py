"""Technique registry: a recipe step's key names the function that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

TECHNIQUES: dict[str, Callable] = {}


@dataclass
class StepContext:
    """What a technique needs besides the model: data, seeds, and what earlier steps did."""

    splits: object
    seed: int = 0
    epochs_scale: float = 1.0
    task: str = "classification"
    done: list[str] = field(default_factory=list)  # techniques applied before this step
    progress: Callable | None = None  # progress(description, total_steps) -> (advance, close)
    custom_objects: dict = field(default_factory=dict)
    allow_unsafe: bool = False


@dataclass
class StepResult:
    """The model after a step, with facts about what changed (sparsity, unique weights...)."""

    model: object
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def register(name: str):
    """Register a technique under its recipe key; the function is returned unchanged."""

    def decorate(func: Callable) -> Callable:
        if name in TECHNIQUES:
            raise ValueError(f"technique {name!r} is registered twice")
        TECHNIQUES[name] = func
        return func

    return decorate


def get(name: str) -> Callable:
    """The function that runs technique ``name`` (imports the built-in modules on first use)."""
    from . import cluster, distill, finetune, prune, quantize  # noqa: F401  (they register)

    if name not in TECHNIQUES:
        raise KeyError(f"unknown technique {name!r}; known: {', '.join(sorted(TECHNIQUES))}")
    return TECHNIQUES[name]
