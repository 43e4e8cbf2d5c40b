"""Silence native (C++) writes to stderr around noisy library calls, unless --debug."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings


@contextlib.contextmanager
def quiet_stderr(capture: list | None = None):
    """Point fd 2 at /dev/null for the block (TensorFlow and LiteRT log from C++ there).

    Python warnings are silenced too. With EDGENN_DEBUG=1 (set by --debug) nothing is hidden.
    Failures still surface as Python exceptions, which the CLI reports. ``capture``: a list
    that receives what was written (some converter errors carry their reason only in the log).
    """
    if os.environ.get("EDGENN_DEBUG") == "1":
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    sink = tempfile.TemporaryFile() if capture is not None else None
    target = sink.fileno() if sink is not None else os.open(os.devnull, os.O_WRONLY)
    os.dup2(target, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if sink is not None:
            sink.seek(0)
            capture.append(sink.read(1 << 20).decode("utf-8", "replace"))
            sink.close()
        else:
            os.close(target)


def logged_error(log: str) -> str:
    """The first error a C++ log states (loc("layer/op"): error: what), in one line."""
    import re

    for line in log.splitlines():
        found = re.search(r'(?:loc\("([^"]+)"\):\s*)?error:\s*(.+)', line)
        if found and "failed call to cuInit" not in line:
            where = f"at {found.group(1)}: " if found.group(1) else ""
            return " ".join((where + found.group(2)).split())[:400]
    return ""

