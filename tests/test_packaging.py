"""A plain, non-editable install finds the built-in recipes and devices by name."""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_install_resolves_builtin_names(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("edgenn-*.whl"))

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip())
    # The wheel goes into the throw-away venv; its dependencies are borrowed from the test
    # environment through a path entry (not a site dir, so its editable install is not seen).
    unpack = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                             "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert unpack.returncode == 0, unpack.stderr
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    probe = ("import edgenn, json; from edgenn import recipe, devices; "
             "print(json.dumps({'file': edgenn.__file__, 'recipes': sorted(recipe.builtin_recipes()),"
             " 'devices': sorted(devices.builtin_devices())}))")
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["file"].startswith(str(site)), doc["file"]  # the installed copy, not the checkout
    assert "int8-ptq" in doc["recipes"] and "raspberry-pi-4" in doc["devices"]

    cli = subprocess.run([str(py), "-c", "from edgenn.cli.main import main; main()", "recipes",
                          "show", "prune-80-int8", "--json"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["steps"][0]["prune"]["target_sparsity"] == 0.8
