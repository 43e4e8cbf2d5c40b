"""The simulation's server side: seeded client sampling, failure accounting, the strategy.

Flower's ServerApp drives the rounds through the strategy; this wraps the configured Flower
strategy (``strategies.py``) so that sampling is reproducible for a seed, replies aggregate in
partition order, excluded clients and stragglers are left out, and each round is recorded.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import UsageError
from .config import SimulationConfig
from .job import SIMULATED_FAILURE
from .strategies import STRATEGIES, server_lr_at


class _PartitionOrderGrid:
    """A Grid whose node ids come in partition-id order, so a seeded sample is reproducible.

    Flower's simulation gives nodes random ids; sampling from them with a seeded ``random``
    would still pick different partitions each run.
    """

    def __init__(self, grid, order: dict[int, int]):
        self._grid, self._order = grid, order

    def get_node_ids(self):
        return sorted(self._grid.get_node_ids(), key=lambda n: self._order.get(n, 1 << 62))

    def __getattr__(self, name):
        return getattr(self._grid, name)


def _error_line(reply) -> str:
    """The last meaningful line of a failed client's error (Flower sends the traceback)."""
    reason = str(getattr(reply.error, "reason", "") or "")
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Message:" in ln:
            return ln.split("Message:", 1)[1].strip()
    return lines[-1] if lines else "unknown error"


def make_strategy(cfg: SimulationConfig, log: dict, node_order: dict, say=lambda m: None):
    """The configured Flower strategy, wrapped to sample by seed and record every round."""
    import random

    common = {"fraction_train": cfg.fraction_fit, "fraction_evaluate": 0.0,
              "min_train_nodes": min(cfg.min_fit_clients, cfg.clients),
              "min_available_nodes": cfg.clients}
    spec = STRATEGIES[cfg.strategy]
    settings = spec.settings(cfg)
    cls, extra = spec.flower(), spec.flower_kwargs(cfg, settings)

    class Counting(cls):
        """Seeded sampling; leaves out excluded clients and stragglers; records each round."""

        def configure_train(self, server_round, arrays, config, grid):
            state = random.getstate()
            random.seed(cfg.seed * 100_003 + server_round)
            try:
                messages = list(super().configure_train(server_round, arrays, config,
                                                        _PartitionOrderGrid(grid, node_order)))
            finally:
                random.setstate(state)
            log.setdefault(server_round, {})["sampled"] = sorted(
                node_order.get(m.metadata.dst_node_id, -1) for m in messages)
            return messages

        def aggregate_train(self, server_round, replies):
            # Replies arrive in completion order; aggregating in partition order makes the float
            # sums, and so a seeded run, the same every time.
            replies = sorted(replies, key=lambda r: node_order.get(r.metadata.src_node_id, 1 << 62))
            answered = [r for r in replies if not r.has_error()]
            real = [_error_line(r) for r in replies
                    if r.has_error() and r.error.code != SIMULATED_FAILURE]
            if real:  # a client crashed for a reason the simulation did not inject
                say(f"round {server_round}: {len(real)} client(s) failed: {real[0]}")
            metrics = [r.content["metrics"] for r in answered]
            excluded = [r for r, m in zip(answered, metrics) if int(m.get("excluded", 0))]
            late = [r for r, m in zip(answered, metrics) if int(m.get("straggler", 0))]
            ok = [r for r in answered if r not in excluded and r not in late]
            trained = [r.content["metrics"] for r in answered if r not in excluded]
            used = [r.content["metrics"] for r in ok]
            local = sorted(float(m["local_accuracy"]) for m in used)
            dropped = len(replies) - len(answered)
            sim = [float(m["sim_seconds"]) for m in trained]
            if cfg.round_deadline is not None and (late or dropped):
                sim_round = cfg.round_deadline  # the server waited until the deadline
            else:
                sim_round = max(sim, default=0.0)
            log.setdefault(server_round, {}).update({
                "participants": len(ok), "dropped": dropped, "stragglers": len(late),
                "excluded": len(excluded),
                "bytes_up": int(sum(int(m["bytes_up"]) for m in trained)),
                "sim_round_seconds": round(sim_round, 4),
                "samples_trained": int(sum(int(m["samples_trained"]) for m in used)),
                "client_seconds_per_epoch": float(np.mean([m["seconds_per_epoch"]
                                                           for m in trained]))
                if trained else None,
                "client_accuracy_mean": float(np.mean(local)) if local else None,
                "client_accuracy_worst_decile": float(np.mean(local[: max(1, len(local) // 10)]))
                if local else None,
            })
            if not ok:
                return None, None  # nobody in time: the global model stays as it was
            rate = server_lr_at(settings, server_round, cfg.rounds)
            if rate is not None:
                log[server_round]["server_lr"] = rate
                attr = spec.rate_attribute
                if not hasattr(self, attr):  # a Flower release renamed it: fail, do not ignore
                    raise RuntimeError(f"{cls.__name__} has no attribute {attr} to schedule")
                setattr(self, attr, rate)
            arrays, metrics = super().aggregate_train(server_round, ok)
            if arrays is not None:  # FedOpt's server update computes in float64; ship float32
                from flwr.app import ArrayRecord

                arrays = ArrayRecord([a.astype(np.float32) for a in arrays.to_numpy_ndarrays()])
            return arrays, metrics

    return Counting(**common, **extra)


def partition_ids(grid, clients: int, timeout: float = 120.0) -> dict[int, int]:
    """Node id -> partition id, asked of every node once (a query message)."""
    from flwr.app import Message, RecordDict

    deadline = time.monotonic() + timeout
    while len(ids := list(grid.get_node_ids())) < clients:  # nodes register asynchronously
        if time.monotonic() > deadline:
            raise UsageError(f"only {len(ids)} of {clients} simulated clients came up in "
                             f"{timeout:.0f} s", "run again with --debug to see Flower's log")
        time.sleep(0.05)
    replies = grid.send_and_receive([Message(RecordDict(), dst_node_id=n, message_type="query")
                                     for n in ids])
    order = {}
    for reply in replies:
        if not reply.has_error():
            order[reply.metadata.src_node_id] = int(reply.content["who"]["partition-id"])
    return order


