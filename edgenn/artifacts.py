"""Writing outputs: atomically (temp file + rename) and never over an input."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def refuse_overwrite(output: Path, *inputs: str | Path | None) -> None:
    """Raise if ``output`` is one of the inputs."""
    out = Path(output).resolve()
    for item in inputs:
        if item is not None and Path(item).exists() and Path(item).resolve() == out:
            raise UsageError(f"the output {output} is the input file; edgenn never overwrites an "
                             "input", "choose another output path")


def check_writable(final: str | Path) -> None:
    """Refuse an output file whose folder is missing or cannot be written, before any work."""
    final = Path(final)
    if final.is_dir():
        raise UsageError(f"the output {final} is a folder", "name a file")
    parent = final.parent
    if not parent.is_dir():
        raise UsageError(f"the folder of the output {final} does not exist", f"create {parent} first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", dir=parent)
    except OSError as err:
        raise _unwritable(final, err) from None
    os.close(fd)
    os.unlink(tmp)


def _unwritable(path: Path, err: OSError) -> UsageError:
    reason = os.strerror(err.errno) if err.errno else str(err)
    return UsageError(f"cannot write {path}: {reason}",
                      "choose an output on a writable file system with free space")


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str | None = None):
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds.

    An interrupted or failed write leaves nothing at ``final`` (and no temporary behind).
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or "".join(final.suffixes),
                                   dir=final.parent)
    except OSError as err:
        raise _unwritable(final, err) from None
    os.close(fd)
    os.unlink(tmp)  # writers create the file (or folder) themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()
        raise


def write_text(final: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)
