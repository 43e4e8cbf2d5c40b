"""Shared fixtures: tiny real models built once per session, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"

# Imports of these are refused in the "device side" runs.
BLOCK_TF = """
import sys
class _Block:
    BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"blocked by the test: {name}")
        return None
sys.meta_path.insert(0, _Block())
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class _Zygote:
    """The fork server (helpers/zygote.py): TensorFlow imported once, one fork per command."""

    def __init__(self):
        import tempfile

        self.tmp = Path(tempfile.mkdtemp(prefix="edgenn-zygote-"))
        self.proc = subprocess.Popen([sys.executable, str(HELPERS / "zygote.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={k: v for k, v in os.environ.items()
                                          if k != "EDGENN_DEBUG"})
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("the CLI fork server did not start")
        self.calls = 0

    def run(self, args, cwd, env, timeout) -> Result:
        self.calls += 1
        out, err = self.tmp / f"{self.calls}.out", self.tmp / f"{self.calls}.err"
        request = {"args": list(args), "cwd": str(cwd or os.getcwd()), "env": env,
                   "timeout": timeout, "out": str(out), "err": str(err)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        result = Result(answer["code"], out.read_text(errors="replace"),
                        err.read_text(errors="replace"))
        out.unlink()
        err.unlink()
        if answer["code"] == "timeout":
            raise subprocess.TimeoutExpired(["edgenn", *args], timeout, result.out, result.err)
        return result

    def close(self):
        import shutil

        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


_ZYGOTE: _Zygote | None = None


def _zygote() -> _Zygote:
    global _ZYGOTE
    if _ZYGOTE is None or _ZYGOTE.proc.poll() is not None:
        _ZYGOTE = _Zygote()
    return _ZYGOTE


@pytest.fixture(scope="session", autouse=True)
def _close_zygote():
    yield
    if _ZYGOTE is not None:
        _ZYGOTE.close()


def run_cli(*args: str, cwd: Path | None = None, block_tf: bool = False, env: dict | None = None,
            timeout: float = 300, fresh: bool = False) -> Result:
    """Run `edgenn ARGS` as a user runs it, and return its exit code, stdout and stderr.

    Commands run in a child forked from a server that imported TensorFlow once (the suite
    would spend most of its time importing it otherwise); ``block_tf`` runs (the device side
    must work without TensorFlow), ``fresh=True`` and EDGENN_TEST_FRESH=1 start a real
    interpreter instead.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGENN_DEBUG", None)
    if not (block_tf or fresh or os.environ.get("EDGENN_TEST_FRESH") == "1"):
        return _zygote().run(args, cwd, full_env, timeout)
    prelude = BLOCK_TF if block_tf else ""
    code = prelude + "\nfrom edgenn.cli.main import main\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def import_users_module(folder: Path, module: str, source: str | None = None):
    """Import ``module`` from ``folder`` (written from ``source`` first) as a user's script
    would, then forget it: off the import path and out of sys.modules, so that edgenn's
    process must find it the way a user's --custom-objects file does."""
    import importlib

    if source is not None:
        Path(folder, *module.split(".")[:-1]).mkdir(parents=True, exist_ok=True)
        Path(folder, *module.split(".")).with_suffix(".py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == module.split(".")[0]
                     or n.startswith(module.split(".")[0] + ".")]:
            sys.modules.pop(name, None)


def assert_clean_error(result: Result, code: int = 2, *needles: str) -> None:
    """Exit ``code``, one error line on stderr naming the problem, no traceback."""
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    """A folder of tiny real models in every supported format (built in a subprocess)."""
    out = tmp_path_factory.mktemp("models")
    proc = subprocess.run([sys.executable, str(HELPERS / "build_models.py"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def manifest(models) -> dict:
    return json.loads((models / "manifest.json").read_text())


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory) -> Path:
    """A reference CNN trained on digits by `edgenn demo` (a real Keras 3 .keras file)."""
    out = tmp_path_factory.mktemp("digits")
    r = run_cli("demo", "-o", str(out), "--epochs", "12", "--quick", "--quiet")
    assert r.code == 0, r.err
    return out / "model.keras"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on loopback (Debian's openssh-server, installed by .ci/run)."""
    from helpers import sshd as server

    srv = server.start(tmp_path_factory.mktemp("sshd"))
    yield srv
    srv.stop()


def pytest_unconfigure(config):
    """After the summary: LiteRT's C++ destructors log "INFO: ... DestroyAccelerator" at exit.

    Those lines come from the test process's own LiteRT objects as the interpreter ends, after
    every result is printed; edgenn's commands free theirs inside a silenced block. Point fd 2
    at /dev/null for the process's last moments so the run's tail ends with its summary.
    """
    import atexit

    def silence():
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)

    atexit.register(silence)
