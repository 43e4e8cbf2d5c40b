"""No code from a model file runs unless the user says so."""

import numpy as np

from conftest import assert_clean_error, import_users_module, run_cli


def test_lambda_model_is_refused_and_writes_nothing(models, tmp_path):
    marker = models / "lambda_ran.txt"
    marker.unlink(missing_ok=True)
    r = run_cli("inspect", str(models / "k3_lambda.keras"), cwd=tmp_path)
    assert_clean_error(r, 2, "Lambda", "--allow-unsafe")
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []


def test_lambda_model_loads_with_allow_unsafe(models):
    marker = models / "lambda_ran.txt"
    marker.unlink(missing_ok=True)
    r = run_cli("inspect", str(models / "k3_lambda.keras"), "--allow-unsafe", "--no-bridge",
                "--json")
    assert r.code == 0, r.err
    assert "Lambda" in {layer["class"] for layer in r.json()["layers"]}
    # The flag really does run the file's code: this is what the default refusal prevents.
    assert marker.read_text() == "the Lambda ran"
    marker.unlink()


def test_custom_object_refused_then_registered(models):
    refused = run_cli("inspect", str(models / "tfk_custom.keras"))
    assert_clean_error(refused, 2, "Demo>Scale", "--custom-objects")
    ok = run_cli("inspect", str(models / "tfk_custom.keras"), "--custom-objects",
                 str(models / "custom_layers.py"), "--json")
    assert ok.code == 0, ok.err
    assert [layer["class"] for layer in ok.json()["layers"]][0] == "Scale"


def test_custom_objects_file_must_be_python(models, tmp_path):
    r = run_cli("inspect", str(models / "tfk_custom.keras"), "--custom-objects",
                str(tmp_path / "nothing.txt"))
    assert_clean_error(r, 2, "--custom-objects file not found")
    text = tmp_path / "layers.txt"
    text.write_text("x = 1")
    r = run_cli("inspect", str(models / "tfk_custom.keras"), "--custom-objects", str(text))
    assert_clean_error(r, 2, "--custom-objects must be a .py file")


def test_keras3_operations_in_a_config_load_but_control_flow_is_refused(tmp_path):
    """Keras 3 writes the ops a Masking layer computes (not_equal, any) into the functional
    config: tensor math, loaded without --allow-unsafe. A control-flow operation (Cond calls
    Python functions) put in their place is refused in one line."""
    import json
    import zipfile

    import keras
    from keras import layers

    inp = keras.Input((6, 3))
    model = keras.Model(inp, layers.Dense(2, activation="softmax")(
        layers.LSTM(4)(layers.Masking()(inp))))
    path = tmp_path / "masked.keras"
    model.save(path)
    r = run_cli("inspect", str(path), "--json")
    assert r.code == 0, r.err
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    ops = [entry for entry in config["config"]["layers"] if entry.get("module") == "keras.src.ops.numpy"]
    assert {entry["class_name"] for entry in ops} >= {"NotEqual", "Any"}
    ops[-1]["class_name"] = ops[-1]["registered_name"] = "Cond"
    files["config.json"] = json.dumps(config).encode()
    crafted = tmp_path / "cond.keras"
    with zipfile.ZipFile(crafted, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert_clean_error(run_cli("inspect", str(crafted)), 2, "Cond", "--allow-unsafe")


def test_a_compiled_tf_keras_savedmodel_is_not_taken_for_custom_code(tmp_path):
    """tf_keras registers its optimizers under the package "Custom": the SavedModel of any
    compiled model names "Custom>Adam" in its training config and was refused as unknown code."""
    import numpy as np

    from edgenn._tf import tf_keras
    from edgenn.models.safety import keras_names

    tfk = tf_keras()
    tfk.utils.set_random_seed(0)
    inp = tfk.Input((6,))
    model = tfk.Model(inp, tfk.layers.Dense(3, activation="softmax")(inp))
    model.compile(tfk.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.zeros((4, 6), "float32"), np.zeros(4, "int64"), epochs=1, verbose=0)
    model.save(tmp_path / "sm")
    r = run_cli("inspect", str(tmp_path / "sm"), "--json")
    assert r.code == 0, r.err
    names = keras_names("tf_keras").classes
    assert {"Custom>Adam", "Custom>SGD"} <= names and "Custom>system" not in names


def test_a_model_compiled_with_a_lambda_loss_loads_its_layers_do_not(tmp_path):
    """compile(loss=lambda y, p: ...) is saved in the model's compile config, which loading with
    compile=False never reads (Keras 3 and tf_keras drop it): such a model was refused as a
    Python lambda on every command. It loads now; a Lambda in the layers is still refused, and
    so is a lambda loss of a nested model, which Keras 3 compiles whatever the top-level flag."""
    import keras
    import numpy as np

    from edgenn._tf import tf_keras

    def build(k, lambda_layer=False):
        inp = k.Input((6,))
        h = k.layers.Lambda(lambda t: t * 2.0)(inp) if lambda_layer else inp
        model = k.Model(inp, k.layers.Dense(3, activation="softmax")(h))
        model.compile("adam", lambda y, p: k.losses.sparse_categorical_crossentropy(y, p))
        model.fit(np.zeros((4, 6), "float32"), np.zeros(4, "int64"), epochs=1, verbose=0)
        return model

    build(keras).save(tmp_path / "k3.keras")
    build(tf_keras()).save(tmp_path / "tfk.keras")
    for name in ("k3.keras", "tfk.keras"):
        r = run_cli("inspect", str(tmp_path / name), "--json")
        assert r.code == 0, (name, r.err)
    build(keras, lambda_layer=True).save(tmp_path / "layer.keras")
    assert_clean_error(run_cli("inspect", str(tmp_path / "layer.keras")), 2, "--allow-unsafe")
    inner = build(keras)
    outer = keras.Sequential([keras.Input((6,)), inner])
    outer.save(tmp_path / "nested.keras")
    assert_clean_error(run_cli("inspect", str(tmp_path / "nested.keras")), 2, "lambda",
                       "--allow-unsafe")


def test_log_softmax_output_is_judged_as_a_classifier():
    import keras

    from edgenn.fidelity import Task, detect_task

    inp = keras.Input((5,))
    model = keras.Model(inp, keras.layers.Dense(4, activation="log_softmax")(inp))
    assert detect_task(model) is Task.classification
    model = keras.Model(inp, keras.layers.Dense(4)(inp))
    assert detect_task(model) is Task.regression


_KERAS2_LAYER = '''
from {keras} import backend as K
from {keras}.layers import Layer


class Weighted(Layer):
    """textgenrnn's attention, shortened: a learned weighted average over time."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], 1), initializer="uniform")

    def call(self, x):
        a = K.softmax(K.squeeze(K.dot(x, self.w), -1))
        return K.sum(x * K.expand_dims(a), axis=1)

    def compute_output_shape(self, shape):
        return (shape[0], shape[-1])
'''


def test_a_custom_layer_file_subclasses_the_keras_of_the_model(tmp_path):
    """A Keras 2 era file (`from tensorflow.keras.layers import Layer`, or `keras.layers`)
    for an .h5 (textgenrnn's AttentionWeightedAverage): edgenn's process gave it Keras 3's
    Layer, and the model failed to load ("IndexError: list index out of range"). It now
    subclasses tf_keras for a tf_keras model, and a file written with `tf.keras` for a Keras 3
    model (TensorFlow 2.16 and later) subclasses Keras 3."""
    from edgenn._tf import tf_keras

    for name, keras in (("tf_style.py", "tensorflow.keras"), ("keras_style.py", "keras")):
        (tmp_path / name).write_text(_KERAS2_LAYER.format(keras=keras))
    k, namespace = tf_keras(), {}
    exec(_KERAS2_LAYER.format(keras="tf_keras"), namespace)  # what tf.keras was in Keras 2 days
    i = k.Input((5, 3))
    k.Model(i, k.layers.Dense(2, activation="softmax")(namespace["Weighted"](name="att")(i))).save(
        tmp_path / "old.h5")
    for name in ("tf_style.py", "keras_style.py"):
        r = run_cli("inspect", str(tmp_path / "old.h5"), "--custom-objects", str(tmp_path / name),
                    "--json")
        assert r.code == 0, (name, r.err[-1500:])
        assert [row["class"] for row in r.json()["layers"]][1] == "Weighted"

    # QAT rebuilds the model from its config (tfmot): the layer must be in scope there too
    x = np.random.default_rng(0).random((120, 5, 3), dtype=np.float32)
    np.savez(tmp_path / "seq.npz", x=x, y=(x[:, 0, 0] > 0.5).astype(np.int64))
    r = run_cli("compress", str(tmp_path / "old.h5"), "--custom-objects", str(tmp_path / "tf_style.py"),
                "-r", "int8-qat", "--data", str(tmp_path / "seq.npz"), "--epochs-scale", "0.05",
                "-o", str(tmp_path / "qat"), "--json")
    assert r.code in (0, 4), r.err[-1500:]  # 4: the accuracy bound of an untrained model
    assert r.json()["steps"][0]["name"] == "quantize"

    import keras

    (tmp_path / "new_style.py").write_text(_KERAS2_LAYER.format(keras="tensorflow.keras"))
    namespace: dict = {}
    exec(_KERAS2_LAYER.format(keras="keras._tf_keras.keras"), namespace)  # what tf.keras is there
    inp = keras.Input((5, 3))
    keras.Model(inp, keras.layers.Dense(2)(namespace["Weighted"](name="att")(inp))).save(
        tmp_path / "new.keras")
    r = run_cli("convert", str(tmp_path / "new.keras"), "--custom-objects",
                str(tmp_path / "new_style.py"), "--to", "tflite", "-o", str(tmp_path / "n.tflite"))
    assert r.code == 0, r.err[-1500:]


def test_a_custom_objects_file_registers_the_users_objects_not_what_it_imports_from_libraries(
        tmp_path):
    """Imported classes count when they are Keras objects (mtcnn's ONet imported from its
    package), but what the file imports from the standard library or other libraries never
    becomes a name a model file may instantiate (`from subprocess import Popen`)."""
    from edgenn.models.safety import load_custom_objects

    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "import keras\nclass Net(keras.Model):\n    pass\nclass Plain:\n    pass\n"
        "def swish2(x):\n    return x\n")
    (tmp_path / "objects.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
        "from subprocess import Popen, run\nfrom shutil import rmtree\n"
        "from keras.layers import Dense\nfrom userpkg.nets import Net, Plain, swish2\n"
        "import keras\nclass Mine(keras.layers.Layer):\n    pass\n")
    assert sorted(load_custom_objects(tmp_path / "objects.py", "keras3")) == ["Mine", "Net", "swish2"]


def test_a_custom_objects_file_imports_its_neighbours_as_python_would(tmp_path):
    """`python co.py` finds `from my_layers import Scale` beside it; edgenn refused the file
    with "No module named 'my_layers'" and advice to make `python FILE.py` run, which it did
    (mmsplice's layers, copied beside a user's file). The folder then goes to the end of the
    import path, where it shadows no library."""
    import sys

    import keras

    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "my_layers.py").write_text(
        "import keras\n@keras.saving.register_keras_serializable('user')\n"
        "class Scale(keras.layers.Layer):\n    def call(self, x):\n        return 2.0 * x\n")
    (folder / "co.py").write_text("from my_layers import Scale\n")
    sys.path.insert(0, str(folder))
    try:
        from my_layers import Scale
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("my_layers", None)
    inp = keras.Input((3,))
    keras.Model(inp, keras.layers.Dense(2)(Scale(name="scale")(inp))).save(tmp_path / "m.keras")
    keras.saving.get_custom_objects().clear()
    r = run_cli("inspect", str(tmp_path / "m.keras"), "--custom-objects", str(folder / "co.py"),
                "--json")
    assert r.code == 0, r.err[-800:]
    assert "Scale" in [layer["class"] for layer in r.json()["layers"]]


def test_allow_unsafe_names_the_custom_object_nothing_registered(models, tmp_path):
    """--allow-unsafe lifts the checks, so no refusal names a custom layer first; Keras then
    said only that the model "could not be deserialized properly", and edgenn advised checking
    that the file was complete (a keras-tcn model: `TCN` from `tcn.tcn`). The error now names
    the object, and for a Keras 3 file the import line that registers it; that line works."""
    import keras

    folder = tmp_path / "user"
    folder.mkdir()
    Twice = import_users_module(folder, "my_blocks", (
        "import keras\n@keras.saving.register_keras_serializable('blocks')\n"
        "class Twice(keras.layers.Layer):\n    def call(self, x):\n        return 2.0 * x\n")).Twice
    inp = keras.Input((3,))
    keras.Model(inp, keras.layers.Dense(2)(Twice(name="twice")(inp))).save(tmp_path / "m.keras")
    keras.saving.get_custom_objects().clear()

    r = run_cli("inspect", str(tmp_path / "m.keras"), "--allow-unsafe", cwd=tmp_path)
    assert_clean_error(r, 2, "'blocks>Twice'", "--custom-objects",
                       "`from my_blocks import Twice`")
    (folder / "co.py").write_text("from my_blocks import Twice\n")
    ok = run_cli("inspect", str(tmp_path / "m.keras"), "--allow-unsafe", "--custom-objects",
                 str(folder / "co.py"), "--json")
    assert ok.code == 0, ok.err[-800:]

    # a tf_keras file (no module stored with the name)
    r = run_cli("inspect", str(models / "tfk_custom.keras"), "--allow-unsafe")
    assert_clean_error(r, 2, "Demo>Scale", "--custom-objects")
    assert "could not be loaded" not in r.err


def test_a_custom_objects_file_that_imports_a_package_registers_what_it_registers(tmp_path):
    """keras-hub and keras-tcn register their layers with Keras as they load: `import keras_hub`
    in the file registered nothing, and a keras-hub model was refused as an "unknown class"
    (its module, keras_hub..., was taken for Keras's own). The refusal now names it a custom
    object with the import line; a file that only imports the package registers its classes."""
    import keras

    (tmp_path / "keras_blocks").mkdir()
    (tmp_path / "keras_blocks" / "__init__.py").write_text(
        "import keras\n@keras.saving.register_keras_serializable('keras_blocks')\n"
        "class Thrice(keras.layers.Layer):\n    def call(self, x):\n        return 3.0 * x\n")
    Thrice = import_users_module(tmp_path, "keras_blocks").Thrice
    inp = keras.Input((3,))
    keras.Model(inp, keras.layers.Dense(2)(Thrice(name="thrice")(inp))).save(tmp_path / "m.keras")
    keras.saving.get_custom_objects().clear()
    users = tmp_path / "user"
    users.mkdir()
    r = run_cli("inspect", str(tmp_path / "m.keras"))
    assert_clean_error(r, 2, "'keras_blocks>Thrice'", "`from keras_blocks import Thrice`")
    (users / "co.py").write_text(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
                                 "import keras_blocks\n")
    ok = run_cli("inspect", str(tmp_path / "m.keras"), "--custom-objects", str(users / "co.py"),
                 "--json")
    assert ok.code == 0, ok.err[-800:]
    assert "Thrice" in [layer["class"] for layer in ok.json()["layers"]]
    # the same on a second load in one process (the package is imported by then)
    import sys

    from edgenn.models.safety import load_custom_objects

    try:
        for _ in range(2):
            assert "keras_blocks>Thrice" in load_custom_objects(users / "co.py", "keras3")
    finally:
        keras.saving.get_custom_objects().clear()
        sys.modules.pop("keras_blocks", None)
