"""Data for models with several inputs: one array per input, named after it, from an .npz.

Layout: ``x_<input name>`` for every model input (the same number of samples in each), and
optionally ``y`` or ``y_<output name>``. The converter needs inputs only (calibration and the
fidelity check compare the artifact with the model on the same inputs), so labels are read but
not required. Values are scaled as for one input (``--scale``); per-channel normalisation,
resizing and channel changes are refused: with several inputs there is no one right way, so
the arrays are expected ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .prepare import DataSpec, as_booleans, exact_dtype
from .sources import _value_max, check_npz


@dataclass
class MultiSplits:
    """Prepared float32 inputs (one array per model input, in the model's order)."""

    source: str
    x_calib: list[np.ndarray]
    x_test: list[np.ndarray]
    names: list[str]
    notes: list[str] = field(default_factory=list)
    # Labels of the test samples, one entry per model output (None where the file has none).
    y_test: list = field(default_factory=list)
    # What training steps learn from: every sample outside the test split, one array per input,
    # and per output its labels (None where the file has none).
    x_train: list = field(default_factory=list)
    y_train: list = field(default_factory=list)

    @property
    def n_train(self) -> int:
        return count(self.x_train)

    def summary(self) -> dict:
        return {"source": self.source, "inputs": self.names, "train": self.n_train,
                "test": count(self.x_test), "calibration": count(self.x_calib),
                "labels": [y is not None for y in self.y_test], "notes": self.notes}


def input_names(model) -> list[str]:
    """The model's input names as a user sees them (``keras.Input(name=...)``)."""
    names = []
    for i, t in enumerate(model.inputs):
        name = str(getattr(t, "name", "") or f"input_{i}").split(":")[0]
        names.append(name)
    return names


def load_multi(spec: DataSpec, model, inputs_only: bool = False) -> MultiSplits:
    """Read an .npz with ``x_<name>`` per input of ``model``, split it, and check its shapes.

    ``inputs_only``: the command calibrates and checks only (convert, quantize), so no
    training split is prepared.
    """
    names = input_names(model)
    path = Path(spec.source)
    example = ", ".join(f"x_{n}=..." for n in names)
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise DataError(f"{spec.source}: a model with {len(names)} inputs ({', '.join(names)}) "
                        "reads its data from an .npz with one array per input",
                        f"save it with numpy.savez(path, {example})")
    for flag, value in (("--mean", spec.mean), ("--std", spec.std), ("--resize", spec.resize),
                        ("--channels", spec.channels)):
        if value is not None:
            raise DataError(f"{flag} applies to one input; this model has {len(names)}",
                            f"prepare each input's array yourself and drop {flag}")
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # noqa: BLE001 - zip, pickle and truncation errors alike
        raise DataError(f"{path} is not a readable .npz file ({type(err).__name__})",
                        "write it again with numpy.savez") from None
    if len(names) == 1 and f"x_{names[0]}" not in arrays and "x" in arrays:
        arrays[f"x_{names[0]}"] = arrays["x"]  # one input (and several outputs): x will do
    missing = [n for n in names if f"x_{n}" not in arrays]
    if missing:
        raise DataError(f"{path} has no array for input{'s' * (len(missing) > 1)} "
                        f"{', '.join(missing)} (it holds {', '.join(sorted(arrays)) or 'nothing'})",
                        f"save one array per input: numpy.savez(path, {example})")
    xs = [arrays[f"x_{n}"] for n in names]
    scalars = [n for n, x, t in zip(names, xs, model.inputs) if x.ndim == 0 and not _once(x, t)]
    if scalars:
        raise DataError(f"{path}: x_{scalars[0]} holds one value, not one per sample",
                        "save an array with the samples first, shape (samples, ...)")
    xs = _settings(xs, model.inputs)
    lengths = {len(x) for x in xs}
    if len(lengths) != 1:
        raise DataError(f"{path}: the input arrays hold different numbers of samples "
                        f"({', '.join(f'{n}: {len(x)}' for n, x in zip(names, xs))})",
                        "give every input the same samples, in the same order")
    n = lengths.pop()
    if n < 2:
        raise DataError(f"{path} has {n} sample{'s' * (n != 1)}, too few to calibrate and check",
                        "use at least 2 samples (in practice hundreds)")
    notes = []
    prepared = []  # (array as read, its integer type or None, its divisor), per input
    for name, x, t in zip(names, xs, model.inputs):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DataError(f"{path}: x_{name} has dtype {x.dtype}", "store numbers")
        want = tuple(t.shape)[1:]
        have = tuple(x.shape[1:])
        if len(want) != len(have) or any(w is not None and w != h for w, h in zip(want, have)):
            raise DataError(f"{path}: x_{name} samples have shape {list(have)} but input "
                            f"{name!r} expects {[None, *want]}", "save arrays in the input's shape")
        ints = exact_dtype(t.dtype)
        if ints is not None:  # token ids, masks and the like keep their values
            prepared.append((as_booleans(x, f"x_{name}") if ints == np.bool_ else x, ints, None))
            continue
        divisor = _divisor(spec.scale, x)
        if divisor != 1.0:
            notes.append(f"scaled x_{name} (divided by {divisor:g})")
        prepared.append((x, None, divisor))

    def take(idx) -> list[np.ndarray]:
        """Each input's samples ``idx``, prepared: one copy of those samples, not of the file."""
        out = []
        for x, ints, divisor in prepared:
            part = x[idx]
            if ints is not None:
                out.append(part.astype(ints, copy=False))
                continue
            part = part.astype(np.float32, copy=False)
            if divisor != 1.0:
                part /= np.float32(divisor)
            out.append(part)
        return out

    order = np.random.default_rng(spec.seed).permutation(n)
    n_test = max(1, int(round(n * spec.test_fraction)))
    test, rest = order[:n_test], order[n_test:]
    calib = rest[: spec.calibration_samples]
    labels = _labels(arrays, model, n, path)
    train = ([], []) if inputs_only else (take(rest), [None if y is None else y[rest] for y in labels])
    return MultiSplits(str(path), take(calib), take(test), names, notes,
                       [None if y is None else y[test] for y in labels], *train)


def _once(x: np.ndarray, t) -> bool:
    """Whether ``x`` is one value for an input without a batch axis (a rate, a mode flag)."""
    return not getattr(t, "batched", True) and x.ndim == len(tuple(t.shape)) - 1


def _settings(xs: list, inputs) -> list:
    """Each input per sample.

    A value stored once, for an input without a batch axis, is repeated for every sample.
    """
    per_sample = [len(x) for x, t in zip(xs, inputs) if not _once(x, t) and x.ndim]
    n = per_sample[0] if per_sample else 1
    return [np.repeat(x[None], n, 0) if _once(x, t) else x for x, t in zip(xs, inputs)]


def _labels(arrays: dict, model, n: int, path: Path) -> list:
    """``y_<output name>`` per output (or ``y`` for a single output), where the file has them."""
    from ..fidelity import output_names

    outputs = output_names(model)
    labels = []
    for name in outputs:
        y = arrays.get(f"y_{name}")
        if y is None and len(outputs) == 1:
            y = arrays.get("y")
        if y is not None:
            if len(y) != n:
                raise DataError(f"{path}: y_{name} has {len(y)} labels for {n} samples",
                                "give every output one label per sample, in the inputs' order")
            if not np.issubdtype(y.dtype, np.number):
                raise DataError(f"{path}: y_{name} has dtype {y.dtype}", "store numbers")
        labels.append(y)
    return labels


def _divisor(scale, x: np.ndarray) -> float:
    if scale == "auto":
        return _value_max(x) or 1.0
    if scale == "none":
        return 1.0
    divisor = float(scale)
    if divisor <= 0:
        raise DataError(f"scale must be positive; received {scale}", "use auto, none or a positive number")
    return divisor


# Inputs travel as one array (one model input) or a list of arrays (several): these helpers
# let the exporters and checks treat both alike.

def as_list(x) -> list[np.ndarray]:
    """One array per model input."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def count(x) -> int:
    """How many samples ``x`` holds (0 for None)."""
    if x is None:
        return 0
    return len(as_list(x)[0])


def take(x, index):
    """``x[index]`` for every input; the same kind (array or list) comes back."""
    if isinstance(x, (list, tuple)):
        return [a[index] for a in x]
    return x[index]
