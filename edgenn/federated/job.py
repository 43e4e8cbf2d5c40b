"""What every simulated client is told: the job, pickled into the Ray workers once."""

from __future__ import annotations

from dataclasses import dataclass

# Error code of a reply whose failure the simulation injected (failure_rate, dropout), so the
# server tells it from a real client crash without reading the message text.
SIMULATED_FAILURE = 9_001


@dataclass(frozen=True)
class ClientJob:
    """Paths, data and settings a ClientApp needs; the same for every client of a run."""

    data: str
    clients: int
    partition: str  # JSON of the config's partition, the cache key of the split
    seed: int
    trainable: str  # the trainable .tflite the TFLite clients run
    keras: str  # the initial Keras model the Keras clients train
    layers: int  # Dense layers in the trainable head (w0, b0, w1, b1, ...)
    runtime: str  # "tflite" or "keras"
    lr: float
    local_epochs: int
    batch_size: int
    compression: object  # "none", "int8" or {"topk": fraction}
    failure_rate: float
    softmax: bool  # the model ends in a softmax (Keras clients' loss takes probabilities)
    fleet: tuple  # fleet.ClientDevice per partition id
    seconds_per_sample: float
    bytes_down: int
    round_deadline: float | None
