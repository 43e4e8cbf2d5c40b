"""A class per position: a tagger's (N, T) labels, a segmenter's (N, H, W), through compress.

compress refused such labels; it now trains (cross-entropy per position), distils (the
teacher's logits per position) and scores top-1 per position, in Keras and in the .tflite.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
from edgenn import recipe as rc
from edgenn.data import DataSpec


def _run(model, name, data, out, **kwargs):
    from edgenn.compress.pipeline import run

    path = rc.resolve(name) if not isinstance(name, Path) else name
    return run(str(model), rc.load(str(path)), path, DataSpec(str(data), scale="none"), out,
               **kwargs)


def _tagger_data(tmp_path, n=600):
    """Sequences of 12 steps x 6 features; each step's class is a fixed linear rule of its
    own features and its neighbours' (learnable by a Conv1D)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 12, 6)).astype("float32")
    w = rng.standard_normal((6, 4))
    mixed = x + 0.5 * np.roll(x, 1, axis=1)
    y = (mixed @ w).argmax(-1)
    np.savez(tmp_path / "tags.npz", x=x, y=y)
    return x, y


def _tagger(x, y, width=16, epochs=40):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 6))
    h = layers.Conv1D(width, 3, padding="causal", activation="relu", name="conv")(inp)
    h = layers.Dense(width, activation="relu", name="hidden")(h)
    model = keras.Model(inp, layers.Dense(4, activation="softmax", name="tags")(h))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def test_a_tagger_distils_and_quantizes_per_position(tmp_path):
    x, y = _tagger_data(tmp_path, n=2500)
    model = _tagger(x, y, width=32, epochs=10)
    own = float((model.predict(x, verbose=0).argmax(-1) == y).mean())
    assert own > 0.85, own  # the rule is learnt: the figures below mean something
    model.save(tmp_path / "tagger.keras")
    _run(tmp_path / "tagger.keras", "distill-half-int8", tmp_path / "tags.npz", tmp_path / "out",
         epochs_scale=1.0)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    base, final = doc["metrics"]["baseline"], doc["metrics"]["final"]
    # scored per position: over (samples x 12 steps), with every one of the 4 classes
    assert base["accuracy"] > 0.8 and set(base["per_class"]) == {"0", "1", "2", "3"}, base
    assert final["accuracy"] > 0.6, (final, base)  # learnt the tags (0.78 here; 0.33-0.43 untaught)
    assert doc["steps"][0]["details"]["param_ratio"] < 0.5


def test_a_segmenter_prunes_and_scores_every_pixel(tmp_path):
    """A per-pixel softmax (N, 8, 8, 3) with labels stored as (N, 8, 8, 1): pruned, int8, and
    its accuracy is the fraction of pixels whose class the .tflite gets right."""
    import keras
    from keras import layers

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (500, 8, 8, 1)).astype("float32")
    y = np.digitize(x, [0.33, 0.66]).astype("int64")  # (N, 8, 8, 1): 3 classes by brightness
    np.savez(tmp_path / "seg.npz", x=x, y=y)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = layers.Conv2D(16, 1, activation="relu", name="c1")(inp)
    model = keras.Model(inp, layers.Conv2D(3, 1, activation="softmax", name="seg")(h))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    model.save(tmp_path / "seg.keras")
    recipe = tmp_path / "p.yaml"
    recipe.write_text("name: prune-seg\nsteps:\n  - prune: {target_sparsity: 0.5, epochs: 2, "
                      "learning_rate: 0.001}\nexport: {format: tflite, quantization: int8}\n")
    _run(tmp_path / "seg.keras", recipe, tmp_path / "seg.npz", tmp_path / "out", epochs_scale=1.0)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    art = next(a for a in doc["artifacts"] if a["format"] == "tflite")
    from edgenn.evaluate import predict_file

    # the reported accuracy is the pixels' (recomputed here on the whole data set)
    pred = predict_file(art["path"], x).argmax(-1)
    assert abs(float((pred == y[..., 0]).mean()) - doc["metrics"]["final"]["accuracy"]) < 0.03
    assert doc["metrics"]["final"]["accuracy"] > 0.8, doc["metrics"]
    assert doc["steps"][0]["details"]["pruned_layers"], doc["steps"][0]["details"]


def test_a_binary_segmenter_scores_every_pixel_at_one_half():
    """One sigmoid per pixel (N, H, W, 1): each pixel's class is its own score against 0.5,
    not the first pixel's for the whole image."""
    from edgenn.evaluate import classification_metrics, top1

    pred = np.array([[[[0.9], [0.2]], [[0.6], [0.1]]]])  # (1, 2, 2, 1)
    assert top1(pred).tolist() == [[[1, 0], [1, 0]]]
    assert classification_metrics(pred, np.array([[[1, 0], [0, 0]]]))["accuracy"] == 0.75
    assert top1(np.array([[0.7], [0.2]])).tolist() == [1, 0]  # one score per sample, as before


def test_labels_that_do_not_fit_the_positions_are_named(tmp_path):
    """Per-position labels for a per-sample classifier, per-sample labels for a tagger, the
    wrong number of positions, and augmentation that would move pixels but not labels: each
    refused in one line naming the shapes and the fix, before anything trains."""
    x, y = _tagger_data(tmp_path, n=120)
    model = _tagger(x, y, epochs=1)
    model.save(tmp_path / "tagger.keras")
    np.savez(tmp_path / "flat.npz", x=x, y=y[:, 0])
    np.savez(tmp_path / "short.npz", x=x, y=y[:, :10])
    data = ["--scale", "none", "-o", str(tmp_path / "o")]
    r = run_cli("compress", str(tmp_path / "tagger.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "flat.npz"), *data)
    assert_clean_error(r, 2, "one class per sample", "class per position", "(N, steps)")
    r = run_cli("compress", str(tmp_path / "tagger.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "short.npz"), *data)
    assert_clean_error(r, 2, "[None, 10]", "[None, 12]")
    import keras

    flat = keras.Sequential([keras.Input((12, 6)), keras.layers.Flatten(),
                             keras.layers.Dense(4, activation="softmax")])
    flat.save(tmp_path / "flat.keras")
    r = run_cli("compress", str(tmp_path / "flat.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "tags.npz"), *data)
    assert_clean_error(r, 2, "a class per position", "outputs one class per sample")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("augment", ["{horizontal_flip: true}"])
def test_augmenting_a_segmenter_is_refused(tmp_path, augment):
    import keras

    x = np.random.default_rng(0).uniform(0, 1, (40, 8, 8, 1)).astype("float32")
    np.savez(tmp_path / "seg.npz", x=x, y=(x[..., 0] > 0.5).astype("int64"))
    inp = keras.Input((8, 8, 1))
    keras.Model(inp, keras.layers.Conv2D(2, 1, activation="softmax")(inp)).save(
        tmp_path / "seg.keras")
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(f"name: ft\nsteps:\n  - finetune: {{epochs: 1, augment: {augment}}}\n"
                      "export: {format: tflite, quantization: int8}\n")
    r = run_cli("compress", str(tmp_path / "seg.keras"), "-r", str(recipe), "--data",
                str(tmp_path / "seg.npz"), "--scale", "none", "-o", str(tmp_path / "o"))
    assert_clean_error(r, 2, "not their per-position labels", "augment")


def test_an_answer_given_almost_everywhere_is_named_with_the_agreement_on_the_rest():
    """A splice-site model answers "neither" at all but a few of 200,000 positions: top-1
    agreement 1.0 said nothing about the sites. The check names the common answer and the
    agreement on the other answers; a label check that never crosses 0.5 says so too."""
    from edgenn.fidelity import judge

    rng = np.random.default_rng(0)
    ref = np.zeros((10, 100, 3), np.float32)
    ref[..., 0] = 0.9
    ref[..., 1:] = rng.uniform(0, 0.05, (10, 100, 2))
    sites = [(0, 5), (1, 50), (2, 7), (3, 8), (4, 9), (5, 10), (6, 11), (7, 12)]
    for n, t in sites:
        ref[n, t] = [0.1, 0.8, 0.1]
    cand = ref.copy()
    for n, t in sites[:3]:  # three of the eight sites lost
        cand[n, t] = [0.6, 0.3, 0.1]
    f = judge([ref], [cand], "classification", "int8", "test")
    assert f.passed and f.top1_agreement > 0.99  # the overall figure hides it
    common = f.outputs[0].common
    assert common["class"] == 0 and common["others"] == 8 and common["others_agreement"] == 5 / 8
    (note,) = f.caveats()
    assert "answers class 0 at 99.20% of 1,000 positions" in note and "0.6250" in note, note
    assert f.to_dict()["caveats"] == [note]

    balanced = ref.copy()
    balanced[:, :50] = [0.1, 0.8, 0.1]
    assert judge([balanced], [balanced], "classification", "int8", "t").caveats() == []
    low = np.full((20, 3), 0.2, np.float32)
    (label,) = judge([low], [low], "multilabel", "int8", "t").caveats()
    assert "never crosses 0.5" in label


def test_convert_prints_the_common_answer(tmp_path):
    """Through the CLI: a per-position model whose bias favours one class nearly everywhere."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((40, 4))
    h = keras.layers.Conv1D(8, 5, padding="same", activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax", name="sites")(h)
    model = keras.Model(inp, out)
    w, b = model.get_layer("sites").get_weights()
    model.get_layer("sites").set_weights([w * 0.3, np.array([4.0, 0.0, 0.0], np.float32)])
    model.save(tmp_path / "m.keras")
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (200, 40))]
    np.savez(tmp_path / "d.npz", x=x)
    r = run_cli("convert", str(tmp_path / "m.keras"), "--to", "tflite", "--data",
                str(tmp_path / "d.npz"), "-o", str(tmp_path / "m.tflite"), "--json")
    assert r.code == 0, r.err
    doc = r.json()
    (note,) = doc["fidelity"]["caveats"]
    assert "answers class 0 at 100.00% of" in note and "never gives another answer" in note, note


def test_one_hot_labels_per_position_for_an_open_length_model(tmp_path):
    """SpliceAI's shape: an open time axis (None, 4) and one-hot labels per position,
    (N, 1000, 3), as categorical cross-entropy trains on. compress refused them ("labels have
    shape [None, 1000, 3] but the model outputs a class per position of [None, None]")."""
    import keras
    from keras import layers

    x, y = _tagger_data(tmp_path, n=600)
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 6))
    h = layers.Conv1D(16, 3, padding="causal", activation="relu")(inp)
    model = keras.Model(inp, layers.Dense(4, activation="softmax", name="tags")(h))
    model.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy")
    onehot = np.eye(4, dtype=np.float32)[y]
    model.fit(x, onehot, epochs=10, batch_size=64, verbose=0)
    model.save(tmp_path / "open.keras")
    np.savez(tmp_path / "onehot.npz", x=x, y=onehot)
    r = run_cli("compress", str(tmp_path / "open.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "onehot.npz"), "--scale", "none", "-o", str(tmp_path / "o"))
    assert r.code == 0, r.err[-1500:]
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    own = float((model.predict(x, verbose=0).argmax(-1) == y).mean())
    assert abs(doc["metrics"]["baseline"]["accuracy"] - own) < 0.05, (doc["metrics"], own)


def test_a_width_student_of_an_open_length_model_is_built_at_the_datas_length(tmp_path):
    """distill-half-int8 on SpliceAI: the student's one real call was made on an input made
    up at 8 steps, which its Cropping1D (5,000 per side) refused: "no layer of the teacher can
    be narrowed". The call now takes a training sample."""
    import keras
    from keras import layers

    from edgenn.compress.distiller import width_student

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 6))
    h = layers.Conv1D(16, 3, padding="same", activation="relu", name="conv")(inp)
    h = layers.GlobalMaxPooling1D()(layers.Cropping1D(20)(h))
    teacher = keras.Model(inp, layers.Dense(4, activation="softmax", name="out")(h))
    x = np.random.default_rng(0).random((5, 64, 6), np.float32)
    student = width_student(teacher, 0.5, x)
    assert student.get_layer("conv").filters == 8
    assert student(x).shape == (5, 4)
    # an output with an open axis (SpliceAI's (None, 3)) is the teacher's at any length
    per_position = keras.Model(inp, layers.Dense(3, activation="softmax", name="sites")(
        layers.Cropping1D(20)(layers.Conv1D(16, 3, padding="same", name="conv")(inp))))
    assert width_student(per_position, 0.5, x)(x).shape == (5, 24, 3)


def test_labels_of_one_class_almost_everywhere_are_named_in_the_report(tmp_path):
    """SpliceAI's test labels were "neither" at all 40,000 positions: an 80% pruned copy scored
    accuracy 1.0 ("constraint met") and nothing said the sites were never scored."""
    from edgenn.evaluate import label_note

    y = np.zeros((40, 1000), np.int64)
    note = label_note(y, 3)
    assert "class 0 at 100.00% of 40,000 positions" in note and "classes 1, 2 never occur" in note
    y[:, :30] = np.arange(30) % 3
    assert label_note(y, 3) is not None  # 98% class 0, every class present
    assert label_note(np.arange(300) % 3, 3) is None  # balanced, every class present

    x, _ = _tagger_data(tmp_path, n=300)
    model = _tagger(x, (np.arange(300 * 12) % 4).reshape(300, 12), epochs=1)
    model.save(tmp_path / "tagger.keras")
    rare = np.zeros((300, 12), np.int64)
    rare[:5, 0] = 2
    np.savez(tmp_path / "rare.npz", x=x, y=rare)
    r = run_cli("compress", str(tmp_path / "tagger.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "rare.npz"), "--scale", "none", "-o", str(tmp_path / "o"))
    assert r.code in (0, 4), r.err[-1500:]
    notes = " ".join(json.loads((tmp_path / "o" / "report.json").read_text())["notes"])
    assert "labels scored are class 0 at" in notes and "never occur" in notes, notes


def test_near_ties_are_read_from_a_quantized_grid_not_from_a_collapsed_output():
    """The output step is read from the artifact's values. A flat 101-class softmax (an age
    estimator's, scores under 0.05) on int8's 1/256 grid has near-ties; an int8 file that lost
    its input answered only 0 or 0.996, and its "step" of 0.996 made every changed answer a
    near-tie (the advice: keep the output layer float, which could not help)."""
    import numpy as np

    from edgenn.fidelity import compare_outputs

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.3, (200, 101))
    ref = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    grid = np.round(ref * 256) / 256  # int8 softmax output: steps of 1/256
    flat = compare_outputs([ref], [grid])[0]
    assert flat.changed and flat.near_ties and flat.output_step == 1 / 256, flat
    sharp = np.eye(4)[rng.integers(0, 4, 200)] * 0.9 + 0.025
    collapsed = np.where(rng.random((200, 4)) < 0.5, 0.0, 0.996)
    broken = compare_outputs([sharp], [collapsed])[0]
    assert broken.changed and broken.near_ties is None and broken.output_step is None, broken
