"""`edgenn demo`: the whole job on the embedded default."""

import json

import pytest

from conftest import assert_clean_error, run_cli


def test_demo_quick_trains_saves_and_inspects(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "-o", str(out), "--quick", "--json")
    assert r.code == 0, r.err
    doc = r.json()  # stdout holds the JSON document and nothing else
    assert doc["data"]["source"] == "digits"
    assert doc["test_accuracy"] >= 0.95
    model = out / "model.keras"
    assert model.is_file() and doc["model"] == str(model)
    assert doc["inspect"]["flavour"] == "keras3"
    assert doc["inspect"]["bridge"]["max_abs_diff"] <= 1e-5
    assert json.loads((out / "demo.json").read_text())["test_accuracy"] == doc["test_accuracy"]
    assert sorted(p.name for p in out.iterdir()) == [".edgenn-run.json", "demo.json", "int8-ptq",
                                                    "model.keras"]
    compressed = doc["compress"]
    assert compressed["recipe"] == "int8-ptq" and compressed["constraints_met"] is True
    assert (out / "int8-ptq" / "model.tflite").stat().st_size == compressed["bytes"]
    assert compressed["accuracy"] >= doc["test_accuracy"] - 0.01


def test_demo_bad_data_writes_nothing(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "-o", str(out), "--data", str(tmp_path / "missing.npz"))
    assert_clean_error(r, 2, "dataset not found")
    assert not out.exists()


def test_demo_rejects_non_image_data(tmp_path):
    import numpy as np

    np.savez(tmp_path / "flat.npz", x=np.zeros((30, 7), np.float32), y=np.arange(30) % 3)
    r = run_cli("demo", "-o", str(tmp_path / "o"), "--data", str(tmp_path / "flat.npz"))
    assert_clean_error(r, 2, "needs images")


@pytest.mark.slow
def test_full_demo_shows_every_capability_and_its_report_renders(tmp_path):
    """`make demo`: three recipes, ONNX and Edge TPU, federated, one report.html in chromium."""
    import shutil
    import subprocess

    import numpy as np
    from PIL import Image

    out = tmp_path / "demo"
    r = run_cli("demo", "-o", str(out), "--json", timeout=900)
    assert r.code == 0, r.err[-3000:]
    doc = r.json()
    more = doc["more"]
    assert set(more["recipes"]) == {"prune-80-int8", "distill-half-int8"}
    assert more["recipes"]["distill-half-int8"]["bytes"] < doc["compress"]["bytes"] / 2
    assert set(more["convert"]) == {"onnx-int8", "edgetpu"}
    assert more["convert"]["edgetpu"]["edgetpu"]["whole_graph_maps"] is True
    assert more["federated"]["accuracy"] > more["federated"]["initial_accuracy"]
    runs = {row["run"] for row in more["rows"]}
    assert {"int8-ptq", "prune-80-int8", "distill-half-int8", "federated", "model-int8.onnx",
            "model-edgetpu.tflite"} <= runs
    assert all(row["here_p50_ms"] for row in more["rows"])  # every artifact profiled here
    page = out / "report.html"
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (.ci/run installs it)"
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1280,1800", page.as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10
