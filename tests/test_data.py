"""Dataset sources, splits, preprocessing and checks against a model. No TensorFlow needed."""

import gzip
import struct

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
from edgenn.data import DataSpec, load, match_model, sources
from edgenn.errors import DataError


def _write_idx(path, array, compress):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "idx"
    d.mkdir()
    _write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 6, 6), dtype=np.uint8), True)
    _write_idx(d / "train-labels-idx1-ubyte", rng.integers(0, 4, 60).astype(np.uint8), True)
    _write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), False)
    _write_idx(d / "t10k-labels-idx1-ubyte", rng.integers(0, 4, 20).astype(np.uint8), False)
    return d


def test_idx_folder_gz_and_raw(idx_folder):
    s = load(DataSpec(str(idx_folder), calibration_samples=10))
    assert s.sample_shape == (6, 6)
    assert len(s.x_test) == 20 and len(s.x_train) + len(s.x_val) == 60
    assert s.x_train.dtype == np.float32 and 0 <= s.x_train.min() and s.x_train.max() <= 1
    assert len(s.x_calib) == 10
    raw = sources.read_idx(idx_folder / "t10k-images-idx3-ubyte")
    assert np.allclose(s.x_test, raw / 255.0)


def test_truncated_idx(idx_folder):
    f = idx_folder / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated"):
        load(DataSpec(str(idx_folder)))


def test_npz_both_layouts(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.random((50, 5)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    s = load(DataSpec(str(tmp_path / "a.npz")))
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 50
    assert s.notes == []  # float data is not rescaled
    np.savez(tmp_path / "b.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    s = load(DataSpec(str(tmp_path / "b.npz")))
    assert np.array_equal(s.x_test, x[40:]) and np.array_equal(s.y_test, y[40:])
    onehot = np.eye(3)[y]
    np.savez(tmp_path / "c.npz", x=x, y=onehot)
    assert set(np.unique(load(DataSpec(str(tmp_path / "c.npz"))).y_train)) <= {0, 1, 2}


def test_splits_deterministic_by_seed(tmp_path):
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(100) % 2)
    a = load(DataSpec(str(tmp_path / "d.npz"), seed=3))
    b = load(DataSpec(str(tmp_path / "d.npz"), seed=3))
    c = load(DataSpec(str(tmp_path / "d.npz"), seed=4))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)
    # The splits are disjoint and cover everything.
    seen = np.concatenate([a.x_train[:, 0], a.x_val[:, 0], a.x_test[:, 0]])
    assert sorted(seen.tolist()) == x[:, 0].tolist()


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    s = load(DataSpec(str(tmp_path / "imgs"), resize=(5, 6)))
    assert s.classes == ["cat", "dog"]
    assert s.sample_shape == (5, 6, 3)
    gray = load(DataSpec(str(tmp_path / "imgs"), channels=1))
    assert gray.sample_shape == (10, 12, 1)


def test_preprocessing_mean_std_and_scale(tmp_path):
    x = np.full((20, 2, 2, 3), 255, dtype=np.uint8)
    np.savez(tmp_path / "e.npz", x=x, y=np.zeros(20, dtype=np.int64))
    s = load(DataSpec(str(tmp_path / "e.npz"), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert np.allclose(s.x_train, 2.0)
    s = load(DataSpec(str(tmp_path / "e.npz"), scale="none"))
    assert np.allclose(s.x_train, 255.0)


def test_builtin_digits_and_fashion_mnist():
    d = load(DataSpec("digits"))
    assert d.sample_shape == (8, 8) and d.num_classes == 10 and d.x_train.max() <= 1.0
    f = load(DataSpec("fashion-mnist", limit=1000))
    assert f.sample_shape == (28, 28) and len(f.x_test) == 10000 and len(f.x_train) == 1000
    assert f.classes[0] == "T-shirt/top"


def test_fashion_mnist_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load(DataSpec("fashion-mnist"))


@pytest.mark.parametrize("x,y,message", [
    (np.array([[0.0, np.nan]] * 10, dtype=np.float32), np.zeros(10), "NaN or infinite"),
    (np.zeros((10, 2), np.float32), np.zeros(9), "10 samples but 9 labels"),
    (np.zeros((10, 2), np.float32), -np.ones(10), "class indices start at 0"),
    (np.zeros((10, 2), np.float32), np.full(10, 0.5), "not whole numbers"),
])
def test_bad_arrays(tmp_path, x, y, message):
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(DataError, match=message):
        load(DataSpec(str(tmp_path / "bad.npz")))


def test_pickled_npz_refused(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.array([object()] * 3, dtype=object), y=np.zeros(3))
    with pytest.raises(DataError, match="pickled"):
        load(DataSpec(str(tmp_path / "p.npz")))


def test_match_model_adds_channel_and_checks_labels():
    s = load(DataSpec("digits"))
    s = match_model(s, (None, 8, 8, 1), 10)
    assert s.x_train.shape[1:] == (8, 8, 1)
    with pytest.raises(DataError, match="labels go up to 9 but the model has 5 outputs"):
        match_model(load(DataSpec("digits")), (None, 8, 8, 1), 5)


def test_match_model_shape_error_names_fix():
    with pytest.raises(DataError, match=r"expects \[None, 16, 16, 3\].*--resize 16x16 --channels 3"):
        match_model(load(DataSpec("digits")), (None, 16, 16, 3), 10)


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="dataset not found"):
        load(DataSpec(str(tmp_path / "nope")))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="expected .npz"):
        load(DataSpec(str(tmp_path / "x.csv")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no IDX files and no class sub-folders"):
        load(DataSpec(str(tmp_path / "empty")))


def test_float_targets_are_not_argmaxed_into_classes(tmp_path):
    """Rows of float targets (a 3-value regression) were read as one-hot and arg-maxed: an
    accuracy recipe then scored a regression model (prune "lost 57 pt"). A recipe that asks for
    accuracy is refused in one line naming evaluate.metric: mse; one that leaves the metric to
    the model scores it by MSE; convert, which reads only the inputs, takes them."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).standard_normal((120, 12)).astype("float32")
    model.save(tmp_path / "reg.keras")
    np.savez(tmp_path / "reg.npz", x=x, y=model.predict(x, verbose=0))
    data = ["--data", str(tmp_path / "reg.npz"), "--scale", "none"]
    recipe = tmp_path / "acc.yaml"
    recipe.write_text("name: acc\nexport: {format: tflite, quantization: int8}\n"
                      "evaluate: {metric: accuracy}\n")
    r = run_cli("compress", str(tmp_path / "reg.keras"), "-r", str(recipe), *data,
                "-o", str(tmp_path / "out"))
    assert_clean_error(r, 2, "not one-hot rows", "evaluate.metric: mse")
    assert not (tmp_path / "out").exists()
    r = run_cli("compress", str(tmp_path / "reg.keras"), "-r", "int8-ptq", *data,
                "-o", str(tmp_path / "auto"), "--json")
    assert r.code == 0, r.err
    assert r.json()["metrics"]["metric"] == "mse" and r.json()["metrics"]["final"]["mse"] < 0.01
    # targets that do not match the output's values are refused, not broadcast
    np.savez(tmp_path / "short.npz", x=x, y=model.predict(x, verbose=0)[:, :2])
    r = run_cli("compress", str(tmp_path / "reg.keras"), "-r", "int8-ptq", "--data",
                str(tmp_path / "short.npz"), "--scale", "none", "-o", str(tmp_path / "short"))
    assert_clean_error(r, 2, "y holds 2 values per sample", "has 3")
    ok = run_cli("convert", str(tmp_path / "reg.keras"), "--to", "tflite", "--quantize", "int8",
                 *data, "-o", str(tmp_path / "r.tflite"), "--json")
    assert ok.code == 0, ok.err
    assert ok.json()["fidelity"]["task"] == "regression"


def test_a_command_that_reads_inputs_only_prepares_only_what_it_checks():
    """convert and quantize use calibration samples and a few test samples. Every split was
    prepared: Fashion-MNIST resized to 320x320x3 for an ONNX detector (nudenet's YOLOv8n) took
    24 GB and the OOM killer."""
    spec = DataSpec("fashion-mnist", resize=(64, 64), channels=3, calibration_samples=7,
                    task="inputs")
    s = load(spec, check_samples=5)
    assert s.x_test.shape == (5, 64, 64, 3) and len(s.x_calib) == 7
    assert len(s.x_train) == 7 and len(s.x_val) == 1
    full = load(DataSpec("fashion-mnist", calibration_samples=7, task="inputs"))
    assert np.array_equal(load(DataSpec("fashion-mnist", calibration_samples=7, task="inputs"),
                               check_samples=5).x_test, full.x_test[:5])  # the same samples


def test_channels_last_images_move_channels_first_for_a_channels_first_input(tmp_path):
    """A model exported from PyTorch reads (3, H, W); images are read (H, W, 3). The pixels
    move, and the hint for a grey set names --channels 3."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 5, 3)).astype(np.uint8)
    np.savez(tmp_path / "rgb.npz", x=x, y=rng.integers(0, 2, 40))
    s = match_model(load(DataSpec(str(tmp_path / "rgb.npz"), task="inputs")),
                    (None, 3, None, None), None)
    assert s.x_test.shape[1:] == (3, 6, 5) and "channels first" in " ".join(s.notes)
    raw = load(DataSpec(str(tmp_path / "rgb.npz"), task="inputs"))
    assert np.array_equal(s.x_test, raw.x_test.transpose(0, 3, 1, 2))
    np.savez(tmp_path / "grey.npz", x=x[..., 0], y=rng.integers(0, 2, 40))
    with pytest.raises(DataError) as err:
        match_model(load(DataSpec(str(tmp_path / "grey.npz"), task="inputs")), (None, 3, 6, 5), None)
    assert "--channels 3" in err.value.hint


def test_an_image_folder_decodes_only_the_samples_a_command_takes(tmp_path):
    """Every image was decoded (and stacked) before a split was taken: a folder of 50,000
    photos needed tens of GB for a convert that uses a few hundred. Now the headers are read
    up front (a bomb or a non-image is still refused at once) and the pixels when taken."""
    import tracemalloc

    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "big" / cls).mkdir(parents=True)
        for i in range(60):  # 1000x1000 RGB: 3 MB decoded each, 360 MB for the folder
            Image.new("RGB", (1000, 1000), (i, 2 * i % 256, 50)).save(tmp_path / "big" / cls / f"{i}.png")
    tracemalloc.start()
    try:
        s = load(DataSpec(str(tmp_path / "big"), resize=(32, 32), calibration_samples=16),
                 check_samples=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s.x_test.shape == (8, 32, 32, 3) and len(s.x_calib) == 16
    assert peak < 400 * 2**20, peak / 2**20  # all decoded: 360 MB, twice that stacked
    (tmp_path / "big" / "a" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png is not a readable image"):
        load(DataSpec(str(tmp_path / "big")), check_samples=8)


def test_splits_are_cut_to_the_memory_there_is():
    """Prepared splits are float32 at their final size, all in memory: Fashion-MNIST's 10,000
    test images resized to 512x512 are 10 GB, and a photo folder's 10% validation and test
    splits ignored --limit. Training samples past a third of the memory free are refused
    naming --limit; the validation and test splits are cut to what fits, with a note."""
    from edgenn.data.prepare import splits_that_fit

    sample = np.zeros((512, 512, 1), np.float32)  # 1 MiB
    counts = {"train": 300, "val": 6000, "test": 10000}
    kept, notes = splits_that_fit("fashion-mnist", counts, sample, 24 << 30)
    assert kept == {"train": 300, "val": 3946, "test": 3946}
    assert (kept["train"] + kept["val"] + kept["test"]) << 20 <= (24 << 30) // 3
    assert notes and "cut to 3946 and 3946 samples (of 6000 and 10000)" in notes[0]
    assert splits_that_fit("fashion-mnist", counts, sample, 64 << 30) == (counts, [])
    with pytest.raises(DataError) as err:
        splits_that_fit("photos", {"train": 9000, "val": 10, "test": 10}, sample, 24 << 30)
    assert "9000 training samples of shape [512, 512, 1] take 8.8 GiB" in err.value.message
    assert "--limit 4096" in err.value.hint
