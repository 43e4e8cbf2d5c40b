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
from .config import SimulationConfig, Strategy


def _builtin_mlp(sample_shape, classes: int):
    from .._tf import tf_keras

    tfk = tf_keras()
    return tfk.Sequential([tfk.Input(sample_shape), tfk.layers.Flatten(),
                           tfk.layers.Dense(128, activation="relu"), tfk.layers.Dense(classes)],
                          name="builtin_mlp")


def _strategy(cfg: SimulationConfig, log: dict):
    from flwr.serverapp import strategy as fs

    common = {"fraction_train": cfg.fraction_fit, "fraction_evaluate": 0.0,
              "min_train_nodes": min(cfg.min_fit_clients, cfg.clients),
              "min_available_nodes": cfg.clients}
    defaults = {Strategy.fedavgm: 1.0, Strategy.fedadam: 0.01, Strategy.fedyogi: 0.01,
                Strategy.fedadagrad: 0.1}
    eta = cfg.server_lr if cfg.server_lr is not None else defaults.get(cfg.strategy, 1.0)
    choice = {
        Strategy.fedavg: (fs.FedAvg, {}),
        Strategy.fedavgm: (fs.FedAvgM, {"server_learning_rate": eta,
                                        "server_momentum": cfg.server_momentum}),
        Strategy.fedadam: (fs.FedAdam, {"eta": eta, "eta_l": cfg.lr}),
        Strategy.fedyogi: (fs.FedYogi, {"eta": eta, "eta_l": cfg.lr}),
        Strategy.fedadagrad: (fs.FedAdagrad, {"eta": eta, "eta_l": cfg.lr}),
    }
    if cfg.strategy is Strategy.fedprox:
        raise UsageError("fedprox needs a proximal term in the client's loss, which the trainable "
                         "export does not have yet", "use fedavg, fedavgm, fedadam, fedyogi or "
                         "fedadagrad")
    cls, extra = choice[cfg.strategy]

    class Counting(cls):
        """Records who took part in each round and the bytes they sent."""

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            ok = [r for r in replies if not r.has_error()]
            metrics = [r.content["metrics"] for r in ok]
            local = sorted(float(m["local_accuracy"]) for m in metrics)
            log[server_round] = {
                "participants": len(ok), "dropped": len(replies) - len(ok),
                "bytes_up": int(sum(int(m["bytes_up"]) for m in metrics)),
                "client_accuracy_mean": float(np.mean(local)) if local else None,
                "client_accuracy_worst_decile": float(np.mean(local[: max(1, len(local) // 10)]))
                if local else None,
            }
            return super().aggregate_train(server_round, replies)

    return Counting(**common, **extra)


def simulate(cfg: SimulationConfig, out: Path, ray_address: str | None = None,
             log=lambda m: None) -> dict:
    """Run the simulation and write history.json, the global models, report.md and a plot."""
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from ..artifacts import write_text
    from ..data import DataSpec, load
    from ..models.load import load_keras
    from ..runtime.trainable import TrainableRunner
    from .clients import make_client_app
    from .trainable import export_trainable

    out.mkdir(parents=True, exist_ok=True)
    splits = load(DataSpec(cfg.data, seed=cfg.seed))
    classes = splits.num_classes
    if cfg.model == "builtin:mlp":
        from .._tf import tf_keras

        tf_keras().utils.set_random_seed(cfg.seed)
        model = _builtin_mlp(splits.sample_shape, classes)
    else:
        model = load_keras(cfg.model).tf_keras_model
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
    job = {"data": cfg.data, "clients": cfg.clients, "partition": json.dumps(cfg.partition),
           "seed": cfg.seed, "trainable": str(trainable), "keras": str(keras_path),
           "layers": len(names) // 2, "runtime": cfg.client_runtime.value, "lr": cfg.lr,
           "local_epochs": cfg.local_epochs, "batch_size": cfg.batch_size,
           "compression": cfg.compression, "failure_rate": cfg.failure_rate, "softmax": softmax}

    rounds: dict[int, dict] = {}
    participation: dict[int, dict] = {}
    final: dict = {}
    clock = {"t": time.perf_counter()}
    x_test, y_test = splits.x_test, splits.y_test

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

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = _strategy(cfg, participation)
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

        logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(server_app=server, client_app=make_client_app(job),
                   num_supernodes=cfg.clients, backend_config=backend)
    if not final:
        raise UsageError("the simulation produced no rounds", "see the Flower log above")

    bytes_down_each = int(sum(v.nbytes for v in runner.get_weights().values()))
    history = []
    for rnd in sorted(k for k in rounds if k > 0):
        p = participation.get(rnd, {})
        sent_to = p.get("participants", 0) + p.get("dropped", 0)
        history.append({**rounds[rnd], "participants": p.get("participants", 0),
                        "dropped": p.get("dropped", 0), "stragglers": 0,
                        "bytes_up": p.get("bytes_up", 0), "bytes_down": sent_to * bytes_down_each,
                        "sim_round_seconds": None,
                        "client_accuracy_mean": p.get("client_accuracy_mean"),
                        "client_accuracy_worst_decile": p.get("client_accuracy_worst_decile")})
    document = {"config": cfg.model_dump(mode="json"), "initial_accuracy": rounds[0]["accuracy"],
                "rounds": history, "seconds": round(time.perf_counter() - started, 2)}
    write_text(out / "history.json", json.dumps(document, indent=2))
    _write_models(model, names, final["arrays"].to_numpy_ndarrays(), out)
    write_text(out / "report.md", _report(document))
    _plot(history, out / "accuracy.png")
    keras_path.unlink()
    return document


def _write_models(model, names, arrays, out: Path) -> None:
    from ..artifacts import atomic_path
    from ..convert.tflite import to_tflite

    weights = dict(zip(names, arrays))
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    for i, layer in enumerate(dense):
        layer.set_weights([weights[f"w{i}"], weights[f"b{i}"]])
    with atomic_path(out / "global.keras") as tmp:
        model.save(tmp)
    with atomic_path(out / "global.tflite") as tmp:
        tmp.write_bytes(to_tflite(model))


def _report(doc: dict) -> str:
    cfg = doc["config"]
    lines = [f"# edgenn federated simulate: {cfg['strategy']}, {cfg['clients']} clients, "
             f"{cfg['rounds']} rounds", "",
             f"- data {cfg['data']}, partition {cfg['partition']}, fraction_fit {cfg['fraction_fit']}, "
             f"client runtime {cfg['client_runtime']}, compression {cfg['compression']}",
             f"- initial accuracy {doc['initial_accuracy']:.4f}; {doc['seconds']} s", "",
             "| round | accuracy | loss | participants | dropped | MB up | MB down |",
             "|---|---|---|---|---|---|---|"]
    for r in doc["rounds"]:
        lines.append(f"| {r['round']} | {r['accuracy']:.4f} | {r['loss']:.4f} | {r['participants']} "
                     f"| {r['dropped']} | {r['bytes_up'] / 1e6:.3f} | {r['bytes_down'] / 1e6:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(history: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    acc = [r["accuracy"] for r in history]
    mb = np.cumsum([(r["bytes_up"] + r["bytes_down"]) / 1e6 for r in history])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot([r["round"] for r in history], acc, marker="o")
    a.set_xlabel("round")
    a.set_ylabel("global test accuracy")
    b.plot(mb, acc, marker="o")
    b.set_xlabel("MB communicated (cumulative)")
    b.set_ylabel("global test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
