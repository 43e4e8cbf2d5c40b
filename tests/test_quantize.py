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


def test_layers_that_match_nothing_are_refused(float_files, tmp_path):
    """ai-edge-quantizer writes the model back unchanged when --layers matches nothing: that
    copy is not handed over as quantized."""
    r = run_cli("quantize", str(float_files / "f32.tflite"), "--mode", "weight-int8",
                "--layers", "no_such_layer", "-o", str(tmp_path / "q.tflite"))
    assert_clean_error(r, 2, "--layers 'no_such_layer' matches no op", "nothing was written")
    assert not (tmp_path / "q.tflite").exists()


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


def test_outputs_of_a_foreign_file_pair_by_name_even_when_its_signature_is_stale(tmp_path):
    """A .tflite made elsewhere names its outputs (basic-pitch: contour, note, onset), and the
    runtime lists them in the file's order. ai-edge-quantizer's int8 basic-pitch kept its
    signature's `contour` pointing at a tensor it had replaced, so the two files' outputs came
    in different orders and `quantize` exited 1 on the shapes. Both orders now follow the
    names, and a name whose tensor is not an output takes the left-over output of its shape.
    The stale signature is made here as that file had it: `contour` points at an inner tensor
    of the same shape."""
    import flatbuffers
    import keras
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgenn._tf import tf
    from edgenn.runtime.litert import TFLiteRunner

    tensorflow = tf()
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, activation="relu")(inp)
    outs = {"onset": keras.layers.Dense(4, activation="sigmoid")(h),
            "contour": keras.layers.Dense(12, activation="sigmoid")(h),
            "note": keras.layers.Dense(6, activation="sigmoid")(h)}
    keras.Model(inp, outs).export(str(tmp_path / "sm"), verbose=False)
    good = tmp_path / "m.tflite"
    good.write_bytes(tensorflow.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert())

    model = schema.ModelT.InitFromPackedBuf(good.read_bytes(), 0)
    sg = model.subgraphs[0]
    sig = model.signatureDefs[0]
    contour = next(o for o in sig.outputs if o.name in (b"contour", "contour"))
    inner = next(i for i, t in enumerate(sg.tensors) if i not in sg.outputs
                 and list(t.shape) == list(sg.tensors[contour.tensorIndex].shape))
    contour.tensorIndex = inner
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    stale = tmp_path / "stale.tflite"
    stale.write_bytes(builder.Output())

    x = np.random.default_rng(0).random((5, 8)).astype("float32")
    want, got = TFLiteRunner(good).predict(x), TFLiteRunner(stale).predict(x)
    assert [y.shape[-1] for y in want] == [12, 6, 4]  # contour, note, onset: by name
    assert [y.shape for y in got] == [y.shape for y in want]
    assert all(np.allclose(a, b) for a, b in zip(want, got))


def _rewrite(path, out, change):
    """``path`` with ``change(model, schema)`` applied to its flatbuffer, written to ``out``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    change(model, schema)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(builder.Output())
    return out


def test_float16_files_and_old_schema_op_codes_are_quantized(digits_model, tmp_path):
    """MediaPipe's .tflite files keep float16 weights behind DEQUANTIZE ops and name their ops
    only in the pre-3a field: ai-edge-quantizer passed both by and wrote the model back
    unquantized (SNR inf, exit 0). Both are now made readable first, computing the same."""
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "float16",
                "-o", str(tmp_path / "f16.tflite"))
    assert r.code == 0, r.err

    def old_schema(model, schema):
        for code in model.operatorCodes:
            code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0

    old = _rewrite(tmp_path / "f16.tflite", tmp_path / "old.tflite", old_schema)
    for source in (tmp_path / "f16.tflite", old):
        r = run_cli("quantize", str(source), "--mode", "dynamic-int8", "--data", "digits", "-o",
                    str(tmp_path / f"q_{source.name}"), "--json", block_tf=True)
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["bytes_after"] < 0.75 * doc["bytes_before"], doc  # int8 from float16 weights
        assert any("float16 weight tensors" in n for n in doc["notes"])
        assert any("old schema" in n for n in doc["notes"]) == (source == old)
        assert doc["fidelity"]["passed"] and doc["fidelity"]["value"] < 1.0 + 1e-9


def test_a_custom_op_the_runtime_lacks_is_named_and_nothing_is_written(float_files, tmp_path):
    def custom(model, schema):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = "AppOnlyKernel"
        model.operatorCodes.append(code)
        model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) - 1

    app = _rewrite(float_files / "f32.tflite", tmp_path / "app.tflite", custom)
    r = run_cli("quantize", str(app), "--mode", "dynamic-int8", "-o", str(tmp_path / "q.tflite"),
                block_tf=True)
    assert_clean_error(r, 3, "custom op AppOnlyKernel", "does not register")
    assert not (tmp_path / "q.tflite").exists()
    r = run_cli("profile", str(app), "--runs", "2", block_tf=True)
    assert_clean_error(r, 3, "custom op AppOnlyKernel", "delegate:PATH")


def test_a_two_input_tflite_calibrates_on_one_array_per_input(tmp_path):
    """`quantize --data` with x_<input name> per input of a .tflite: the names are its
    signature's (left, right), not its tensors' (serving_default_left:0). It exited 1 on an
    AttributeError. Its int8 then kept 2.8 dB: ai-edge-quantizer's calibration averages each
    one-sample run's min and max, and clipped what lay past them; ranges are now the whole
    calibration set's, as TensorFlow's converter records them."""
    import keras
    import numpy as np

    from edgenn._tf import tf

    keras.utils.set_random_seed(0)
    left, right = keras.Input((4,), name="left"), keras.Input((3,), name="right")
    heads = [keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(t)) for t in (left, right)]
    keras.Model([left, right], heads).export(str(tmp_path / "sm"), verbose=False)
    (tmp_path / "two.tflite").write_bytes(
        tf().lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert())
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "two.npz", x_left=rng.normal(size=(200, 4)).astype("float32"),
             x_right=rng.normal(size=(200, 3)).astype("float32"))
    r = run_cli("quantize", str(tmp_path / "two.tflite"), "--mode", "int8", "--data",
                str(tmp_path / "two.npz"), "-o", str(tmp_path / "q.tflite"), "--json")
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["samples"] == 40 and r.json()["fidelity"]["value"] > 15  # dB
    np.savez(tmp_path / "wrong.npz", x_left=rng.normal(size=(200, 4)).astype("float32"))
    r = run_cli("quantize", str(tmp_path / "two.tflite"), "--mode", "int8", "--data",
                str(tmp_path / "wrong.npz"), "-o", str(tmp_path / "q2.tflite"))
    assert_clean_error(r, 2, "no array for input right")


def test_an_onnx_file_quantized_before_is_refused_in_one_line(float_files, tmp_path):
    """A PyPI package's already-quantized ONNX (ddddocr's common_old.onnx: MatMulInteger from an
    old onnx.quantize) made ONNX Runtime's quantizer fail with "KeyError: '140_scale'" and an
    advice to export the model again."""
    r = run_cli("quantize", str(float_files / "f32.onnx"), "--mode", "int8", "--data", "digits",
                "-o", str(tmp_path / "q.onnx"), block_tf=True)
    assert r.code == 0, r.err
    for mode in ("int8", "dynamic-int8"):
        again = run_cli("quantize", str(tmp_path / "q.onnx"), "--mode", mode, "--data", "digits",
                        "-o", str(tmp_path / f"q_{mode}.onnx"), block_tf=True)
        assert_clean_error(again, 2, "is already quantized", "quantize the float model it came from")
        assert not (tmp_path / f"q_{mode}.onnx").exists()


def test_a_value_output_that_fails_on_snr_names_its_top1_agreement(tmp_path):
    """ddddocr's OCR network outputs logits with no softmax (8,210 characters per step): judged
    as values, its int8 file failed at SNR 15.5 dB with the advice to keep the float file,
    while it picked the same character at every step (top-1 agreement 1.0)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.save(tmp_path / "logits.keras")  # never compiled: no loss says "classifier"
    r = run_cli("convert", str(tmp_path / "logits.keras"), "--to", "onnx", "--data", "digits",
                "-o", str(tmp_path / "f.onnx"))
    assert r.code == 0, r.err
    r = run_cli("quantize", str(tmp_path / "f.onnx"), "--mode", "int8", "--data", "digits",
                "--min-snr", "90", "-o", str(tmp_path / "q.onnx"), block_tf=True)
    assert_clean_error(r, 3, "(regression)", "its top-1 agreement over the last axis is",
                       "--task classification")
    assert np.isfinite(float(r.err.split("last axis is ")[1].split(":")[0]))
