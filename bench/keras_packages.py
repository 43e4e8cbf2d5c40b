"""Trained Keras models that PyPI packages ship as weights, built as the packages build them.

    python bench/keras_packages.py [--only deepcut,chars2vec,mtcnn] [--cache DIR] [--out DIR]

Session 15's figures (bench/RESULTS.md, "Session 15"). Each package's wheel or sdist is
downloaded (``pip download --no-deps``; the network here reaches PyPI) into ``--cache``, its
own model code builds the network (Keras 3: the ``tensorflow.keras`` a TensorFlow 2.21 user
gets; deepcut also in tf_keras, as ``.h5``), its shipped weights are loaded, and the model is
saved as a user would save it. Then the CLI runs the commands whose figures RESULTS quotes and
prints one row per command: exit code and the fidelity or error line.

- deepcut 0.7.0.0: inputs are real Thai words (pythainlp 5.4's ``orst_words_th.txt``, 25 per
  sentence, no spaces) encoded by deepcut's own ``create_feature_array``; labels: word starts.
- chars2vec 0.1.7 (``eng_50``): 3,000 words of Debian's copyright texts, one-hot, pre-padded.
- mtcnn 1.0.0 (ONet): Fashion-MNIST test images at 48x48x3, normalized as mtcnn does.
No accuracy is claimed for chars2vec and mtcnn: their data sets are not here.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

EDGENN = [sys.executable, "-m", "edgenn"]
PACKAGES = {"deepcut": "deepcut==0.7.0.0", "pythainlp": "pythainlp==5.4.0",
            "chars2vec": "chars2vec==0.1.7", "mtcnn": "mtcnn==1.0.0"}


def unpacked(key: str, cache: Path) -> Path:
    """The package's wheel or sdist, downloaded once and unpacked under ``cache``."""
    out = cache / key
    if out.is_dir():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
                    "-q", "-d", str(cache), PACKAGES[key]], check=True)
    name = key.replace("-", "_").lower()
    archive = next(p for p in cache.iterdir() if p.name.lower().startswith(name)
                   and p.suffix in (".whl", ".gz"))
    if archive.suffix == ".whl":
        zipfile.ZipFile(archive).extractall(out)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
    return out


def run(*args: str) -> None:
    if "-o" in args:  # a rerun replaces this script's own outputs
        target = Path(args[args.index("-o") + 1])
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    proc = subprocess.run([*EDGENN, *args], capture_output=True, text=True)
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip().startswith(("fidelity", "error:", "passed", "FAILED", "int8:",
                                         "params", "wrote"))]
    print(f"  exit {proc.returncode}  edgenn {' '.join(args[:2])} ... {' '.join(args[-3:])}")
    for line in lines[-3:]:
        print(f"      {line[:220]}")


def build_in_child(code: str, legacy: bool = False) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)


def deepcut(cache: Path, out: Path) -> None:
    src, thai = unpacked("deepcut", cache), unpacked("pythainlp", cache)
    (src / "deepcut" / "__init__.py").write_text("")  # the package's own imports need pandas
    words = thai / "pythainlp" / "corpus" / "orst_words_th.txt"
    for legacy, name in ((True, "dc.h5"), (False, "dc.keras")):
        build_in_child(f"""
import sys, numpy as np
sys.path.insert(0, {str(src)!r})
from deepcut.model import get_convo_nn2
from deepcut.utils import create_feature_array
m = get_convo_nn2()
m.load_weights({str(src / 'deepcut' / 'weight' / 'cnn_without_ne_ab.h5')!r})
m.save({str(out / name)!r})
rng = np.random.default_rng(0)
words = [w.strip().replace(" ", "") for w in open({str(words)!r}, encoding="utf-8-sig")]
words = [w for w in words if 1 < len(w) < 9]
xs, ts, ys = [], [], []
while sum(len(a) for a in xs) < 6000:
    sent = [words[i] for i in rng.integers(0, len(words), 25)]
    text = "".join(sent)
    starts = np.zeros(len(text)); p = 0
    for w in sent:
        starts[p] = 1; p += len(w)
    xc, xt = create_feature_array(text)
    xs.append(xc); ts.append(xt); ys.append(starts)
from edgenn.data.multi import input_names
names = input_names(m)
np.savez({str(out / name)!r} + ".npz", **{{"x_" + names[0]: np.concatenate(xs).astype("float32"),
         "x_" + names[1]: np.concatenate(ts).astype("float32"), "y": np.concatenate(ys)}})
""", legacy=legacy)
    h5, data = str(out / "dc.h5"), str(out / "dc.h5.npz")
    print("deepcut (tf_keras .h5)")
    run("convert", h5, "--to", "tflite", "--quantize", "int8", "--data", data,
        "-o", str(out / "dc8.tflite"))
    run("convert", h5, "--to", "tflite", "--quantize", "int8", "--data", data, "--keep-float",
        "concatenate,batch_normalization_1", "-o", str(out / "dc8k.tflite"))
    run("convert", h5, "--to", "tflite", "--quantize", "int16x8", "--data", data,
        "-o", str(out / "dc16.tflite"))
    run("convert", h5, "--to", "tflite", "--data", data, "-o", str(out / "dcf.tflite"))
    run("quantize", str(out / "dcf.tflite"), "--mode", "int8", "--data", data,
        "-o", str(out / "dcq.tflite"))
    run("compress", h5, "-r", "distill-half-int8", "--data", data, "--limit", "2000",
        "--epochs-scale", "0.1", "-o", str(out / "dc_distill"))
    print("deepcut (Keras 3 .keras)")
    k3, k3data = str(out / "dc.keras"), str(out / "dc.keras.npz")
    run("convert", k3, "--to", "tflite", "--quantize", "int8", "--data", k3data,
        "-o", str(out / "dk8.tflite"))
    run("convert", k3, "--to", "tflite", "--target", "edgetpu", "--data", k3data,
        "-o", str(out / "dkt.tflite"))
    run("convert", k3, "--to", "tflite", "--quantize", "int16x8", "--data", k3data,
        "-o", str(out / "dk16.tflite"))


def chars2vec(cache: Path, out: Path) -> None:
    src = next(unpacked("chars2vec", cache).glob("chars2vec-*"))
    path = src / "chars2vec" / "trained_models" / "eng_50"
    dim, char_to_ix = pickle.load(open(path / "model.pkl", "rb"))  # the package's own file
    words = set()
    for f in sorted(glob.glob("/usr/share/doc/*/copyright"))[:400]:
        words.update(w.lower() for w in re.findall(r"[A-Za-z]{3,14}", open(f, errors="ignore").read()))
    words = sorted(words)
    np.random.default_rng(0).shuffle(words)
    x = np.zeros((3000, 14, len(char_to_ix)), "float32")
    for i, w in enumerate(words[:3000]):
        for t, c in enumerate(w[-14:]):
            if c in char_to_ix:
                x[i, 14 - len(w[-14:]) + t, char_to_ix[c]] = 1  # pre-padded, as pad_sequences
    np.savez(out / "words.npz", x=x)
    build_in_child(f"""
import tensorflow as tf
keras = tf.keras
inp = keras.layers.Input(shape=(None, {len(char_to_ix)}))
x = keras.layers.LSTM({dim}, return_sequences=True)(inp)
m = keras.models.Model(inp, keras.layers.LSTM({dim})(x))
m.load_weights({str(path / 'weights.h5')!r})
m.save({str(out / 'c2v.keras')!r})
""")
    print("chars2vec (Keras 3 .keras)")
    model, data = str(out / "c2v.keras"), str(out / "words.npz")
    run("convert", model, "--to", "tflite", "--quantize", "int8", "--data", data,
        "-o", str(out / "c8.tflite"))
    run("convert", model, "--to", "tflite", "--quantize", "int16x8", "--data", data,
        "-o", str(out / "c16.tflite"))


def mtcnn(cache: Path, out: Path) -> None:
    src = unpacked("mtcnn", cache)
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
        f.read(16)
        images = np.frombuffer(f.read(28 * 28 * 600), np.uint8).reshape(600, 28, 28, 1)
    try:
        import lz4  # noqa: F401  (mtcnn's weights are joblib files compressed with lz4)
    except ImportError:
        sys.exit("mtcnn's weights need the lz4 package: pip install lz4")
    np.save(out / "faces.npy", images)
    objects = out / "mtcnn_objects.py"
    objects.write_text(f"import sys\nsys.path.insert(0, {str(src)!r})\n"
                       "from mtcnn.network.onet import ONet  # noqa: E402,F401\n")
    build_in_child(f"""
import sys, numpy as np, tensorflow as tf
sys.path.insert(0, {str(src)!r})
from mtcnn.network.onet import ONet
from mtcnn.utils.tensorflow import load_weights
m = ONet(); m.build(); m.set_weights(load_weights("onet.lz4"))
m.save({str(out / 'onet.keras')!r})
x = tf.image.resize(np.repeat(np.load({str(out / 'faces.npy')!r}), 3, -1).astype("float32"),
                    (48, 48)).numpy()
x = (x - 127.5) / 128.0
rng = np.random.default_rng(0)
np.savez({str(out / 'onet.npz')!r}, x=x, y_o_net_0=rng.normal(size=(600, 4)).astype("float32"),
         y_o_net_1=rng.normal(size=(600, 10)).astype("float32"), y_o_net_2=rng.integers(0, 2, 600))
""")
    print("mtcnn ONet (subclassed tf.keras model, Keras 3 .keras)")
    model, data = str(out / "onet.keras"), str(out / "onet.npz")
    run("inspect", model, "--custom-objects", str(objects))
    run("convert", model, "--custom-objects", str(objects), "--to", "tflite", "--quantize",
        "int8", "--data", data, "-o", str(out / "o8.tflite"))
    run("compress", model, "--custom-objects", str(objects), "-r", "int8-ptq", "--data", data,
        "--limit", "300", "-o", str(out / "onet_ptq"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="deepcut,chars2vec,mtcnn")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "edgenn-bench-wheels"))
    parser.add_argument("--out", default="bench/out/keras_packages")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only.split(","):
        {"deepcut": deepcut, "chars2vec": chars2vec, "mtcnn": mtcnn}[name](Path(args.cache), out)


if __name__ == "__main__":
    main()
