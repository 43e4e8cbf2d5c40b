"""Device profile schema, built-in profiles and the devices command."""

import pytest

from conftest import assert_clean_error, run_cli
from edgenn import devices as dv
from edgenn.errors import ConfigError

ISSUE_DEVICES = {"host", "raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano",
                 "coral-usb-accelerator", "coral-dev-board", "pixel-phone"}


def test_builtin_devices_validate():
    assert ISSUE_DEVICES <= set(dv.builtin_devices())
    for name in dv.builtin_devices():
        profile = dv.load(name)
        assert profile.runtime in profile.runtimes
        assert profile.accelerator in profile.accelerators


def test_device_errors(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("name: board\narch: riscv\ncores: 0\nmemory_mb: 10\nruntimes: [litert]\n"
                    "accelerators: [cpu]\ndefault_runtime: onnxruntime\nturbo: true\n")
    with pytest.raises(ConfigError) as info:
        dv.load(str(path))
    text = "\n".join(info.value.problems)
    assert ":2: arch" in text and "riscv" in text
    assert ":3: cores" in text
    assert ":8: turbo: unknown key 'turbo'; valid keys: accelerators, arch" in text


def test_cli_show_and_validate(tmp_path):
    shown = run_cli("devices", "show", "coral-usb-accelerator", "--json")
    assert shown.code == 0
    assert shown.json()["default_accelerator"] == "edgetpu"
    assert run_cli("devices", "validate", str(dv.resolve("raspberry-pi-4"))).code == 0
    r = run_cli("devices", "show", "toaster")
    assert_clean_error(r, 2, "unknown device 'toaster'", "raspberry-pi-4")
