"""Silence native (C++) writes to stderr around noisy library calls, unless --debug."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings


@contextlib.contextmanager
def quiet_stderr():
    """Point fd 2 at /dev/null for the block (TensorFlow and LiteRT log from C++ there).

    Python warnings are silenced too. With EDGENN_DEBUG=1 (set by --debug) nothing is hidden.
    Failures still surface as Python exceptions, which the CLI reports.
    """
    if os.environ.get("EDGENN_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

