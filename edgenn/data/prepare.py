"""Splits, preprocessing and checks against a model's input: one path for every command."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .sources import RawData, read

# Calibration inputs for post-training quantization (int8 TFLite, static ONNX), drawn from the
# training split. The one default: recipes' exports and the exporter read it from here.
DEFAULT_CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how to prepare it.

    Parameters
    ----------
    source
        A builtin name (``digits``, ``fashion-mnist``), an ``.npz`` file, an IDX folder or an
        image folder with a sub-folder per class.
    seed
        Fixes the train/val/test/calibration split.
    scale
        ``"auto"`` divides by the source's natural maximum (255 for uint8 images, 16 for
        digits), ``"none"`` keeps values, a number divides by it.
    mean, std
        Optional per-channel normalisation applied after scaling.
    resize
        ``(height, width)`` for images.
    channels
        1 or 3 to force grayscale or RGB.
    limit
        At most this many training samples (the test split is kept whole).
    """

    source: str
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2  # used only when the source has no test split
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    scale: str | float = "auto"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: tuple[int, int] | None = None
    channels: int | None = None
    limit: int | None = None
    task: str = "classification"  # or "regression": float targets, no class checks; or
    # "positions": a class per position (a tagger's (N, T), a segmenter's (N, H, W)); or
    # "inputs": a command that reads only x (calibration, fidelity) keeps y as stored


@dataclass
class Splits:
    """Prepared arrays: x, int64 labels, and the calibration subset of train.

    x is float32, or integers for a model that takes integer ids (``match_model``).
    """

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_calib: np.ndarray
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        ys = [y for y in (self.y_train, self.y_val, self.y_test) if y.size]
        if any(np.issubdtype(y.dtype, np.floating) for y in ys):
            return 0  # regression
        return int(max(int(y.max()) for y in ys)) + 1

    def summary(self) -> dict:
        return {"source": self.source, "sample_shape": list(self.sample_shape),
                "train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test),
                "calibration": len(self.x_calib), "classes": self.num_classes,
                "notes": self.notes}


def load(spec: DataSpec, check_samples: int | None = None) -> Splits:
    """Read, check, split and preprocess a dataset.

    ``check_samples``: the command reads inputs only (calibration and a fidelity check on this
    many test samples), so only those and the calibration samples are prepared. Preparing every
    split had Fashion-MNIST resized to 320x320x3 for a detector take 24 GB and the OOM killer.
    """
    raw = read(spec.source)
    if not raw.labeled:
        if spec.task != "inputs":
            raise DataError(f"{raw.source} holds inputs only (no y or y_train array), and this "
                            "command learns or scores against labels",
                            "save the labels too: numpy.savez(path, x=..., y=...)")
        none = np.zeros((0,), np.int64)  # no labels: empty per sample, indexable like x
        raw.y_train = np.broadcast_to(none, (len(raw.x_train), 0))
        if raw.x_test is not None:
            raw.y_test = np.broadcast_to(none, (len(raw.x_test), 0))
    _check_raw(raw)
    rng = np.random.default_rng(spec.seed)
    targets = {"classification": _labels, "regression": _targets,
               "positions": _position_labels}.get(spec.task, lambda y, source: y)
    x, y = raw.x_train, targets(raw.y_train, raw.source)
    order = rng.permutation(len(x))
    if raw.x_test is not None:
        test_idx = np.arange(len(raw.x_test))
    else:
        n_test = max(1, int(round(len(x) * spec.test_fraction)))
        test_idx, order = order[:n_test], order[n_test:]
    n_val = max(1, int(round(len(order) * spec.val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if spec.limit:
        train_idx = train_idx[: spec.limit]
    if check_samples is not None:
        train_idx, val_idx = train_idx[: spec.calibration_samples], val_idx[:1]
        test_idx = test_idx[:check_samples]
    if len(train_idx) == 0 or len(val_idx) == 0 or len(test_idx) == 0:
        total = len(x) + (0 if raw.x_test is None else len(raw.x_test))
        raise DataError(f"{raw.source} has {total} sample{'s' * (total != 1)}, too few to split into "
                        "training, validation and test sets", "use at least 3 samples (in practice "
                        "hundreds), or a .npz with x_train/y_train and x_test/y_test")
    calib_idx = train_idx[: spec.calibration_samples]
    prep = _Preprocessor(spec, raw)
    sample = prep(x[train_idx[:1]])[0]  # its size once --resize and --channels are applied
    from ..limits import available_bytes

    kept, cut = splits_that_fit(raw.source, {"train": len(train_idx) + len(calib_idx),
                                             "val": len(val_idx), "test": len(test_idx)},
                                sample, available_bytes())
    val_idx, test_idx = val_idx[:kept["val"]], test_idx[:kept["test"]]
    xt, yt = (raw.x_test, targets(raw.y_test[test_idx], raw.source)) if raw.x_test is not None \
        else (x, y[test_idx])
    splits = Splits(
        source=raw.source,
        x_train=prep.take(x, train_idx), y_train=y[train_idx],
        x_val=prep.take(x, val_idx), y_val=y[val_idx],
        x_test=prep.take(xt, test_idx), y_test=yt,  # an image folder decodes only these
        x_calib=prep.take(x, calib_idx),
        classes=raw.classes,
        notes=list(raw.notes) + prep.notes + cut,
    )
    return splits


def splits_that_fit(source: str, counts: dict[str, int], sample: np.ndarray,
                    free: int | None) -> tuple[dict[str, int], list[str]]:
    """How many samples of each split to prepare within a third of the memory ``free``.

    Prepared samples are float32 at their final size, every split in memory at once: a folder
    of 50,000 photos resized to 224x224 is 30 GB, and Fashion-MNIST's 10,000 test images
    resized to 512x512 are 10 GB, which ended in the kernel's out-of-memory killer. The
    training samples (``counts["train"]``, calibration included) are what the command asked
    for: past the budget they are refused, naming ``--limit``. The validation and test
    splits are cut to what fits beside them, said in the returned notes.
    """
    kept = dict(counts)
    per = sample.nbytes
    if free is None or per == 0:
        return kept, []
    from ..limits import _size

    budget = free // 3
    shape = list(sample.shape)
    train = counts["train"] * per
    if train > budget:
        fit = max(1, budget // per // 2)
        raise DataError(f"{source}: {counts['train']} training samples of shape {shape} take "
                        f"{_size(train)} as float32, more than a third of the {_size(free)} of "
                        "memory available", f"pass --limit {fit} (or fewer), or a smaller --resize")
    evaluation = (counts["val"] + counts["test"]) * per
    if evaluation <= budget - train:
        return kept, []
    each = max(1, (budget - train) // per // 2)
    kept["val"], kept["test"] = min(each, counts["val"]), min(each, counts["test"])
    return kept, [f"validation and test splits cut to {kept['val']} and {kept['test']} samples "
                  f"(of {counts['val']} and {counts['test']}): more of shape {shape} would not "
                  f"fit in a third of the {_size(free)} of memory available"]


def _check_raw(raw: RawData) -> None:
    pairs = [("train", raw.x_train, raw.y_train)]
    if raw.x_test is not None:
        pairs.append(("test", raw.x_test, raw.y_test))
    for split, x, y in pairs:
        if x.size == 0 or len(x) == 0:
            raise DataError(f"{raw.source}: the {split} split is empty", "provide samples")
        if len(x) != len(y):
            raise DataError(f"{raw.source}: {split} has {len(x)} samples but {len(y)} labels",
                            "give one label per sample")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DataError(f"{raw.source}: {split} x has dtype {x.dtype}, not numbers",
                            "store numeric arrays")
        if np.issubdtype(x.dtype, np.floating):
            bad = ~np.isfinite(x)
            if bad.any():
                first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
                raise DataError(
                    f"{raw.source}: {split} x holds {int(bad.sum())} NaN or infinite values "
                    f"(first in sample {first})", "clean or drop those samples")


def _targets(y: np.ndarray, source: str) -> np.ndarray:
    """Regression targets: finite float32."""
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise DataError(f"{source}: targets hold NaN or infinite values", "clean the targets")
    return y


def _labels(y: np.ndarray, source: str) -> np.ndarray:
    """Integer class labels; one-hot rows become indices."""
    y = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    one_hot = y.ndim == 2 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
    if one_hot:
        y = y.argmax(axis=1)
    elif y.ndim > 1:
        whole = np.issubdtype(y.dtype, np.integer) or (
            np.issubdtype(y.dtype, np.floating) and np.array_equal(y, np.round(y)))
        if whole:
            raise DataError(f"{source}: labels have shape {list(y.shape)}, a class per "
                            "position (a tagger or segmenter), but the model outputs one "
                            "class per sample",
                            "use labels with one class per sample, or a model whose output "
                            "has a class per position")
        low, high = (f"{float(y.min()):g}", f"{float(y.max()):g}") if y.dtype.kind in "fiub" \
            else ("?", "?")
        raise DataError(f"{source}: labels have shape {list(y.shape)} and are not one-hot rows "
                        f"(values {low}..{high}), so they are not classes for a model scored by "
                        "top-1 accuracy",
                        "for regression targets use a recipe with evaluate.metric: mse (or "
                        "mae); for a classifier, store class indices or one-hot rows")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError(f"{source}: labels hold NaN or infinite values", "fix the labels")
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{source}: labels are not whole numbers (e.g. {y[np.mod(y, 1) != 0][0]}), "
                            "so they are not classes for a model scored by top-1 accuracy",
                            "for regression targets use a recipe with evaluate.metric: mse (or "
                            "mae); for a classifier, store class indices")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{source}: labels have dtype {y.dtype}", "store integer class indices")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{source}: labels include {int(y.min())}; class indices start at 0",
                        "remap the labels to 0..N-1")
    return y


def _position_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Integer classes per position: (N, T) for a tagger, (N, H, W) for a segmenter."""
    if y.ndim < 2:
        raise DataError(f"{source}: labels have shape {list(y.shape)}, one class per sample, "
                        "but the model outputs a class per position (a tagger or segmenter)",
                        "store one label per position: shape (N, steps) or (N, height, width)")
    whole = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
        and np.array_equal(y, np.round(y)))
    if not whole:
        raise DataError(f"{source}: per-position labels must be whole class numbers (dtype "
                        f"{y.dtype}" + (", with fractions)" if y.dtype.kind == "f" else ")"),
                        "store integer class indices per position; for regression targets use "
                        "a recipe with evaluate.metric: mse (or mae)")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{source}: labels include {int(y.min())}; class indices start at 0 "
                        "(mark positions to ignore by cropping them out)",
                        "remap the labels to 0..N-1")
    return y


def match_positions(splits: Splits, out_shape: tuple) -> None:
    """Fit per-position labels to a model output of ``out_shape`` (N, *positions, classes).

    A trailing axis of 1 on labels for a one-score-per-position output (N, H, W, 1) is
    dropped; one-hot rows per position (what categorical cross-entropy trains on, SpliceAI's
    (N, 1000, 3)) become class numbers; any other difference is an error naming both shapes.
    """
    want = tuple(out_shape[1:-1])
    for name in ("y_train", "y_val", "y_test"):
        y = getattr(splits, name)
        if y.ndim == len(want) + 2 and y.shape[-1] == 1:
            y = y.reshape(y.shape[:-1])
            setattr(splits, name, y)
        elif (y.ndim == len(want) + 2 and out_shape[-1] is not None and out_shape[-1] > 1
              and y.shape[-1] == out_shape[-1] and y.size and y.min() >= 0 and y.max() <= 1
              and (y.sum(-1) == 1).all()):
            y = y.argmax(-1)
            setattr(splits, name, y)
        have = tuple(y.shape[1:])
        if len(have) != len(want) or any(w is not None and w != h for w, h in zip(want, have)):
            raise DataError(f"{splits.source}: labels have shape {[None, *have]} but the model "
                            f"outputs a class per position of {[None, *want]}",
                            "store one label per output position (the model's output shape "
                            "without its last axis)")


class _Preprocessor:
    def __init__(self, spec: DataSpec, raw: RawData):
        self.spec = spec
        self.notes: list[str] = []
        if spec.scale == "auto":
            self.divisor = raw.value_max or 1.0
            if raw.value_max:
                self.notes.append(f"scaled x to [0, 1] (divided by {raw.value_max:g})")
        elif spec.scale == "none":
            self.divisor = 1.0
        else:
            self.divisor = float(spec.scale)
            if self.divisor <= 0:
                raise DataError(f"scale must be positive; received {spec.scale}",
                                "use auto, none or a positive number")

    def take(self, x, idx: np.ndarray, chunk: int = 512, chunk_bytes: int = 256 << 20) -> np.ndarray:
        """``self(x[idx])``, a chunk of samples at a time.

        Each chunk (at most ``chunk`` samples and about ``chunk_bytes`` prepared) is indexed
        (an image folder decodes it then), widened to float32 and resized on its own, and
        written into the result: the peak is the result and one chunk, not every sample as
        float32 at its stored size, nor the chunks and their concatenation.
        """
        if len(idx) <= 1:
            return self(x[idx])
        first = self(x[idx[:1]])
        out = np.empty((len(idx),) + first.shape[1:], first.dtype)
        out[:1] = first
        step = max(1, min(chunk, chunk_bytes // max(first.nbytes, 1)))
        for i in range(1, len(idx), step):
            out[i:i + step] = self(x[idx[i:i + step]])
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32) / np.float32(self.divisor)
        spec = self.spec
        if spec.channels is not None:
            x = _set_channels(x, spec.channels)
        if spec.resize is not None:
            x = resize_bilinear(x, spec.resize)
        channels = x.shape[-1] if x.ndim == 4 else 1
        for flag, values in (("--mean", spec.mean), ("--std", spec.std)):
            if values is not None and len(values) not in (1, channels):
                raise DataError(f"{flag} has {len(values)} values but the data has {channels} "
                                f"channel{'s' * (channels != 1)} (samples of shape {list(x.shape[1:])})",
                                f"give {flag} one value, or one per channel ({channels})")
        if spec.mean is not None:
            x = x - np.asarray(spec.mean, dtype=np.float32)
        if spec.std is not None:
            std = np.asarray(spec.std, dtype=np.float32)
            if np.any(std <= 0):
                raise DataError(f"std must be positive; received {spec.std}", "fix --std")
            x = x / std
        return x


def _set_channels(x: np.ndarray, channels: int) -> np.ndarray:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3; received {channels}", "use --channels 1 or 3")
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"channels applies to images; the data has shape {x.shape[1:]}",
                        "drop --channels")
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    if have == 3 and channels == 1:
        return (x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    raise DataError(f"cannot turn {have} channels into {channels}", "prepare the images yourself")


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W[, C]) images to ``size`` = (height, width), bilinear, align-corners off."""
    squeeze = x.ndim == 3
    if squeeze:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"resize applies to images; the data has shape {x.shape[1:]}",
                        "drop --resize")
    n, h, w, c = x.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return x[..., 0] if squeeze else x
    ys = np.clip((np.arange(oh) + 0.5) * h / oh - 0.5, 0, h - 1)
    xs = np.clip((np.arange(ow) + 0.5) * w / ow - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - wx) + x[:, y0][:, :, x1] * wx
    bottom = x[:, y1][:, :, x0] * (1 - wx) + x[:, y1][:, :, x1] * wx
    out = (top * (1 - wy) + bottom * wy).astype(np.float32)
    return out[..., 0] if squeeze else out


def integer_dtype(dtype) -> np.dtype | None:
    """The numpy integer type of a model input, or None for a float input.

    Takes Keras' ``"int32"``, ``tf.int32``, ``np.int64`` and the like.
    """
    name = str(getattr(dtype, "name", dtype) or "")
    name = name.rsplit(".", 1)[-1].strip("<>' ")  # "<class 'numpy.int32'>" -> "int32"
    if "int" not in name:
        return None
    try:
        kind = np.dtype(name)
    except TypeError:
        return None
    return kind if np.issubdtype(kind, np.integer) else None


def exact_dtype(dtype) -> np.dtype | None:
    """The numpy type of an input whose values are taken as stored, or None for a float input.

    Integers (token ids) and booleans (a padding mask beside the frames it masks).
    """
    name = str(getattr(dtype, "name", dtype) or "").rsplit(".", 1)[-1].strip("<>' ")
    return np.dtype(bool) if name in ("bool", "bool_") else integer_dtype(dtype)


def load_for(spec: DataSpec, input_shape: tuple, num_classes: int | None,
             input_dtype=None, check_samples: int | None = None) -> Splits:
    """``load`` then ``match_model`` for a model input of ``input_shape`` and ``input_dtype``.

    Without ``num_classes`` (a command that scores no classes) the labels are not checked.
    ``check_samples``: see ``load``.
    """
    if num_classes is None and spec.task == "classification":
        from dataclasses import replace

        spec = replace(spec, task="inputs")
    return match_model(load(for_input(spec, input_dtype), check_samples), input_shape,
                       num_classes, input_dtype)


def for_input(spec: DataSpec, dtype) -> DataSpec:
    """The spec an input of ``dtype`` reads its data with.

    Token ids are not pixel values: under ``--scale auto`` an integer input reads its data as
    it is stored (``match_model`` then refuses fractions).
    """
    from dataclasses import replace

    if exact_dtype(dtype) is not None and spec.scale == "auto":
        return replace(spec, scale="none")
    return spec


def match_model(splits: Splits, input_shape: tuple, num_classes: int | None,
                input_dtype=None) -> Splits:
    """Check (and, where unambiguous, adapt) the data to a model's input and output.

    A trailing channel of 1 is added for grayscale images and flat models get flattened
    samples; anything else that does not fit is an error naming both shapes and the fix.
    A model whose input takes integers (token ids, through an Embedding) gets integer arrays,
    or an error if the data holds fractions or values its type cannot hold.
    """
    want = tuple(input_shape[1:])
    have = splits.sample_shape
    fits = len(want) == len(have) and all(w is None or w == h for w, h in zip(want, have))
    if not fits and _channels_first(have, want):
        # Images are read channels last; a model exported from PyTorch (an ONNX detector)
        # reads them channels first: the same pixels, moved.
        for name in ("x_train", "x_val", "x_test", "x_calib"):
            arr = getattr(splits, name)
            setattr(splits, name, np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
        splits.notes.append(f"moved channels first {list(have)} -> {[have[2], *have[:2]]} for "
                            "the model's input")
        fits = True
    if not fits:
        adapted = _adapt(have, want)
        if adapted is None:
            hint = _shape_hint(have, want)
            raise DataError(f"data samples have shape {list(have)} but the model expects "
                            f"{[None, *want]}", hint)
        for name in ("x_train", "x_val", "x_test", "x_calib"):
            arr = getattr(splits, name)
            setattr(splits, name, arr.reshape((len(arr),) + adapted))
        splits.notes.append(f"reshaped samples {list(have)} -> {list(adapted)} to fit the model")
    if num_classes is not None:
        for split, y in (("train", splits.y_train), ("val", splits.y_val), ("test", splits.y_test)):
            if y.size and int(y.max()) >= num_classes:
                raise DataError(
                    f"{splits.source}: {split} labels go up to {int(y.max())} but the model has "
                    f"{num_classes} outputs (classes 0..{num_classes - 1})",
                    "use data whose labels fit the model, or a model with more outputs")
    ints = exact_dtype(input_dtype)
    if ints is not None:
        _as_integers(splits, ints)
    return splits


def _as_integers(splits: Splits, kind: np.dtype) -> None:
    for name in ("x_train", "x_val", "x_test", "x_calib"):
        x = getattr(splits, name)
        if not x.size:
            setattr(splits, name, x.astype(kind))
            continue
        if kind == np.bool_:
            setattr(splits, name, as_booleans(x, f"the {name[2:]} data"))
            continue
        info = np.iinfo(kind)
        if not np.array_equal(x, np.round(x)):
            raise DataError(f"the model's input takes integers ({kind}, e.g. token ids) but the "
                            f"{name[2:]} data holds fractions (scaled by --scale, --mean, --std or "
                            "--resize)", "pass the ids as stored: --scale none, without --mean, "
                            "--std or --resize")
        low, high = float(x.min()), float(x.max())
        if low < info.min or high > info.max:
            raise DataError(f"the model's input takes {kind} but the {name[2:]} data holds values "
                            f"from {low:g} to {high:g}", f"store values that fit {kind}")
        setattr(splits, name, x.astype(kind))


def as_booleans(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` for a boolean input: booleans as they are, 0 and 1 as False and True."""
    if x.dtype == np.bool_:
        return x
    if not np.isin(x, (0, 1)).all():
        raise DataError(f"the model's input takes booleans (a mask) but {what} holds values "
                        "other than 0 and 1", "store the mask as bool, or as 0 and 1, unscaled "
                        "(--scale none, without --mean or --std)")
    return x.astype(bool)


def _adapt(have: tuple, want: tuple) -> tuple | None:
    if (len(want) == len(have) + 1 and want[-1] == 1
            and all(w is None or w == h for w, h in zip(want, have))):
        return have + (1,)  # grayscale images for a model of any size (fully convolutional)
    if any(w is None for w in want):
        return None
    if int(np.prod(have)) != int(np.prod(want)):
        return None
    if want == have + (1,) or len(want) == 1:
        return want
    return None


def _channels_first(have: tuple, want: tuple) -> bool:
    """Channels-last images (H, W, C) for an input that reads (C, H, W), C being 1 or 3."""
    return (len(have) == 3 == len(want) and have[2] in (1, 3) and want[0] == have[2]
            and want[2] not in (1, 3) and all(w is None or w == h for w, h in zip(want[1:], have[:2])))


def _shape_hint(have: tuple, want: tuple) -> str:
    if len(want) == 3 and want[0] in (1, 3) and want[2] not in (1, 3) and len(have) in (2, 3):
        want = (*want[1:], want[0])  # channels first: the flags act on channels-last images
    if len(want) == 3 and len(have) in (2, 3):
        hw_have, hw_want = have[:2], want[:2]
        c_have = have[2] if len(have) == 3 else 1
        parts = []
        if hw_have != hw_want and None not in hw_want:
            parts.append(f"--resize {hw_want[0]}x{hw_want[1]}")
        if c_have != want[2] and want[2] in (1, 3):
            parts.append(f"--channels {want[2]}")
        if parts:
            return "add " + " ".join(parts)
    return "use data prepared for this model's input"
