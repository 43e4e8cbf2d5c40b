"""Readers for every dataset source: .npz, IDX folders, image folders and built-in names.

Each returns raw arrays: ``{"x_train", "y_train"}`` and optionally ``{"x_test", "y_test"}``,
plus class names and the natural value range of x (for scaling). No TensorFlow here.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
BUILTINS = ("digits", "fashion-mnist")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class RawData:
    """Arrays as read, before splitting and preprocessing."""

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None
    value_max: float | None = None  # the largest value x can take (255 for uint8 images)
    notes: list[str] = field(default_factory=list)
    labeled: bool = True  # False: an .npz of inputs only (y_train and y_test are None)


def read(source: str) -> RawData:
    """Read a dataset from a builtin name or a path (.npz file, IDX folder, image folder)."""
    if source == "digits":
        return _digits()
    if source == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise DataError(
                f"the fashion-mnist dataset is not installed ({FASHION_MNIST_DIR} is missing)",
                "install it with: sudo apt-get install dataset-fashion-mnist",
            )
        data = read_idx_folder(FASHION_MNIST_DIR)
        data.source, data.classes = "fashion-mnist", FASHION_MNIST_CLASSES
        return data
    p = Path(source)
    if not p.exists():
        raise DataError(f"dataset not found: {source}",
                        f"pass a .npz file, an IDX folder, an image folder or one of: "
                        f"{', '.join(BUILTINS)}")
    if p.is_file():
        if p.suffix.lower() != ".npz":
            raise DataError(f"{p} is not a dataset file edgenn reads (expected .npz)",
                            "save arrays with numpy.savez(path, x=..., y=...)")
        return read_npz(p)
    if _idx_files(p):
        return read_idx_folder(p)
    return read_image_folder(p)


def check(source: str) -> None:
    """Check a dataset cheaply, before any model is loaded.

    It exists, and its files' declared sizes are within bounds, so a bad --data fails in a
    second rather than after a model load.
    """
    if source in BUILTINS:
        if source == "fashion-mnist" and not FASHION_MNIST_DIR.is_dir():
            read(source)  # raises the install hint
        return
    p = Path(source)
    if not p.exists():
        read(source)  # raises "dataset not found"
    if p.is_file() and p.suffix.lower() == ".npz":
        check_npz(p)
    elif p.is_dir():
        for f in _idx_files(p).values():
            _check_idx_header(f)


def _check_idx_header(path: Path) -> None:
    import gzip

    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            head = fh.read(4 + 4 * 255)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} cannot be read ({err})", "download or copy it again") from None
    if len(head) < 4 or head[2] not in _IDX_DTYPES or len(head) < 4 + 4 * head[3]:
        return  # read_idx names the problem
    dims = struct.unpack(f">{head[3]}I", head[4:4 + 4 * head[3]])
    limits.check_unpacked(path, math.prod(dims) * np.dtype(_IDX_DTYPES[head[2]]).itemsize,
                          "the IDX header")


def _digits() -> RawData:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn",
                        "pip install scikit-learn (or 'edgenn[tf]')") from None
    d = load_digits()
    x = d.images.astype(np.float32)  # 8x8, values 0..16
    return RawData("digits", x, d.target.astype(np.int64),
                   classes=[str(i) for i in range(10)], value_max=16.0)


_SPLITS = ("x_train", "x_test")


def read_npz(path: Path) -> RawData:
    """Arrays named x/y, or x_train/y_train with optional x_test/y_test.

    Or inputs alone (x, or x_train with optional x_test), for commands that read no labels.
    """
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{path} holds object (pickled) arrays, which edgenn will not load",
                            "save plain numeric arrays with numpy.savez") from None
        raise DataError(f"{path} is not a valid .npz file ({err})", "write it again") from None
    except (OSError, EOFError, Exception) as err:  # zipfile errors and truncation
        raise DataError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})",
                        "write it again with numpy.savez") from None
    named = [k for k in arrays if k.startswith("x_") and k not in _SPLITS]
    if "x" not in arrays and "x_train" not in arrays and len(named) == 1:
        # one input, named as a file for several inputs names each (x_<input name>)
        arrays["x"] = arrays.pop(named[0])
        heads = [k for k in arrays if k.startswith("y_") and k not in ("y_train", "y_test")]
        if "y" not in arrays and len(heads) == 1:
            arrays["y"] = arrays.pop(heads[0])
    flat = [k for k in ("x", "x_train", "x_test") if k in arrays and arrays[k].ndim == 0]
    if flat:
        raise DataError(f"{path}: {flat[0]} holds one value, not one per sample",
                        f"store {flat[0]} with the samples on its first axis (shape [N, ...])")
    if "x_train" in arrays and "y_train" in arrays:
        has_test = "x_test" in arrays and "y_test" in arrays
        return RawData(str(path), arrays["x_train"], arrays["y_train"],
                       arrays["x_test"] if has_test else None,
                       arrays["y_test"] if has_test else None,
                       value_max=_value_max(arrays["x_train"]))
    if "x" in arrays and "y" in arrays:
        return RawData(str(path), arrays["x"], arrays["y"], value_max=_value_max(arrays["x"]))
    # Inputs alone (calibration audio, unlabeled images): enough for the commands that read
    # only x (convert's calibration and fidelity check); ``load`` refuses them elsewhere. Labels
    # per output (y_<output name>, a several-head model's, which compress reads through
    # data.multi) do not stop x from being read alone (mtcnn's ONet: convert refused its .npz).
    for train, test in (("x_train", "x_test"), ("x", None)):
        if train in arrays and not any(k in ("y", "y_train", "y_test") for k in arrays):
            return RawData(str(path), arrays[train], None,
                           arrays.get(test) if test else None, None,
                           value_max=_value_max(arrays[train]), labeled=False)
    raise DataError(f"{path} holds arrays {sorted(arrays)}; edgenn needs x and y, or x_train, "
                    "y_train (and optionally x_test, y_test), or x_<input name> per input",
                    "rename the arrays when saving: numpy.savez(path, x=..., y=...)")


def check_npz(path: Path) -> None:
    """Bound an .npz before numpy reads it: member names and sizes, and each array's header."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            infos = limits.check_zip(path, zf, ".npz archive")
            declared = 0
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if reader is None:
                        raise ValueError(f"unsupported .npy format version {version}")
                    shape, _, dtype = reader(fh)
                declared += math.prod(shape) * dtype.itemsize
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError, zlib.error) as err:
        raise DataError(f"{path} is not a readable .npz file ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:120]})", "write it again with numpy.savez") from None
    limits.check_unpacked(path, declared, "the .npz arrays")


def _value_max(x: np.ndarray) -> float | None:
    return 255.0 if x.dtype == np.uint8 else None


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (MNIST layout), gzip-compressed or raw."""
    try:
        if path.suffix == ".gz":
            data = limits.read_gzip(path, "IDX file")
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} cannot be read ({err})", "download or copy it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)",
                        "use MNIST-layout IDX files (train-images-idx3-ubyte[.gz] ...)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header cut short)", "download or copy it again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize
    limits.check_unpacked(path, expected, "the IDX header")
    if len(data) - header < expected:
        raise DataError(f"{path} is truncated ({len(data) - header} of {expected} data bytes)",
                        "download or copy it again")
    return np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)), offset=header).reshape(
        dims).astype(dtype.newbyteorder("="))


def _idx_files(folder: Path) -> dict[str, Path]:
    found = {}
    for f in sorted(folder.iterdir()):
        name = f.name.lower()
        if "idx" not in name or not f.is_file():
            continue
        split = "train" if name.startswith("train") else "test" if name.startswith(
            ("t10k", "test")) else None
        kind = "images" if "images" in name else "labels" if "labels" in name else None
        if split and kind:
            found[f"{split}_{kind}"] = f
    return found


def read_idx_folder(folder: Path) -> RawData:
    """train-images/train-labels (+ t10k-images/t10k-labels) IDX files in one folder."""
    files = _idx_files(folder)
    if "train_images" not in files or "train_labels" not in files:
        raise DataError(f"{folder} lacks train-images/train-labels IDX files (found: "
                        f"{', '.join(sorted(files)) or 'none'})",
                        "use the MNIST layout: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz")
    x = read_idx(files["train_images"])
    y = read_idx(files["train_labels"])
    xt = yt = None
    if "test_images" in files and "test_labels" in files:
        xt, yt = read_idx(files["test_images"]), read_idx(files["test_labels"])
    return RawData(str(folder), x, y.astype(np.int64), xt,
                   None if yt is None else yt.astype(np.int64), value_max=_value_max(x))


def read_image_folder(folder: Path) -> RawData:
    """An image folder with one sub-folder per class (the sub-folder names are the classes).

    Only each file's header is read here; the pixels are decoded when a command takes the
    samples (``LazyImages``), so a folder of 50,000 photos does not have to fit in memory
    for a command that uses 300 of them.
    """
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} is not a dataset folder: no IDX files and no class sub-folders",
                        "use one sub-folder per class holding its images, or MNIST IDX files")
    try:
        from PIL import Image  # noqa: F401 - checked here, used by LazyImages
    except ImportError:
        raise DataError("image folders need Pillow", "pip install pillow") from None
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(f for f in (folder / name).iterdir()
                       if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataError(f"{folder} has class folders ({', '.join(classes)}) but no images",
                        f"put image files ({', '.join(sorted(_IMAGE_SUFFIXES))}) inside them")
    for f in files:  # headers only: a bomb or a file that is no image is refused before any work
        _open_image(f).close()
    with _open_image(files[0]) as first:
        mode = "L" if first.mode in ("L", "1", "I;16") else "RGB"
        size = first.size
    x = LazyImages(files, size, mode)
    data = RawData(str(folder), x, np.asarray(labels, dtype=np.int64), classes=classes,
                   value_max=255.0)
    data.notes.append(f"images read as {mode} {size[0]}x{size[1]}; others resized to match")
    return data


def _open_image(f: Path):
    """The image at ``f``, its header read (pixels not yet decoded), or a one-line refusal."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow warns past MAX_IMAGE_PIXELS and refuses at twice that: refuse at once.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(f)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{f} declares a huge image ({err})",
                        "remove it, or shrink it: edgenn trains on small images") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{f} is not a readable image ({err})",
                        "remove or replace the file") from None


class LazyImages:
    """An image folder's pixels as a read-only uint8 array that decodes what is indexed.

    Each image is converted to the first image's mode (grayscale or RGB) and resized to its
    size. Indexing with an int gives one image; with a slice or an index array, a numpy array.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, files: list[Path], size: tuple[int, int], mode: str):
        self.files, self.image_size, self.mode = list(files), size, mode
        w, h = size
        self.shape = (len(self.files), h, w) + (() if mode == "L" else (3,))
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))  # numpy's meaning: elements, not pixels

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, f: Path) -> np.ndarray:
        from PIL import Image

        with _open_image(f) as img:
            try:
                img.load()
                img = img.convert(self.mode)
                if img.size != self.image_size:
                    img = img.resize(self.image_size, Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
            except (OSError, ValueError, SyntaxError) as err:
                raise DataError(f"{f} is not a readable image ({err})",
                                "remove or replace the file") from None

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._decode(self.files[index])
        picked = (range(len(self.files))[index] if isinstance(index, slice)
                  else np.arange(len(self.files))[np.asarray(index)])
        out = np.empty((len(picked), *self.shape[1:]), np.uint8)
        for k, i in enumerate(picked):
            out[k] = self._decode(self.files[int(i)])
        return out

    def __array__(self, dtype=None, copy=None):
        full = self[:]
        return full if dtype is None else full.astype(dtype)
