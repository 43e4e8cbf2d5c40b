"""A command's output folder: guarded, locked while written, filled only on success.

A folder that holds someone else's files is refused, a second run into a folder being written is
refused, and a run's files appear only when it succeeds.

Everything is written into a staging folder beside the output (``.NAME.edgenn-staging-*``) and
moved into place at the end, so a failed run leaves nothing behind. The staging folder is locked
(``flock``) for the run's lifetime: a second run into the same folder sees the lock and stops,
and a staging folder whose lock is free belongs to a dead run and is removed. A small guardian
process removes the staging folder when the run dies without finishing (``kill -9``), because a
killed process cannot clean up after itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__
from .artifacts import _unwritable
from .errors import UsageError

MARKER = ".edgenn-run.json"
_TEXT_SUFFIXES = {".json", ".md", ".html", ".yaml", ".txt"}
_STAGING = ".edgenn-staging-"

# Runs with ``python -S -E``: waits until the run closes its end of the pipe (finishing or
# dying), then removes the staging folder unless it was moved into place, and the parent
# folders the run created if they are still empty.
_GUARDIAN = r"""
import fcntl, os, shutil, sys, time
staging, created = sys.argv[1], sys.argv[2:]
sys.stdin.buffer.read()
if os.path.isdir(staging):
    # The kernel may release a dead process's lock a moment after its pipe: wait for it.
    fd = os.open(staging, os.O_RDONLY)
    for _ in range(100):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            time.sleep(0.05)
    else:
        sys.exit(0)
    shutil.rmtree(staging, ignore_errors=True)
for d in created:
    try:
        os.rmdir(d)
    except OSError:
        pass
"""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def writable_error(path: Path, err: OSError) -> UsageError:
    """A one-line error for an output that cannot be written (read-only, no space, denied)."""
    return _unwritable(path, err)


class OutputDir:
    """Stage a command's outputs and move them into ``path`` only when the run succeeds.

    Parameters
    ----------
    path
        The output folder the user named.
    command
        The command writing it (``compress``, ``federated simulate`` ...). A folder holding a
        finished run of the same command is replaced; any other non-empty folder is refused
        unless ``overwrite``.
    overwrite
        Write into a folder that holds other files, replacing those with the same names.
    """

    def __init__(self, path: str | Path, command: str, *, overwrite: bool = False):
        self.path = Path(path)
        self.command = command
        self.overwrite = overwrite
        self.staging: Path | None = None
        self._fd: int | None = None
        self._guardian: subprocess.Popen | None = None
        self._created: list[Path] = []

    # --- the folder as it is before the run -------------------------------------------------

    def check(self) -> None:
        """Refuse an output that exists as a file or holds files this command did not write."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UsageError(f"the output {p} exists and is not a folder", "pass a folder with -o")
        if not p.is_dir():
            return
        try:
            entries = sorted(e.name for e in p.iterdir())
        except OSError as err:
            raise writable_error(p, err) from None
        if not entries or self.overwrite:
            return
        previous = self.previous_run()
        if previous is not None and previous.get("command") == self.command:
            return
        if previous is not None:
            raise UsageError(f"{p} holds the output of `edgenn {previous.get('command')}`, not of "
                             f"`edgenn {self.command}`",
                             "choose another folder, or pass --overwrite to write into it anyway")
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise UsageError(f"{p} is not empty and was not written by edgenn {self.command} "
                         f"({len(entries)} entries: {shown})",
                         "choose a new or empty folder, or pass --overwrite to replace files of "
                         "the same names")

    def previous_run(self) -> dict | None:
        marker = self.path / MARKER
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # --- staging ---------------------------------------------------------------------------

    def open(self) -> Path:
        """Check the output, clear dead runs' staging, lock a fresh staging folder; return it."""
        self.check()
        parent = self.path.parent
        self._make_parents(parent)
        self._clear_stale(parent)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{_STAGING}", dir=parent))
        except OSError as err:
            self._remove_created()
            raise writable_error(self.path, err) from None
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 is not what the user's folder gets
        self.staging = staging
        self._fd = os.open(staging, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        rival = self._live_rival(parent)
        if rival is not None:
            self.abort()
            raise UsageError(f"another edgenn run is writing {self.path} right now (its staging "
                             f"folder is {rival})", "wait for it to finish, or choose another output")
        self._start_guardian()
        return staging

    def _make_parents(self, parent: Path) -> None:
        missing = []
        p = parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                self._remove_created()
                raise writable_error(d, err) from None
            self._created.append(d)

    def _siblings(self, parent: Path) -> list[Path]:
        prefix = f".{self.path.name}{_STAGING}"
        try:
            return sorted(p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir())
        except OSError:
            return []

    @staticmethod
    def _locked(path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
        finally:
            os.close(fd)  # closing releases the probe's lock
        return False

    def _clear_stale(self, parent: Path) -> None:
        for sibling in self._siblings(parent):
            if self._locked(sibling):
                raise UsageError(f"another edgenn run is writing {self.path} right now (its staging "
                                 f"folder is {sibling})", "wait for it to finish, or choose another output")
            shutil.rmtree(sibling, ignore_errors=True)  # a dead run's leftovers

    def _live_rival(self, parent: Path) -> Path | None:
        # Two runs that started together both see each other; the one whose staging folder
        # sorts first goes on.
        for sibling in self._siblings(parent):
            if sibling != self.staging and sibling.name < self.staging.name and self._locked(sibling):
                return sibling
        return None

    def _start_guardian(self) -> None:
        try:
            self._guardian = subprocess.Popen(
                [sys.executable, "-S", "-E", "-c", _GUARDIAN, str(self.staging),
                 *[str(d) for d in reversed(self._created)]],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                close_fds=True, start_new_session=True)
        except OSError:
            self._guardian = None  # cleanup then relies on the next run's stale check

    # --- the end of the run ----------------------------------------------------------------

    def commit(self, files: list[str] | None = None) -> None:
        """Move the staged outputs into place and record the run in the marker file."""
        staging = self.staging
        names = sorted(files if files is not None else (p.name for p in staging.iterdir()))
        marker = {"command": self.command, "edgenn": __version__, "files": names,
                  "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        try:
            self._relocate_text(staging)
            if not self.path.exists():
                os.rename(staging, self.path)
            else:
                self._merge(staging, names)
        except OSError as err:
            self.abort()
            raise writable_error(self.path, err) from None
        self._release()

    def _relocate_text(self, staging: Path) -> None:
        """Reports written during the run name the staging folder; make them name the output."""
        old = {str(staging), str(staging.resolve())}
        new = {str(staging): str(self.path), str(staging.resolve()): str(self.path.resolve())}
        for f in staging.rglob("*"):
            if f.suffix not in _TEXT_SUFFIXES or not f.is_file():
                continue
            text = f.read_text(encoding="utf-8", errors="surrogateescape")
            if any(o in text for o in old):
                for o in sorted(old, key=len, reverse=True):
                    text = text.replace(o, new[o])
                f.write_text(text, encoding="utf-8", errors="surrogateescape")

    def _merge(self, staging: Path, names: list[str]) -> None:
        previous = self.previous_run() or {}
        stale = set()
        if previous.get("command") == self.command:
            stale = set(previous.get("files", [])) - set(names)
        for item in sorted(staging.iterdir()):
            target = self.path / item.name
            if item.is_dir() and target.is_dir():
                aside = Path(tempfile.mkdtemp(prefix=f".{item.name}.old-", dir=self.path))
                os.rename(target, aside / item.name)
                os.rename(item, target)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        for name in stale:
            old = self.path / name
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            elif old.exists():
                old.unlink()
        os.rmdir(staging)

    def name_output_in(self, err: BaseException) -> None:
        """Make an error raised during the run name the output, not the staging folder.

        A step that failed on a staged file ("LiteRT crashed ... running
        .out.edgenn-staging-ky1_uk3p/model.tflite") named a folder that is gone once the run ends.
        """
        if self.staging is None:
            return
        names = sorted({str(self.staging.resolve()), str(self.staging)}, key=len, reverse=True)
        for attr in ("message", "hint"):
            text = getattr(err, attr, None)
            if isinstance(text, str):
                for name in names:
                    text = text.replace(name, self._outside(name))
                setattr(err, attr, text)

    def _outside(self, staging: str) -> str:
        """What ``staging`` (a spelling of the staging folder) is called once moved into place."""
        return str(self.path)

    def abort(self) -> None:
        """Remove the staging folder (and the parent folders this run created)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._remove_created()
        self._release()

    def _remove_created(self) -> None:
        for d in reversed(self._created):
            try:
                d.rmdir()
            except OSError:
                break
        self._created = []

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._guardian is not None:
            try:
                self._guardian.stdin.close()
                self._guardian.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._guardian = None

    def __enter__(self) -> Path:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.name_output_in(exc)
            self.abort()


class OutputFile(OutputDir):
    """Stage one output file, and any file a tool writes beside it, like a folder's outputs.

    For a file that is written and then checked (``convert``, ``quantize``): the check runs on
    the staged copy, so a run killed during it (``kill -9``) leaves nothing at the output, and
    the guardian removes the staged copy. An existing file of the same name is replaced.
    """

    def __init__(self, path: str | Path):
        super().__init__(path, "", overwrite=True)

    def check(self) -> None:
        if self.path.is_dir():
            raise UsageError(f"the output {self.path} is a folder", "name a file")

    @property
    def staged(self) -> Path:
        """Where the file is written while the run lasts."""
        return self.staging / self.path.name

    def _outside(self, staging: str) -> str:
        return str(self.path.parent)  # the staged file and its companions land beside -o

    def commit(self, files: list[str] | None = None) -> None:
        """Move the staged file (and its companions) into the output's folder."""
        try:
            for item in sorted(self.staging.iterdir()):
                os.replace(item, self.path.parent / item.name)
            os.rmdir(self.staging)
        except OSError as err:
            self.abort()
            raise writable_error(self.path, err) from None
        self._release()


@contextlib.contextmanager
def staged_file(path: str | Path, keep: type[BaseException] | tuple = ()):
    """Yield a staged path for the output file ``path``; move it into place if the block ends.

    The block ends well, or with an error of a ``keep`` type (an artifact written as asked that
    cannot be checked here, kept by design); on any other error nothing reaches ``path``.
    """
    out = OutputFile(path)
    out.open()
    try:
        yield out.staged
    except keep as err:
        out.name_output_in(err)
        out.commit()
        raise
    except BaseException as err:
        out.name_output_in(err)
        out.abort()
        raise
    out.commit()
