"""`edgenn fit`: real searches (Optuna, Ray, `edgenn compress` per trial) on a tiny digits MLP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import assert_clean_error, run_cli

BUILD = r"""
import sys
import keras
from keras import layers
from sklearn.datasets import load_digits

keras.utils.set_random_seed(0)
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
inp = keras.Input((64,))
h = layers.Dense(64, activation="relu", name="hidden")(inp)
# a fixed Reshape after a Dense: a narrower (distilled) student of this model cannot be built,
# so every distillation trial fails, for real, inside its compress process
h = layers.Reshape((8, 8), name="grid")(h)
h = layers.Flatten()(h)
model = keras.Model(inp, layers.Dense(10, activation="softmax", name="classes")(h), name="mlp")
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, y, epochs=30, batch_size=32, verbose=0)
model.save(sys.argv[1])
"""

FLAGS = ["--data", "digits", "--device", "raspberry-pi-4", "--epochs-scale", "0.25"]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fit") / "mlp.keras"
    proc = subprocess.run([sys.executable, "-c", BUILD, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


@pytest.mark.slow
def test_fit_search_with_a_failing_trial(mlp, sshd, tmp_path):
    """The six seed points on two Ray workers: PTQ (from the reference run) and sparse pruning
    complete, the distilled student fails; a front, a best.

    Latency is measured on a board over SSH (a real sshd on loopback) with --host."""
    out = tmp_path / "fit"
    r = run_cli("fit", str(mlp), *FLAGS, "--max-drop", "3", "--trials", "6", "--workers", "2",
                *_board(sshd), "-o", str(out), "--json", timeout=900)
    assert r.code == 0, r.err[-3000:]
    doc = r.json()
    trials = {t["number"]: t for t in doc["trials"] if t["kind"] == "search"}
    assert len(trials) == 6
    ptq = next(t for t in trials.values() if t["label"] == "no training, int8")
    pruned = next(t for t in trials.values() if t["label"].startswith("prune 0.8"))
    student = next(t for t in trials.values() if t["label"].startswith("distil w0.75"))
    assert ptq["status"] == "complete" and ptq["drop_pt"] <= 3
    assert ptq["measured_on"] == _board(sshd)[1] and ptq["estimate_ms"] > 0 and ptq["rss_mb"] > 0
    assert pruned["status"] == "complete" and pruned["measured_on"] == _board(sshd)[1]
    assert student["status"] == "failed" and student["error"], student  # recorded, search went on
    assert doc["front"] and all(trials[n]["status"] == "complete" for n in doc["front"])
    assert doc["best"] in doc["front"]
    ptq = trials[doc["best"]]  # below: the chosen point
    # the input model's layers were ranked by int8 error once, for selective quantization
    assert doc["reference"]["sensitive"] and set(doc["reference"]["sensitive"]) <= {
        "hidden", "grid", "flatten", "classes"}
    # the test split was scored for the chosen point and the input model, after the search
    assert doc["test"]["reference"]["accuracy"] > 0.8
    assert abs(doc["test"][str(ptq["number"])]["accuracy"] - doc["test"]["reference"]["accuracy"]) < 0.05
    # OUT: the files the issue names; best.yaml is a recipe compress accepts
    for name in ("front.json", "best.tflite", "best.yaml", "pareto.png", "report.md",
                 "front/00.yaml"):
        assert (out / name).is_file(), name
    assert (out / "best.tflite").read_bytes()[4:8] == b"TFL3"
    v = run_cli("recipes", "validate", str(out / "best.yaml"))
    assert v.code == 0, v.err
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["export"]["quantization"] == "int8" and best["evaluate"]["split"] == "test"
    assert best["constraints"]["max_accuracy_drop"] == 3
    assert "Pareto front" in (out / "report.md").read_text()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the journal beside OUT is gone once the search finished
    assert not any(p.name.endswith("edgenn-fit-journal") for p in tmp_path.iterdir())


def test_budget_nothing_can_meet_exits_4_after_the_reference(mlp, tmp_path):
    out = tmp_path / "fit"
    r = run_cli("fit", str(mlp), *FLAGS, "--max-bytes", "50", "--trials", "3", "-o", str(out),
                timeout=600)
    assert_clean_error(r, 4, "--max-bytes 50", "at best", "0.9 sparse", "relax",
                       "nothing was trained")
    doc = json.loads((out / "front.json").read_text())  # the reference is kept and reported
    assert doc["front"] == [] and doc["best"] is None and "float32" in doc["reference"]
    assert not (out / "best.tflite").exists()


def _board(sshd) -> list[str]:
    return ["--host", f"{sshd.user}@127.0.0.1:{sshd.port}", "--identity", str(sshd.identity),
            "--known-hosts", str(sshd.known_hosts), "--remote-python", sys.executable]


@pytest.mark.slow  # 34 s; fit stays in the default run, profile over the real sshd too
def test_host_measures_latency_on_the_board(mlp, sshd, tmp_path):
    """--host: the input model's exports are timed on the board (a real sshd on loopback), and
    the latency budget is judged on those p50s, not on the estimate."""
    out = tmp_path / "fit"
    r = run_cli("fit", str(mlp), *FLAGS, *_board(sshd), "--max-latency-ms", "0.000001",
                "--trials", "2", "-o", str(out), timeout=600)
    assert_clean_error(r, 4, "--max-latency-ms", "at best", "nothing was trained")
    doc = json.loads((out / "front.json").read_text())
    host = _board(sshd)[1]
    for q in ("float32", "int8", "float16", "dynamic"):
        ref = doc["reference"][q]
        assert ref["measured_on"] == host and ref["latency_ms"] > 0 and ref["estimate_ms"] > 0
    assert doc["reference"]["float32"]["latency_ms"] != doc["reference"]["float32"]["estimate_ms"]
    assert "measured on " + host in doc["objectives"]["latency_ms"]
    assert "measured on " + host in (out / "report.md").read_text()
    # a board whose host key is not known is refused before anything runs
    bad = _board(sshd)
    bad[bad.index("--known-hosts") + 1] = str(tmp_path / "empty_known_hosts")
    (tmp_path / "empty_known_hosts").write_text("")
    r = run_cli("fit", str(mlp), *FLAGS, *bad, "--trials", "1", "-o", str(tmp_path / "b"))
    assert_clean_error(r, 3, "reaching the board", "host key", "--known-hosts")
    assert "reference:" not in r.err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow  # 90 s: a whole search stopped and resumed; fit stays in the default run
def test_a_trial_the_time_budget_stops_is_listed_and_rerun_on_resume(mlp, tmp_path):
    """PTQ comes from the reference run at once; the pruning seed that trains is stopped at the
    budget, listed, and run again by the same command without the budget."""
    out = tmp_path / "fit"
    r = run_cli("fit", str(mlp), *FLAGS, "--time-budget", "0.01", "--trials", "2",
                "-o", str(out), "--json", timeout=600)
    assert r.code == 0, r.err[-2000:]
    trials = [t for t in r.json()["trials"] if t["kind"] == "search"]
    assert [t["status"] for t in trials] == ["complete", "stopped"], trials
    assert trials[0]["reused"] == "reference" and trials[0]["label"] == "no training, int8"
    assert trials[1]["label"].startswith("prune 0.8 (16x1, Dense only, sparse)")
    journal = tmp_path / ".fit.edgenn-fit-journal" / "trials.jsonl"
    assert journal.is_file()  # kept: a point is unfinished
    r = run_cli("fit", str(mlp), *FLAGS, "--trials", "2", "-o", str(out), "--json",
                timeout=600)
    assert r.code == 0, r.err[-2000:]
    trials = [t for t in r.json()["trials"] if t["kind"] == "search"]
    assert [t["status"] for t in trials] == ["complete", "stopped", "complete"], trials
    assert trials[1]["params"] == trials[2]["params"]
    # the pruned Dense kernels are stored sparse: the int8 file is smaller than PTQ's
    assert trials[2]["recipe"]["export"]["sparse_weights"] is True
    assert trials[2]["bytes"] < 0.7 * trials[0]["bytes"], (trials[2]["bytes"], trials[0]["bytes"])
    assert not journal.parent.exists()  # nothing stopped this time: the journal is gone


def test_a_search_that_only_ran_out_of_time_says_so():
    from edgenn.fit.search import FitResult

    stopped = {"kind": "search", "status": "stopped", "params": {"quantization": "int8"}}
    result = FitResult(settings={}, reference={}, trials=[stopped], front=[], best=None,
                       closest=None, test={})
    assert result.exit_code == 3 and result.unfinished == [stopped]
    assert "no trial finished within --time-budget (1 stopped" in result.failure
    assert "larger --time-budget" in result.failure


def test_fit_refuses_bad_input_in_one_line(mlp, tmp_path):
    r = run_cli("fit", str(mlp), "--data", "digits", "--device", "no-such-board", "-o",
                str(tmp_path / "o"))
    assert_clean_error(r, 2, "no-such-board")
    r = run_cli("fit", str(tmp_path / "missing.keras"), "--data", "digits", "--device",
                "raspberry-pi-4", "-o", str(tmp_path / "o"))
    assert_clean_error(r, 2, "missing.keras")
    r = run_cli("fit", str(mlp), "--data", "digits", "--device", "raspberry-pi-4",
                "--compare", "no-such-recipe", "-o", str(tmp_path / "o"))
    assert_clean_error(r, 2, "no-such-recipe")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_interrupted_search_resumes(mlp, tmp_path):
    """Ctrl-C after the first trial: the journal keeps it; the same command finishes the search."""
    out = tmp_path / "fit"
    cmd = [sys.executable, "-m", "edgenn", "fit", str(mlp), *FLAGS, "--no-distill",
           "--trials", "3", "-o", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    journal = tmp_path / ".fit.edgenn-fit-journal" / "trials.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:
        lines = journal.read_text().splitlines() if journal.is_file() else []
        # a trained trial (PTQ, the first, comes from the reference run at once)
        if any(json.loads(line)["kind"] == "search" and json.loads(line).get("seconds")
               for line in lines):
            break
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail("no trial finished within 10 minutes")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert not out.exists()  # OUT appears only when a search ends
    kept = [json.loads(line) for line in journal.read_text().splitlines()]
    first = next(r for r in kept if r["kind"] == "search" and r.get("seconds"))
    r = run_cli("fit", str(mlp), *FLAGS, "--no-distill", "--trials", "3", "-o", str(out),
                "--json", timeout=900)
    assert r.code == 0, r.err[-3000:]
    trials = [t for t in r.json()["trials"] if t["kind"] == "search"]
    assert sum(t["status"] in ("complete", "failed") for t in trials) == 3
    again = next(t for t in trials if t["number"] == first["number"])
    assert again["seconds"] == first["seconds"]  # kept, not run again


@pytest.mark.slow
def test_trials_run_on_an_existing_ray_cluster(mlp, tmp_path):
    ray = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, timeout=120)
    try:
        r = run_cli("fit", str(mlp), *FLAGS, "--no-distill", "--trials", "1",
                    "--ray-address", f"127.0.0.1:{port}", "-o", str(tmp_path / "fit"), "--json",
                    timeout=900)
        assert r.code == 0, r.err[-3000:]
        workers = list(Path(temp).glob("session_*/logs/python-core-worker-*.log"))
        assert workers, "no trial ran on the cluster started here"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.parametrize("sensitive", [0, 1, 2, 5])
@pytest.mark.parametrize("classes", [{"Dense": 2}, {"Conv2D": 3}])
def test_every_seed_is_a_point_the_sampler_accepts(sensitive, classes):
    """A model with one layer ranked sensitive, or none, or no Dense layer: each seed is drawn
    as queued (a seed outside a parameter's choices made Optuna raise: exit 1)."""
    import optuna

    from edgenn.fit import space
    from edgenn.fit.search import _seeds
    from edgenn.fit.settings import FitSettings

    reference = {"sensitive": [f"l{i}" for i in range(sensitive)], "layer_classes": classes}
    seeds = _seeds(FitSettings(model="m", data_args=[], device="raspberry-pi-4"), reference)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for seed in seeds:
        study.enqueue_trial(seed, skip_if_exists=False)
    for seed in seeds:
        trial = study.ask()
        p = space.suggest(trial, sensitive=sensitive)
        assert p == {k: v for k, v in seed.items() if k in p}, (p, seed)
        study.tell(trial, [0.9, 1.0, 1.0])
    assert any(space.dense_only(p) for p in seeds) == ("Dense" in classes)
    assert max(p.get("keep_float", 0) for p in seeds) == min(2, sensitive)
    # a model that does not export at int8 (a recurrent loop): no int8 seed is queued
    assert _seeds(FitSettings(model="m", data_args=[], device="raspberry-pi-4"),
                  {**reference, "unavailable": {"int8": "refused"}}) == []


def test_a_front_recipe_reruns_as_its_trial_ran():
    """front/NN.yaml carries the trial's --epochs-scale and thread count (training differs by
    thread count), and is a valid recipe."""
    from edgenn import recipe as rc
    from edgenn.fit import space

    p = {"quantization": "int8", "width": 1.0, "sparsity": 0.8, "block": "4x1", "clusters": 16,
         "qat": True, "epochs": 4, "learning_rate": 3e-4}
    doc = space.recipe(p, "fit-front-00", max_drop=0.5, split="test", threads=1,
                       epochs_scale=0.25)
    recipe = rc.Recipe.model_validate(doc)
    assert recipe.threads == 1 and recipe.evaluate.split.value == "test"
    assert [s.config.epochs for s in recipe.steps] == [1.0, 0.5, 0.5]  # 4, 2, 2 at 0.25
    trial = space.recipe(p, "fit-001", threads=1)
    assert space.steps_key(trial) != space.steps_key(space.recipe(p, "fit-001", threads=2))
    ptq = space.recipe({"quantization": "int8"}, "fit-front-01", threads=1, epochs_scale=0.25)
    assert ptq["threads"] == 1 and space.steps_key(ptq) is None  # calibration sums too
    # int8 with Dense kernels pruned in 16x1 blocks: stored sparse, and the byte bound says so
    sparse = {**p, "block": "16x1", "clusters": 0, "qat": False}
    assert space.recipe(sparse, "s")["export"]["sparse_weights"] is True
    assert "16x1, Dense only, sparse" in space.describe(sparse)
    # only Dense kernels are stored sparse, so only they are pruned, and only they train
    prune = space.recipe(sparse, "s")["steps"][0]["prune"]
    assert prune["scope"] == {"include": {"classes": ["Dense"]}}
    assert prune["freeze_rest"] is True and "distill" not in prune
    assert rc.Recipe.model_validate(space.recipe(sparse, "s")).steps[0].config.freeze_rest
    assert "sparse_weights" not in space.recipe({**sparse, "quantization": "float16"}, "s")["export"]
    # the same training at the other quantizations: an export each (the model is reused)
    sibs = space.siblings(sparse)
    assert sorted(x["quantization"] for x in sibs) == ["dynamic", "float16", "int16x8"]
    key = space.steps_key(space.recipe(sparse, "s", threads=1))
    assert all(space.steps_key(space.recipe(x, "s", threads=1)) == key for x in sibs)
    assert all("sparse_weights" not in space.recipe(x, "s")["export"] for x in sibs)
    assert space.siblings(p) == []  # QAT trains for int8 only
    # a model without Dense layers (MobileNetV3's head is a 1x1 convolution) has no sparse point
    from edgenn.fit.search import has_dense

    assert not has_dense({"layer_classes": {"Conv2D": 3, "Flatten": 1}})
    assert has_dense({"layer_classes": {"Dense": 1}}) and has_dense({"layer_classes": None})
    ref = {"int8": {"latency_ms": 1.0, "bytes": 1000, "ram_mb": 1.0}}
    assert space.lower_bound(sparse, ref)["bytes"] == pytest.approx(200)
    assert space.lower_bound({**sparse, "block": "4x1"}, ref)["bytes"] == 1000


@pytest.mark.slow
def test_a_quantization_the_model_cannot_take_leaves_the_search_not_ends_it(models, tmp_path):
    """A GRU over an open time axis: TFLite's int8 (and int16x8) of a recurrent loop is
    refused (a fixed-length one is unrolled); fit goes on with the exports the model takes
    (here up to the budget that nothing meets) and says why."""
    import keras

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((None, 4)), keras.layers.GRU(5, name="gru"),
                      keras.layers.Dense(2)]).save(tmp_path / "open_gru.keras")
    out = tmp_path / "fit"
    r = run_cli("fit", str(tmp_path / "open_gru.keras"), "--data", str(models / "steps.npz"),
                "--scale", "none", "--device", "raspberry-pi-4", "--max-bytes", "50",
                "--trials", "2", "--no-distill", "-o", str(out), timeout=600)
    assert_clean_error(r, 4, "--max-bytes 50", "at best")
    reference = json.loads((out / "front.json").read_text())["reference"]
    assert "recurrent" in reference["unavailable"]["int8"]
    assert {"float32", "float16", "dynamic"} <= set(reference), reference.keys()
