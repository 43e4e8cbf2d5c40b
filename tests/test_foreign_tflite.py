""".tflite files made elsewhere, as users bring them: settings without a batch, outputs whose
size the data decides, files with no inputs, and files that crash LiteRT.

Found by running LiteRT's own test data (bench/corpus.py, bench/RESULTS.md "Session 12")
through `edgenn quantize`: 37 runs exited 1 or died on a signal. Two models are built here
by TensorFlow's converter; five files come from the LiteRT repository
(tests/data/external/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli

EXTERNAL = Path(__file__).parent / "data" / "external"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """scaled: x [batch, 64] and a scalar gain; nothing: no inputs at all."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("tflite")
    w = tf.constant(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([], tf.float32)])
    def scaled(x, gain):
        return tf.matmul(x, w) * gain

    @tf.function(input_signature=[])
    def nothing():
        return tf.matmul(tf.ones([1, 64]), w)

    for name, fn in (("scaled", scaled), ("nothing", nothing)):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        (folder / f"{name}.tflite").write_bytes(converter.convert())
    return folder


def test_a_setting_without_a_batch_goes_in_once_per_run(made, tmp_path):
    """A scalar input (a gain, a sample rate) made the runner set a batch on it: IndexError,
    exit 1. It goes in as one value per run, one sample per run when the values differ."""
    from edgenn.runtime.litert import TFLiteRunner

    runner = TFLiteRunner(made / "scaled.tflite")
    assert runner.input_axes == [0, None] and runner.sample_shapes() == [(64,), ()]
    x = np.random.default_rng(1).normal(size=(5, 64)).astype(np.float32)
    gains = np.array([1.0, 2.0, 3.0, 1.0, 0.5], np.float32)
    y, = runner.predict(x, gains)
    y1, = runner.predict(x, np.ones(5, np.float32))
    assert y.shape == (5, 64) and np.allclose(y, y1 * gains[:, None], rtol=1e-5, atol=1e-5)
    r = run_cli("quantize", str(made / "scaled.tflite"), "--mode", "dynamic-int8", "-o",
                str(tmp_path / "q.tflite"), "--json", block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["fidelity"]["passed"]


def test_outputs_sized_by_the_data_and_files_without_inputs_are_one_line(made, tmp_path):
    """WHERE's output size is known only after a run (LiteRT's test file declares [1, 2];
    LiteRT: "Invalid tensor size"), a file may take no inputs at all, or strings: each exited
    1 (ValueError, IndexError, LiteRT's RuntimeError)."""
    r = run_cli("quantize", str(EXTERNAL / "litert_where.tflite"), "--mode", "dynamic-int8", "-o",
                str(tmp_path / "q.tflite"), block_tf=True)
    assert_clean_error(r, 3, "could not read output", "its size depends on the values")
    r = run_cli("quantize", str(made / "nothing.tflite"), "--mode", "dynamic-int8", "-o",
                str(tmp_path / "q.tflite"), block_tf=True)
    assert_clean_error(r, 3, "takes no inputs")
    r = run_cli("quantize", str(EXTERNAL / "litert_string.tflite"), "--mode", "dynamic-int8",
                "-o", str(tmp_path / "q.tflite"), block_tf=True)
    assert_clean_error(r, 3, "input 'string_input' holds strings")
    assert not (tmp_path / "q.tflite").exists()


def test_a_file_that_crashes_litert_is_refused_in_one_line(tmp_path):
    """LiteRT aborts (SIGABRT) on this blockwise-quantized file: `quantize` died with it, no
    message and exit -6. The file is run once in a child process first."""
    source = str(EXTERNAL / "litert_blockwise_quantized.tflite")
    r = run_cli("quantize", source, "--mode", "dynamic-int8", "-o", str(tmp_path / "q.tflite"),
                block_tf=True)
    assert_clean_error(r, 3, "LiteRT crashed (SIGABRT)", "nothing was written")
    assert not (tmp_path / "q.tflite").exists()


def test_a_quantizer_defect_and_a_fixed_batch_are_handled(tmp_path):
    """A file with resource variables and a fixed [1, 5] input: run at a batch of 64 it
    corrupted LiteRT's memory and edgenn segfaulted later; at its own batch it runs. Then
    ai-edge-quantizer raises a TypeError on its variable ops: one line, exit 3."""
    from edgenn.runtime.litert import TFLiteRunner

    source = EXTERNAL / "litert_resource_vars_calibrated.tflite"
    x = np.random.default_rng(0).random((64, 5)).astype(np.float32)
    outputs = TFLiteRunner(source).predict(x)
    assert [o.shape for o in outputs] == [(64, 5), (64, 5)]
    r = run_cli("quantize", str(source), "--mode", "dynamic-int8", "-o", str(tmp_path / "q.tflite"),
                block_tf=True)
    assert_clean_error(r, 3, "ai-edge-quantizer could not quantize", "TypeError")
    assert not (tmp_path / "q.tflite").exists()


def test_static_quantization_of_a_quantized_file_is_refused(tmp_path):
    """--mode int8 on a file that is int8 already: LiteRT aborted while it was calibrated
    again (exit -6, no message)."""
    tmp = tmp_path / "x.npz"
    np.savez(tmp, x=np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32))
    r = run_cli("quantize", str(EXTERNAL / "litert_add_quantized_int8.tflite"), "--mode", "int8",
                "--data", str(tmp), "-o", str(tmp_path / "q.tflite"), block_tf=True)
    assert_clean_error(r, 2, "is already quantized", "quantize the float model")
