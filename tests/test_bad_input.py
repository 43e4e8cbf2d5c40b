"""Bad model files: exit 2, one line naming the problem, no traceback, nothing written."""

import shutil

import pytest

from conftest import assert_clean_error, run_cli


def _truncate(src, dst, keep):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.fixture
def bad(models, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.keras").write_bytes(b"")
    _truncate(models / "k3_residual.keras", d / "truncated.keras", 0.5)
    (d / "garbage.keras").write_bytes(b"this is not a model at all" * 10)
    _truncate(models / "k3_residual.h5", d / "truncated.h5", 0.3)
    _truncate(models / "tfk_cnn.tflite", d / "truncated.tflite", 0.2)
    (d / "garbage.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40)
    (d / "garbage.onnx").write_bytes(b"\x08\x07garbage-not-protobuf\xff\xff\xff")
    (d / "notsaved").mkdir()
    (d / "notsaved" / "readme.txt").write_text("hello")
    return d


CASES = [
    ("missing.keras", "model not found"),
    ("empty.keras", "is empty (0 bytes)"),
    ("truncated.keras", "truncated or corrupt .keras archive"),
    ("garbage.keras", "not a model file edgenn recognises"),
    ("truncated.h5", "truncated or corrupt HDF5"),
    ("truncated.tflite", "truncated or corrupt .tflite"),
    ("garbage.tflite", "truncated or corrupt .tflite"),
    ("garbage.onnx", "not a valid ONNX model"),
    ("notsaved", "not a SavedModel (no saved_model.pb inside)"),
]


@pytest.mark.parametrize("name,message", CASES)
def test_bad_model_file(bad, name, message):
    before = sorted(p.name for p in bad.iterdir())
    r = run_cli("inspect", str(bad / name), "--json", cwd=bad)
    assert_clean_error(r, 2, message)
    # stdout holds one JSON document: the error, nothing half-written
    assert r.json() == {"error": {"exit_code": 2, "type": r.json()["error"]["type"],
                                  "message": r.err.strip()[len("error: "):]}}
    assert sorted(p.name for p in bad.iterdir()) == before


def test_corrupt_weights_inside_valid_archive(models, tmp_path):
    import zipfile

    src = models / "k3_residual.keras"
    dst = tmp_path / "badweights.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item.endswith(".h5"):
                data = data[: len(data) // 3]
            zout.writestr(item, data)
    r = run_cli("inspect", str(dst))
    assert_clean_error(r, 2, "weights file model.weights.h5", "corrupt")


def test_output_never_written_over_input(tmp_path, models):
    from edgenn.artifacts import refuse_overwrite
    from edgenn.errors import UsageError

    copy = tmp_path / "m.keras"
    shutil.copy(models / "k3_seq.keras", copy)
    with pytest.raises(UsageError, match="never overwrites an input"):
        refuse_overwrite(copy, str(copy))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    from edgenn.artifacts import atomic_path

    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_runs_are_sized_to_the_memory_available():
    """A run's batch is capped to a quarter of the memory free, from what one run needs; a
    file with a fixed batch keeps it; one whose single run needs more than half is refused."""
    from edgenn.errors import RuntimeFailure
    from edgenn.limits import available_bytes, runs_that_fit

    free = available_bytes()
    assert free and free > 2**30
    assert runs_that_fit("Conv", 1000, [256, 1], fixed=False) == [256, 1]
    capped = runs_that_fit("Conv", free // 12, [256, 1], fixed=False)
    assert 1 <= capped[0] <= 4 and capped[1] == 1
    assert runs_that_fit("Conv", free // 12, [4], fixed=True) == [4]
    with pytest.raises(RuntimeFailure, match="needs at least .* to run once .*Relu"):
        runs_that_fit("Relu", free, [1], fixed=False)


def test_a_step_that_grows_without_bound_is_stopped_in_one_error():
    """ai-edge-quantizer's calibrator grew past 20 GB on LiteRT's conv_huge_im2col test file
    until the kernel killed edgenn (no message, no cleanup). A watch on the process's memory
    stops such a step between two Python calls with one error; a real Ctrl-C stays one."""
    import time

    import numpy as np

    from edgenn.errors import RuntimeFailure
    from edgenn.limits import available_bytes, memory_watch

    fraction = (300 << 20) / available_bytes()  # stop after about 300 MB more
    held = []
    with pytest.raises(RuntimeFailure, match="the calibrator grew past .* and was stopped"):
        with memory_watch("the calibrator", "use fewer samples", fraction=fraction):
            for _ in range(200):  # up to 2 GB, 10 MB at a time
                held.append(np.ones(10 << 20 >> 3))
                time.sleep(0.01)
    assert len(held) < 100
    held.clear()
    with memory_watch("a small step", "none", fraction=fraction):
        small = np.ones(1 << 20)
    assert small.sum() == 1 << 20
    with pytest.raises(KeyboardInterrupt):
        with memory_watch("a step", "none"):
            raise KeyboardInterrupt
