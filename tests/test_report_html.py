"""`edgenn report`: real runs on one page, rendered by a real headless browser (Debian's chromium)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
from PIL import Image

from conftest import assert_clean_error, run_cli


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    return path


def test_report_compares_runs_and_renders_in_chromium(digits_model, tmp_path):
    runs = []
    for recipe in ("int8-ptq", "float16"):
        out = tmp_path / recipe
        r = run_cli("compress", str(digits_model), "-r", recipe, "--data", "digits", "-o", str(out),
                    "--quiet")
        assert r.code == 0, r.err
        runs.append(str(out))
    copy = tmp_path / "copy.tflite"  # a model file as it is: estimated and measured, no accuracy
    copy.write_bytes((tmp_path / "int8-ptq" / "model.tflite").read_bytes())
    runs.append(str(copy))

    page = tmp_path / "report.html"
    r = run_cli("report", *runs, "-o", str(page), "--device", "raspberry-pi-4", "--device",
                "pixel-phone", "--json", block_tf=True)  # no TensorFlow needed
    assert r.code == 0, r.err
    doc = r.json()
    rows = {row["run"]: row for row in doc["rows"]}
    assert set(rows) == {"int8-ptq", "float16", "copy.tflite"}
    assert rows["copy.tflite"]["accuracy"] is None and rows["copy.tflite"]["host_p50_ms"] > 0
    int8, f16 = rows["int8-ptq"], rows["float16"]
    assert int8["bytes"] < f16["bytes"]  # int8 weights are half of float16's
    assert int8["estimates"]["raspberry-pi-4"]["latency_ms"] > 0
    assert int8["estimates"]["pixel-phone"]["latency_ms"] > 0
    assert int8["host_p50_ms"] > 0 and f16["host_p50_ms"] > 0  # measured here
    assert doc["curves"] == {}  # federated curves: test_demo's full run draws one
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    assert "<script" not in text and "src=" not in text

    # a real browser: it renders, logs no console errors, and the screenshot is not blank
    shot = tmp_path / "shot.png"
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                           "--window-size=1280,1800", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 100).mean() > 0.005  # text and chart strokes were drawn
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<tr") >= 4 and dom.count("<circle") >= 2

    md = tmp_path / "report.md"
    r = run_cli("report", *runs, "-o", str(md), "--no-measure", block_tf=True)
    assert r.code == 0, r.err
    assert "| int8-ptq |" in md.read_text()


def test_report_refuses_in_one_line(digits_model, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli("report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html"), block_tf=True)
    assert_clean_error(r, 2, "holds no edgenn results")
    r = run_cli("report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html"), block_tf=True)
    assert_clean_error(r, 2, "is not a folder")
    broken = {  # a result file as it must not crash the report: what the one line says
        ("bad", "report.json", "[1, 2"): "not readable JSON",
        ("deep", "front.json", "[" * 100_000 + "]" * 100_000): "not readable JSON",
        ("odd", "report.json", '{"artifacts": [1, 2], "metrics": "x"}'): "cannot read",
    }
    for (folder, name, text), needle in broken.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(text)
        r = run_cli("report", str(tmp_path / folder), "-o", str(tmp_path / "r.html"),
                    block_tf=True)
        assert_clean_error(r, 2, needle)
    r = run_cli("report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.pdf"), block_tf=True)
    assert_clean_error(r, 2, ".html or .md")
    (tmp_path / "r.html").write_text("mine")
    r = run_cli("report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html"), block_tf=True)
    assert_clean_error(r, 2, "exists", "--overwrite")
    assert (tmp_path / "r.html").read_text() == "mine"
