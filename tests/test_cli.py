"""The command line itself: start-up cost, conventions, exit codes."""

import json
import subprocess
import sys

from conftest import assert_clean_error, run_cli

IMPORT_CHECK = """
import sys
from edgenn.cli.main import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "keras", "tf_keras", "onnxruntime", "onnx") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def _heavy_modules(args):
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK.format(args=args)],
                          capture_output=True, text=True, timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return proc, line[len("HEAVY="):]


def test_help_imports_no_tensorflow():
    proc, heavy = _heavy_modules(["--help"])
    assert "inspect" in proc.stdout and "demo" in proc.stdout
    assert heavy == ""


def test_devices_list_imports_no_tensorflow():
    proc, heavy = _heavy_modules(["devices", "list", "--json"])
    assert heavy == ""
    names = {d["name"] for d in json.loads(proc.stdout)["devices"]}
    assert {"host", "raspberry-pi-4", "coral-usb-accelerator"} <= names


def test_version():
    from edgenn import __version__

    r = run_cli("--version")
    assert r.code == 0 and __version__ in r.out


def test_unknown_command_is_usage_error():
    r = run_cli("frobnicate")
    assert r.code == 2
    assert "No such command" in r.err


def test_every_command_has_json_quiet_debug():
    from click.testing import CliRunner

    from edgenn.cli.main import COMMANDS, cli

    runner = CliRunner()
    leaf_commands = [["inspect"], ["demo"], ["compress"], ["convert"], ["check"], ["quantize"],
                     ["fit"], ["report"],
                     ["profile"],
                     ["estimate"], ["federated", "simulate"],
                     ["recipes", "list"], ["recipes", "show"],
                     ["recipes", "validate"], ["devices", "list"], ["devices", "show"],
                     ["devices", "validate"]]
    assert {c[0] for c in leaf_commands} == set(COMMANDS)
    for command in leaf_commands:
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, result.output
        for flag in ("--json", "--quiet", "--debug"):
            assert flag in result.output, (command, flag)


def test_debug_shows_traceback_and_default_does_not(tmp_path):
    missing = str(tmp_path / "nope.keras")
    plain = run_cli("inspect", missing)
    assert_clean_error(plain, 2, "model not found", missing)
    debug = run_cli("inspect", missing, "--debug")
    assert debug.code != 0
    assert "Traceback" in debug.err and "InputFileError" in debug.err


def test_device_side_modules_import_without_tensorflow():
    from conftest import BLOCK_TF, ROOT

    modules = [f"edgenn.{pkg}.{p.stem}" for pkg in ("runtime", "profile")
               for p in sorted((ROOT / "edgenn" / pkg).glob("*.py")) if p.stem != "__init__"]
    modules += ["edgenn.fidelity", "edgenn.evaluate", "edgenn.convert.edgetpu",
                "edgenn.convert.gpu", "edgenn.convert.cpu", "edgenn.data"]
    code = BLOCK_TF + "\nimport importlib\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_converter_reason_only_in_its_log_reaches_the_message():
    """TFLite's converter raised with an empty message and put the reason in its C++ log
    ("TFLite conversion (int8) failed:: run ..."); the log is captured and its error named."""
    import os

    from edgenn.quiet import logged_error, quiet_stderr

    log = []
    with quiet_stderr(capture=log):
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: error: no GPU\n"
                    b'loc("model/quant_pad/Pad"): error: \'tfl.pad\' op quantization parameters '
                    b"violate the same scale constraint\n")
    text = "".join(log)
    assert "tfl.pad" in text
    assert logged_error(text) == ("at model/quant_pad/Pad: 'tfl.pad' op quantization parameters "
                                  "violate the same scale constraint")
    assert logged_error("nothing here\n") == ""
