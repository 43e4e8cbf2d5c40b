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
        inputs = self._train.get_input_details()
        self.batch_size = int(inputs["x"]["shape"][0])
        self.has_proximal = "mu" in inputs  # exports before FedProx support lack it

    def train_epoch(self, x: np.ndarray, y: np.ndarray, lr: float, seed: int = 0,
                    mu: float = 0.0, max_samples: int | None = None) -> float:
        """One pass over (x, y) in shuffled static batches (a short last batch is dropped).

        ``mu`` > 0 adds FedProx's proximal term towards the weights last given to set_weights;
        ``max_samples`` stops the pass early (a partial epoch).
        """
        order = np.random.default_rng(seed).permutation(len(x))
        if max_samples is not None:
            order = order[:max_samples]
        b = self.batch_size
        extra = {"lr": np.array(lr, dtype=np.float32)}
        if self.has_proximal:
            extra["mu"] = np.array(mu, dtype=np.float32)
        elif mu:
            raise RuntimeFailure("this trainable model has no proximal term (mu)",
                                 "re-export it with `edgenn convert --to tflite --trainable`")
        losses = []
        for start in range(0, len(order) - b + 1, b):
            idx = order[start:start + b]
            out = self._train(x=x[idx].astype(np.float32), y=y[idx].astype(np.int32), **extra)
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


_DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 8}  # TensorType -> bytes


def training_memory_bytes(path: str | Path) -> int:
    """An upper bound of the memory a trainable .tflite needs while training on a device.

    The file itself (kept mapped by the interpreter) plus every non-constant tensor of every
    signature's subgraph as if none shared memory. The arena planner reuses memory, so the real
    figure is lower; the simulator uses this bound to leave out devices a model cannot fit.
    """
    from .tflite_info import read_model

    model, buf = read_model(path)
    total = len(buf)
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            data = model.Buffers(tensor.Buffer())
            if data is not None and (data.DataLength() or data.Offset() > 1):
                continue  # constant: counted in the file
            shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else []
            total += int(np.prod(np.maximum(shape, 1))) * _DTYPE_BYTES.get(tensor.Type(), 4)
    return int(total)
