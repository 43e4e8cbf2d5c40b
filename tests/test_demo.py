"""`edgenn demo`: the whole job on the embedded default."""

import json

from conftest import assert_clean_error, run_cli


def test_demo_default_trains_saves_and_inspects(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "-o", str(out), "--json")
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
