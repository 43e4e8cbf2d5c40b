"""`edgenn compress`: every built-in recipe on a tiny real model, determinism, failure paths."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
from edgenn import recipe as rc
from edgenn.data import DataSpec

SCALE = 0.3  # a third of each recipe's epochs: enough to see each technique work, fast


def _run(model, name, out, **kwargs):
    from edgenn.compress.pipeline import run

    path = rc.resolve(name) if not isinstance(name, Path) else name
    return run(str(model), rc.load(str(path)), path, DataSpec("digits"), out,
               epochs_scale=kwargs.pop("epochs_scale", SCALE), **kwargs)


def _tflite_doc(path):
    from edgenn.runtime.tflite_info import describe

    return describe(path)


# What each shipped recipe must do on the digits CNN at SCALE of its epochs: the accuracy bound
# (accuracy the .tflite may lose against the input model) and the facts its steps must show.
# Every recipe has a bound; a recipe added to recipes/ without a row fails. The training recipes'
# bounds are wide because a third of their epochs on this small, briefly trained model cannot
# recover what pruning and a half-width student lose (measured: prune-80 -0.22, 2:4 -0.10,
# distill -0.24 to -0.39, so distillation runs all its epochs here); they still catch a collapse
# (chance is 0.10). bench/compress_fashion.py measures the real drops on a converged model.
EXPECT = {
    "int8-ptq": {"max_drop": 0.03, "int8": True},
    "float16": {"max_drop": 0.005, "float16": True},
    "dynamic-range": {"max_drop": 0.01, "dynamic": True},
    "int8-qat": {"max_drop": 0.03, "int8": True, "qat_preserve": [], "frozen_bn": ["bn1", "bn2"]},
    "cluster-16-int8": {"max_drop": 0.03, "int8": True, "clusters": True},
    "prune-80-int8": {"max_drop": 0.32, "int8": True, "pruned": ["conv1", "conv2", "fc", "logits"],
                      "block_pruned": ["fc", "logits"], "min_gzip_ratio": 2.5},
    "prune-2of4-int8": {"max_drop": 0.20, "int8": True, "pruned": ["conv2", "fc", "logits"],
                        "m_by_n": True},
    "prune-cluster-qat-int8": {"max_drop": 0.32, "int8": True, "qat_preserve": ["cluster", "prune"],
                               "clusters": True, "pruned": ["conv1", "conv2", "fc", "logits"],
                               "unsaved": True},
    "distill-half-int8": {"max_drop": 0.15, "int8": True, "max_param_ratio": 0.25, "scale": 1.0},
}


def test_every_shipped_recipe_has_expectations():
    assert sorted(EXPECT) == sorted(rc.builtin_recipes())


# prune-cluster-qat-int8 (14 s) chains steps the other recipes run one by one: in the slow set
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n == "prune-cluster-qat-int8" else n for n in sorted(EXPECT)])
def test_builtin_recipe(digits_model, tmp_path, name):
    expect = EXPECT[name]
    _run(digits_model, name, tmp_path, epochs_scale=expect.get("scale", SCALE))
    doc = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.md").read_text().startswith(f"# edgenn compress: {name}")
    assert doc["metrics"]["baseline"]["accuracy"] > 0.8
    tflite = [a for a in doc["artifacts"] if a["format"] == "tflite"]
    assert len(tflite) == 1 and Path(tflite[0]["path"]).is_file()
    for art in doc["artifacts"]:
        assert {"path", "format", "bytes", "gzip_bytes", "sha256"} <= set(art)
        assert Path(art["path"]).stat().st_size == art["bytes"]
    saved = [a for a in doc["artifacts"] if a["format"] == "keras"]
    assert len(saved) == (bool(rc.load(name).steps) and not expect.get("unsaved"))
    if saved:  # QAT models are saved as .h5, which tf_keras can reload
        assert Path(saved[0]["path"]).name == ("model.h5" if "qat_preserve" in expect else "model.keras")
    if expect.get("unsaved"):  # said so, rather than shipping a file that cannot load
        assert any("does not load back" in n for n in doc["notes"])
    final, base = doc["metrics"]["final"]["accuracy"], doc["metrics"]["baseline"]["accuracy"]
    assert final >= base - expect["max_drop"], (final, base)

    info = _tflite_doc(tflite[0]["path"])
    if expect.get("float16"):
        assert "float16" in info["tensor_dtypes"]
    if expect.get("dynamic"):
        assert "int8" in info["weight_bytes"] and info["inputs"][0]["dtype"] == "float32"
    if expect.get("int8"):
        # Full integer: only the float io tensors around QUANTIZE/DEQUANTIZE are float32.
        assert info["tensor_dtypes"].get("float32", 0) == 2, info["tensor_dtypes"]
        assert info["ops"]["QUANTIZE"] == 1 and info["ops"]["DEQUANTIZE"] == 1
        assert "float32" not in info["weight_bytes"]
        assert tflite[0]["x_smaller_than_float32"] > 3.0
    if "min_gzip_ratio" in expect:
        assert tflite[0]["gzip_x_smaller_than_float32"] > expect["min_gzip_ratio"]

    steps = {s["name"]: s for s in doc["steps"]}
    if "pruned" in expect:
        details = steps["prune"]["details"]
        assert details["pruned_layers"] == expect["pruned"]
        assert all(s >= details["target_sparsity"] - 0.01 for s in details["sparsity"].values())
    if "block_pruned" in expect:
        assert steps["prune"]["details"]["block_pruned_layers"] == expect["block_pruned"]
    if expect.get("m_by_n"):  # the 1-channel stem cannot hold 2:4 blocks
        assert "conv1 (1 input channels)" in steps["prune"]["notes"][0]
        assert all(steps["prune"]["details"]["m_by_n_ok"].values())
    if expect.get("clusters"):
        details = steps["cluster"]["details"]
        # Clustered kernels hold at most `clusters` values (a pruned zero may be one more).
        assert all(n <= details["clusters"] + 1 for n in details["unique_weights"].values())
    if "qat_preserve" in expect:
        assert steps["quantize"]["details"]["preserve"] == expect["qat_preserve"]
        assert {"bn1", "bn2"} <= set(steps["quantize"]["details"]["quantized_layers"])
    if "frozen_bn" in expect:
        assert steps["quantize"]["details"]["frozen_batch_norm"] == expect["frozen_bn"]
    if "max_param_ratio" in expect:
        details = steps["distill"]["details"]
        assert details["param_ratio"] <= expect["max_param_ratio"]
        assert details["student_params"] < details["teacher_params"]

    # One road: `convert` of the same model with the recipe's export settings writes the same bytes.
    if saved or not rc.load(name).steps:
        source = saved[0]["path"] if saved else digits_model
        same = _convert_like(source, rc.load(name).export[0], tmp_path / "converted.tflite")
        assert same.artifact.sha256 == tflite[0]["sha256"]


def _convert_like(model, export, out):
    """`edgenn convert` with a recipe export's settings, on the data compress used."""
    from edgenn.convert.export import ExportSpec
    from edgenn.convert.run import convert

    spec = ExportSpec.from_recipe(export)
    return convert(str(model), str(out), spec,
                   data_spec=DataSpec("digits", calibration_samples=spec.calibration_samples))


@pytest.mark.parametrize("export", [
    "{quantization: int8, target: edgetpu}",
    "{quantization: float16, target: gpu}",
    "{format: onnx, quantization: int8}",
])
def test_recipe_export_and_convert_are_one_road(digits_model, tmp_path, export):
    """Each target through a recipe writes what `convert` writes, pre-flight and all."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nexport: {export}\n")
    report = _run(digits_model, recipe, tmp_path / "out")
    art = report.exported[0]
    same = _convert_like(digits_model, rc.load(str(recipe)).export[0],
                         tmp_path / f"converted.{art.format}")
    assert same.artifact.sha256 == art.sha256
    assert same.artifact.spec == art.spec
    doc = json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"][0]
    if art.spec.target.value == "edgetpu":
        info = _tflite_doc(art.path)
        assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
        assert info["inputs"][0]["shape"][0] == 1  # a static batch of 1 for the compiler
        assert doc["io"] == "int8" and doc["preflight"]["target"] == "edgetpu"
        assert doc["preflight"]["parameter_memory"]["fits"] is True
        assert "edgetpu_compiler" in doc["compiler"]["message"]  # not installed here: said so
        assert "Pre-flight for edgetpu" in (tmp_path / "out" / "report.md").read_text()
    if art.spec.target.value == "gpu":
        assert doc["preflight"]["target"] == "gpu" and "gpu_runtime" in doc


def test_ptq_is_byte_deterministic(digits_model, tmp_path):
    a = _run(digits_model, "int8-ptq", tmp_path / "a")
    b = _run(digits_model, "int8-ptq", tmp_path / "b")
    assert a.artifacts[0].sha256 == b.artifacts[0].sha256


def test_int8_uint8_io_and_multi_export(digits_model, tmp_path):
    recipe = tmp_path / "io.yaml"
    recipe.write_text("name: io\nexport:\n  - {quantization: int8, io: uint8}\n"
                      "  - {quantization: int16x8}\n")
    report = _run(digits_model, recipe, tmp_path / "out")
    names = sorted(Path(a.path).name for a in report.artifacts)
    assert names == ["model-int16x8.tflite", "model-int8-uint8io.tflite"]
    uint8 = _tflite_doc(tmp_path / "out" / "model-int8-uint8io.tflite")
    assert uint8["inputs"][0]["dtype"] == "uint8" and uint8["outputs"][0]["dtype"] == "uint8"
    int16 = _tflite_doc(tmp_path / "out" / "model-int16x8.tflite")
    assert "int16" in int16["tensor_dtypes"]
    for art in report.artifacts:
        assert art.metrics["accuracy"] >= report.metrics["baseline"]["accuracy"] - 0.05


def test_failed_run_leaves_nothing(digits_model, tmp_path, monkeypatch):
    import edgenn.convert.tflite as exporter

    real = exporter.to_tflite
    calls = []

    def fail_on_export(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first call is the float32 reference; the second, the export
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(exporter, "to_tflite", fail_on_export)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _run(digits_model, "prune-80-int8", out, epochs_scale=0.1)
    assert list(tmp_path.iterdir()) == []  # no folder, no staging, not even the .keras of the steps


def test_cli_compress_json_and_constraint_exit_4(digits_model, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("name: tiny\nexport: {quantization: int8}\nconstraints: {max_bytes: 1000}\n")
    r = run_cli("compress", str(digits_model), "--recipe", str(recipe), "--data", "digits",
                "-o", str(tmp_path / "out"), "--json")
    assert r.code == 4, r.err
    doc = json.loads(r.out)
    assert doc["exit_code"] == 4
    assert doc["constraints"][0]["name"] == "max_bytes" and doc["constraints"][0]["ok"] is False
    assert "recipe constraint not met: max_bytes" in r.err
    assert (tmp_path / "out" / "model.tflite").is_file()  # the artifact is kept for inspection


def test_cli_compress_errors(digits_model, tmp_path):
    no_data = run_cli("compress", str(digits_model), "-r", "int8-ptq", "-o", str(tmp_path / "o"))
    assert_clean_error(no_data, 2, "needs data", "--data")
    same = run_cli("compress", str(digits_model), "-r", "int8-ptq", "--data", "digits",
                   "-o", str(digits_model.parent), "--overwrite")
    assert_clean_error(same, 2, "never overwrites an input")
    bad = run_cli("compress", str(digits_model), "-r", "int7", "--data", "digits",
                  "-o", str(tmp_path / "o"))
    assert_clean_error(bad, 2, "unknown recipe")
    shape = tmp_path / "wrong.npz"
    np.savez(shape, x=np.zeros((20, 5, 5), np.float32), y=np.zeros(20, np.int64))
    wrong = run_cli("compress", str(digits_model), "-r", "int8-ptq", "--data", str(shape),
                    "-o", str(tmp_path / "o2"))
    assert_clean_error(wrong, 2, "expects [None, 8, 8, 1]", "--resize 8x8")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_recipe_exports_onnx_too(digits_model, tmp_path):
    recipe = tmp_path / "both.yaml"
    recipe.write_text("name: both\nexport:\n  - {format: tflite, quantization: int8}\n"
                      "  - {format: onnx, quantization: int8}\n")
    report = _run(digits_model, recipe, tmp_path / "out")
    by_format = {a.format: a for a in report.artifacts}
    assert Path(by_format["onnx"].path).name == "model-int8.onnx"
    assert by_format["onnx"].onnx_quantization.mode == "static QDQ"
    base = report.metrics["baseline"]["accuracy"]
    assert by_format["onnx"].metrics["accuracy"] >= base - 0.02
    assert report.metrics["final"] == by_format["tflite"].metrics
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nexport: {format: onnx, quantization: float16}\n")
    with pytest.raises(Exception, match="--to onnx supports"):
        _run(digits_model, bad, tmp_path / "out2")


def _conv_bn_model():
    """conv_a -> bn_a -> relu_a (a foldable block), conv_b(relu) -> bn_b (not foldable), dense."""
    from edgenn._tf import tf_keras

    tf_keras().utils.set_random_seed(0)
    L = tf_keras().layers
    x = inp = L.Input((8, 8, 1))
    x = L.Conv2D(4, 3, name="conv_a")(x)
    x = L.BatchNormalization(name="bn_a")(x)
    x = L.ReLU(name="relu_a")(x)
    x = L.Conv2D(4, 3, activation="relu", name="conv_b")(x)
    x = L.BatchNormalization(name="bn_b")(x)
    x = L.Flatten()(x)
    return tf_keras().Model(inp, L.Dense(10, activation="softmax", name="out")(x))


def _qat(model, limit=64, **config):
    from edgenn.compress.step import StepContext
    from edgenn.compress.techniques.quantize import quantize
    from edgenn.data import load, match_model
    from edgenn.recipe import QuantizeStep

    splits = match_model(load(DataSpec("digits", limit=limit)), model.input_shape, 10)
    return quantize(model, QuantizeStep(**config), StepContext(splits=splits, seed=0))


def test_qat_folds_batch_norm_into_the_conv_before_it():
    """No fake-quant between a linear Conv2D and its BatchNormalization, as in the int8 TFLite
    (the converter folds them); a BN after a non-linear conv stays outside QAT."""
    res = _qat(_conv_bn_model(), epochs=1, learning_rate=1e-5)
    assert "bn_a" in res.details["quantized_layers"]
    assert "bn_b" not in res.details["quantized_layers"]
    assert any("bn_b (BatchNormalization)" in n for n in res.notes)
    wrappers = {w.layer.name: w for w in res.model.layers if hasattr(w, "quantize_config")}
    conv_a_act = wrappers["conv_a"].layer.activation
    assert type(getattr(conv_a_act, "activation", conv_a_act)).__name__ == "NoOpActivation"
    assert type(wrappers["bn_a"].quantize_config).__name__ == "NoOpQuantizeConfig"


def _bn_state(model):
    found = {}
    for module in model.submodules:
        if type(module).__name__ == "BatchNormalization":
            found[module.name] = [w.numpy().copy() for w in module.weights]
    return found


@pytest.mark.parametrize("freeze", [True, False])
def test_qat_freeze_batch_norm_keeps_statistics_and_scale(freeze):
    """freeze_batch_norm: both BNs (wrapped or not) keep gamma, beta and moving statistics while
    the convs train; without it the statistics move (the contrast shows the check can fail)."""
    model = _conv_bn_model()
    before = _bn_state(model)
    kernel = model.get_layer("conv_a").kernel.numpy().copy()
    res = _qat(model, limit=256, epochs=1, learning_rate=1e-2, freeze_batch_norm=freeze)
    after = _bn_state(res.model)
    assert set(after) == {"bn_a", "bn_b"}
    unchanged = {name: all(np.array_equal(a, b) for a, b in zip(before[name], after[name]))
                 for name in before}
    assert unchanged == {"bn_a": freeze, "bn_b": freeze}
    assert res.details.get("frozen_batch_norm") == (["bn_a", "bn_b"] if freeze else None)
    assert all(m.trainable for m in res.model.submodules
               if type(m).__name__ == "BatchNormalization")  # frozen for the step only
    trained = next(w for w in res.model.weights if "conv_a" in w.name and w.shape == kernel.shape)
    assert not np.array_equal(trained.numpy(), kernel)  # the weights did train


def _digits_mlp(k, splits, hidden: int, epochs: int):
    """Flatten -> Dense(hidden, relu) "hidden" -> softmax "out", trained on digits (seed 0), in
    Keras module ``k`` (keras or tf_keras)."""
    k.utils.set_random_seed(0)
    mlp = k.Sequential([k.layers.Input((8, 8)), k.layers.Flatten(),
                        k.layers.Dense(hidden, activation="relu", name="hidden"),
                        k.layers.Dense(10, activation="softmax", name="out")])
    mlp.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    mlp.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=64, verbose=0)
    return mlp


def test_prune_while_distilling_from_the_input_model(tmp_path):
    """The pruning schedule runs inside the distiller and the student keeps the teacher's skill."""
    from edgenn._tf import tf_keras
    from edgenn.data import load

    mlp = _digits_mlp(tf_keras(), load(DataSpec("digits")), hidden=64, epochs=30)
    teacher = tmp_path / "mlp.keras"
    mlp.save(teacher)
    recipe = tmp_path / "kd.yaml"
    recipe.write_text("name: prune-kd\nsteps:\n  - prune: {target_sparsity: 0.6, epochs: 3, "
                      "learning_rate: 0.0005, distill: {temperature: 4, alpha: 0.5}}\n"
                      "export: {format: tflite, quantization: int8}\n")
    _run(teacher, recipe, tmp_path / "out", epochs_scale=1.0)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    details = doc["steps"][0]["details"]
    assert details["distilled_from_input"] == {"temperature": 4.0, "alpha": 0.5}
    assert details["pruned_layers"] == ["hidden", "out"]
    assert all(s >= 0.59 for s in details["sparsity"].values()), details["sparsity"]
    base, final = doc["metrics"]["baseline"]["accuracy"], doc["metrics"]["final"]["accuracy"]
    assert base > 0.9 and final >= base - 0.03, (final, base)


def test_freeze_rest_trains_only_the_pruned_layer_and_reports_changed_answers(tmp_path):
    """freeze_rest: the layer outside the scope keeps its weights bit for bit and is trainable
    again in the saved model; the distiller's cached teacher logits still teach the pruned one;
    the report counts the answers that changed, consistent with the accuracy change."""
    from edgenn._tf import tf_keras
    from edgenn.data import load

    tfk = tf_keras()
    mlp = _digits_mlp(tfk, load(DataSpec("digits")), hidden=64, epochs=30)
    teacher = tmp_path / "mlp.keras"
    mlp.save(teacher)
    recipe = tmp_path / "frozen.yaml"
    recipe.write_text("name: prune-frozen\nsteps:\n  - prune: {target_sparsity: 0.6, epochs: 3, "
                      "learning_rate: 0.0005, freeze_rest: true, scope: {include: {names: [out]}}, "
                      "distill: {temperature: 4, alpha: 0.5}}\n"
                      "export: {format: tflite, quantization: int8}\n")
    _run(teacher, recipe, tmp_path / "out", epochs_scale=1.0)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    details = doc["steps"][0]["details"]
    assert details["pruned_layers"] == ["out"] and details["sparsity"]["out"] >= 0.59
    assert doc["model"]["layer_classes"]["Dense"] == 2  # what the model is made of
    assert "freeze_rest" in details["trained_layers"]
    path = next(a["path"] for a in doc["artifacts"] if a["format"] == "keras")
    saved = tfk.models.load_model(path, compile=False)
    for w_in, w_out in zip(mlp.get_layer("hidden").get_weights(),
                           saved.get_layer("hidden").get_weights()):
        assert np.array_equal(w_in, w_out)
    assert not np.array_equal(mlp.get_layer("out").get_weights()[1],
                              saved.get_layer("out").get_weights()[1])  # the pruned layer trained
    assert all(layer.trainable for layer in saved.layers)
    base, final = doc["metrics"]["baseline"]["accuracy"], doc["metrics"]["final"]["accuracy"]
    assert base > 0.9 and final >= base - 0.03, (final, base)
    paired = doc["metrics"]["final"]["vs_input"]
    assert paired["gained"] - paired["lost"] == pytest.approx(final - base, abs=1e-9)
    assert 0 < paired["drop_se_pt"] < 5
    assert "Answers changed against the input model" in (tmp_path / "out" / "report.md").read_text()


def test_paired_change_counts_answers_and_the_error_of_the_drop():
    from edgenn.evaluate import paired_change

    y = np.arange(10) % 3
    base = np.eye(3)[y]  # every answer right
    new = base.copy()
    new[[0, 1]] = np.eye(3)[(y[[0, 1]] + 1) % 3]  # two answers turn wrong
    change = paired_change(base, new, y)
    assert change["lost"] == pytest.approx(0.2) and change["gained"] == 0.0
    # paired: var = (0.2 - 0.2^2) / 10 -> se = 12.65 pt
    assert change["drop_se_pt"] == pytest.approx(100 * ((0.2 - 0.04) / 10) ** 0.5, abs=1e-3)
    assert paired_change(base, base, y) == {"lost": 0.0, "gained": 0.0, "drop_se_pt": 0.0}


def test_batch_norm_adaptation_fixes_stale_statistics_on_a_copy():
    """A BN model whose moving statistics are stale: the adapted copy normalises with the data's
    own statistics; the original is left alone."""
    from edgenn._tf import tf_keras
    from edgenn.compress.train import adapt_batch_norm

    tfk = tf_keras()
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(512, 4)).astype("float32")
    inp = tfk.layers.Input((4,))
    out = tfk.layers.Dropout(0.5)(tfk.layers.BatchNormalization(name="bn")(inp))
    model = tfk.Model(inp, out)  # fresh BN: moving mean 0, variance 1 (stale for this data)
    adapted = adapt_batch_norm(model, x, seed=0, batches=20, batch_size=64)
    bn, original = adapted.get_layer("bn"), model.get_layer("bn")
    assert np.allclose(bn.moving_mean.numpy(), x.mean(0), atol=0.3)
    assert np.allclose(bn.moving_variance.numpy(), x.var(0), rtol=0.25)
    assert np.allclose(original.moving_mean.numpy(), 0.0)  # the input model is untouched
    assert bn.momentum == original.momentum == 0.99
    assert adapted.layers[-1].rate == 0.5
    y = adapted(x, training=False).numpy()
    assert abs(float(y.mean())) < 0.2 and abs(float(y.std()) - 1) < 0.2


def test_split_seed_keeps_the_split_while_the_seed_changes(digits_model, tmp_path):
    recipe = tmp_path / "val.yaml"
    recipe.write_text("name: val-float\nsteps: []\nexport: {format: tflite, quantization: float32}\n"
                      "evaluate: {split: val}\n")
    docs = {}
    for label, kwargs in {"s0": {"seed": 0}, "s1": {"seed": 1},
                          "s1-split0": {"seed": 1, "split_seed": 0}}.items():
        _run(digits_model, recipe, tmp_path / label, **kwargs)
        docs[label] = json.loads((tmp_path / label / "report.json").read_text())
    val = {k: d["metrics"]["baseline"]["accuracy"] for k, d in docs.items()}
    assert val["s1-split0"] == val["s0"] != val["s1"], val  # the same 10% of train held out
    assert docs["s1-split0"]["data"]["seed"] == 1 and docs["s1-split0"]["data"]["split_seed"] == 0


def _augmented(x, seed, **augment):
    from edgenn.data.augment import dataset
    from edgenn.recipe import Augment

    ds = dataset(x, np.arange(len(x)), 4, seed, Augment(**augment))
    return [(img, int(i)) for xb, yb in ds.take(10) for img, i in zip(xb.numpy(), yb.numpy())]


def test_augment_flips_and_shifts_each_image_and_is_seeded():
    """Every augmented image is its own original, mirrored or not and shifted by at most the
    configured pixels (zero fill); a seed gives the same stream, another seed another one."""
    x = np.random.default_rng(0).uniform(0.1, 1.0, size=(8, 6, 6, 1)).astype("float32")

    def variants(img, k):
        padded = np.pad(img, [(k, k), (k, k), (0, 0)])
        for flipped in (False, True):
            for dy in range(2 * k + 1):
                for dx in range(2 * k + 1):
                    out = padded[dy:dy + 6, dx:dx + 6]
                    yield (flipped, dy - k, dx - k), (out[:, ::-1] if flipped else out)

    seen = set()
    for img, i in _augmented(x, 0, horizontal_flip=True, shift=1):
        match = [key for key, v in variants(x[i], 1) if np.array_equal(v, img)]
        assert match, f"image {i} is not a flip/shift of its original"
        seen.add(match[0])
    assert {flip for flip, _, _ in seen} == {False, True}
    assert any(dy or dx for _, dy, dx in seen)
    same, other = _augmented(x, 0, shift=2), _augmented(x, 0, shift=2)
    assert all(np.array_equal(a, b) and i == j for (a, i), (b, j) in zip(same, other))
    third = _augmented(x, 1, shift=2)
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(same, third))
    # shift alone never mirrors: with shift 0 and no flip the images come back unchanged
    assert all(np.array_equal(img, x[i]) for img, i in _augmented(x, 0))


def test_augment_refuses_data_that_is_not_images():
    from edgenn.data.augment import dataset
    from edgenn.errors import UsageError
    from edgenn.recipe import Augment

    with pytest.raises(UsageError, match="augment needs image input"):
        dataset(np.zeros((8, 5), "float32"), np.zeros(8), 4, 0, Augment(shift=1))


def test_finetune_with_augment_runs_through_the_pipeline(digits_model, tmp_path):
    recipe = tmp_path / "aug.yaml"
    recipe.write_text("name: ft-aug\nsteps:\n  - finetune: {epochs: 1, augment: {shift: 1}}\n"
                      "export: {format: tflite, quantization: float32}\n")
    report = _run(digits_model, recipe, tmp_path / "out")
    assert report.steps[0].name == "finetune"
    assert report.metrics["final"]["accuracy"] > 0.5


def test_augment_on_a_model_without_image_input_fails_before_training(tmp_path):
    from edgenn._tf import tf_keras

    tfk = tf_keras()
    inp = tfk.layers.Input((5,))
    model = tfk.Model(inp, tfk.layers.Dense(3, activation="softmax")(inp))
    model.save(tmp_path / "mlp.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(60, 5)).astype("float32"),
             y=rng.integers(0, 3, 60))
    recipe = tmp_path / "aug.yaml"
    recipe.write_text("name: ft-aug\nsteps:\n  - finetune: {epochs: 1, augment: {shift: 1}}\n"
                      "export: {format: tflite, quantization: float32}\n")
    r = run_cli("compress", str(tmp_path / "mlp.keras"), "-r", str(recipe), "--data",
                str(tmp_path / "d.npz"), "-o", str(tmp_path / "out"))
    assert_clean_error(r, 2, "augment needs image input", "remove the step's augment key")
    assert not (tmp_path / "out").exists()


def test_reference_training_with_augment_learns_digits():
    """The bench's teacher option: the Keras 3 reference CNN trains on the seeded augmented
    pipeline (a flip changes digits, so only the shift here) and still learns."""
    from edgenn.data import load, match_model
    from edgenn.models.reference import reference_cnn, train
    from edgenn.recipe import Augment

    splits = match_model(load(DataSpec("digits")), (None, 8, 8, 1), 10)
    model = reference_cnn((8, 8, 1), 10, seed=0)
    history = train(model, splits, 12, batch_size=32, seed=0, augment=Augment(shift=1))
    assert len(history["accuracy"]) == 12  # one epoch is one pass, though the stream repeats
    assert history["accuracy"][-1] > 0.85, history["accuracy"]  # chance is 0.1
    # validation lags (BN moving statistics of a short run) but is far above chance
    assert history["val_accuracy"][-1] > 0.5, history["val_accuracy"]


@pytest.mark.slow  # 24 s: two trainings compared bit for bit; compress stays in the default run
def test_recipe_threads_pin_training_to_a_thread_count(tmp_path):
    """`threads: 1` makes compress train what a 1-thread process trains (how fit's trials ran),
    whatever the machine's default. The model's 4096-wide Dense is summed in another order on
    2 threads (TensorFlow splits the matmul), so without the pin this machine trains another
    model; with Dropout in it, the same seed must also give the same model."""
    from edgenn._tf import keras3

    keras = keras3()
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Dropout(0.3)(keras.layers.Flatten()(h))  # 4096 wide
    h = keras.layers.Dense(64, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    model.save(tmp_path / "wide.keras")
    body = ("export: {quantization: float32}\n"
            "steps:\n  - finetune: {epochs: 0.5, learning_rate: 0.003, batch_size: 16}\n")
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text("name: pinned\nthreads: 1\n" + body)
    free = tmp_path / "free.yaml"
    free.write_text("name: free\n" + body)

    def sha(recipe, out, **kwargs):
        r = run_cli("compress", str(tmp_path / "wide.keras"), "-r", str(recipe), "--data",
                    "digits", "-o", str(tmp_path / out), "--json", **kwargs)
        assert r.code == 0, r.err
        return r.json()["artifacts"][-1]["sha256"]

    one_thread = sha(free, "env1", env={"TF_NUM_INTRAOP_THREADS": "1"}, fresh=True)
    assert sha(pinned, "pin") == one_thread
    assert sha(pinned, "again") == one_thread  # the same seed, the same model
    if (os.cpu_count() or 1) > 1:
        assert sha(free, "default") != one_thread  # the count changes what training computes


def test_sparse_weights_store_a_block_pruned_dense_in_fewer_bytes(tmp_path):
    """export.sparse_weights: the same int8 model in about half the bytes, the same answers.

    A Dense kernel pruned in [16, 1] blocks (the 1x16 blocks LiteRT's int8 kernels read) is
    stored sparse; one pruned weight by weight is refused with the block to use, and
    `convert --sparse-weights` writes the bytes compress wrote.
    """
    import keras

    from edgenn.convert.tflite import to_tflite
    from edgenn.data import load
    from edgenn.errors import ConversionError

    splits = load(DataSpec("digits"))
    mlp = _digits_mlp(keras, splits, hidden=256, epochs=20)
    model = tmp_path / "mlp.keras"
    mlp.save(model)
    recipe = tmp_path / "sparse.yaml"
    recipe.write_text(
        "name: prune-sparse\nsteps:\n  - prune: {target_sparsity: 0.8, block_size: [16, 1], "
        "scope: {include: {names: [hidden]}}, epochs: 4, learning_rate: 0.001}\n"
        "export:\n  - {format: tflite, quantization: int8}\n"
        "  - {format: tflite, quantization: int8, sparse_weights: true}\n")
    _run(model, recipe, tmp_path / "out", epochs_scale=1.0)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    dense, sparse = [a for a in doc["artifacts"] if a["format"] == "tflite"]
    assert sparse["spec"]["sparse_weights"] and not dense["spec"]["sparse_weights"]
    assert sparse["bytes"] < 0.6 * dense["bytes"], (sparse["bytes"], dense["bytes"])
    assert sparse["metrics"]["accuracy"] == dense["metrics"]["accuracy"] > 0.85

    saved = next(a["path"] for a in doc["artifacts"] if a["format"] == "keras")
    r = run_cli("convert", saved, "--to", "tflite", "--quantize", "int8", "--sparse-weights",
                "--data", "digits", "-o", str(tmp_path / "c.tflite"), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["fidelity"]["passed"]
    assert (tmp_path / "c.tflite").read_bytes() == Path(sparse["path"]).read_bytes()

    # Weight-by-weight zeros: TF 2.21 stores them sparse and XNNPack cannot prepare the op.
    weights, bias = mlp.get_layer("hidden").get_weights()
    rng = np.random.default_rng(0)
    mlp.get_layer("hidden").set_weights([weights * (rng.random(weights.shape) < 0.2), bias])
    with pytest.raises(ConversionError, match=r"block_size \[16, 1\] for int8"):
        to_tflite(mlp, "int8", x_calib=splits.x_calib, sparse_weights=True)
    r = run_cli("convert", str(model), "--to", "onnx", "--sparse-weights",
                "-o", str(tmp_path / "m.onnx"))
    assert_clean_error(r, 2, "sparse")


def test_width_student_narrows_nested_and_sequential_models_and_trains_every_layer():
    """Transfer learning as users save it: a frozen Functional backbone nested as a layer, a
    SpatialDropout2D (whose config has no `trainable`). The student is narrower inside the
    backbone too, every layer of it trains, and distillation reports the loss it minimised."""
    import keras
    from keras import layers

    from edgenn.compress.distiller import make_distiller, width_student

    keras.utils.set_random_seed(0)
    b_in = keras.Input((8, 8, 1))
    b = layers.SpatialDropout2D(0.1)(layers.Conv2D(8, 3, activation="relu", name="c1")(b_in))
    backbone = keras.Model(b_in, layers.Conv2D(16, 1, name="c2")(b), name="backbone")
    backbone.trainable = False
    inp = keras.Input((8, 8, 1))
    h = layers.GlobalAveragePooling2D()(backbone(inp, training=False))
    teacher = keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(h))

    student = width_student(teacher, 0.5)
    inner = student.get_layer("backbone")
    assert inner.get_layer("c1").filters == 4 and inner.get_layer("c2").filters == 8
    assert student.get_layer("head").units == 3
    assert all(w.trainable for w in student.weights) and student.count_params() < teacher.count_params()

    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64)
    distiller = make_distiller(teacher, student, alpha=0.5, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert all(loss > 0 for loss in history["loss"]), history

    # a Sequential teacher (Keras 3's has no .output_names: exit 1 before)
    seq = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu", name="hidden"),
                            layers.Dense(3, name="logits")])
    narrow = width_student(seq, 0.5)
    assert narrow.get_layer("hidden").units == 4 and narrow.get_layer("logits").units == 3


def test_width_student_keeps_the_width_that_reaches_the_output_through_pooling():
    """A mini-Xception (the FER emotion model shipped in the `fer` package) ends Conv2D(classes)
    -> GlobalAveragePooling2D -> softmax: that Conv2D was narrowed, the student had 3 outputs
    for the teacher's 7 and distill exited 1. The widths behind a residual sum narrow together."""
    import keras
    from keras import layers

    from edgenn.compress.distiller import kept_width, output_width_layers, width_student

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 1))
    h = layers.Conv2D(8, 3, activation="relu", name="stem")(inp)
    h = layers.Add()([layers.SeparableConv2D(16, 3, padding="same", name="sep")(h),
                      layers.Conv2D(16, 1, name="short")(h)])
    h = layers.GlobalAveragePooling2D()(layers.Conv2D(7, 3, padding="same", name="classes")(h))
    teacher = keras.Model(inp, layers.Activation("softmax", name="predictions")(h))

    assert output_width_layers(teacher) == {"classes"}
    student = width_student(teacher, 0.5)
    assert student.get_layer("classes").filters == 7
    assert [student.get_layer(n).filters for n in ("stem", "sep", "short")] == [4, 8, 8]
    assert kept_width(teacher, student) == []
    assert student.predict(np.zeros((2, 12, 12, 1), "float32"), verbose=0).shape == (2, 7)


def test_a_strided_pointwise_convolution_trains():
    """oneDNN's filter-gradient kernel for a 1x1 stride-2 convolution killed the process
    (SIGSEGV or a heap abort) for some channel counts: 8 into 16 (its AVX-512 kernels, the
    mini-Xception's shortcut) and 4 into 8 (AVX2, the shortcut of its half-width student).
    Run in a child process so a crash fails this test, not the suite; the gradient edgenn
    computes for such convolutions is checked against NumPy's."""
    import subprocess
    import sys

    script = """
import numpy as np
from edgenn._tf import tf, keras_of
tf = tf()
import keras
for cin, cout in ((8, 16), (4, 8)):
    keras.utils.set_random_seed(0)
    inp = keras.Input((60, 60, cin))
    conv = keras.layers.Conv2D(cout, 1, strides=2, padding="same", use_bias=False)
    model = keras.Model(inp, conv(inp))
    x = np.random.default_rng(0).random((32, 60, 60, cin)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(model(x)))
    got = tape.gradient(loss, conv.kernel)
    picked = x[:, ::2, ::2, :]
    g = np.cos(np.einsum("bhwc,co->bhwo", picked, conv.kernel.numpy()[0, 0]))
    want = np.einsum("bhwc,bhwo->co", picked, g)
    assert np.abs(got.numpy()[0, 0] - want).max() <= 1e-4 * np.abs(want).max(), (cin, cout)
    model.compile("adam", "mse")
    model.fit(x, np.zeros((32, 30, 30, cout), "float32"), epochs=1, batch_size=16, verbose=0)
print("trained")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 0 and "trained" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_width_student_keeps_the_widths_an_attention_ties():
    """Attention needs its query as wide as its value (here the input): narrowing everything
    breaks the first call (exit 1 before), so layers narrow one at a time and the query keeps
    its width, said by kept_width; a teacher with nothing free to narrow is refused in a line."""
    import keras
    from keras import layers

    from edgenn.compress.distiller import kept_width, width_student
    from edgenn.errors import UsageError

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 8))
    att = layers.Attention()([layers.Dense(8, name="query")(inp), inp])
    h = layers.Dense(16, activation="relu", name="hidden")(layers.GlobalMaxPooling1D()(att))
    teacher = keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(h))
    student = width_student(teacher, 0.5)
    assert student.get_layer("hidden").units == 8 and student.get_layer("query").units == 8
    assert kept_width(teacher, student) == ["query"]
    x = np.zeros((2, 10, 8), "float32")
    assert student.predict(x, verbose=0).shape == (2, 3)

    tied = keras.Model(inp, layers.Dense(3, activation="softmax", name="out")(
        layers.GlobalMaxPooling1D()(layers.Attention()([layers.Dense(8)(inp), inp]))))
    with pytest.raises(UsageError, match="no layer of the teacher can be narrowed"):
        width_student(tied, 0.5)


def test_binary_classifier_with_one_sigmoid_unit_takes_every_recipe(tmp_path):
    """One sigmoid score per sample (the usual binary classifier): scored as class 1 above 0.5,
    labels 0 and 1 accepted, trained with binary cross-entropy, distilled as a Bernoulli, and
    its one-unit head pruned weight by weight (tfmot's block pruning raises on a vector)."""
    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    x, digit = load_digits(return_X_y=True)
    y = (digit >= 5).astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Rescaling(1 / 16),
                              layers.Dense(32, activation="relu"),
                              layers.Dense(1, activation="sigmoid", name="p")])
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    path, data = tmp_path / "binary.keras", tmp_path / "binary.npz"
    model.save(path)
    np.savez(data, x=x.astype(np.float32), y=y)
    flags = ["--data", str(data), "--scale", "none", "--json"]
    ptq = run_cli("compress", str(path), "-r", "int8-ptq", *flags, "-o", str(tmp_path / "ptq"))
    assert ptq.code == 0, ptq.err
    base = ptq.json()["metrics"]["baseline"]["accuracy"]
    assert base > 0.9 and ptq.json()["artifacts"][0]["metrics"]["accuracy"] > base - 0.02
    # prune distils from the input model too (the Bernoulli road through compress)
    prune = run_cli("compress", str(path), "-r", "prune-80-int8", *flags, "--epochs-scale", "0.25",
                    "-o", str(tmp_path / "prune"))
    assert prune.code in (0, 4), prune.err
    assert prune.json()["steps"][0]["metrics"]["accuracy"] > 0.6
    assert "distilled_from_input" in prune.json()["steps"][0]["details"]

    # the Bernoulli distillation itself learns: 4 epochs, alpha 0.1 (mostly the soft targets)
    from edgenn.compress.distiller import make_distiller, width_student, with_teacher_logits

    student = width_student(model, 0.5)
    distiller = make_distiller(model, student, alpha=0.1, temperature=4.0, cached=True)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    distiller.fit(x.astype(np.float32), with_teacher_logits(model, x.astype(np.float32), y),
                  epochs=4, batch_size=32, verbose=0)
    assert np.mean((student.predict(x, verbose=0)[:, 0] > 0.5) == y) > 0.85


@pytest.mark.slow
def test_block_pruning_skips_kernels_one_block_covers(tmp_path):
    """prune-80-int8 prunes Dense kernels in [4, 1] blocks; a head with 4 inputs is one block
    along that axis and tfmot raised on it (exit 1): it prunes weight by weight."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    video = keras.Sequential([keras.Input((4, 8, 8, 1)), layers.Conv3D(4, 3, activation="relu"),
                              layers.GlobalAveragePooling3D(),
                              layers.Dense(3, activation="softmax", name="head")])
    x = rng.standard_normal((160, 4, 8, 8, 1)).astype("float32")
    video.save(tmp_path / "video.keras")
    np.savez(tmp_path / "video.npz", x=x, y=video.predict(x, verbose=0).argmax(1))
    data = ["--data", str(tmp_path / "video.npz"), "--scale", "none", "--epochs-scale", "0.05"]
    r = run_cli("compress", str(tmp_path / "video.keras"), "-r", "prune-80-int8", *data,
                "-o", str(tmp_path / "out"))
    assert r.code in (0, 4), r.err
    details = json.loads((tmp_path / "out" / "report.json").read_text())["steps"][0]["details"]
    assert "head" in details["pruned_layers"] and "head" not in details["block_pruned_layers"]


def test_int8_of_a_recurrent_loop_is_refused_before_training(tmp_path):
    """A ConvLSTM2D, whose int8 the converter cannot calibrate, is refused before any step
    trains (it was refused at export, after the training)."""
    import keras
    from keras import layers

    x = np.random.default_rng(0).standard_normal((40, 4, 8, 8, 1)).astype("float32")
    np.savez(tmp_path / "video.npz", x=x, y=np.arange(40) % 3)
    loop = keras.Sequential([keras.Input((4, 8, 8, 1)), layers.ConvLSTM2D(2, 3),
                             layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
    loop.save(tmp_path / "loop.keras")
    r = run_cli("compress", str(tmp_path / "loop.keras"), "-r", "prune-80-int8", "--data",
                str(tmp_path / "video.npz"), "--scale", "none", "-o", str(tmp_path / "loop"))
    assert_clean_error(r, 2, "conv_lstm2d (ConvLSTM2D, 4 steps)", "-r dynamic-range")
    assert "step 1/" not in r.out + r.err and not (tmp_path / "loop").exists()


def _digits_cnn(splits, extra=None):
    """A small tf_keras CNN trained on digits; ``extra(L, x)`` adds layers after the first conv."""
    from edgenn._tf import tf_keras

    k = tf_keras()
    k.utils.set_random_seed(0)
    L = k.layers
    x = inp = L.Input(splits.x_train.shape[1:])
    x = L.Conv2D(16, 3, padding="same", name="conv_a")(x)
    x = L.BatchNormalization(name="bn_a")(x)
    x = L.ReLU(name="relu_a")(x)
    if extra is not None:
        x = extra(L, x)
    x = L.Conv2D(16, 3, activation="relu", name="conv_b")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = k.Model(inp, L.Dense(10, activation="softmax", name="out")(x))
    model.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(splits.x_train, splits.y_train, epochs=30, batch_size=64, verbose=0)
    return model


def test_qat_starts_from_the_ranges_the_data_gives():
    """tfmot starts every activation range at [-6, 6] (the input's at [0, 0]) and moves it by
    0.1% a step: a short QAT run (a small data set) trained and exported with those ranges, and
    a digits CNN lost 44 points. The ranges now start at the data's min/max, so the QAT model
    agrees with its float model before training has moved anything."""
    from edgenn.compress.techniques.quantize import init_ranges
    from edgenn.data import load, match_model

    splits = match_model(load(DataSpec("digits", limit=512)), (None, 8, 8, 1), 10)
    model = _digits_cnn(splits)
    res = _qat(model, limit=512, epochs=1, learning_rate=1e-9)
    assert res.details["ranges_from_data"] >= 4  # input, conv_a's BN, conv_b, out (and kernels)
    ranges = {w.name: float(w.numpy().max()) for w in res.model.weights
              if w.name.endswith(("_max:0",)) and "kernel" not in w.name}
    assert all(v != 6.0 for v in ranges.values()), ranges  # none left at tfmot's start
    assert all(v > 0.0 for v in ranges.values()), ranges  # the input's starts at 0: set too
    float_top1 = model.predict(splits.x_test, verbose=0).argmax(1)
    qat_top1 = res.model.predict(splits.x_test, verbose=0).argmax(1)
    assert (float_top1 == qat_top1).mean() >= 0.9
    # each range is the float tensor's own on the first 512 training images
    from edgenn._tf import tf_keras

    seen = splits.x_train[:512]
    def top(layer, suffix):  # variable names carry a session-unique layer name
        return next(float(w.numpy().max()) for w in layer.weights if w.name.endswith(suffix))

    quantize_input = next(la for la in res.model.layers if type(la).__name__ == "QuantizeLayer")
    assert top(quantize_input, "_max:0") == pytest.approx(float(seen.max()))
    conv_b = tf_keras().Model(model.input, model.get_layer("conv_b").output)
    peak = float(conv_b.predict(seen, verbose=0).max())
    assert top(res.model.get_layer("quant_conv_b"), "post_activation_max:0") == pytest.approx(
        peak, rel=0.1)
    assert init_ranges(res.model, None) == 0  # nothing to run on: nothing set


def test_qat_leaves_a_concatenation_of_float_inputs_float(tmp_path):
    """A Concatenate whose inputs QAT cannot emulate (an ELU layer, a TensorFlow op): tfmot put a
    fake-quant on each input, and TFLite's int8 concatenation needs one scale for all of them,
    so the int8 export failed (exit 3, "violate the same scale constraint"). The concatenation
    now stays float through QAT and the converter calibrates it."""
    from edgenn._tf import tf
    from edgenn.compress.step import StepContext
    from edgenn.compress.techniques.quantize import quantize
    from edgenn.convert.export import ExportSpec, tflite_bytes
    from edgenn.data import load, match_model
    from edgenn.recipe import QuantizeStep

    splits = match_model(load(DataSpec("digits", limit=256)), (None, 8, 8, 1), 10)

    def branches(L, x):
        a = L.ELU(name="elu_a")(L.Conv2D(8, 3, padding="same", name="conv_e")(x))
        b = tf().math.square(x)
        return L.Concatenate(name="cat")([a, b])

    model = _digits_cnn(splits, branches)
    res = quantize(model, QuantizeStep(epochs=1), StepContext(splits=splits, seed=0))
    assert "cat" not in res.details["quantized_layers"]
    assert "conv_b" in res.details["quantized_layers"]
    assert any("cat (Concatenate, an input stays float)" in n for n in res.notes), res.notes
    spec = ExportSpec(quantization="int8")
    flat = tflite_bytes(res.model, spec, x_calib=splits.x_calib)
    assert len(flat) > 1000


def test_activity_regularization_does_not_break_qat_or_clustering():
    """An activity regularizer (a Dense's activity_regularizer=, an ActivityRegularization
    layer) made QAT and clustering exit 1: tfmot rebuilds the model in a graph of its own and
    the regularizer's loss tensor was out of scope in the training step. tfmot's copy trains
    without it, and the step says so."""
    from edgenn._tf import tf_keras
    from edgenn.compress.step import StepContext
    from edgenn.compress.techniques.cluster import cluster
    from edgenn.data import load, match_model
    from edgenn.recipe import ClusterStep

    k = tf_keras()
    k.utils.set_random_seed(0)
    L = k.layers
    x = inp = L.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", activity_regularizer="l1", name="conv")(x)
    x = L.ActivityRegularization(l2=1e-3, name="act_reg")(L.Flatten()(x))
    x = L.Dense(16, activation="relu", activity_regularizer=k.regularizers.L2(1e-4), name="hid")(x)
    model = k.Model(inp, L.Dense(10, activation="softmax", name="out")(x))
    res = _qat(model, epochs=1)
    assert any("activity regularization left out" in n and "conv, act_reg, hid" in n
               for n in res.notes), res.notes
    assert {"conv", "hid", "out"} <= set(res.details["quantized_layers"])
    splits = match_model(load(DataSpec("digits", limit=64)), model.input_shape, 10)
    res = cluster(model, ClusterStep(clusters=4, epochs=1), StepContext(splits=splits, seed=0))
    assert any("activity regularization left out" in n for n in res.notes), res.notes
    assert model.get_layer("hid").activity_regularizer is not None  # the caller's model untouched
