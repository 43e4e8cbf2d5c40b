"""ONNX files made elsewhere, as users bring them: streaming state, scalar settings, ZipMap.

A streaming ONNX model whose inputs do not all keep their samples on axis 0:

silero-vad (from PyPI) takes ``input [batch, sequence]``, ``state [2, batch, 128]`` and a scalar
``sr``, and returns ``stateN [2, batch, 128]``: edgenn fed and sliced every input along axis 0,
so `quantize`'s check exited 3 on ONNX Runtime's shape error and `profile` could not be given
the scalar's shape. The model here has that layout: real ONNX, built with onnx.helper, run by
ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli

STATE = 4


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    """x [batch, seq], state [2, batch, 4], rate [] int64 -> y [batch, 1], stateN [2, batch, 4]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (1 + 2 * STATE, 2 * STATE)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (2 * STATE, 1)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Transpose", ["state"], ["st"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["st", "flat"], ["h"]),
        helper.make_node("Concat", ["m", "h"], ["z"], axis=1),
        helper.make_node("MatMul", ["z", "w1"], ["z1"]),
        helper.make_node("Cast", ["rate"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["rf", "per_hz"], ["shift"]),
        helper.make_node("Add", ["z1", "shift"], ["z2"]),
        helper.make_node("Tanh", ["z2"], ["z3"]),
        helper.make_node("MatMul", ["z3", "w2"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["y"]),
        helper.make_node("Reshape", ["z3", "split"], ["s3"]),
        helper.make_node("Transpose", ["s3"], ["stateN"], perm=[1, 0, 2]),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([-1, 2 * STATE], np.int64), "flat"),
             numpy_helper.from_array(np.array([-1, 2, STATE], np.int64), "split"),
             numpy_helper.from_array(np.array(1e-4, np.float32), "per_hz")]
    graph = helper.make_graph(
        nodes, "streaming",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence"]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", STATE]),
         helper.make_tensor_value_info("rate", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", STATE])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp("streaming")
    onnx.save(model, str(folder / "vad.onnx"))
    n = 120
    x = rng.normal(0, 1, (n, 64)).astype(np.float32) * rng.uniform(0.1, 2, (n, 1)).astype(np.float32)
    state = rng.normal(0, 0.5, (n, 2, STATE)).astype(np.float32)
    np.savez(folder / "chunks.npz", x_x=x, x_state=state, x_rate=np.array(16000))
    return folder


def _by_hand(session, x, state, rate):
    """The model run one sample at a time in its own layout: what edgenn must agree with."""
    ys, states = [], []
    for i in range(len(x)):
        y, s = session.run(None, {"x": x[i:i + 1], "state": state[i][:, None, :],
                                  "rate": np.array(rate[i], np.int64)})
        ys.append(y[0])
        states.append(s[:, 0, :])
    return np.stack(ys), np.stack(states)


def test_inputs_are_fed_along_each_ones_batch_axis(streaming):
    import onnxruntime as ort

    from edgenn.runtime.onnx_runner import ONNXRunner

    path = str(streaming / "vad.onnx")
    runner = ONNXRunner(path)
    assert (runner.input_axes, runner.output_axes) == ([0, 1, None], [0, 1])
    assert runner.sample_shapes() == [(None,), (2, STATE), ()]
    data = np.load(streaming / "chunks.npz")
    x, state = data["x_x"][:20], data["x_state"][:20]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for rate in (np.full(20, 16000), np.array([16000, 8000] * 10)):  # shared, then per sample
        want = _by_hand(session, x, state, rate)
        got = runner.predict(x, state, rate, batch_size=8)
        assert [g.shape for g in got] == [(20, 1), (20, 2, STATE)]
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # the rate matters, so the per-sample run above was not the shared one by accident
    assert not np.allclose(runner.predict(x, state, np.full(20, 8000))[0],
                           runner.predict(x, state, np.full(20, 16000))[0])


@pytest.mark.parametrize("mode", ["dynamic-int8", "int8"])
def test_quantize_checks_a_model_with_a_state_and_a_scalar_setting(streaming, tmp_path, mode):
    """--data: one x_<name> per input; the scalar `rate` stored once for every sample."""
    out = tmp_path / f"{mode}.onnx"
    r = run_cli("quantize", str(streaming / "vad.onnx"), "--mode", mode, "--data",
                str(streaming / "chunks.npz"), "-o", str(out), "--json", block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["fidelity"]["samples"] == 24 and "chunks.npz" in doc["fidelity"]["data"]
    assert out.stat().st_size > 0
    # without --data: random inputs, the scalar shared by the batch, at a size the user gives
    # for the open sequence (no size suits every model: 8 samples of audio broke silero's STFT)
    args = ["quantize", str(streaming / "vad.onnx"), "--mode", "dynamic-int8", "-o",
            str(tmp_path / "random.onnx")]
    assert_clean_error(run_cli(*args), 2, "input 'x' has an open size", "--data",
                       "--input-shape, e.g. x=1x224")
    r = run_cli(*args, "--input-shape", "x=1x48", "--json", block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["data"] == "random inputs"


def test_an_output_a_sigmoid_computes_is_judged_as_a_probability(streaming, tmp_path):
    """--task auto reads the op behind each output (past reshapes): the streaming model's y is
    a Sigmoid, so a multi-label probability; its state is no probability, so SNR."""
    r = run_cli("quantize", str(streaming / "vad.onnx"), "--mode", "dynamic-int8", "--data",
                str(streaming / "chunks.npz"), "-o", str(tmp_path / "q.onnx"), "--json")
    assert r.code == 0, r.err
    verdicts = {o["name"]: o["verdict"]["task"] for o in r.json()["fidelity"]["outputs"]}
    assert verdicts == {"y": "multilabel", "stateN": "regression"}


def test_quantize_judges_each_output_by_the_task_named_for_it(streaming, tmp_path):
    """The probability by which side of 0.5 it lands, the state by SNR."""
    out = tmp_path / "q.onnx"
    args = ["quantize", str(streaming / "vad.onnx"), "--mode", "int8", "--data",
            str(streaming / "chunks.npz"), "-o", str(out)]
    r = run_cli(*args, "--task", "y=multilabel", "--json")
    assert r.code == 0, r.err
    verdicts = {o["name"]: o["verdict"]["task"] for o in r.json()["fidelity"]["outputs"]}
    assert verdicts == {"y": "multilabel", "stateN": "regression"}
    out.unlink()
    r = run_cli(*args, "--task", "why=multilabel")
    assert_clean_error(r, 2, "output 'why'", "its outputs: y, stateN")
    r = run_cli(*args, "--task", "y=probability")
    assert_clean_error(r, 2, "OUTPUT=TASK")
    assert not out.exists()


def test_quantize_data_for_several_inputs_is_checked(streaming, tmp_path):
    good = np.load(streaming / "chunks.npz")
    cases = {
        "missing.npz": ({"x_x": good["x_x"], "x_rate": good["x_rate"]}, "no array for input state"),
        "batch.npz": ({"x_x": good["x_x"], "x_state": good["x_state"][:, :, :2],
                       "x_rate": good["x_rate"]}, "x_state samples have shape [2, 2]"),
        "scalar.npz": ({"x_x": good["x_x"], "x_state": np.array(0.0, np.float32),
                        "x_rate": good["x_rate"]}, "x_state holds one value"),
    }
    for name, (arrays, needle) in cases.items():
        np.savez(tmp_path / name, **arrays)
        r = run_cli("quantize", str(streaming / "vad.onnx"), "--mode", "int8", "--data",
                    str(tmp_path / name), "-o", str(tmp_path / "q.onnx"), block_tf=True)
        assert_clean_error(r, 2, needle)
    assert not (tmp_path / "q.onnx").exists()


def test_profile_takes_shapes_by_input_name(streaming):
    path = str(streaming / "vad.onnx")
    r = run_cli("profile", path, "--runs", "3", block_tf=True)
    assert_clean_error(r, 2, "input 'x' has an open size", "--input-shape, e.g. x=1x224")
    r = run_cli("profile", path, "--runs", "3", "--input-shape", "x=4x64", "--json",
                block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["results"][0]["input_shapes"] == [[4, 64], [2, 4, STATE], []]
    r = run_cli("profile", path, "--runs", "3", "--input-shape", "1x64,2x1x4,scalar", "--json",
                block_tf=True)
    assert r.code == 0, r.err
    for shapes, needle in (("x=1x64,rat=scalar", "no input 'rat'"),
                           ("x=1x64,state=3x1x4", "fixed dimensions"),
                           ("1x64,2x1x4", "gives 2"), ("x=1x64,2x1x4", "by input name or none"),
                           ("x=1x100000x100000", "more than 268,435,456 values"),
                           ("x=1x-4", "at least 1"), ("x=1xfour", "expected shapes such as")):
        r = run_cli("profile", path, "--runs", "3", "--input-shape", shapes, block_tf=True)
        assert_clean_error(r, 2, needle)


def test_batch_axes_read_the_names_exporters_give():
    from edgenn.runtime.layout import batch_axes

    # Paddle2ONNX: "?" for height and width, its own names per tensor
    assert batch_axes([[-1, 3, "?", "?"]], [[-1, 2]]) == ([0], [0])
    assert batch_axes([["p2o.DynamicDimension.0", 3, "?", "p2o.DynamicDimension.1"]],
                      [["p2o.DynamicDimension.2", "p2o.DynamicDimension.3", 6625]]) == ([0], [0])
    # tf2onnx: a fresh name per input; PyTorch sequence-first; all fixed; a scalar setting
    assert batch_axes([["unk__1", 28, 28], ["unk__2", 8]], [["unk__3", 10]]) == ([0, 0], [0])
    assert batch_axes([["seq", "batch", 64]], [["seq", "batch", 32]]) == ([1], [1])
    assert batch_axes([[1, 224, 224, 3]], [[1, 10]]) == ([0], [0])
    # a fixed batch of 1 before an open length: the length is no batch
    assert batch_axes([[1, "time", 80]], [[1, "time", 512]]) == ([0], [0])
    assert batch_axes([["batch", "sequence"], [], [2, "batch", 64]]) == ([0, None, 1], [])
    # all fixed, leading with different sizes: a tensor and the shape it expands to; sequences
    # of 2, 1 and 3 items (onnx's backend tests): only what leads with 1 is batched
    assert batch_axes([[1, 3, 1], [2]], [[1, 3, 1]]) == ([0, None], [0])
    assert batch_axes([[2, 3, 4], [1, 3, 4], [3, 3, 4]], [[None, 3, 4]]) == ([None, 0, None], [0])
    assert batch_axes([[4, 10], [4, 2]], [[4, 8]]) == ([0, 0], [0])


def test_an_onnx_file_with_nothing_the_quantizer_reaches_is_refused(tmp_path):
    """silero-vad's older export keeps its LSTM inside If branches, which ONNX Runtime's
    quantizer does not enter: it wrote the model back unchanged and edgenn said "passed"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32), "w")

    def branch(name):
        return helper.make_graph([helper.make_node("MatMul", ["x", "w"], [f"{name}_y"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT,
                                                                ["batch", 4])])

    graph = helper.make_graph(  # the branch taken depends on the input, as silero's sr does
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
         helper.make_node("Greater", ["total", "zero"], ["flag"]),
         helper.make_node("If", ["flag"], ["y"], then_branch=branch("then"),
                          else_branch=branch("else"))], "nested",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [w, numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "nested.onnx"))
    r = run_cli("quantize", str(tmp_path / "nested.onnx"), "--mode", "dynamic-int8", "-o",
                str(tmp_path / "q.onnx"), block_tf=True)
    assert_clean_error(r, 3, "found no op to quantize", "subgraphs", "nothing was written")
    assert not (tmp_path / "q.onnx").exists()


def test_a_scikit_learn_zipmap_output_is_described_and_compared(tmp_path):
    """skl2onnx and onnxmltools classifiers return {class: probability} per sample (ZipMap):
    `inspect` called onnxruntime's own logreg_iris.onnx "not a valid ONNX model" (KeyError)
    and `quantize` exited 1 on a TypeError."""
    import onnx
    from onnx import TensorProto, helper

    from edgenn.runtime.onnx_runner import ONNXRunner

    coefficients = [0.5, -1.0, 1.5, -0.5, 1.0, 0.25]  # 3 classes x 2 features
    nodes = [helper.make_node("LinearClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml",
                              classlabels_ints=[0, 1, 2], coefficients=coefficients,
                              intercepts=[0.1, -0.2, 0.0], post_transform="SOFTMAX"),
             helper.make_node("ZipMap", ["scores"], ["probabilities"], domain="ai.onnx.ml",
                              classlabels_int64s=[0, 1, 2])]
    seq_map = helper.make_sequence_type_proto(helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    graph = helper.make_graph(
        nodes, "logreg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_value_info("probabilities", seq_map)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    path = tmp_path / "logreg.onnx"
    onnx.save(model, str(path))
    r = run_cli("inspect", str(path), "--json", block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["outputs"][1] == {"name": "probabilities", "shape": [],
                                      "dtype": "seq(map(int64,float32))"}
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    label, probabilities = ONNXRunner(path).predict(x, batch_size=3)
    assert probabilities.shape == (7, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert (probabilities.argmax(1) == label).all()
    r = run_cli("quantize", str(path), "--mode", "dynamic-int8", "-o", str(tmp_path / "q.onnx"),
                block_tf=True)
    assert_clean_error(r, 3, "found no op to quantize")


def test_inputs_of_other_element_types(tmp_path):
    """Boolean inputs get random booleans (they got floats, and ONNX Runtime refused them);
    a string input is one line naming it."""
    import onnx
    from onnx import TensorProto, helper

    for name, kind, node in (("flags", TensorProto.BOOL, helper.make_node("Cast", ["s"], ["t"],
                                                                         to=TensorProto.FLOAT)),
                             ("text", TensorProto.STRING, helper.make_node("Identity", ["s"], ["t"]))):
        out = TensorProto.FLOAT if kind == TensorProto.BOOL else kind
        graph = helper.make_graph([node], name, [helper.make_tensor_value_info("s", kind, ["N", 3])],
                                  [helper.make_tensor_value_info("t", out, ["N", 3])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
    from edgenn.runtime.onnx_runner import ONNXRunner

    flags = np.array([[True, False, True]] * 4)
    assert (ONNXRunner(tmp_path / "flags.onnx").predict(flags)[0] == flags).all()
    r = run_cli("quantize", str(tmp_path / "text.onnx"), "--mode", "dynamic-int8", "-o",
                str(tmp_path / "q.onnx"), block_tf=True)
    assert_clean_error(r, 3, "input 's' takes tensor(string)")
    assert not (tmp_path / "q.onnx").exists()


def test_a_gemm_bias_of_shape_1_by_n_quantizes_static(tmp_path):
    """tf2onnx writes Gemm biases as [1, N] (magika 1.0): ONNX Runtime's per-channel int32
    bias adjustment raised ValueError on them, and edgenn exited 1. It is retried without that
    adjustment, and the note says so."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.normal(size=(1, 4)).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "gemm.onnx"))
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(100, 8)).astype(np.float32))
    r = run_cli("quantize", str(tmp_path / "gemm.onnx"), "--mode", "int8", "--data",
                str(tmp_path / "x.npz"), "-o", str(tmp_path / "q.onnx"), "--json", block_tf=True)
    assert r.code == 0, r.err
    assert "not widened for int32 biases" in r.json()["notes"][0]
    assert r.json()["fidelity"]["passed"]


def _ir3(tmp_path, name: str, opset: int, nodes, inputs, outputs, weights) -> str:
    """An ONNX file as exporters wrote them before 2019: IR version 3, every weight also a
    graph input (an input with a default value), an old opset."""
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, name, inputs + [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_an_ir3_file_at_opset_8_quantizes(tmp_path):
    """The model zoo's older files (IR 3, opset 8, BatchNormalization after each Conv, weights
    listed as inputs). Static int8 wrote a file ONNX Runtime refused: its quantizer upgrades
    such a file to opset 11 only, then gives per-channel DequantizeLinear an ``axis`` that opset
    11 lacks. Dynamic int8 wrote a file that asked for the folded BatchNorm weights as inputs."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
               "scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
               "bias": rng.normal(0, 0.1, 8).astype(np.float32),
               "mean": rng.normal(0, 0.1, 8).astype(np.float32),
               "var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
               "fc": rng.normal(0, 0.5, (8, 10)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    path = _ir3(tmp_path, "zoo", 8, nodes,
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], weights)
    np.savez(tmp_path / "x.npz", x=rng.uniform(0, 1, (64, 3, 16, 16)).astype(np.float32))
    for mode in ("int8", "dynamic-int8"):
        r = run_cli("quantize", path, "--mode", mode, "--data", str(tmp_path / "x.npz"),
                    "-o", str(tmp_path / f"{mode}.onnx"), "--json", block_tf=True)
        assert r.code == 0, (mode, r.err or r.out)
        assert "opset 8 upgraded to 13" in r.json()["notes"][0]
        assert "IR version 3 raised to 7" in r.json()["notes"][0]
        assert "weights also listed as graph inputs" in r.json()["notes"][0]
        assert r.json()["fidelity"]["passed"]


def test_an_opset_6_file_names_its_opset_and_the_upgrade(tmp_path):
    """PyTorch 0.3 and Caffe2 wrote opset 6; ONNX Runtime has kernels from opset 7 on. profile
    and quantize said only "Could not find an implementation for Gemm(6)". The message names the
    opset and the upgrade, and the upgrade it gives runs."""
    import onnx
    from onnx import TensorProto, helper, version_converter

    rng = np.random.default_rng(0)
    path = _ir3(tmp_path, "old", 6, [helper.make_node("Gemm", ["x", "w", "b"], ["y"])],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
                {"w": rng.normal(size=(8, 3)).astype(np.float32),
                 "b": rng.normal(size=3).astype(np.float32)})
    r = run_cli("profile", path, "--runs", "2", block_tf=True)
    assert_clean_error(r, 3, "Gemm is at opset 6, older than ONNX Runtime runs", "convert_version")
    assert "[ONNXRuntimeError]" not in r.err
    r = run_cli("quantize", path, "--mode", "dynamic-int8", "-o", str(tmp_path / "q.onnx"),
                block_tf=True)
    assert_clean_error(r, 3, "Gemm is at opset 6", "convert_version")
    onnx.save(version_converter.convert_version(onnx.load(path), 17), str(tmp_path / "new.onnx"))
    r = run_cli("profile", str(tmp_path / "new.onnx"), "--runs", "2", block_tf=True)
    assert r.code == 0, r.err


def test_profile_feeds_each_input_its_element_type(tmp_path):
    """profile fed float32 to every ONNX input that was not one of seven types: a float64
    input failed in ONNX Runtime ("expected: (tensor(double))"); a string input now gets one
    line naming it."""
    import onnx
    from onnx import TensorProto, helper

    for name, kind in (("double", TensorProto.DOUBLE), ("half", TensorProto.FLOAT16),
                       ("uint16", TensorProto.UINT16), ("text", TensorProto.STRING)):
        graph = helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], name,
                                  [helper.make_tensor_value_info("s", kind, [1, 3])],
                                  [helper.make_tensor_value_info("t", kind, [1, 3])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
    r = run_cli("profile", *(str(tmp_path / f"{n}.onnx") for n in ("double", "half", "uint16")),
                "--runs", "2", "--json", block_tf=True)
    assert r.code == 0, r.err
    r = run_cli("profile", str(tmp_path / "text.onnx"), "--runs", "2", block_tf=True)
    assert_clean_error(r, 3, "input 's' takes tensor(string)")
    assert "failed (see below)" not in r.out  # nothing measured: no table, the error says it


def test_static_int8_calibrates_at_the_files_fixed_batch_and_types(tmp_path):
    """PyTorch exports fix the batch they were traced with ([2, 8] here): the calibration fed
    one sample per run and ONNX Runtime refused it ("Got: 1 Expected: 2"); a float64 input was
    fed float32. One input named as several are (x_<input name>) was refused as "needs x and y"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["f", "w"], ["y"])], "fixed",
        [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    np.savez(tmp_path / "x.npz", x_input=rng.normal(size=(41, 8)))
    r = run_cli("quantize", str(tmp_path / "fixed.onnx"), "--mode", "int8", "--data",
                str(tmp_path / "x.npz"), "-o", str(tmp_path / "q.onnx"), "--json", block_tf=True)
    assert r.code == 0, r.err or r.out
    assert r.json()["fidelity"]["passed"]


def test_an_ir3_file_without_weights_calibrates(tmp_path):
    """An IR-3 file the calibrator adds its own constants to (a single Tanh, as PyTorch 0.3
    wrote it): ONNX Runtime refused the calibration model, as IR 3 wants every initializer
    among the inputs. The note says the file was raised to IR 7."""
    from onnx import TensorProto, helper

    path = _ir3(tmp_path, "tanh", 6, [helper.make_node("Tanh", ["x"], ["t"]),
                                      helper.make_node("MatMul", ["t", "w"], ["y"])],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                {"w": np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)})
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32))
    r = run_cli("quantize", path, "--mode", "int8", "--data", str(tmp_path / "x.npz"), "-o",
                str(tmp_path / "q.onnx"), "--json", block_tf=True)
    assert r.code == 0, r.err or r.out
    assert "IR version 3 raised to 7" in r.json()["notes"][0]


def test_the_agent_and_the_runner_read_onnx_element_types_alike():
    """The profiler's agent stands alone on devices, so it keeps its own copy of the rule the
    runner and the quantizer use: both must give the same type, or both refuse, for every
    ONNX element type (and for what is no tensor)."""
    import numpy as np
    from onnx import TensorProto

    from edgenn.profile.agent import element_type as agent_type
    from edgenn.runtime.onnx_info import element_type

    kinds = [f"tensor({name.lower()})" for name in TensorProto.DataType.keys() if name != "UNDEFINED"]
    kinds += ["seq(tensor(float))", "map(int64,tensor(float))", "optional(tensor(float))"]
    fed = 0
    for kind in kinds:
        ours = element_type(kind)
        try:
            theirs = agent_type("x", kind)
        except RuntimeError:
            theirs = None
        assert ours == theirs, kind
        fed += ours is not None
    assert element_type("tensor(double)") == np.float64 and element_type("tensor(float)") == np.float32
    assert element_type("tensor(string)") is None and element_type("seq(tensor(float))") is None
    assert fed >= 12  # every numeric type numpy has


@pytest.fixture(scope="module")
def fourfold(tmp_path_factory):
    """x [batch, 16] -> y [batch / 4, 3]: the batch holds four views of each sample, averaged.

    mne-icalabel's ICLabelNet does this (each component's map, negated and mirrored); its
    open batch axis takes multiples of 4 only. Real ONNX, built with onnx.helper.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, (16, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"]),
             helper.make_node("Relu", ["z"], ["r"]),
             helper.make_node("Reshape", ["r", "views"], ["v"]),
             helper.make_node("ReduceMean", ["v"], ["m"], axes=[0], keepdims=0),
             helper.make_node("Softmax", ["m"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes, "fourfold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["components", 3])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array([4, -1, 3], np.int64), "views")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp("fourfold")
    onnx.save(model, str(folder / "fourfold.onnx"))
    np.savez(folder / "views.npz", x=rng.normal(0, 1, (400, 16)).astype(np.float32))
    return folder


def test_a_model_that_runs_on_batches_of_four_calibrates_and_profiles(fourfold, tmp_path):
    """int8 calibration fed one sample a run and ONNX Runtime's quantizer failed ("export the
    model again"); profile ran it at batch 1 with no word of --input-shape."""
    model, data = str(fourfold / "fourfold.onnx"), str(fourfold / "views.npz")
    out = tmp_path / "q.onnx"
    r = run_cli("quantize", model, "--mode", "int8", "--data", data, "-o", str(out), "--json",
                block_tf=True)
    assert r.code == 0, r.err
    assert "calibrated in batches of 4" in " ".join(r.json()["notes"])
    fidelity = r.json()["fidelity"]  # the 80 rows of the test split: one answer per four
    assert (fidelity["samples"], fidelity["answers"]) == (80, 20), fidelity
    assert out.exists()
    human = run_cli("quantize", model, "--mode", "int8", "--data", data, "-o",
                    str(tmp_path / "q2.onnx"), block_tf=True)
    assert "on 80 samples (" in human.out and "test split, 20 answers compared)" in human.out, human.out
    r = run_cli("profile", model, "--runs", "3", block_tf=True)
    assert_clean_error(r, 3)
    assert "it ran at 1x16" in r.err and "--input-shape" in r.err, r.err
    r = run_cli("profile", model, "--runs", "3", "--input-shape", "8x16", block_tf=True)
    assert r.code == 0, r.err
