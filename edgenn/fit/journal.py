"""The journal of a search: every finished trial, one JSON line each, beside the output folder.

It is what lets an interrupted `edgenn fit` resume: the same command finds it, checks that the
model, data, device and seed are the same, and gives the sampler what was already measured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UsageError


def journal_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.edgenn-fit-journal"


class Journal:
    """The trials finished so far, one JSON line each, and their work folders."""

    def __init__(self, path: Path, identity: dict):
        self.path = path
        self.identity = identity
        self.records: list[dict] = []

    def open(self, log) -> None:
        settings = self.path / "settings.json"
        if self.path.exists() and not settings.is_file():
            raise UsageError(f"{self.path} is not a journal of edgenn fit",
                             "move it away, or pass --overwrite to remove it")
        if settings.is_file():
            try:
                kept = json.loads(settings.read_text())
            except (ValueError, OSError, RecursionError):
                kept = {}
            if kept != self.identity:
                changed = sorted(k for k in self.identity if not isinstance(kept, dict)
                                 or kept.get(k) != self.identity[k])
                raise UsageError(f"{self.path} holds an interrupted search of another setup "
                                 f"({', '.join(changed)} differ)",
                                 "run with the same model, data, device and seed to resume it, "
                                 "or pass --overwrite to start afresh")
            lines = (self.path / "trials.jsonl").read_text().splitlines() \
                if (self.path / "trials.jsonl").is_file() else []
            for line in lines:
                try:
                    self.records.append(json.loads(line))
                except (ValueError, RecursionError):  # the line a killed run was writing
                    break
            log(f"resuming: {len(self.records)} trial(s) kept in {self.path}")
        else:
            (self.path / "trials").mkdir(parents=True, exist_ok=True)
            settings.write_text(json.dumps(self.identity, indent=1))

    def add(self, record: dict) -> None:
        self.records.append(record)
        with open(self.path / "trials.jsonl", "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def next_number(self) -> int:
        """A number no record and no running trial has (trial folders are named by it)."""
        self._last = max([r["number"] for r in self.records] + [getattr(self, "_last", -1)]) + 1
        return self._last

    def find(self, kind: str, **match) -> dict | None:
        for r in self.records:
            if r["kind"] == kind and all(r.get(k) == v for k, v in match.items()):
                return r
        return None
