"""`edgenn fit MODEL --data D --device DEV -o OUT`: search recipes for a device budget."""

from __future__ import annotations

import click

from .data_options import data_options
from .model_options import model_options, overwrite_option
from .output import STATE, common_options, console, finish, guarded_stdout, info


def data_args(data, seed, scale, mean, std, resize, channels, limit) -> list[str]:
    """The data flags again, for the `edgenn compress` process each trial runs."""
    args = ["--data", data, "--seed", str(seed), "--scale", str(scale)]
    if mean:
        args += ["--mean", ",".join(map(repr, mean))]
    if std:
        args += ["--std", ",".join(map(repr, std))]
    if resize:
        args += ["--resize", f"{resize[0]}x{resize[1]}"]
    if channels:
        args += ["--channels", str(channels)]
    if limit:
        args += ["--limit", str(limit)]
    return args


class LiveTable:
    """The trials so far as a rich table on stderr, redrawn as each one ends."""

    def __init__(self, enabled: bool, host: str | None = None):
        self.enabled = enabled
        self.latency = f"p50 measured on {host}" if host else "the device estimate"
        self.rows: dict[int, dict] = {}
        self.live = None

    def __enter__(self):
        return self  # drawn from the first trial on: a run that fails before it prints no table

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
            self.live.console.print()

    def add(self, record: dict, _result) -> None:
        self.rows[record["number"]] = record
        if not self.enabled:
            return
        if self.live is None:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=2,
                             transient=False)
            self.live.start()
        self.live.update(self._table())

    def _table(self):
        from rich.table import Table

        table = Table(title=f"edgenn fit: trials (validation accuracy; latency is {self.latency})",
                      title_justify="left")
        for name, justify in (("#", "right"), ("recipe", "left"), ("status", "left"),
                              ("val acc", "right"), ("ms", "right"), ("gzip KB", "right"),
                              ("s", "right")):
            table.add_column(name, justify=justify, no_wrap=name != "recipe")
        for r in list(self.rows.values())[-15:]:
            ok = r["status"] == "complete"
            status = r["status"] if r["status"] in ("complete", "running") \
                else f"{r['status']}: {(r.get('error') or '')[:60]}"
            table.add_row(str(r["number"]), r.get("label", ""), status,
                          f"{r['accuracy'] * 100:.2f}%" if ok else "-",
                          f"{r['latency_ms']:.3g}" if ok else "-",
                          f"{r['gzip_bytes'] / 1024:,.1f}" if ok else "-",
                          str(r.get("seconds") or "-"))
        return table


@click.command("fit")
@click.argument("model", type=click.Path())
@data_options()
@click.option("--device", required=True, help="The device profile to fit (name or YAML).")
@click.option("--max-drop", type=click.FloatRange(min=0), default=None,
              help="Budget: validation accuracy may fall at most this many points.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Budget: latency on the device (the estimate, or measured with --host).")
@click.option("--max-bytes", type=click.IntRange(min=1), default=None,
              help="Budget: size of the .tflite file.")
@click.option("--max-ram-mb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Budget: estimated RAM (tensor arena + weights).")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials to run (points skipped by the budget do not count).")
@click.option("--time-budget", "time_budget", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Stop starting trials after this many minutes.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials run at once (Ray workers on this machine).")
@click.option("--ray-address", default=None, help="Run the trials on this Ray cluster (HOST:PORT).")
@click.option("--compare", default=None,
              help="Shipped recipes to run the same way for comparison, e.g. int8-ptq,"
                   "distill-half-int8.")
@click.option("--host", default=None,
              help="Measure each trial's latency on the board at USER@ADDRESS[:PORT] over SSH "
                   "(the profile agent, one model at a time) instead of the device estimate.")
@click.option("--identity", type=click.Path(), default=None, help="SSH private key for --host.")
@click.option("--known-hosts", type=click.Path(), default=None,
              help="known_hosts file for --host (the host key must be in it).")
@click.option("--remote-python", default="python3", show_default=True,
              help="The board's Python for --host (with ai-edge-litert or tflite-runtime).")
@click.option("--no-distill", is_flag=True, help="Leave distilled (narrower) students out of the search.")
@click.option("--epochs-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Multiply every trial's training epochs (e.g. 0.1 to try).")
@click.option("--trial-timeout", type=click.FloatRange(min=1), default=None,
              help="Stop a trial after this many seconds (it counts as failed).")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output folder: front.json, front/, best.tflite, best.yaml, pareto.png, report.md.")
@model_options
@overwrite_option
@common_options
@guarded_stdout
def fit_cmd(model, data, seed, scale, mean, std, resize, channels, limit, device, max_drop,
            max_latency_ms, max_bytes, max_ram_mb, trials, time_budget, workers, ray_address,
            host, identity, known_hosts, remote_python, compare, no_distill, epochs_scale,
            trial_timeout, output, allow_unsafe, custom_objects, overwrite) -> None:
    """Search recipes for the best model for a device budget: a Pareto front and best.tflite.

    Each trial is a recipe run by `edgenn compress` in its own process (on Ray); accuracy is the
    exported file's on the validation split, latency and RAM are the device estimate (latency
    measured on the board with --host). The point
    with the lowest latency that meets every budget is best; none: exit 4 naming the closest.
    An interrupted search resumes when run again with the same arguments.
    """
    from ..errors import UsageError
    from ..fit.search import FitSettings, fit

    if data is None:
        raise UsageError("fit needs data to train, calibrate and score on",
                         "pass --data (digits, fashion-mnist, a .npz, an IDX or image folder)")
    settings = FitSettings(
        model=model, data_args=data_args(data, seed, scale, mean, std, resize, channels, limit),
        device=device, max_drop=max_drop, max_latency_ms=max_latency_ms, max_bytes=max_bytes,
        max_ram_mb=max_ram_mb, trials=trials, time_budget_min=time_budget, workers=workers,
        ray_address=ray_address, seed=seed, epochs_scale=epochs_scale,
        compare=tuple(c.strip() for c in compare.split(",") if c.strip()) if compare else (),
        distill=not no_distill, trial_timeout=trial_timeout, allow_unsafe=allow_unsafe,
        custom_objects=custom_objects, host=host, ssh_identity=identity, known_hosts=known_hosts,
        remote_python=remote_python)
    with LiveTable(not (STATE.quiet or STATE.json), host) as live:
        result = fit(settings, output, overwrite=overwrite, log=info, on_trial=live.add)
    finish(result, lambda: _human(result, output))


def _human(result, output) -> None:
    con = console()
    if result.best is not None:
        best = next(t for t in result.search_trials if t["number"] == result.best)
        test = result.test.get(str(result.best), {})
        con.print(f"best: #{best['number']} {best['label']}: validation "
                  f"{best['accuracy'] * 100:.2f}%, test "
                  + (f"{test['accuracy'] * 100:.2f}%" if test.get("accuracy") is not None else "-")
                  + f", {best['latency_ms']:.3g} ms ("
                  + (f"p50 on {result.settings['host']}" if result.settings.get("host")
                     else "estimate") + f"), {best['bytes']:,} B")
    con.print(f"{len(result.front)} point(s) on the front; wrote {output}/ (report.md, "
              "front.json, front/, pareto.png" + (", best.tflite, best.yaml)" if result.best
                                                   is not None else ")"))
