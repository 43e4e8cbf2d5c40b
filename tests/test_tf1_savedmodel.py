"""SavedModels written by TensorFlow 1 (``simple_save``, Estimator exports, TF Serving's test
models): reference variables and a Saver whose save/SaveV2 node sits in every graph.

Found with TF Serving's test SavedModels (bench/corpus.py, bench/RESULTS.md "Session 12"):
every TF1 SavedModel was refused as "writes checkpoint files" (the Saver's own save node, which
nothing runs at load or inference); past that, conversion failed on the reference variables
(VariableV2), and an unshaped placeholder exited 1 in `inspect`.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli


def _tf1(path, shape=(None, 3), save_in_output=False):
    """A TF1 graph: y = x @ w with w a reference variable, saved by simple_save."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, shape, name="x")
        w = v1.get_variable("w", initializer=np.random.default_rng(0).normal(size=(3, 2))
                            .astype(np.float32), use_resource=False)
        y = tf.matmul(x, w, name="y")
        if save_in_output:  # a graph whose serving output runs a checkpoint write
            save = tf.raw_ops.SaveV2(prefix=str(path) + "-written", tensor_names=["w"],
                                     shape_and_slices=[""], tensors=[w])
            with tf.control_dependencies([save]):
                y = tf.identity(y, name="y_after_save")
        session.run(v1.global_variables_initializer())
        v1.saved_model.simple_save(session, str(path), {"x": x}, {"y": y})
    return str(path)


@pytest.fixture(scope="module")
def tf1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tf1")
    return {"plain": _tf1(folder / "plain"), "unshaped": _tf1(folder / "unshaped", shape=None),
            "saves": _tf1(folder / "saves", save_in_output=True)}


def test_a_tf1_savedmodel_converts_on_every_road(tf1, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).normal(size=(60, 3)).astype(np.float32))
    r = run_cli("inspect", tf1["plain"], "--json")
    assert r.code == 0, r.err
    assert r.json()["signatures"][0]["inputs"]["x"]["shape"] == [None, 3]
    for to, extra in (("tflite", ()), ("onnx", ()), ("tflite", ("--quantize", "int8"))):
        out = tmp_path / f"m{len(extra)}.{to}"
        r = run_cli("convert", tf1["plain"], "--to", to, "--data", str(tmp_path / "x.npz"),
                    "-o", str(out), "--json", *extra)
        assert r.code == 0, (to, extra, r.err or r.out)
        assert r.json()["fidelity"]["passed"]


def test_a_tf1_save_node_that_serving_runs_is_still_refused(tf1, tmp_path):
    """Only a save node nothing reaches at load or inference is let through."""
    r = run_cli("inspect", tf1["saves"])
    assert_clean_error(r, 2, "SaveV2", "writes checkpoint files", "--allow-unsafe")
    assert not list(tmp_path.parent.glob("saves-written*"))


def test_an_unshaped_tf1_placeholder_is_one_line(tf1, tmp_path):
    r = run_cli("inspect", tf1["unshaped"], "--json")
    assert r.code == 0, r.err
    assert r.json()["signatures"][0]["inputs"]["x"]["shape"] is None
    r = run_cli("convert", tf1["unshaped"], "--to", "tflite", "-o", str(tmp_path / "m.tflite"))
    assert_clean_error(r, 2, "'x' of unknown rank", "tf.TensorSpec")


def test_the_edge_tpu_road_fixes_a_tf1_graphs_batch(tf1, tmp_path):
    """The Edge TPU compiles static shapes: a TF1 signature went to the converter as it is and
    kept its open batch ([-1, 3]). Its placeholders now take the batch of 1, on a fresh load,
    so the source model still answers for a whole batch in the fidelity check."""
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).normal(size=(60, 3)).astype(np.float32))
    out = tmp_path / "et.tflite"
    r = run_cli("convert", tf1["plain"], "--to", "tflite", "--target", "edgetpu",
                "--data", str(tmp_path / "x.npz"), "-o", str(out), "--json")
    assert r.code == 0, r.err or r.out
    assert r.json()["fidelity"]["passed"] and r.json()["fidelity"]["samples"] > 1
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(out)).get_input_details()[0]
    assert list(detail["shape_signature"]) == [1, 3]
