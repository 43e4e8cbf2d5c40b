"""What a simulation run leaves behind for people: report.md and accuracy.png.

The run's document (history.json) is built in ``simulate.py``; this renders it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RoundRecord:
    """One round: the global model's score and what the fleet did."""

    round: int
    accuracy: float
    loss: float
    wall_seconds: float
    participants: int
    dropped: int
    stragglers: int
    excluded: int
    sampled: tuple[int, ...]
    bytes_up: int
    bytes_down: int
    sim_round_seconds: float | None
    samples_trained: int
    client_seconds_per_epoch: float | None
    client_accuracy_mean: float | None
    client_accuracy_worst_decile: float | None
    server_lr: float | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sampled"] = list(self.sampled)
        if self.server_lr is None:
            del out["server_lr"]
        return out


@dataclass(frozen=True)
class CentralizedReference:
    """The same model and optimiser trained on the pooled data for the same sample passes."""

    accuracy: float
    sample_passes: int
    epochs: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimulationResult:
    """A federated run: its settings as run, every round, the fleet, the reference."""

    config: dict
    server: dict
    initial_accuracy: float
    rounds: tuple[RoundRecord, ...]
    seconds: float
    centralized_reference: CentralizedReference | None
    fleet: list
    seconds_per_sample_host: float

    exit_code = 0
    failure = None

    def to_dict(self) -> dict:
        return {"config": self.config, "server": self.server,
                "initial_accuracy": self.initial_accuracy,
                "rounds": [r.to_dict() for r in self.rounds], "seconds": self.seconds,
                "centralized_reference": (self.centralized_reference.to_dict()
                                          if self.centralized_reference else None),
                "fleet": self.fleet, "seconds_per_sample_host": self.seconds_per_sample_host}

    def to_markdown(self) -> str:
        return render_markdown(self.to_dict())


def render_markdown(doc: dict) -> str:
    """report.md: the run's settings, fleet and rounds."""
    cfg = doc["config"]
    lines = [f"# edgenn federated simulate: {cfg['strategy']}, {cfg['clients']} clients, "
             f"{cfg['rounds']} rounds", "",
             f"- data {cfg['data']}, partition {cfg['partition']}, fraction_fit {cfg['fraction_fit']}, "
             f"client runtime {cfg['client_runtime']}, compression {cfg['compression']}",
             "- server: " + ", ".join(f"{k} {v}" for k, v in doc.get("server", {}).items()),
             f"- initial accuracy {doc['initial_accuracy']:.4f}; {doc['seconds']} s on this machine"]
    ref = doc.get("centralized_reference")
    if ref:
        lines.append(f"- centralized reference: {ref['accuracy']:.4f} after the same "
                     f"{ref['sample_passes']} sample passes ({ref['epochs']} epochs of the pooled "
                     "data, same model, optimiser and batch size)")
    lines += ["", "Fleet (simulated round time = samples x measured seconds per sample / speed "
              "+ transfer time):", "",
              "| device | clients | speed | dropout | memory MB | model needs MB | fits |",
              "|---|---|---|---|---|---|---|"]
    for d in doc.get("fleet", []):
        lines.append(f"| {d['device']} | {d['clients']} | {d['speed']:.3g} | {d['dropout']} | "
                     f"{d['memory_mb'] or '-'} | {d['need_mb']} | {'yes' if d['fits'] else 'no'} |")
    lines += ["", "| round | accuracy | loss | participants | dropped | stragglers | excluded "
              "| MB up | MB down | sim s | worst-decile client acc |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rounds"]:
        worst = r.get("client_accuracy_worst_decile")
        lines.append(f"| {r['round']} | {r['accuracy']:.4f} | {r['loss']:.4f} | {r['participants']} "
                     f"| {r['dropped']} | {r['stragglers']} | {r.get('excluded', 0)} "
                     f"| {r['bytes_up'] / 1e6:.3f} | {r['bytes_down'] / 1e6:.3f} "
                     f"| {r['sim_round_seconds']} | {'-' if worst is None else f'{worst:.3f}'} |")
    return "\n".join(lines) + "\n"


def plot(history: list[dict], path: Path) -> None:
    """accuracy.png: global accuracy by round and by megabytes communicated."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    acc = [r["accuracy"] for r in history]
    mb = np.cumsum([(r["bytes_up"] + r["bytes_down"]) / 1e6 for r in history])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot([r["round"] for r in history], acc, marker="o")
    a.set_xlabel("round")
    a.set_ylabel("global test accuracy")
    b.plot(mb, acc, marker="o")
    b.set_xlabel("MB communicated (cumulative)")
    b.set_ylabel("global test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
