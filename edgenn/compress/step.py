"""What a technique receives besides the model, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


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
