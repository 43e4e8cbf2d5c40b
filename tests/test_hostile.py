"""Hostile and broken inputs (tests/hostile/generate.py): for every case, the properties edgenn
promises. No payload runs, no exit 1 or hang, one error line and no traceback, nothing created
outside the output, and a failed run's output folder never appears.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "hostile"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile")
    proc = subprocess.run([sys.executable, str(HERE / "generate.py"), str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def results(corpus) -> dict[str, dict]:
    path = corpus / "results.json"
    proc = subprocess.run([sys.executable, str(HERE / "runner.py"), str(corpus), str(path)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["name"]: r for r in json.loads(path.read_text())}


def test_every_case_holds(results):
    problems = []
    for name, r in sorted(results.items()):
        problems += [f"{name}: {p}" for p in case_problems(r)]
    assert not problems, "\n".join(problems)


def case_problems(r: dict) -> list[str]:
    """Every promise a single hostile case can break."""
    out = []
    errors = [line for line in r["err"].splitlines() if line.startswith("error:")]
    debug = "--debug" in r["args"]
    if r["code"] == -1:
        out.append(f"hung past the runner's alarm ({r['args']})")
    if r["code"] == 1:
        out.append(f"exit 1 (internal error): {r['err'][-300:]}")
    if r["code"] not in r["expect"]:
        out.append(f"exit {r['code']}, expected one of {r['expect']}: {r['err'][-300:]}")
    if r["crash"]:
        out.append(f"escaped the CLI: {r['crash'][-500:]}")
    if r["code"] != 0:
        if len(errors) != 1:
            out.append(f"{len(errors)} error lines on stderr: {r['err'][-300:]}")
        noise = [line for line in r["err"].splitlines() if line.strip() and not line.startswith("error:")]
        if noise and not debug:
            out.append(f"stderr holds more than the error line: {noise[:3]}")
        if "Traceback" in r["err"] and not debug:
            out.append("a traceback without --debug")
        if r["needle"] and errors and r["needle"] not in errors[0]:
            out.append(f"the error does not name {r['needle']!r}: {errors[0]}")
        if "--json" in r["args"]:
            try:
                doc = json.loads(r["out"])
            except ValueError:
                out.append(f"--json printed no JSON document on failure: {r['out'][:200]!r}")
            else:
                if doc.get("error", {}).get("exit_code") != r["code"]:
                    out.append(f"--json error document does not carry the exit code: {doc}")
    if r["markers"]:
        out.append(f"a payload ran: {r['markers']}")
    if r["cwd_files"]:
        out.append(f"files created in the working folder: {r['cwd_files'][:3]}")
    allowed = r["output"] if r["code"] == 0 else None
    stray = [f for f in r["created"] if not (allowed and f.startswith(allowed))]
    if stray:
        out.append(f"files created outside the output: {stray[:3]}")
    return out


@pytest.mark.parametrize("family", ["oplambda_write_file", "oplambda_makedirs", "oplambda_savedmodel",
                                    "k3_tfsm_layer"])
def test_code_carriers_refused_under_every_command(results, family):
    """The issue's critical case: each command that loads a model refuses, naming --allow-unsafe."""
    ran = {name.split("/")[1]: r for name, r in results.items() if name.split("/")[0] == family}
    assert set(ran) == {"inspect", "convert", "check", "compress", "federated"}
    for command, r in ran.items():
        assert r["code"] == 2, (command, r["err"])
        assert "--allow-unsafe" in r["err"], (command, r["err"])
        assert not r["markers"], (command, r["markers"])


def test_corpus_covers_each_family(results):
    families = {name.split("/")[0].rstrip("0123456789_") for name in results}
    for needed in ("oplambda_write_file", "sm_write", "sm_init_write", "bomb_keras", "bomb_npz",
                   "yaml_bomb", "deep_50000", "fuzz", "zip_slip", "one_sample", "cpus_99",
                   "huge_input", "huge_arena"):
        assert any(f.startswith(needed.rstrip("0123456789_")) for f in families), needed
    assert sum(name.startswith("fuzz_") for name in results) >= 36


def test_a_model_declaring_huge_inputs_is_described_not_run(results):
    """inspect describes it, and says why the bridge is unchecked; nothing that size was made."""
    doc = json.loads(results["huge_input_keras/inspect"]["out"])
    assert doc["params"] == 16 and doc["bridge"]["ok"] is False
    assert "made-up inputs" in doc["bridge"]["error"], doc["bridge"]


# A child forked from this pytest process (TensorFlow loaded: about 2 GB) starts with the
# parent's pages counted in its ru_maxrss, which survives exec. A small launcher process forks
# the CLI instead, and reports its child's peak.
_LAUNCHER = """
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-c", "from edgenn.cli.main import main; main()",
                       *sys.argv[1:]], capture_output=True)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_measured(args: list[str]) -> tuple[int, float]:
    """Exit code and peak RSS (MB) of `edgenn ARGS` in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], capture_output=True, text=True,
                          timeout=120)
    code, kb = proc.stdout.split()
    return int(code), int(kb) / 1024


@pytest.mark.parametrize("case", ["bomb_keras/inspect", "bomb_fill_h5/inspect", "yaml_bomb/recipe",
                                  "yaml_bomb/federated", "bomb_npz/convert", "deep_50000/inspect"])
def test_bombs_end_fast_in_little_memory(corpus, case):
    """Each bomb in its own process: refused, in bounded memory and time.

    The issue's bar (under 5 s and 500 MB) is measured by bench/hostile_bench.py; here the time
    bound only catches a hang, so a loaded CI machine cannot fail it.
    """
    import time

    spec = next(c for c in json.loads((corpus / "cases.json").read_text()) if c["name"] == case)
    started = time.monotonic()
    code, peak_mb = run_measured(spec["args"])
    seconds = time.monotonic() - started
    assert code == 2
    assert seconds < 30.0, seconds
    assert peak_mb < 500, peak_mb


@pytest.mark.parametrize("case", ["oplambda_write_file/compress", "sm_write/convert",
                                  "too_many_clients/federated", "oplambda_savedmodel/check"])
def test_fresh_process_prints_only_the_error(corpus, case):
    """In a fresh process (TensorFlow's start-up logs and all), stderr holds the error line only."""
    spec = next(c for c in json.loads((corpus / "cases.json").read_text()) if c["name"] == case)
    proc = subprocess.run([sys.executable, "-c", "from edgenn.cli.main import main; main()",
                           *spec["args"], "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_estimate_of_an_onnx_file_that_declares_a_huge_tensor_is_refused_in_little_memory(tmp_path):
    """estimate runs an ONNX file once to size its tensors; a file may declare a 43 GB input or
    resize an 8x8 image to 40000x40000 inside. The run is a child with an address-space limit:
    refused in one line, and this process stays small."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scales = numpy_helper.from_array(np.array([1, 1, 5000, 5000], np.float32), "scales")
    files = {
        "resize": helper.make_graph(
            [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")], "resize",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])], [out], [scales]),
        "input": helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "input",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 60000, 60000])], [out]),
    }
    for name, graph in files.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, tmp_path / f"{name}.onnx")
        code, peak_mb = run_measured(["estimate", str(tmp_path / f"{name}.onnx"), "--device",
                                      "raspberry-pi-4"])
        assert code == 2 and peak_mb < 500, (name, code, peak_mb)
        proc = subprocess.run([sys.executable, "-m", "edgenn", "estimate",
                               str(tmp_path / f"{name}.onnx"), "--device", "raspberry-pi-4"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "needs more than" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
