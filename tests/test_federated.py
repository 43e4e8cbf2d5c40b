"""`edgenn federated simulate` on Flower's simulation engine (Ray), with TFLite and Keras clients."""

import json

from conftest import assert_clean_error, run_cli

CONFIG = """model: builtin:mlp
data: digits
clients: 4
partition: {dirichlet: 0.5}
rounds: 2
fraction_fit: 0.5
local_epochs: 2
batch_size: 16
lr: 0.05
strategy: fedavg
client_runtime: RUNTIME
compression: int8
failure_rate: 0.25
seed: 0
"""


def test_simulate_tflite_clients(tmp_path):
    cfg = tmp_path / "fl.yaml"
    cfg.write_text(CONFIG.replace("RUNTIME", "tflite"))
    out = tmp_path / "out"
    r = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(out), "--json",
                timeout=600)
    assert r.code == 0, r.err[-2000:]
    doc = r.json()
    history = json.loads((out / "history.json").read_text())
    assert history["rounds"] == doc["rounds"] and len(doc["rounds"]) == 2
    for row in doc["rounds"]:
        assert {"round", "accuracy", "loss", "participants", "dropped", "stragglers", "bytes_up",
                "bytes_down", "sim_round_seconds", "wall_seconds"} <= set(row)
        assert row["participants"] + row["dropped"] == 2
        # int8 updates: about a quarter of the float bytes per participant
        if row["participants"]:
            float_bytes = (64 * 128 + 128 + 128 * 10 + 10) * 4
            assert row["bytes_up"] < 0.3 * float_bytes * row["participants"]
    assert doc["rounds"][-1]["accuracy"] > doc["initial_accuracy"]
    for name in ("global.keras", "global.tflite", "trainable.tflite", "report.md", "accuracy.png"):
        assert (out / name).is_file(), name


def test_simulate_keras_clients_and_config_errors(tmp_path):
    cfg = tmp_path / "fl.yaml"
    cfg.write_text(CONFIG.replace("RUNTIME", "keras").replace("failure_rate: 0.25", "failure_rate: 0"))
    r = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(tmp_path / "k"), "--json",
                timeout=600)
    assert r.code == 0, r.err[-2000:]
    assert r.json()["rounds"][-1]["participants"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("clients: 4\npartition: {dirichlet: -1}\nstrategy: fedfoo\nturbo: 1\n")
    e = run_cli("federated", "simulate", "--config", str(bad), "-o", str(tmp_path / "b"))
    assert_clean_error(e, 2, "partition", "strategy", "unknown key 'turbo'")


def test_example_configs_validate():
    from pathlib import Path

    from edgenn.federated.config import SimulationConfig
    from edgenn.yamlio import load_model_file

    root = Path(__file__).resolve().parents[1] / "recipes" / "federated"
    configs = sorted(root.glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = load_model_file(SimulationConfig, path, "federated config")
        assert cfg.clients == 100 and cfg.partition == {"dirichlet": 0.5}
