"""Flower ClientApps: simulated devices that train the deployed .tflite (or the Keras model).

Runs inside Ray workers: the job (paths and settings) travels in a closure; data and
partitions are rebuilt from the seed and cached per worker. The TFLite client imports no
TensorFlow.
"""

from __future__ import annotations

import functools

import numpy as np

from .job import SIMULATED_FAILURE, ClientJob


@functools.lru_cache(maxsize=4)
def job_data(source: str, clients: int, partition_key: str, seed: int):
    import json

    from ..data import DataSpec, load
    from .partition import partition

    splits = load(DataSpec(source, seed=seed))
    x = splits.x_train.reshape(len(splits.x_train), *splits.sample_shape)
    parts = partition(splits.y_train, clients, json.loads(partition_key), seed=seed)
    return x, splits.y_train, parts


def _names(n_layers: int) -> list[str]:
    return sorted([f"w{i}" for i in range(n_layers)] + [f"b{i}" for i in range(n_layers)])


@functools.lru_cache(maxsize=2)
def _keras_model(path: str):
    from .._tf import tf_keras

    return tf_keras().models.load_model(path, compile=False)


def _train_tflite(job, weights, x, y, seed, mu):
    """Local epochs in LiteRT on the trainable .tflite: (weights, loss, accuracy, train seconds)."""
    import time

    from ..runtime.trainable import TrainableRunner

    runner = TrainableRunner(job.trainable)
    runner.set_weights(weights)  # also the anchor of the proximal term
    loss = float("nan")
    t0 = time.perf_counter()
    for epoch in range(job.local_epochs):
        loss = runner.train_epoch(x, y, job.lr, seed=seed + epoch, mu=mu)
    seconds = time.perf_counter() - t0
    acc = float((runner.predict(x).argmax(1) == y).mean())
    return runner.get_weights(), loss, acc, seconds


def _train_keras(job, weights, x, y, seed, mu):
    """Local epochs with tf_keras: model.fit, or a GradientTape loop when FedProx's mu > 0."""
    import time

    from .._tf import tf, tf_keras

    tfk = tf_keras()
    model = _keras_model(job.keras)
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    for i, layer in enumerate(dense):
        layer.set_weights([weights[f"w{i}"], weights[f"b{i}"]])
    tfk.utils.set_random_seed(seed)
    ce = tfk.losses.SparseCategoricalCrossentropy(from_logits=not job.softmax)
    t0 = time.perf_counter()
    if mu:
        tensorflow = tf()
        opt = tfk.optimizers.SGD(job.lr)
        params = model.trainable_variables
        anchor = [tensorflow.constant(p) for p in params]
        rng = np.random.default_rng(seed)
        b = job.batch_size
        for _ in range(job.local_epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(order) - b + 1, b):
                idx = order[start:start + b]
                with tensorflow.GradientTape() as tape:
                    loss_t = ce(y[idx], model(x[idx], training=True))
                    prox = tensorflow.add_n([tensorflow.reduce_sum(tensorflow.square(p - a))
                                             for p, a in zip(params, anchor)])
                    objective = loss_t + 0.5 * mu * prox
                opt.apply_gradients(zip(tape.gradient(objective, params), params))
        loss = float(loss_t)
    else:
        model.compile(tfk.optimizers.SGD(job.lr), ce)
        hist = model.fit(x, y, batch_size=job.batch_size, epochs=job.local_epochs,
                         verbose=0)
        loss = float(hist.history["loss"][-1])
    seconds = time.perf_counter() - t0
    out = {}
    for i, layer in enumerate(dense):
        out[f"w{i}"], out[f"b{i}"] = (np.asarray(v) for v in layer.get_weights())
    acc = float((model.predict(x, verbose=0).argmax(1) == y).mean())
    return out, loss, acc, seconds


def make_client_app(job: ClientJob):
    """The ClientApp for a simulation job (pickled into the Ray workers)."""
    from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from .compression import TopK, dequantize_int8, quantize_int8

    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Context):
        """Who am I: the server maps node ids to partition ids once, for seeded sampling."""
        pid = int(context.node_config["partition-id"])
        return Message(content=RecordDict({"who": MetricRecord({"partition-id": pid})}),
                       reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context):
        pid = int(context.node_config["partition-id"])
        config = msg.content["config"]
        server_round = int(config["server-round"])
        mu = float(config.get("proximal-mu", 0.0))
        device = job.fleet[pid]
        if not device.fits:
            metrics = MetricRecord({"num-examples": 0, "excluded": 1})
            return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
        rng = np.random.default_rng([job.seed, server_round, pid])
        if rng.random() < job.failure_rate:
            return Message(error=Error(SIMULATED_FAILURE, f"simulated failure of client {pid} in round "
                                                    f"{server_round}"), reply_to=msg)
        if rng.random() < device.dropout:
            return Message(error=Error(SIMULATED_FAILURE, f"simulated dropout of client {pid} "
                                                    f"({device.device}) in round {server_round}"),
                           reply_to=msg)
        x_all, y_all, parts = job_data(job.data, job.clients, job.partition, job.seed)
        idx = parts[pid]
        names = _names(job.layers)
        old = {k: v.astype(np.float32, copy=False)  # the device holds float32 weights
               for k, v in zip(names, msg.content["arrays"].to_numpy_ndarrays())}
        trainer = _train_tflite if job.runtime == "tflite" else _train_keras
        new, loss, acc, seconds = trainer(job, old, x_all[idx], y_all[idx],
                                          seed=server_round * 1000 + pid, mu=mu)
        delta = {k: new[k] - old[k] for k in names}
        full_bytes = int(sum(v.nbytes for v in delta.values()))
        if job.compression == "int8":
            packed, sent = quantize_int8(delta)
            delta = dequantize_int8(packed)
        elif isinstance(job.compression, dict):
            codec = TopK(job.compression["topk"])
            state = context.state
            if "residual" in state:
                codec.residual = dict(zip(names, state["residual"].to_numpy_ndarrays()))
            packed, sent = codec.encode(delta)
            state["residual"] = ArrayRecord([codec.residual[k].astype(np.float32) for k in names])
            delta = TopK.decode(packed)
        else:
            sent = full_bytes
        arrays = [(old[k] + delta[k]).astype(np.float32) for k in names]
        b = job.batch_size
        trained = (len(idx) // b) * b * job.local_epochs  # static batches: the tail is dropped
        sim = device.seconds(trained, job.seconds_per_sample, job.bytes_down, sent)
        deadline = job.round_deadline
        metrics = MetricRecord({"num-examples": len(idx), "train_loss": loss,
                                "local_accuracy": acc, "bytes_up": sent, "sim_seconds": sim,
                                "samples_trained": trained,
                                "seconds_per_epoch": seconds / job.local_epochs,
                                "straggler": int(deadline is not None and sim > deadline)})
        return Message(content=RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}),
                       reply_to=msg)

    return app
