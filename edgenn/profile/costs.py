"""What a model graph costs to run: the figures `estimate` turns into latency and RAM."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Costs:
    """MACs per compute dtype, the activations' (tensor arena's) peak, the weights' bytes."""

    macs: dict
    arena_bytes: int
    weight_bytes: int
    model_bytes: int
    notes: tuple = ()  # what the count could not see
