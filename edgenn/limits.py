"""Bounds on what a user's file can make edgenn allocate, checked before anything is unpacked.

A compressed container (a ``.keras`` or ``.npz`` zip, a gzip IDX file, chunked HDF5 datasets)
declares how large its contents are. edgenn reads those declarations first and refuses a file
that would unpack to more than ``max(100 x its size on disk, 256 MiB)``: model weights barely
compress, so only a crafted file ("archive bomb") goes past that. ``--max-unpacked-mb N`` sets
the bound to N MiB instead, for a trusted file that really is that large.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import zipfile
from pathlib import Path, PurePosixPath

from .errors import InputFileError

MIB = 1 << 20
RATIO = 100  # unpacked bytes per byte on disk that a legitimate model or dataset stays under
FLOOR = 256 * MIB  # small files may always unpack to this much
MAX_MEMBERS = 10_000  # archive members (a .keras has 3, a .npz one per array)
MAX_CONFIG_BYTES = 32 * MIB  # a Keras config.json (ConvNeXtXLarge's is about 1 MB)
FLAG = "--max-unpacked-mb"

_max_unpacked: contextvars.ContextVar[int | None] = contextvars.ContextVar("max_unpacked", default=None)


@contextlib.contextmanager
def max_unpacked(mb: int | None):
    """Within the block, files may unpack to ``mb`` MiB (None: the proportional default)."""
    token = _max_unpacked.set(None if mb is None else int(mb) * MIB)
    try:
        yield
    finally:
        _max_unpacked.reset(token)


def set_max_unpacked(mb: int | None) -> None:
    """Set the bound for the rest of this process (the CLI's --max-unpacked-mb)."""
    _max_unpacked.set(None if mb is None else int(mb) * MIB)


def allowed(packed: int) -> int:
    """Bytes a file of ``packed`` bytes on disk may unpack to."""
    explicit = _max_unpacked.get()
    return explicit if explicit is not None else max(RATIO * packed, FLOOR)


def check_unpacked(path: Path, declared: int, what: str, packed: int | None = None) -> None:
    """Refuse ``path`` when its contents declare more than ``allowed`` bytes."""
    packed = path.stat().st_size if packed is None else packed
    limit = allowed(packed)
    if declared > limit:
        raise InputFileError(
            f"{path}: {what} declares {_size(declared)} unpacked from {_size(packed)} on disk, "
            f"over edgenn's limit of {_size(limit)} (an archive bomb, or a very large model)",
            f"if you trust the file, raise the limit with {FLAG} {declared // MIB + 1}")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def check_zip(path: Path, zf: zipfile.ZipFile, what: str) -> list[zipfile.ZipInfo]:
    """Check a zip's member list: count, names that escape, duplicates, declared sizes."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputFileError(f"{path}: the {what} has {len(infos):,} members (limit {MAX_MEMBERS:,})",
                             "this is not a file Keras or numpy writes; save it again")
    seen = set()
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InputFileError(f"{path}: the {what} has a member {name!r} that points outside the "
                                 "archive", "this is not a file Keras or numpy writes; do not use it")
        if name in seen:
            raise InputFileError(f"{path}: the {what} has two members named {name!r}",
                                 "this is not a file Keras or numpy writes; save it again")
        seen.add(name)
    check_unpacked(path, sum(i.file_size for i in infos), f"the {what}")
    return infos


def check_h5(path: Path, source, what: str, packed: int | None = None) -> None:
    """Sum the declared sizes of an HDF5 file's datasets; refuse external or virtual storage.

    ``source`` is a path or a seekable file object (an HDF5 member of a .keras archive).
    """
    import h5py

    declared = 0
    problems: list[str] = []

    def visit(name, obj):
        nonlocal declared
        if isinstance(obj, h5py.Dataset):
            if obj.external:
                problems.append(f"dataset {name} keeps its data in outside files {obj.external}")
            elif obj.is_virtual:
                problems.append(f"dataset {name} maps data from other files")
            declared += int(obj.size or 0) * obj.dtype.itemsize
        if isinstance(obj, h5py.Group):
            for key in obj:
                link = obj.get(key, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    problems.append(f"{name}/{key} links to the outside file {link.filename!r}")

    try:
        with h5py.File(source, "r") as f:
            visit("/", f)
            f.visititems(visit)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise InputFileError(f"{path}: the {what} is truncated or corrupt HDF5 "
                             f"({' '.join(str(err).split())[:160]})",
                             "save or copy the model again") from None
    if problems:
        raise InputFileError(f"{path}: the {what} {problems[0]}; edgenn reads no file a model "
                             "names", "save the model again with model.save()")
    check_unpacked(path, declared, f"the {what}", packed)


def read_gzip(path: Path, what: str) -> bytes:
    """Decompress a gzip file, refusing it once the output passes ``allowed``."""
    import gzip

    limit = allowed(path.stat().st_size)
    with gzip.open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(
            f"{path}: the {what} unpacks to more than {_size(limit)} from "
            f"{_size(path.stat().st_size)} on disk (an archive bomb, or a very large file)",
            f"if you trust the file, raise the limit with {FLAG}")
    return data


def available_bytes() -> int | None:
    """Memory the kernel says a new allocation can have now (MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def made_up_batch(what: str, sample_bytes: int, wanted: int, hint: str) -> int:
    """How many made-up samples of ``sample_bytes`` fit: ``wanted``, fewer, or a refusal.

    Random check inputs follow the shape a model declares, and a file can declare any shape
    (a [1, 40000, 40000, 3] input is 19 GB a sample): edgenn spends at most an eighth of the
    memory available on them. The rest is for running them: the model and its converted file
    each copy the inputs and hold activations (a 4.8 GB sample through a pooling layer peaked
    at 15 GB in `inspect`'s bridge check and 20 GB in `convert`).
    """
    free = available_bytes()
    if free is None or sample_bytes <= 0:
        return wanted
    budget = max(free // 8, FLOOR)
    if sample_bytes > budget:
        raise InputFileError(f"{what} takes {_size(sample_bytes)} per sample, more than "
                             f"edgenn gives made-up inputs: {_size(budget)}, an eighth of the "
                             f"{_size(free)} of memory available", hint)
    return max(1, min(wanted, budget // sample_bytes))


def runs_that_fit(op: str | None, need: int, steps: list[int], fixed: bool) -> list[int]:
    """Samples per run (``steps``, tried in order) capped to fit a quarter of the memory free.

    ``need``: the bytes one run takes at the file's own batch (its largest ``op``'s tensors).
    A file can declare tensors of any size (a 1.5 KB .tflite resizes an 8x8 image to
    40000x40000: 18 GB a tensor), and a large legitimate model at batch 256 can need more than
    a machine has: the runtime then fails to allocate, or the kernel's out-of-memory killer
    ends the process. A file with a fixed batch keeps it; one whose single run needs more than
    half the memory free is refused.
    """
    from .errors import RuntimeFailure

    free = available_bytes()
    if free is None or not need:
        return steps
    if need > free // 2:
        raise RuntimeFailure(f"the model needs at least {_size(need)} to run once (its {op} op's "
                             f"tensors), more than half of the {_size(free)} of memory "
                             "available", "run it on a machine with more memory")
    return steps if fixed else [max(1, min(step, free // 4 // need)) for step in steps]


def _rss() -> int:
    """Resident memory of this process in bytes (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def memory_watch(what: str, hint: str, fraction: float = 0.75):
    """Stop the block with one error if this process grows past ``fraction`` of what it can have.

    For a step inside another library that keeps every tensor of every sample (ai-edge-
    quantizer's and ONNX Runtime's calibrators) and can grow until the kernel's out-of-memory
    killer ends edgenn with no message and no cleanup. A thread reads the resident memory ten
    times a second; past the limit (the memory this process held at the start plus
    ``fraction`` of what was available then) it interrupts the main thread, which gets the
    interrupt when it next runs Python code (between calibration samples), and the block ends
    in a RuntimeFailure naming ``what``. A Ctrl-C of the user's own stays a Ctrl-C.
    """
    import _thread
    import threading

    from .errors import RuntimeFailure

    free = available_bytes()
    start = _rss()
    if free is None or not start:
        yield
        return
    limit = start + int(free * fraction)
    tripped, done = threading.Event(), threading.Event()

    def watch():
        while not done.wait(0.1):
            if _rss() > limit:
                tripped.set()
                _thread.interrupt_main()
                return

    watcher = threading.Thread(target=watch, name="edgenn-memory-watch", daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if not tripped.is_set():
            raise
        raise RuntimeFailure(f"{what} grew past {_size(limit)} of memory ({fraction:.0%} of what "
                             "was available) and was stopped; nothing was written", hint) from None
    finally:
        done.set()
        watcher.join()
