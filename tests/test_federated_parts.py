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
