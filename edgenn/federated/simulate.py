"""`edgenn federated simulate`: a fleet of simulated devices on Flower's simulation engine.

edgenn schedules nothing itself: Flower's ServerApp drives the rounds through a strategy, and
its Ray backend runs the ClientApps (the same run goes to a Ray cluster with --ray-address).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .config import SERVER_LR, SERVER_TAU, SimulationConfig, Strategy


def _builtin_mlp(sample_shape, classes: int):
    from .._tf import tf_keras

    tfk = tf_keras()
    return tfk.Sequential([tfk.Input(sample_shape), tfk.layers.Flatten(),
                           tfk.layers.Dense(128, activation="relu"), tfk.layers.Dense(classes)],
                          name="builtin_mlp")


class _PartitionOrderGrid:
    """A Grid whose node ids come in partition-id order, so a seeded sample is reproducible.

    Flower's simulation gives nodes random ids; sampling from them with a seeded ``random``
    would still pick different partitions each run.
    """

    def __init__(self, grid, order: dict[int, int]):
        self._grid, self._order = grid, order

    def get_node_ids(self):
        return sorted(self._grid.get_node_ids(), key=lambda n: self._order.get(n, 1 << 62))

    def __getattr__(self, name):
        return getattr(self._grid, name)


def _error_line(reply) -> str:
    """The last meaningful line of a failed client's error (Flower sends the traceback)."""
    reason = str(getattr(reply.error, "reason", "") or "")
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Message:" in ln:
            return ln.split("Message:", 1)[1].strip()
    return lines[-1] if lines else "unknown error"


def _strategy(cfg: SimulationConfig, log: dict, node_order: dict, say=lambda m: None):
    import random

    from flwr.serverapp import strategy as fs

    common = {"fraction_train": cfg.fraction_fit, "fraction_evaluate": 0.0,
              "min_train_nodes": min(cfg.min_fit_clients, cfg.clients),
              "min_available_nodes": cfg.clients}
    settings = server_settings(cfg)
    eta, tau = settings.get("server_lr", 1.0), settings.get("server_tau")
    choice = {
        Strategy.fedavg: (fs.FedAvg, {}),
        Strategy.fedprox: (fs.FedProx, {"proximal_mu": cfg.mu}),
        Strategy.fedavgm: (fs.FedAvgM, {"server_learning_rate": eta,
                                        "server_momentum": cfg.server_momentum}),
        Strategy.fedadam: (fs.FedAdam, {"eta": eta, "eta_l": cfg.lr, "tau": tau}),
        Strategy.fedyogi: (fs.FedYogi, {"eta": eta, "eta_l": cfg.lr, "tau": tau}),
        Strategy.fedadagrad: (fs.FedAdagrad, {"eta": eta, "eta_l": cfg.lr, "tau": tau}),
    }
    cls, extra = choice[cfg.strategy]

    class Counting(cls):
        """Seeded sampling; leaves out excluded clients and stragglers; records each round."""

        def configure_train(self, server_round, arrays, config, grid):
            state = random.getstate()
            random.seed(cfg.seed * 100_003 + server_round)
            try:
                messages = list(super().configure_train(server_round, arrays, config,
                                                        _PartitionOrderGrid(grid, node_order)))
            finally:
                random.setstate(state)
            log.setdefault(server_round, {})["sampled"] = sorted(
                node_order.get(m.metadata.dst_node_id, -1) for m in messages)
            return messages

        def aggregate_train(self, server_round, replies):
            # Replies arrive in completion order; aggregating in partition order makes the float
            # sums, and so a seeded run, the same every time.
            replies = sorted(replies, key=lambda r: node_order.get(r.metadata.src_node_id, 1 << 62))
            answered = [r for r in replies if not r.has_error()]
            real = [_error_line(r) for r in replies
                    if r.has_error() and "simulated" not in _error_line(r)]
            if real:  # a client crashed for a reason the simulation did not inject
                say(f"round {server_round}: {len(real)} client(s) failed: {real[0]}")
            metrics = [r.content["metrics"] for r in answered]
            excluded = [r for r, m in zip(answered, metrics) if int(m.get("excluded", 0))]
            late = [r for r, m in zip(answered, metrics) if int(m.get("straggler", 0))]
            ok = [r for r in answered if r not in excluded and r not in late]
            trained = [r.content["metrics"] for r in answered if r not in excluded]
            used = [r.content["metrics"] for r in ok]
            local = sorted(float(m["local_accuracy"]) for m in used)
            dropped = len(replies) - len(answered)
            sim = [float(m["sim_seconds"]) for m in trained]
            if cfg.round_deadline is not None and (late or dropped):
                sim_round = cfg.round_deadline  # the server waited until the deadline
            else:
                sim_round = max(sim, default=0.0)
            log.setdefault(server_round, {}).update({
                "participants": len(ok), "dropped": dropped, "stragglers": len(late),
                "excluded": len(excluded),
                "bytes_up": int(sum(int(m["bytes_up"]) for m in trained)),
                "sim_round_seconds": round(sim_round, 4),
                "samples_trained": int(sum(int(m["samples_trained"]) for m in used)),
                "client_seconds_per_epoch": float(np.mean([m["seconds_per_epoch"]
                                                           for m in trained]))
                if trained else None,
                "client_accuracy_mean": float(np.mean(local)) if local else None,
                "client_accuracy_worst_decile": float(np.mean(local[: max(1, len(local) // 10)]))
                if local else None,
            })
            if not ok:
                return None, None  # nobody in time: the global model stays as it was
            rate = server_lr_at(settings, server_round, cfg.rounds)
            if rate is not None:
                log[server_round]["server_lr"] = rate
                attr = "server_learning_rate" if cfg.strategy is Strategy.fedavgm else "eta"
                if not hasattr(self, attr):  # a Flower release renamed it: fail, do not ignore
                    raise RuntimeError(f"{cls.__name__} has no attribute {attr} to schedule")
                setattr(self, attr, rate)
            arrays, metrics = super().aggregate_train(server_round, ok)
            if arrays is not None:  # FedOpt's server update computes in float64; ship float32
                from flwr.app import ArrayRecord

                arrays = ArrayRecord([a.astype(np.float32) for a in arrays.to_numpy_ndarrays()])
            return arrays, metrics

    return Counting(**common, **extra)


def server_settings(cfg: SimulationConfig) -> dict:
    """The strategy's settings as run, defaults resolved (recorded in history.json and report)."""
    out: dict = {"strategy": cfg.strategy.value}
    if cfg.strategy in SERVER_LR:
        out["server_lr"] = cfg.server_lr if cfg.server_lr is not None else SERVER_LR[cfg.strategy]
    if cfg.strategy is Strategy.fedavgm:
        out["server_momentum"] = cfg.server_momentum
    if cfg.strategy in SERVER_TAU:
        out["server_tau"] = cfg.server_tau if cfg.server_tau is not None else SERVER_TAU[cfg.strategy]
    if cfg.strategy is Strategy.fedprox:
        out["mu"] = cfg.mu
    if cfg.strategy in SERVER_LR:
        out["server_lr_schedule"] = cfg.server_lr_schedule
    return out


def server_lr_at(settings: dict, server_round: int, rounds: int) -> float | None:
    """The server learning rate of a round (1-based) under the schedule; None without one."""
    if "server_lr" not in settings:
        return None
    eta = settings["server_lr"]
    if settings.get("server_lr_schedule") == "cosine":
        return eta * (1 + math.cos(math.pi * (server_round - 1) / rounds)) / 2
    return eta


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast when --ray-address names no reachable Ray head (Ray itself retries for ever).

    ``auto``, ``local`` and ``ray://`` (Ray Client) addresses are left to Ray.
    """
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r} is not HOST:PORT",
                         "pass the head's address as `ray start --head` prints it, e.g. "
                         "10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc.strerror or exc})",
                         "start one with `ray start --head --port PORT`, or fix --ray-address"
                         ) from None


def simulate(cfg: SimulationConfig, out: Path, ray_address: str | None = None,
             log=lambda m: None, overwrite: bool = False, allow_unsafe: bool = False,
             custom_objects_file: str | None = None) -> dict:
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
              custom_objects_file: str | None) -> dict:
    from .._tf import tf

    tf()  # Flower's simulation imports TensorFlow; import it here, where its start-up logs are hidden
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from ..artifacts import write_text
    from ..data import DataSpec, load
    from ..models.load import load_keras
    from ..runtime.trainable import TrainableRunner, training_memory_bytes
    from . import fleet as fleet_mod
    from .clients import make_client_app
    from .trainable import export_trainable

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
    job = {"data": cfg.data, "clients": cfg.clients, "partition": json.dumps(cfg.partition),
           "seed": cfg.seed, "trainable": str(trainable), "keras": str(keras_path),
           "layers": len(names) // 2, "runtime": cfg.client_runtime.value, "lr": cfg.lr,
           "local_epochs": cfg.local_epochs, "batch_size": cfg.batch_size,
           "compression": cfg.compression, "failure_rate": cfg.failure_rate, "softmax": softmax,
           "fleet": [asdict(d) for d in fleet], "seconds_per_sample": per_sample,
           "bytes_down": bytes_down_each, "round_deadline": cfg.round_deadline}

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
        node_order.update(_partition_ids(grid, cfg.clients))
        strategy = _strategy(cfg, participation, node_order, log)
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
        sent_to = p.get("participants", 0) + p.get("dropped", 0)
        sent_to = sent_to + p.get("stragglers", 0) + p.get("excluded", 0)
        history.append({**rounds[rnd], "participants": p.get("participants", 0),
                        "dropped": p.get("dropped", 0), "stragglers": p.get("stragglers", 0),
                        "excluded": p.get("excluded", 0), "sampled": p.get("sampled", []),
                        "bytes_up": p.get("bytes_up", 0), "bytes_down": sent_to * bytes_down_each,
                        "sim_round_seconds": p.get("sim_round_seconds"),
                        "samples_trained": p.get("samples_trained", 0),
                        "client_seconds_per_epoch": p.get("client_seconds_per_epoch"),
                        "client_accuracy_mean": p.get("client_accuracy_mean"),
                        "client_accuracy_worst_decile": p.get("client_accuracy_worst_decile"),
                        **({"server_lr": p["server_lr"]} if "server_lr" in p else {})})
    seconds = round(time.perf_counter() - started, 2)
    reference = None
    if cfg.centralized_reference:
        passes = sum(r["samples_trained"] for r in history)
        reference = _centralized(trainable, x_flat, splits.y_train, x_test,
                                 y_test, cfg, passes)
        log(f"centralized reference ({passes} sample passes): accuracy "
            f"{reference['accuracy']:.4f}")
    document = {"config": cfg.model_dump(mode="json"), "server": server_settings(cfg),
                "initial_accuracy": rounds[0]["accuracy"],
                "rounds": history, "seconds": seconds,
                "centralized_reference": reference,
                "fleet": fleet_mod.summary(fleet, need),
                "seconds_per_sample_host": per_sample}
    write_text(out / "history.json", json.dumps(document, indent=2))
    _write_models(model, names, final["arrays"].to_numpy_ndarrays(), out)
    write_text(out / "report.md", _report(document))
    _plot(history, out / "accuracy.png")
    keras_path.unlink()
    return document


def _partition_ids(grid, clients: int, timeout: float = 120.0) -> dict[int, int]:
    """Node id -> partition id, asked of every node once (a query message)."""
    from flwr.app import Message, RecordDict

    deadline = time.monotonic() + timeout
    while len(ids := list(grid.get_node_ids())) < clients:  # nodes register asynchronously
        if time.monotonic() > deadline:
            raise UsageError(f"only {len(ids)} of {clients} simulated clients came up in "
                             f"{timeout:.0f} s", "run again with --debug to see Flower's log")
        time.sleep(0.05)
    replies = grid.send_and_receive([Message(RecordDict(), dst_node_id=n, message_type="query")
                                     for n in ids])
    order = {}
    for reply in replies:
        if not reply.has_error():
            order[reply.metadata.src_node_id] = int(reply.content["who"]["partition-id"])
    return order


def _centralized(trainable, x, y, x_test, y_test, cfg, passes: int) -> dict:
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
    return {"accuracy": acc, "sample_passes": passes, "epochs": round(passes / len(x), 3),
            "seconds": round(time.perf_counter() - t0, 2)}


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
             "- server: " + ", ".join(f"{k} {v}" for k, v in doc.get("server", {}).items()),
             f"- initial accuracy {doc['initial_accuracy']:.4f}; {doc['seconds']} s on this machine"]
    ref = doc.get("centralized_reference")
    if ref:
        lines.append(f"- centralized reference: {ref['accuracy']:.4f} after the same "
                     f"{ref['sample_passes']} sample passes ({ref['epochs']} epochs of the pooled "
                     "data, same model, optimiser and batch size)")
    lines += ["", "Fleet (simulated round time = samples x measured seconds per sample / speed "
              "+ transfer time):", "",
              "| device | clients | speed | dropout | memory MB | model needs MB | fits |",
              "|---|---|---|---|---|---|---|"]
    for d in doc.get("fleet", []):
        lines.append(f"| {d['device']} | {d['clients']} | {d['speed']:.3g} | {d['dropout']} | "
                     f"{d['memory_mb'] or '-'} | {d['need_mb']} | {'yes' if d['fits'] else 'no'} |")
    lines += ["", "| round | accuracy | loss | participants | dropped | stragglers | excluded "
              "| MB up | MB down | sim s | worst-decile client acc |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rounds"]:
        worst = r.get("client_accuracy_worst_decile")
        lines.append(f"| {r['round']} | {r['accuracy']:.4f} | {r['loss']:.4f} | {r['participants']} "
                     f"| {r['dropped']} | {r['stragglers']} | {r.get('excluded', 0)} "
                     f"| {r['bytes_up'] / 1e6:.3f} | {r['bytes_down'] / 1e6:.3f} "
                     f"| {r['sim_round_seconds']} | {'-' if worst is None else f'{worst:.3f}'} |")
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
