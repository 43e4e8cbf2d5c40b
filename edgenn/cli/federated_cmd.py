"""`edgenn federated simulate --config FILE -o OUT`."""

from __future__ import annotations

from pathlib import Path

import click

from .model_options import model_options, overwrite_option
from .output import common_options, console, finish, guarded_stdout, info


@click.group("federated")
def federated_group() -> None:
    """Simulate federated on-device training (Flower simulation engine)."""


@federated_group.command("simulate")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The simulation YAML (see recipes/federated/).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False))
@click.option("--ray-address", default=None, help="Run on an existing Ray cluster.")
@model_options
@overwrite_option
@common_options
@guarded_stdout
def simulate_cmd(config_path, output, ray_address, allow_unsafe, custom_objects, overwrite) -> None:
    """Run a fleet of simulated devices that train the deployed .tflite (or the Keras model)."""
    from ..federated.config import SimulationConfig
    from ..federated.simulate import simulate
    from ..yamlio import load_model_file

    cfg = load_model_file(SimulationConfig, Path(config_path), "federated config")
    result = simulate(cfg, Path(output), ray_address=ray_address, log=info, overwrite=overwrite,
                      allow_unsafe=allow_unsafe, custom_objects_file=custom_objects)

    def human():
        con = console()
        last = result.rounds[-1]
        con.print(f"{len(result.rounds)} rounds in {result.seconds} s: global accuracy "
                  f"{result.initial_accuracy:.4f} -> {last.accuracy:.4f}; wrote {output}/"
                  "history.json, global.keras, global.tflite, trainable.tflite, report.md")

    finish(result, human)
