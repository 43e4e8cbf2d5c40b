"""Output folders: someone else's files are refused, concurrent runs are locked out, a failed or
killed run leaves nothing, and a folder on a read-only file system is one line and exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import assert_clean_error, run_cli

FAST = ["--recipe", "int8-ptq", "--data", "digits", "--limit", "200"]


def _edgenn(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from edgenn.cli.main import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.edgenn-staging-"))


def test_foreign_folder_refused_then_overwrite_keeps_other_files(digits_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "model.tflite").write_bytes(b"my own file")
    r = run_cli("compress", str(digits_model), *FAST, "-o", str(out))
    assert_clean_error(r, 2, "not empty", "--overwrite")
    assert (out / "model.tflite").read_bytes() == b"my own file"
    r = run_cli("compress", str(digits_model), *FAST, "-o", str(out), "--overwrite", "--quiet")
    assert r.code == 0, r.err
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite replaces same names only
    assert (out / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert json.loads((out / ".edgenn-run.json").read_text())["command"] == "compress"
    # A finished run of the same command is replaced without --overwrite, and what the new run
    # does not write (an earlier recipe's files) goes.
    (out / "notes.txt").unlink()
    r = run_cli("compress", str(digits_model), "--recipe", "float16", "--data", "digits",
                "--limit", "200", "-o", str(out), "--quiet")
    assert r.code == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == [".edgenn-run.json", "model.tflite",
                                                    "report.json", "report.md"]
    assert _leftovers(tmp_path, "out") == []


def test_folder_of_another_command_refused(digits_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".edgenn-run.json").write_text(json.dumps({"command": "federated simulate"}))
    (out / "history.json").write_text("{}")
    r = run_cli("compress", str(digits_model), *FAST, "-o", str(out))
    assert_clean_error(r, 2, "federated simulate", "--overwrite")


def test_failed_run_creates_nothing(digits_model, tmp_path):
    out = tmp_path / "a" / "b" / "out"
    r = run_cli("compress", str(digits_model), "--recipe", "int8-ptq", "--data",
                str(tmp_path / "missing.npz"), "-o", str(out))
    assert_clean_error(r, 2, "dataset not found")
    assert list(tmp_path.iterdir()) == []  # not even the parent folders


def test_concurrent_run_locked_out_and_kill_leaves_nothing(digits_model, tmp_path):
    out = tmp_path / "out"
    first = _edgenn("compress", str(digits_model), "--recipe", "int8-qat", "--data", "digits",
                    "-o", str(out), "--quiet")
    deadline = time.monotonic() + 120
    while not _leftovers(tmp_path, "out"):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.2)
    second = run_cli("compress", str(digits_model), *FAST, "-o", str(out))
    assert_clean_error(second, 2, "another edgenn run is writing", "wait")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    deadline = time.monotonic() + 10
    while _leftovers(tmp_path, "out") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(tmp_path, "out") == []  # the guardian removed the killed run's staging
    assert not out.exists()


def test_read_only_file_system_is_one_line(digits_model, models, tmp_path):
    # A real read-only mount, in a private mount namespace (needs root, as CI runs).
    ro = tmp_path / "ro"
    ro.mkdir()
    code = ("import subprocess, sys; subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro', 'tmpfs', "
            f"{str(ro)!r}], check=True); from edgenn.cli.main import main; main()")
    for args in (["compress", str(digits_model), *FAST, "-o", str(ro / "out")],
                 ["demo", "-o", str(ro / "demo"), "--epochs", "1", "--quick"],
                 ["profile", str(models / "tfk_cnn.tflite"), "--runs", "3", "--plot", str(ro / "p.png")]):
        proc = subprocess.run(["unshare", "-m", sys.executable, "-c", code, *args],
                              capture_output=True, text=True, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and "Read-only file system" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_file_written_before_a_failed_comparison_is_removed(tmp_path):
    """convert writes its artifact, then runs and compares it: when that comparison fails with
    an error (here the source model outputs NaN; also out of memory, Ctrl-C), the artifact was
    left at -o. Only a finished check that fails (exit 3) keeps it, for inspection."""
    import keras

    inp = keras.Input((4,))
    keras.Model(inp, keras.ops.log(keras.layers.Dense(3)(inp) - 100.0)).save(tmp_path / "nan.keras")
    out = tmp_path / "nan.tflite"
    r = run_cli("convert", str(tmp_path / "nan.keras"), "--to", "tflite", "-o", str(out))
    assert_clean_error(r, 3, "outputs NaN or infinity")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.keras"]


def test_a_convert_killed_during_its_check_leaves_nothing(digits_model, tmp_path):
    """convert writes its artifact, then runs and compares it. A run killed there (kill -9,
    the kernel's OOM killer) left the unchecked file at -o: now it is written and checked in
    a staging folder, which the guardian removes."""
    out = tmp_path / "m.tflite"
    run = _edgenn("convert", str(digits_model), "--to", "tflite", "--quantize", "int8",
                  "--data", "digits", "-o", str(out))
    deadline = time.monotonic() + 120
    staged = []
    while not staged:  # the artifact is written: its check is running
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        staged = [p for d in _leftovers(tmp_path, "m.tflite") for p in (tmp_path / d).iterdir()
                  if p.name == "m.tflite"]
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert run.returncode == -signal.SIGKILL  # killed before it finished
    deadline = time.monotonic() + 10
    while _leftovers(tmp_path, "m.tflite") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
