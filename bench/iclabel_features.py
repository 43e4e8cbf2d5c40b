"""ICLabel's input features, made by mne-icalabel's own code from synthetic 32-channel EEG.

    python -m venv /tmp/mne && /tmp/mne/bin/pip install mne scikit-learn onnxruntime psutil \
        mne-icalabel==0.10.0
    /tmp/mne/bin/python bench/iclabel_features.py OUT.npz

(mne is not an edgenn dependency: this runs in a venv of its own.) Twelve 4-minute recordings:
ten brain-like sources each (alpha, theta or beta oscillations with slow envelopes and smooth
scalp maps), frontal eye blinks, temporal muscle bursts, 50 Hz line noise and a heartbeat,
mixed onto the standard 10-20 positions with sensor noise, band-passed 1-100 Hz and average
referenced; then extended-infomax ICA (15 components) and ``get_iclabel_features``, formatted
as mne-icalabel feeds its ONNX network (four views of each component: 720 rows). The .npz holds
``x_topo``, ``x_psds`` and ``x_autocorr``; bench/outside_models.py takes it (``--iclabel``).
About 15 minutes on 2 cores (the ICA).
"""
import sys
from importlib.resources import files

import mne
import numpy as np
import onnxruntime as ort
from mne_icalabel.iclabel.features import get_iclabel_features
from mne_icalabel.iclabel.network import onnx as ic_onnx
from mne_icalabel.iclabel.network.utils import _format_input

NAMES = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz",
         "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO9", "O1", "Oz",
         "O2", "PO10", "AF7", "AF8"]
RATE, SECONDS = 256, 240


def recording(rng, xyz, t):
    """Sources and their scalp maps: brain rhythms, blinks, muscle, line noise, heartbeat."""
    def scalp_map(center, width):
        return np.exp(-(np.linalg.norm(xyz - center, axis=1) / width) ** 2) * rng.choice([-1, 1])

    sources, maps = [], []
    for _ in range(10):
        f = rng.choice([rng.uniform(8, 12), rng.uniform(4, 7), rng.uniform(15, 25)])
        env = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6))
        s = env * np.sin(2 * np.pi * f * t + np.cumsum(rng.normal(0, 0.05, t.size)))
        sources.append(s + 0.3 * np.cumsum(rng.normal(0, 1, t.size)) / np.sqrt(t.size))
        maps.append(scalp_map(xyz[rng.integers(len(NAMES))], rng.uniform(0.04, 0.09)))
    blinks = sum(8 * np.exp(-((t - b) / 0.1) ** 2) for b in rng.uniform(0, SECONDS, SECONDS // 4))
    sources.append(blinks)
    maps.append(np.where(xyz[:, 1] > 0.05, 1.0, 0.1) * scalp_map(np.array([0, 0.1, 0]), 0.08))
    bursts = rng.random(SECONDS + 1)[t.astype(int)] > 0.7
    sources.append(2 * np.convolve(rng.normal(0, 1, t.size), [1, -1], "same") * bursts)
    maps.append(scalp_map(xyz[NAMES.index("T7")], 0.04))
    sources.append(0.5 * np.sin(2 * np.pi * 50 * t))
    maps.append(rng.normal(0, 1, len(NAMES)))
    beats = np.arange(0.3, SECONDS, 60 / rng.uniform(55, 80))
    sources.append(sum(np.exp(-((t - b) / 0.01) ** 2) - 0.3 * np.exp(-((t - b - 0.25) / 0.05) ** 2)
                       for b in beats))
    maps.append(scalp_map(xyz[NAMES.index("P7")], 0.1))
    return np.array(maps).T @ np.array(sources) + 0.2 * rng.normal(0, 1, (len(NAMES), t.size))


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    montage = mne.channels.make_standard_montage("standard_1020")
    pos = montage.get_positions()["ch_pos"]
    xyz = np.array([pos[n] for n in NAMES])
    t = np.arange(RATE * SECONDS) / RATE
    parts = []
    for seed in range(12):
        raw = mne.io.RawArray(recording(rng, xyz, t) * 1e-5, mne.create_info(NAMES, RATE, "eeg"),
                              verbose=False)
        raw.set_montage(montage)
        raw.filter(1.0, 100.0, verbose=False)
        raw.set_eeg_reference("average", verbose=False)
        ica = mne.preprocessing.ICA(n_components=15, method="infomax",
                                    fit_params={"extended": True}, random_state=seed,
                                    verbose=False)
        ica.fit(raw, verbose=False)
        parts.append(ic_onnx._format_input_for_onnx(*_format_input(*get_iclabel_features(raw, ica))))
    topo, psd, ac = (np.concatenate(p) for p in zip(*parts))
    network = files("mne_icalabel.iclabel.network") / "assets" / "ICLabelNet.onnx"
    labels = ort.InferenceSession(str(network)).run(None, {"topo": topo, "psds": psd,
                                                           "autocorr": ac})[0]
    print(topo.shape, psd.shape, ac.shape, "classes answered:",
          np.bincount(labels.argmax(1), minlength=7))
    np.savez(out, x_topo=topo, x_psds=psd, x_autocorr=ac)


if __name__ == "__main__":
    main(sys.argv[1])
