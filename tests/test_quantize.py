"""`edgenn quantize`: a converted float file quantized by ai-edge-quantizer / ONNX Runtime, then
checked against the float file, with no TensorFlow."""

from __future__ import annotations

import pytest

from conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def float_files(digits_model, tmp_path_factory):
    """The trained digits CNN converted to float .tflite and .onnx by edgenn."""
    out = tmp_path_factory.mktemp("float")
    for to in ("tflite", "onnx"):
        r = run_cli("convert", str(digits_model), "--to", to, "-o", str(out / f"f32.{to}"))
        assert r.code == 0, r.err
    return out


@pytest.mark.parametrize("mode,data", [("dynamic-int8", False), ("int8", True)])
def test_tflite_quantized_by_ai_edge_quantizer_without_tensorflow(float_files, tmp_path, mode, data):
    out = tmp_path / "q.tflite"
    flags = ["--data", "digits"] if data else []
    r = run_cli("quantize", str(float_files / "f32.tflite"), "--mode", mode, *flags,
                "-o", str(out), "--json", block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["tool"] == "ai-edge-quantizer" and doc["bytes_after"] < 0.5 * doc["bytes_before"]
    assert doc["fidelity"]["task"] == "classification" and doc["fidelity"]["passed"]
    assert doc["fidelity"]["data"] == ("digits test split" if data else "random inputs")
    info = run_cli("inspect", str(out), "--json", block_tf=True).json()
    if mode == "int8":  # static: the activations are int8 tensors now
        assert any("QUANTIZE" in op for op in info["ops"])


def test_layers_that_match_nothing_are_said(float_files, tmp_path):
    r = run_cli("quantize", str(float_files / "f32.tflite"), "--mode", "weight-int8",
                "--layers", "no_such_layer", "-o", str(tmp_path / "q.tflite"), "--json")
    assert r.code == 0, r.err
    assert r.json()["bytes_after"] >= r.json()["bytes_before"] * 0.95
    assert "may match no quantizable op" in r.json()["notes"][0]


def test_onnx_quantized_by_onnx_runtime(float_files, tmp_path):
    r = run_cli("quantize", str(float_files / "f32.onnx"), "--mode", "int8", "--data", "digits",
                "-o", str(tmp_path / "q.onnx"), "--json", block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["tool"] == "onnxruntime" and r.json()["fidelity"]["passed"]


def test_quantize_refusals(float_files, digits_model, tmp_path):
    f32 = str(float_files / "f32.tflite")
    cases = [
        (["quantize", f32, "--mode", "int8", "-o", str(tmp_path / "a.tflite")], "calibrates"),
        (["quantize", str(float_files / "f32.onnx"), "--mode", "weight-int4", "-o",
          str(tmp_path / "a.onnx")], "does not apply to .onnx"),
        (["quantize", str(digits_model), "--mode", "dynamic-int8", "-o", str(tmp_path / "a.tflite")],
         "takes a converted .tflite or .onnx"),
        (["quantize", f32, "--mode", "dynamic-int8", "-o", f32], "is the input file"),
        (["quantize", f32, "--mode", "dynamic-int8", "--layers", "(", "-o",
          str(tmp_path / "b.tflite")], "not a regular expression"),
    ]
    for args, needle in cases:
        assert_clean_error(run_cli(*args, block_tf=True), 2, needle)
    assert not any(tmp_path.iterdir())
