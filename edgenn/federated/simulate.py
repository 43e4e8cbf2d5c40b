"""`edgenn federated simulate`: a fleet of simulated devices on Flower's simulation engine.

edgenn schedules nothing itself: Flower's ServerApp drives the rounds through a strategy, and
its Ray backend runs the ClientApps (the same run goes to a Ray cluster with --ray-address).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..raycluster import check_ray_address
from .config import SimulationConfig
from .history import CentralizedReference, RoundRecord, SimulationResult, plot
from .job import ClientJob
from .server import make_strategy, partition_ids
from .strategies import server_lr_at, server_settings  # noqa: F401 (the simulation's API)


def _builtin_mlp(sample_shape, classes: int):
    from .._tf import tf_keras

    tfk = tf_keras()
    return tfk.Sequential([tfk.Input(sample_shape), tfk.layers.Flatten(),
                           tfk.layers.Dense(128, activation="relu"), tfk.layers.Dense(classes)],
                          name="builtin_mlp")


def simulate(cfg: SimulationConfig, out: Path, ray_address: str | None = None,
             log=lambda m: None, overwrite: bool = False, allow_unsafe: bool = False,
             custom_objects_file: str | None = None) -> SimulationResult:
    """Run the simulation and write history.json, the global models, report.md and a plot.

    ``out`` is written through a locked staging folder (``edgenn.outdir``): it must be new, empty
    or a finished simulation (else ``overwrite``), and a failed run leaves nothing in it.
    """
    from ..outdir import OutputDir
    from . import fleet as fleet_mod

    outdir = OutputDir(out, "federated simulate", overwrite=overwrite)
    outdir.check()
    if ray_address:
        check_ray_address(ray_address)
    fleet_mod.plan(cfg, 0)  # unknown device profiles fail before any work
    from ..data import check

    check(cfg.data)
    staging = outdir.open()
    try:
        document = _simulate(cfg, staging, ray_address, log, allow_unsafe, custom_objects_file)
    except BaseException:
        outdir.abort()
        raise
    outdir.commit()
    return document


def _simulate(cfg: SimulationConfig, out: Path, ray_address: str | None, log, allow_unsafe: bool,
              custom_objects_file: str | None) -> SimulationResult:
    from .._tf import tf

    tf()  # Flower's simulation imports TensorFlow; import it here, where its start-up logs are hidden
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from ..artifacts import write_text
    from ..convert.trainable import export_trainable
    from ..data import DataSpec, load
    from ..models.load import load_keras
    from ..runtime.trainable import TrainableRunner, training_memory_bytes
    from . import fleet as fleet_mod
    from .clients import make_client_app

    splits = load(DataSpec(cfg.data, seed=cfg.seed))
    classes = splits.num_classes
    if cfg.model == "builtin:mlp":
        from .._tf import tf_keras

        tf_keras().utils.set_random_seed(cfg.seed)
        model = _builtin_mlp(splits.sample_shape, classes)
    else:
        model = load_keras(cfg.model, allow_unsafe=allow_unsafe,
                           custom_objects_file=custom_objects_file).tf_keras_model
    if cfg.clients > len(splits.x_train):
        raise UsageError(f"{cfg.clients} clients but only {len(splits.x_train)} training samples",
                         "lower clients")
    trainable = out / "trainable.tflite"
    trainable.write_bytes(export_trainable(model, cfg.batch_size, "all"))
    keras_path = out / "initial.keras"
    model.save(keras_path)
    runner = TrainableRunner(trainable)
    names = sorted(runner.get_weights())
    softmax = getattr(getattr(model.layers[-1], "activation", None), "__name__", "") == "softmax"
    need = training_memory_bytes(trainable)
    fleet = fleet_mod.plan(cfg, need)
    if not any(d.fits for d in fleet):
        raise UsageError(f"the model needs about {need / 2**20:.1f} MB to train and fits none of "
                         "the devices", "raise memory_mb in devices, or use a smaller model")
    x_flat = splits.x_train.reshape(len(splits.x_train), *splits.sample_shape)
    per_sample = cfg.host_seconds_per_sample or fleet_mod.seconds_per_sample(
        runner, x_flat, splits.y_train, cfg.lr)
    bytes_down_each = int(sum(v.nbytes for v in runner.get_weights().values()))
    job = ClientJob(data=cfg.data, clients=cfg.clients, partition=json.dumps(cfg.partition),
                    seed=cfg.seed, trainable=str(trainable), keras=str(keras_path),
                    layers=len(names) // 2, runtime=cfg.client_runtime.value, lr=cfg.lr,
                    local_epochs=cfg.local_epochs, batch_size=cfg.batch_size,
                    compression=cfg.compression, failure_rate=cfg.failure_rate, softmax=softmax,
                    fleet=tuple(fleet), seconds_per_sample=per_sample, bytes_down=bytes_down_each,
                    round_deadline=cfg.round_deadline)

    rounds: dict[int, dict] = {}
    participation: dict[int, dict] = {}
    final: dict = {}
    clock = {"t": time.perf_counter()}
    x_test, y_test = ((splits.x_val, splits.y_val) if cfg.evaluate_on == "validation"
                      else (splits.x_test, splits.y_test))

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        r = TrainableRunner(trainable)
        r.set_weights(dict(zip(names, arrays.to_numpy_ndarrays())))
        out_ = r.predict(x_test)
        prob = out_ if softmax else np.exp(out_ - out_.max(1, keepdims=True))
        prob = prob / prob.sum(1, keepdims=True)
        loss = float(-np.mean(np.log(np.clip(prob[np.arange(len(y_test)), y_test], 1e-12, 1))))
        acc = float(np.mean(out_.argmax(1) == y_test))
        now = time.perf_counter()
        rounds[server_round] = {"round": server_round, "accuracy": acc, "loss": loss,
                                "wall_seconds": round(now - clock["t"], 3)}
        clock["t"] = now
        final["arrays"] = arrays
        log(f"round {server_round}: accuracy {acc:.4f} loss {loss:.4f}")
        return MetricRecord({"accuracy": acc, "loss": loss})

    server = ServerApp()

    node_order: dict[int, int] = {}

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        node_order.update(partition_ids(grid, cfg.clients))
        strategy = make_strategy(cfg, participation, node_order, log)
        init = ArrayRecord([runner.get_weights()[n] for n in names])
        strategy.start(grid=grid, initial_arrays=init, num_rounds=cfg.rounds,
                       evaluate_fn=evaluate)

    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"logging_level": "ERROR", "log_to_driver": False}}
    if ray_address:
        backend["init_args"]["address"] = ray_address
    started = time.perf_counter()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if os.environ.get("EDGENN_DEBUG") != "1":
        import logging

        # Flower logs every failed client with its traceback; edgenn counts them and reports
        # unexpected ones in one line each round. --debug shows Flower's own log.
        logging.getLogger("flwr").setLevel(logging.CRITICAL)
    run_simulation(server_app=server, client_app=make_client_app(job),
                   num_supernodes=cfg.clients, backend_config=backend)
    if not final:
        raise UsageError("the simulation produced no rounds",
                         "run again with --debug to see Flower's log")

    history = []
    for rnd in sorted(k for k in rounds if k > 0):
        p = participation.get(rnd, {})
        sent_to = (p.get("participants", 0) + p.get("dropped", 0) + p.get("stragglers", 0)
                   + p.get("excluded", 0))
        r = rounds[rnd]
        history.append(RoundRecord(
            rnd, r["accuracy"], r["loss"], r["wall_seconds"], p.get("participants", 0),
            p.get("dropped", 0), p.get("stragglers", 0), p.get("excluded", 0),
            tuple(p.get("sampled", [])), p.get("bytes_up", 0), sent_to * bytes_down_each,
            p.get("sim_round_seconds"), p.get("samples_trained", 0),
            p.get("client_seconds_per_epoch"), p.get("client_accuracy_mean"),
            p.get("client_accuracy_worst_decile"), p.get("server_lr")))
    seconds = round(time.perf_counter() - started, 2)
    reference = None
    if cfg.centralized_reference:
        passes = sum(r.samples_trained for r in history)
        reference = _centralized(trainable, x_flat, splits.y_train, x_test,
                                 y_test, cfg, passes)
        log(f"centralized reference ({passes} sample passes): accuracy {reference.accuracy:.4f}")
    result = SimulationResult(cfg.model_dump(mode="json"), server_settings(cfg), rounds[0]["accuracy"],
                              tuple(history), seconds, reference, fleet_mod.summary(fleet, need),
                              per_sample)
    write_text(out / "history.json", json.dumps(result.to_dict(), indent=2))
    _write_models(model, names, final["arrays"].to_numpy_ndarrays(), out)
    write_text(out / "report.md", result.to_markdown())
    plot([r.to_dict() for r in history], out / "accuracy.png")
    keras_path.unlink()
    return result


def _centralized(trainable, x, y, x_test, y_test, cfg, passes: int) -> CentralizedReference:
    """The same model and optimiser trained on the pooled data for the same sample passes."""
    from ..runtime.trainable import TrainableRunner

    runner = TrainableRunner(trainable)  # initial weights, as exported
    t0 = time.perf_counter()
    epoch, left = 0, passes
    while left >= runner.batch_size:
        chunk = min(left, len(x))
        runner.train_epoch(x, y, cfg.lr, seed=cfg.seed + epoch, max_samples=chunk)
        left -= (chunk // runner.batch_size) * runner.batch_size
        epoch += 1
    acc = float(np.mean(runner.predict(x_test).argmax(1) == y_test))
    return CentralizedReference(acc, passes, round(passes / len(x), 3),
                                round(time.perf_counter() - t0, 2))


def _write_models(model, names, arrays, out: Path) -> None:
    from ..artifacts import atomic_path
    from ..convert.export import ExportSpec, export

    weights = dict(zip(names, arrays))
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    for i, layer in enumerate(dense):
        layer.set_weights([weights[f"w{i}"], weights[f"b{i}"]])
    with atomic_path(out / "global.keras") as tmp:
        model.save(tmp)
    export(model, ExportSpec(), out / "global.tflite")
