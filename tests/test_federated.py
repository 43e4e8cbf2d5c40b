"""`edgenn federated simulate` on Flower's simulation engine (Ray), with TFLite and Keras clients."""

import json

import pytest

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


@pytest.mark.slow  # 25 s; simulate stays in the default run (tflite clients, the on-device road)
def test_simulate_keras_clients(tmp_path):
    cfg = tmp_path / "fl.yaml"
    cfg.write_text(CONFIG.replace("RUNTIME", "keras").replace("failure_rate: 0.25", "failure_rate: 0")
                   .replace("strategy: fedavg", "strategy: fedyogi\nserver_lr_schedule: cosine"))
    r = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(tmp_path / "k"), "--json",
                timeout=600)
    assert r.code == 0, r.err[-2000:]
    doc = r.json()
    assert doc["rounds"][-1]["participants"] == 2
    # cosine over 2 rounds: the full rate, then half of it
    assert [row["server_lr"] for row in doc["rounds"]] == pytest.approx([0.01, 0.005])
    assert doc["server"]["server_lr_schedule"] == "cosine"


def test_simulate_refuses_a_bad_config_in_one_line(tmp_path):
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


FLEET = """model: builtin:mlp
data: digits
clients: 6
partition: {dirichlet: 0.5}
rounds: 3
fraction_fit: 0.5
local_epochs: 2
batch_size: 16
lr: 0.05
strategy: fedprox
mu: 0.1
devices:
  - {profile: raspberry-pi-4, fraction: 0.5, uplink_mbps: 0.1}   # 38 KB up takes ~3 s
  - {profile: coral-dev-board, fraction: 0.25, memory_mb: 0.05}  # the model does not fit
  - {profile: pixel-phone, fraction: 0.25}
round_deadline: 1.0
seed: 3
"""


@pytest.mark.slow  # 44 s; simulate stays in the default run (tflite and keras clients)
def test_fleet_stragglers_exclusion_fedprox_and_seeded_runs(tmp_path):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(FLEET)
    docs = []
    for run in ("a", "b"):
        r = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(tmp_path / run),
                    "--json", timeout=600)
        assert r.code == 0, r.err[-2000:]
        docs.append(r.json())
    doc = docs[0]
    fleet = {d["device"]: d for d in doc["fleet"]}
    assert fleet["coral-dev-board"]["fits"] is False and fleet["pixel-phone"]["fits"] is True
    kinds = {d["device"]: d["clients"] for d in doc["fleet"]}
    assert sum(kinds.values()) == 6 and kinds["raspberry-pi-4"] == 3
    totals = {k: sum(r[k] for r in doc["rounds"]) for k in ("stragglers", "excluded",
                                                            "participants")}
    assert totals["stragglers"] > 0 and totals["participants"] > 0, doc["rounds"]
    for row in doc["rounds"]:
        assert len(row["sampled"]) == 3
        assert row["participants"] + row["dropped"] + row["stragglers"] + row["excluded"] == 3
        if row["stragglers"]:
            assert row["sim_round_seconds"] == 1.0  # the server waited for the deadline
        else:
            assert 0 < row["sim_round_seconds"] < 1.0
    assert 0 < doc["centralized_reference"]["accuracy"] <= 1
    report = (tmp_path / "a" / "report.md").read_text()
    assert "centralized reference" in report and "| coral-dev-board | " in report
    assert doc["server"] == {"strategy": "fedprox", "mu": 0.1}
    assert "server: strategy fedprox, mu 0.1" in report

    def stable(d):  # everything but timings measured on this machine
        timed = {"wall_seconds", "client_seconds_per_epoch", "sim_round_seconds"}
        return [{k: v for k, v in row.items() if k not in timed} for row in d["rounds"]]
    assert stable(docs[0]) == stable(docs[1])  # seeded sampling, partitions, failures, training
    # and aggregation in partition order, not arrival order: the same global model to the bit
    assert (tmp_path / "a" / "global.tflite").read_bytes() == (
        tmp_path / "b" / "global.tflite").read_bytes()


@pytest.mark.slow  # 21 s; simulate stays in the default run (tflite and keras clients)
def test_fedavg_agrees_with_a_plain_numpy_replay(tmp_path):
    """The whole engine (Flower, seeded sampling, LiteRT clients, aggregation) against FedAvg
    written out in numpy on the same clients, partitions, shuffles and initial weights."""
    from edgenn.federated.replay import replay

    cfg = tmp_path / "fl.yaml"
    cfg.write_text(CONFIG.replace("RUNTIME", "tflite").replace("compression: int8", "compression: none")
                   .replace("failure_rate: 0.25", "failure_rate: 0").replace("rounds: 2", "rounds: 3"))
    out = tmp_path / "out"
    r = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(out), "--json",
                timeout=600)
    assert r.code == 0, r.err[-2000:]
    result = replay(out)
    accs = [row["numpy"] for row in result["rounds"]]
    assert len(accs) == 3 and accs[-1] > 0.5, result  # the replay itself learns
    assert result["max_round_gap"] <= 0.01, result  # at most 3 of the 360 test images differ


@pytest.mark.slow  # 33 s: starts a Ray cluster; simulate stays in the default run
def test_ray_address_runs_on_an_existing_cluster(tmp_path):
    """--ray-address: a real Ray head started here; the run's driver registers in its session."""
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    ray = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths must stay short
    cfg = tmp_path / "fl.yaml"
    cfg.write_text(CONFIG.replace("RUNTIME", "tflite").replace("failure_rate: 0.25", "failure_rate: 0"))
    # nothing listens yet: a one-line error at once, not Ray's endless retries
    e = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(tmp_path / "none"),
                "--ray-address", f"127.0.0.1:{port}", timeout=120)
    assert_clean_error(e, 2, "no Ray cluster answers", "ray start --head")
    assert not (tmp_path / "none").exists()
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, timeout=120)
    try:
        r = run_cli("federated", "simulate", "--config", str(cfg), "-o", str(tmp_path / "out"),
                    "--ray-address", f"127.0.0.1:{port}", "--json", timeout=600)
        assert r.code == 0, r.err[-2000:]
        assert len(r.json()["rounds"]) == 2
        drivers = list(Path(temp).glob("session_*/logs/python-core-driver-*.log"))
        assert drivers, "the run did not attach to the cluster started here"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
