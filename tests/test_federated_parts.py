"""Federated building blocks: client partitions and update compression (numpy only)."""

import numpy as np
import pytest

from edgenn.errors import UsageError
from edgenn.federated.compression import TopK, dequantize_int8, nbytes, quantize_int8
from edgenn.federated.partition import partition

Y = np.repeat(np.arange(10), 100)


def _check_cover(parts):
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(Y)))  # every sample once


def test_iid_is_balanced_and_seeded():
    parts = partition(Y, 10, "iid", seed=1)
    _check_cover(parts)
    assert {len(p) for p in parts} == {100}
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition(Y, 10, "iid", seed=1)))


def test_dirichlet_skews_labels():
    strong = partition(Y, 10, {"dirichlet": 0.1}, seed=0)
    weak = partition(Y, 10, {"dirichlet": 100.0}, seed=0)
    _check_cover(strong)

    def mean_classes(parts):
        return np.mean([len(np.unique(Y[p])) for p in parts if len(p)])

    assert mean_classes(strong) < mean_classes(weak)
    assert min(len(p) for p in strong) >= 1


def test_shards_give_few_labels_each():
    parts = partition(Y, 20, {"shards": 2}, seed=0)
    _check_cover(parts)
    assert max(len(np.unique(Y[p])) for p in parts) <= 4


def test_partition_errors():
    with pytest.raises(UsageError, match="unknown partition"):
        partition(Y, 10, "random")
    with pytest.raises(UsageError, match="alpha must be positive"):
        partition(Y, 10, {"dirichlet": 0})


def test_int8_cuts_bytes_about_4x_with_small_error():
    rng = np.random.default_rng(0)
    delta = {"w": rng.normal(0, 0.01, (784, 128)).astype(np.float32),
             "b": rng.normal(0, 0.01, 128).astype(np.float32)}
    packed, size = quantize_int8(delta)
    assert nbytes(delta) / size > 3.9
    back = dequantize_int8(packed)
    assert np.max(np.abs(back["w"] - delta["w"])) <= np.max(np.abs(delta["w"])) / 127 / 2 + 1e-9


def test_topk_error_feedback_sends_everything_eventually():
    rng = np.random.default_rng(0)
    delta = {"w": rng.normal(size=(50, 20)).astype(np.float32)}
    codec = TopK(0.1)
    total = np.zeros((50, 20), np.float32)
    packed, size = codec.encode(delta)
    assert size < nbytes(delta) / 4
    total += TopK.decode(packed)["w"]
    for _ in range(30):  # nothing new: only the residual drains
        packed, _ = codec.encode({"w": np.zeros((50, 20), np.float32)})
        total += TopK.decode(packed)["w"]
    assert np.allclose(total, delta["w"], atol=1e-5)


def _cfg(**kw):
    from edgenn.federated.config import SimulationConfig

    return SimulationConfig.model_validate({"clients": 40, **kw})


def test_fleet_assigns_devices_in_their_fractions_and_seeded():
    from edgenn.federated import fleet

    cfg = _cfg(devices=[{"profile": "raspberry-pi-4", "fraction": 0.5},
                        {"profile": "coral-dev-board", "fraction": 0.3, "memory_mb": 1},
                        {"profile": "pixel-phone", "fraction": 0.2, "speed": 2.5,
                         "uplink_mbps": 8}])
    plan = fleet.plan(cfg, need_bytes=2 * 2**20)
    names = [d.device for d in plan]
    assert [names.count(n) for n in ("raspberry-pi-4", "coral-dev-board", "pixel-phone")] == \
        [20, 12, 8]
    assert names == [d.device for d in fleet.plan(cfg, 2 * 2**20)]  # same seed, same fleet
    assert names != [d.device for d in fleet.plan(cfg.model_copy(update={"seed": 1}), 2 * 2**20)]
    by = {d.device: d for d in plan}
    # speed from the profiles' float32 throughput (6 and 40 GMAC/s), unless given
    assert by["raspberry-pi-4"].speed == pytest.approx(6 / 40) and by["pixel-phone"].speed == 2.5
    assert by["raspberry-pi-4"].fits and not by["coral-dev-board"].fits  # 2 MB > 1 MB
    # simulated time: samples * s/sample / speed + bytes * 8 / bandwidth
    assert by["pixel-phone"].seconds(1000, 1e-4, 0, 10**6) == pytest.approx(0.1 / 2.5 + 1.0)
    assert fleet.plan(_cfg(), 1)[0] == fleet.HOST
    assert sum(fleet._counts([1 / 3] * 3, 100)) == 100


def test_fleet_config_errors():
    from edgenn.errors import ConfigError
    from edgenn.federated import fleet

    with pytest.raises(ValueError, match="add up to 1"):
        _cfg(devices=[{"profile": "host", "fraction": 0.5}])
    with pytest.raises(ConfigError, match="unknown device 'toaster'"):
        fleet.plan(_cfg(devices=[{"profile": "toaster", "fraction": 1.0}]), 1)


def test_server_settings_resolve_the_defaults_that_ran():
    from edgenn.federated.strategies import STRATEGIES, server_settings

    assert server_settings(_cfg()) == {"strategy": "fedavg"}
    assert server_settings(_cfg(strategy="fedadam")) == {
        "strategy": "fedadam", "server_lr": STRATEGIES[_cfg(strategy="fedadam").strategy].server_lr,
        "server_tau": 1e-3, "server_lr_schedule": "constant"}
    assert server_settings(_cfg(strategy="fedyogi"))["server_tau"] == 1e-5
    assert server_settings(_cfg(strategy="fedyogi", server_tau=0.01))["server_tau"] == 0.01
    assert server_settings(_cfg(strategy="fedyogi", server_lr=0.5))["server_lr"] == 0.5
    assert server_settings(_cfg(strategy="fedavgm", server_momentum=0.3)) == {
        "strategy": "fedavgm", "server_lr": 1.0, "server_momentum": 0.3,
        "server_lr_schedule": "constant"}
    assert server_settings(_cfg(strategy="fedprox", mu=0.2)) == {"strategy": "fedprox", "mu": 0.2}


def test_server_lr_schedule():
    from edgenn.federated.strategies import server_lr_at, server_settings

    cosine = server_settings(_cfg(strategy="fedyogi", server_lr=0.02, server_lr_schedule="cosine"))
    rates = [server_lr_at(cosine, r, 4) for r in (1, 2, 3, 4)]
    assert rates[0] == 0.02 and rates[2] == pytest.approx(0.01)  # halfway: half the rate
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0
    constant = server_settings(_cfg(strategy="fedavgm"))
    assert [server_lr_at(constant, r, 4) for r in (1, 4)] == [1.0, 1.0]
    assert server_lr_at(server_settings(_cfg()), 1, 4) is None  # fedavg has no server rate
    with pytest.raises(ValueError, match="fedavg has none"):
        _cfg(strategy="fedavg", server_lr_schedule="cosine")
    with pytest.raises(ValueError, match="server_lr_schedule"):
        _cfg(strategy="fedyogi", server_lr_schedule="linear")
