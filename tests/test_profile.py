"""`edgenn profile` and `edgenn estimate`: real runtimes, isolation, a real sshd, no TensorFlow."""

import json
import subprocess
import sys

from conftest import BLOCK_TF, ROOT, assert_clean_error, run_cli

SCHEMA = {"model", "runtime", "accelerator", "latency_ms", "init_ms", "first_ms", "peak_rss_mb",
          "model_bytes", "rss_growth_mb", "cv", "throughput_per_s", "runs", "stable"}


def test_profile_tflite_and_onnx_side_by_side(models, tmp_path):
    png = tmp_path / "lat.png"
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), str(models / "tfk_cnn_int8.tflite"),
                str(models / "tiny.onnx"), "--runs", "30", "--threads", "1", "--op-profile",
                "--plot", str(png), "--json", block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert [x["runtime"] for x in doc["results"]] == ["litert", "litert", "onnxruntime"]
    for result in doc["results"]:
        assert SCHEMA <= set(result), set(result)
        lat = result["latency_ms"]
        assert {"mean", "p50", "p90", "p99", "std"} <= set(lat)
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert result["runs"] == 30 and result["peak_rss_mb"] > 0
        assert result["stable"] is (result["cv"] <= 0.05)
        assert (f"{result['model']}: unstable timing" in r.err) is not result["stable"]
    import os

    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) > 1:  # --threads 1 pins the run to one CPU, the last
        assert all(x["cpus"] == allowed[-1:] for x in doc["results"])
    assert doc["results"][2]["op_profile"][0]["op"] in {"MatMul", "Add", "Relu", "Gemm", "FusedGemm"}
    assert doc["fastest"] in {x["model"] for x in doc["results"]}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unstable_timing_is_a_warning_that_says_what_to_do():
    from dataclasses import replace

    from edgenn.profile.result import Latency, Measurement

    lat = Latency(mean=4.0, std=0.7, min=3.0, p50=3.29, p90=5.0, p95=6.0, p99=9.8, max=41.0)
    noisy = Measurement("m.tflite", "litert", "xnnpack", 1, 1000, 1.0, 1.0, None, 100, lat, 0.167,
                        250.0, 50.0, 1.0, 49.0)
    msg = noisy.stability_warning()
    assert msg.startswith("m.tflite: unstable timing, CV 16.7% over 100 runs (p50 3.290 ms")
    assert "--cpus" in msg and "\n" not in msg
    assert replace(noisy, cv=0.05).stability_warning() is None  # the bar is inclusive
    assert replace(noisy, runs=5).stability_warning() is None  # too few runs to judge


def test_profile_human_table(models):
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), str(models / "tiny.onnx"),
                "--runs", "5")
    assert r.code == 0, r.err
    assert "p50 ms" in r.out and "fastest (p50)" in r.out


def _with_unknown_custom_op(src, dst):
    """A well-formed .tflite whose first op is a custom op no runtime has: it parses, then fails."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "EdgennNoSuchOp"
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(builder.Output())
    return dst


def test_runtime_failure_is_an_error_for_that_model_only(models, tmp_path):
    failing = _with_unknown_custom_op(models / "tfk_cnn.tflite", tmp_path / "custom.tflite")
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), str(failing), "--runs", "5", "--json")
    assert r.code == 3, r.err
    doc = r.json()  # one document: the results and the error together
    assert "latency_ms" in doc["results"][0]
    assert "EdgennNoSuchOp" in doc["results"][1]["error"]
    assert doc["error"]["exit_code"] == 3
    assert "custom.tflite" in r.err and "Traceback" not in r.err


def test_corrupt_model_refused_before_profiling(models, tmp_path):
    broken = tmp_path / "broken.tflite"
    data = (models / "tfk_cnn.tflite").read_bytes()
    broken.write_bytes(data[:8] + b"\xff" * (len(data) - 8))  # valid header, garbage tables
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), str(broken), "--runs", "5")
    assert_clean_error(r, 2, "broken.tflite", "truncated or corrupt")
    assert r.out == ""  # nothing was measured: the inputs are checked first


def test_memory_limit_and_timeout_become_errors(models):
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), "--memory-limit", "64", "--json")
    assert r.code == 3
    assert "error" in r.json()["results"][0]
    t = run_cli("profile", str(models / "tfk_cnn.tflite"), "--duration", "30", "--timeout", "2",
                "--json")
    assert t.code == 3 and "timed out after 2 s" in t.json()["results"][0]["error"]


def test_a_shell_memory_limit_below_the_profilers_is_kept(models):
    """The profiler's child runs under an address-space limit of 3/4 of the memory available;
    under a shell's lower `ulimit -v` (a hard limit) raising to it failed in the child's
    preexec_fn: exit 1, "Exception occurred in preexec_fn". The shell's limit is kept."""
    import resource
    import subprocess
    import sys

    def lower():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    proc = subprocess.run([sys.executable, "-c", "from edgenn.cli.main import main; main()",
                           "profile", str(models / "tfk_cnn.tflite"), "--runs", "2", "--json"],
                          capture_output=True, text=True, timeout=120, preexec_fn=lower)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout)["results"][0]["latency_ms"]["p50"] > 0


def test_interpret_signal():
    from edgenn.profile.isolate import interpret

    assert "crashed (SIGSEGV)" in interpret("m", -11, "", "")["error"]


def test_agent_imports_no_tensorflow(models):
    cfg = json.dumps({"model": str(models / "tfk_cnn.tflite"), "runtime": "litert",
                      "accelerator": "xnnpack", "runs": 3})
    agent = ROOT / "edgenn" / "profile" / "agent.py"
    code = (BLOCK_TF + f"\nimport runpy, sys\nsys.argv = ['agent.py', {cfg!r}]\n"
            f"runpy.run_path({str(agent)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("EDGENN-RESULT ")][0]
    assert json.loads(line.split(" ", 1)[1])["runs"] == 3


def test_compiled_model_path_runs_on_cpu(models):
    """The GPU accelerator goes through LiteRT's CompiledModel; the same code runs on its CPU."""
    import numpy as np

    from edgenn.profile.agent import LiteRTCompiled
    from edgenn.runtime.litert import TFLiteRunner

    runner = LiteRTCompiled({"model": str(models / "tfk_cnn.tflite")}, "cpu")
    (shape, dtype), = runner.input_specs()
    x = np.random.default_rng(0).random(shape).astype(dtype)
    runner.set_inputs([x])
    runner.run()
    reference = TFLiteRunner(models / "tfk_cnn.tflite").predict(x)[0]
    got = np.asarray(runner.outputs_buf[0].read(reference.size, np.float32)).reshape(reference.shape)
    assert np.abs(reference).max() > 0  # a real answer, not zeros
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)


def test_missing_accelerators_say_so(models):
    tpu = run_cli("profile", str(models / "tfk_cnn_int8.tflite"), "--accelerator", "edgetpu",
                  "--runs", "3")
    assert_clean_error(tpu, 3, "libedgetpu", "Edge TPU runtime")
    gpu = run_cli("profile", str(models / "tfk_cnn.tflite"), "--accelerator", "gpu", "--runs", "3",
                  "--json")
    result = gpu.json()["results"][0]
    if "error" in result:  # no GPU on this machine or CI
        assert gpu.code == 3 and "GPU accelerator" in result["error"]
        assert "ERROR: [" not in result["error"] and "INFO:" not in gpu.err, gpu.err
        assert "--host" in gpu.err  # what to do about it, not "check the model"
    ep = run_cli("profile", str(models / "tiny.onnx"), "--accelerator", "ep:CUDAExecutionProvider")
    assert_clean_error(ep, 3, "CUDAExecutionProvider")


def test_device_limits_warn_or_fail(models, tmp_path):
    small = tmp_path / "tiny-board.yaml"
    small.write_text("name: tiny-board\narch: aarch64\ncores: 1\nmemory_mb: 64\n"
                     "runtimes: [litert]\naccelerators: [xnnpack]\n"
                     "constraints: {max_model_bytes: 100, max_ram_mb: 1}\n")
    warned = run_cli("profile", str(models / "tfk_cnn.tflite"), "--device", str(small), "--runs", "3")
    assert warned.code == 0 and "exceeds the device limit" in warned.err
    strict = run_cli("profile", str(models / "tfk_cnn.tflite"), "--device", str(small), "--runs",
                     "3", "--strict", "--json")
    assert strict.code == 4
    checks = strict.json()["results"][0]["device_checks"]
    assert {c["name"] for c in checks if not c["ok"]} == {"max_model_bytes", "max_ram_mb"}


def test_profile_bad_input(models, tmp_path):
    assert_clean_error(run_cli("profile", str(tmp_path / "none.tflite")), 2, "model not found")
    assert_clean_error(run_cli("profile", str(models / "tfk_cnn.keras")), 2,
                       "profile measures .tflite and .onnx", "edgenn convert")
    assert_clean_error(run_cli("profile", str(models / "tiny.onnx"), "--runtime", "litert"), 2,
                       "is ONNX")
    assert_clean_error(run_cli("profile", str(models / "tiny.onnx"), "--host", "bad host!"), 2,
                       "--host must look like")


def test_remote_profile_over_real_sshd(models, sshd):
    host = f"{sshd.user}@127.0.0.1:{sshd.port}"
    common = ["--identity", str(sshd.identity), "--remote-python", sys.executable]
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), "--host", host, "--known-hosts",
                str(sshd.known_hosts), "--runs", "20", "--json", *common)
    assert r.code == 0, r.err
    result = r.json()["results"][0]
    assert result["host"] == host and result["runs"] == 20 and SCHEMA <= set(result)
    # Host-key checking stays on: without the known_hosts entry, the connection is refused.
    refused = run_cli("profile", str(models / "tfk_cnn.tflite"), "--host", host, "--runs", "3",
                      *common)
    assert_clean_error(refused, 3, "ssh to", "host key")


def test_estimate(models):
    r = run_cli("estimate", str(models / "tfk_cnn_int8.tflite"), "--device", "raspberry-pi-4",
                "--json", block_tf=True)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["estimate"] is True and doc["macs"] == {"int8": 6 * 6 * 4 * 9 + 144 * 3}
    assert doc["latency_ms"] > 0 and doc["ram_mb"] > 0
    human = run_cli("estimate", str(models / "tfk_cnn.tflite"), "--device", "raspberry-pi-4")
    assert human.out.startswith("ESTIMATE")
    tpu = run_cli("estimate", str(models / "tfk_cnn.tflite"), "--device", "coral-usb-accelerator")
    assert_clean_error(tpu, 2, "no float32 throughput")


def test_calibrate_writes_measured_throughput(models, tmp_path):
    import yaml

    device = tmp_path / "my-host.yaml"
    shown = run_cli("devices", "show", "host", "--json").json()
    shown["name"] = "my-host"
    device.write_text(yaml.safe_dump(shown))
    r = run_cli("profile", str(models / "tfk_cnn.tflite"), str(models / "tfk_cnn_int8.tflite"),
                "--device", str(device), "--calibrate", "--runs", "20", "--json")
    assert r.code == 0, r.err
    written = yaml.safe_load(device.read_text())["throughput"]
    assert written["source"] == "measured"
    assert written["float32_gmacs"] == r.json()["calibration"]["throughput"]["float32_gmacs"] > 0
    assert written["int8_gmacs"] > 0
    builtin = run_cli("profile", str(models / "tfk_cnn.tflite"), "--device", "host", "--calibrate")
    assert_clean_error(builtin, 2, "device YAML file of yours")


def test_device_profile_transport_fills_in_the_ssh_details(tmp_path):
    """`profile --device D` reaches D as its profile says; --host overrides what it names."""
    from edgenn import devices as dv
    from edgenn.profile.run import remote_for

    pi = dv.load("raspberry-pi-4")  # transport: {type: ssh, user: pi, port: 22}, no host
    assert remote_for(None, pi) is None  # nowhere to go: the command warns and measures here
    r = remote_for("10.0.0.5", pi)
    assert (r.user, r.address, r.port) == ("pi", "10.0.0.5", 22)
    r = remote_for("bob@10.0.0.5:2200", pi)
    assert (r.user, r.address, r.port) == ("bob", "10.0.0.5", 2200)
    own = tmp_path / "my-pi.yaml"
    own.write_text((ROOT / "devices" / "raspberry-pi-4.yaml").read_text().replace(
        "transport: {type: ssh, user: pi, port: 22}",
        "transport: {type: ssh, user: pi, port: 2222, host: pi.local}"))
    r = remote_for(None, dv.load(str(own)))
    assert (r.user, r.address, r.port) == ("pi", "pi.local", 2222)
    assert remote_for(None, dv.load("host")) is None


def test_int8_slower_than_its_float_model_is_flagged(models):
    """The pairing and the note, on the real fixture files with set timings (the logic under test)."""
    from edgenn.profile.result import Latency, Measurement, ProfileRun
    from edgenn.profile.run import quantization_of, slower_int8

    f32, int8 = models / "tfk_cnn.tflite", models / "tfk_cnn_int8.tflite"
    assert quantization_of(f32) == "float" and quantization_of(int8) == "int8"

    def run(path, p50):
        lat = Latency(p50, 0.0, p50, p50, p50, p50, p50, p50)
        return ProfileRun(str(path), Measurement(str(path), "litert", "xnnpack", 1, 1, 0, 0, None,
                                                 10, lat, 0.01, None, 1, 0, 1))

    notes = slower_int8([run(f32, 1.0), run(int8, 2.0)])
    assert len(notes) == 1 and "tfk_cnn_int8.tflite (int8) is slower" in notes[0]
    assert "tfk_cnn.tflite (float)" in notes[0] and "--host" in notes[0]
    assert slower_int8([run(f32, 1.0), run(int8, 0.5)]) == []
    assert slower_int8([run(int8, 2.0)]) == []  # nothing to compare with


def test_profile_of_a_model_fed_token_ids(models, tmp_path):
    """Found with a text classifier: random int32 inputs are not valid ids, and the Embedding's
    GATHER failed (exit 3) on every model that reads token ids."""
    r = run_cli("convert", str(models / "k3_ids.keras"), "--to", "tflite",
                "-o", str(tmp_path / "ids.tflite"))
    assert r.code == 0, r.err
    r = run_cli("profile", str(tmp_path / "ids.tflite"), "--runs", "5", "--json", block_tf=True)
    assert r.code == 0, r.err
    assert r.json()["results"][0]["runs"] == 5
