"""Datasets: one spec (a path or a builtin name) used by every command."""

from .prepare import DataSpec, Splits, load, load_for, match_model, match_positions  # noqa: F401
from .sources import check  # noqa: F401
