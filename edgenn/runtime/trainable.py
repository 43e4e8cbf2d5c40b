"""Train and run a trainable .tflite (train/infer/get_weights/set_weights signatures) on LiteRT.

Device side: numpy and ai-edge-litert only. This is what a simulated federated client runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RuntimeFailure
from ..quiet import quiet_stderr
from .litert import _interpreter_class


class TrainableRunner:
    """One interpreter with the four signatures of edgenn's trainable export."""

    def __init__(self, model: str | Path | bytes):
        cls = _interpreter_class()
        with quiet_stderr():
            if isinstance(model, (bytes, bytearray)):
                self.interpreter = cls(model_content=bytes(model))
            else:
                self.interpreter = cls(model_path=str(model))
        signatures = self.interpreter.get_signature_list()
        missing = {"train", "infer", "get_weights", "set_weights"} - set(signatures)
        if missing:
            raise RuntimeFailure(f"the model lacks the signatures {sorted(missing)}",
                                 "export it with `edgenn convert --to tflite --trainable`")
        self._train = self.interpreter.get_signature_runner("train")
        self._infer = self.interpreter.get_signature_runner("infer")
        self._get = self.interpreter.get_signature_runner("get_weights")
        self._set = self.interpreter.get_signature_runner("set_weights")
        detail = self._train.get_input_details()["x"]
        self.batch_size = int(detail["shape"][0])

    def train_epoch(self, x: np.ndarray, y: np.ndarray, lr: float, seed: int = 0) -> float:
        """One pass over (x, y) in shuffled static batches (a short last batch is dropped)."""
        order = np.random.default_rng(seed).permutation(len(x))
        b = self.batch_size
        lr_value = np.array(lr, dtype=np.float32)
        losses = []
        for start in range(0, len(order) - b + 1, b):
            idx = order[start:start + b]
            out = self._train(x=x[idx].astype(np.float32), y=y[idx].astype(np.int32), lr=lr_value)
            losses.append(float(out["loss"]))
        return float(np.mean(losses)) if losses else float("nan")

    def predict(self, x: np.ndarray) -> np.ndarray:
        b = self.batch_size
        outs = []
        for start in range(0, len(x), b):
            chunk = x[start:start + b].astype(np.float32)
            real = len(chunk)
            if real < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - real, axis=0)])
            outs.append(self._infer(x=chunk)["output"][:real])
        return np.concatenate(outs)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self._get().items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._set(**{k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})
