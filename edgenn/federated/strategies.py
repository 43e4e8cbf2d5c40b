"""Federated strategies: one spec each (Flower class, settings, defaults, server-rate attribute).

Adding a strategy is adding a ``StrategySpec`` here and its name to ``Strategy``; the config's
validators, the server, the history and the report all read this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Strategy(str, Enum):
    fedavg = "fedavg"
    fedavgm = "fedavgm"
    fedprox = "fedprox"
    fedadam = "fedadam"
    fedyogi = "fedyogi"
    fedadagrad = "fedadagrad"


@dataclass(frozen=True)
class StrategySpec:
    """How edgenn runs one of Flower's strategies.

    ``server_lr`` and ``server_tau`` are the defaults when the config gives none, chosen with
    ``bench/federated_bench.py --sweep`` on the validation split (held out from the clients),
    never on test (bench/RESULTS.md): FedAvgM 1.0 with momentum 0.7, FedAdam 0.03, FedYogi 0.01
    with tau 1e-5 (Flower's 1e-3 swamps sqrt(v) for small deltas; 1e-5 was 1.5 pt better),
    FedAdagrad 0.1; FedAdam and FedAdagrad keep Flower's tau.
    """

    name: Strategy
    flower_class: str  # in flwr.serverapp.strategy
    server_lr: float | None = None  # None: the strategy has no server learning rate
    server_tau: float | None = None  # None: not an adaptive (FedOpt) strategy
    rate_attribute: str | None = None  # the attribute a server-rate schedule sets each round

    @property
    def has_server_rate(self) -> bool:
        return self.server_lr is not None

    def settings(self, cfg) -> dict:
        """The settings that run, defaults filled in (recorded in history.json and report)."""
        out: dict = {"strategy": self.name.value}
        if self.has_server_rate:
            out["server_lr"] = cfg.server_lr if cfg.server_lr is not None else self.server_lr
        if self.name is Strategy.fedavgm:
            out["server_momentum"] = cfg.server_momentum
        if self.server_tau is not None:
            out["server_tau"] = cfg.server_tau if cfg.server_tau is not None else self.server_tau
        if self.name is Strategy.fedprox:
            out["mu"] = cfg.mu
        if self.has_server_rate:
            out["server_lr_schedule"] = cfg.server_lr_schedule
        return out

    def flower_kwargs(self, cfg, settings: dict) -> dict:
        """The Flower constructor's strategy-specific arguments."""
        if self.name is Strategy.fedprox:
            return {"proximal_mu": cfg.mu}
        if self.name is Strategy.fedavgm:
            return {"server_learning_rate": settings["server_lr"],
                    "server_momentum": cfg.server_momentum}
        if self.server_tau is not None:
            return {"eta": settings["server_lr"], "eta_l": cfg.lr, "tau": settings["server_tau"]}
        return {}

    def flower(self):
        from flwr.serverapp import strategy as fs

        return getattr(fs, self.flower_class)


STRATEGIES = {spec.name: spec for spec in (
    StrategySpec(Strategy.fedavg, "FedAvg"),
    StrategySpec(Strategy.fedprox, "FedProx"),
    StrategySpec(Strategy.fedavgm, "FedAvgM", server_lr=1.0, rate_attribute="server_learning_rate"),
    StrategySpec(Strategy.fedadam, "FedAdam", server_lr=0.03, server_tau=1e-3, rate_attribute="eta"),
    StrategySpec(Strategy.fedyogi, "FedYogi", server_lr=0.01, server_tau=1e-5, rate_attribute="eta"),
    StrategySpec(Strategy.fedadagrad, "FedAdagrad", server_lr=0.1, server_tau=1e-3,
                 rate_attribute="eta"),
)}


def server_settings(cfg) -> dict:
    """The configured strategy's settings as run, defaults resolved."""
    return STRATEGIES[cfg.strategy].settings(cfg)


def server_lr_at(settings: dict, server_round: int, rounds: int) -> float | None:
    """The server learning rate of a round (1-based) under the schedule; None without one."""
    if "server_lr" not in settings:
        return None
    eta = settings["server_lr"]
    if settings.get("server_lr_schedule") == "cosine":
        return eta * (1 + math.cos(math.pi * (server_round - 1) / rounds)) / 2
    return eta
