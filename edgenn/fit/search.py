"""`edgenn fit`: search recipes for the model that meets a device budget, on Ray, with a front.

Flow:
1. a reference run: the input model exported at every quantization, no training (its validation
   accuracy is the baseline, its estimates bound what a point can reach); with --host every
   latency is the p50 measured on the board (`board.py`) instead of the device estimate;
2. the search: Optuna (multi-objective TPE with constraints) asks for points, each a recipe
   (`space.py`); a point whose lower bound already breaks a budget is not trained; the rest run
   as `edgenn compress` processes on Ray workers (`trial.py`), and a trained model is cached
   by its steps, so points that differ only in export do not train again;
3. the choice, on validation accuracy only: the Pareto front over (accuracy, latency, gzip
   size) of the points that meet every budget, and the best = the lowest-latency one of them;
4. the test split, touched once: the chosen points are exported from their cached models and
   scored on it for the report.

Every finished trial is appended to a journal beside the output folder, so a search that is
interrupted resumes where it stopped when run again with the same model, data and device; the
output folder itself is written through `OutputDir` and appears only when the search ends.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError
from . import space
from .journal import Journal, journal_dir
from .runner import Runner
from .settings import FitSettings

OBJECTIVES = ("accuracy", "latency_ms", "gzip_bytes")  # maximise, minimise, minimise
REFERENCE_QUANTIZATIONS = ("float32",) + space.QUANTIZATIONS


@dataclass
class FitResult:
    """A finished search: every trial, the front, the best point and the test-split scores."""

    settings: dict
    reference: dict
    trials: list[dict]
    front: list[int]
    best: int | None
    closest: dict | None
    test: dict
    shipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    out: str = ""
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """4 when no point meets every budget, 3 when no trial completed, else 0."""
        if self.best is not None:
            return 0
        if self.closest is not None or any(t["status"] == "complete" for t in self.search_trials):
            return 4
        return 3

    @property
    def search_trials(self) -> list[dict]:
        return [t for t in self.trials if t["kind"] == "search"]

    @property
    def unfinished(self) -> list[dict]:
        """Points a --time-budget stopped and no later trial ran to the end."""
        trials = self.search_trials
        return [t for t in trials if t["status"] == "stopped" and not any(
            o["params"] == t["params"] and o["status"] != "stopped" for o in trials)]

    @property
    def failure(self) -> str | None:
        if self.exit_code == 0:
            return None
        if self.exit_code == 3:
            stopped = [t for t in self.search_trials if t["status"] == "stopped"]
            if stopped and not any(t["status"] == "failed" for t in self.search_trials):
                return (f"no trial finished within --time-budget ({len(stopped)} stopped "
                        "unfinished): run the same command again with a larger --time-budget "
                        "(or none) to go on from the journal beside the output folder")
            failed = [t for t in self.search_trials if t["status"] == "failed"]
            first = failed[0]["error"] if failed else "no trial ran"
            return (f"no trial completed ({len(failed)} failed; the first: {first}): fix that "
                    "and run again (the journal keeps nothing from failed trials)")
        c = self.closest
        if c["number"] is None:
            return (f"no point of the search space can meet {c['misses']}, the smallest model "
                    "the search can make: relax the budget (nothing was trained)")
        return (f"no point meets every budget in {len(self.search_trials)} trials: the closest, "
                f"#{c['number']} ({c['label']}), misses {c['misses']}: relax the budget or run "
                "more --trials (front.json and report.md list every trial)")

    def to_dict(self) -> dict:
        return asdict(self) | {"exit_code": self.exit_code}

    def to_markdown(self) -> str:
        from .report import markdown

        return markdown(self)


def check_settings(s: FitSettings) -> None:
    """Refuse what cannot work before Ray or TensorFlow start."""
    from .. import devices

    if not Path(s.model).exists():
        raise UsageError(f"model not found: {s.model}", "check the path")
    devices.load(s.device)  # an unknown device is one line, exit 2
    if s.trials < 1:
        raise UsageError(f"--trials must be at least 1; received {s.trials}", "e.g. --trials 20")
    if s.workers < 1:
        raise UsageError(f"--workers must be at least 1; received {s.workers}", "e.g. --workers 2")
    if s.ray_address:
        from ..raycluster import check_ray_address

        check_ray_address(s.ray_address)
    for name in s.compare:
        from .. import recipe

        recipe.load(str(recipe.resolve(name)))  # unknown or invalid: refused now, not later


def fit(settings: FitSettings, out: str | Path, *, overwrite: bool = False, log=lambda m: None,
        on_trial=lambda record, result: None) -> FitResult:
    """Run the search and write OUT (see the module docstring)."""
    from ..outdir import OutputDir

    started = time.monotonic()
    out = Path(out)
    check_settings(settings)
    outdir = OutputDir(out, "fit", overwrite=overwrite)
    outdir.check()
    jdir = journal_dir(out)
    if jdir.is_symlink() or (jdir.exists() and not jdir.is_dir()):
        raise UsageError(f"{jdir} (where fit keeps its journal) is a link or a file",
                         "remove it, or choose another output folder")
    if overwrite and jdir.exists():
        shutil.rmtree(jdir)
    journal = Journal(jdir, settings.identity())
    journal.open(log)
    staging = outdir.open()
    try:
        result = _fit(settings, journal, log, on_trial)
        result.out = str(out)
        result.seconds = round(time.monotonic() - started, 1)
        _write(result, journal, staging, out)
    except BaseException:
        outdir.abort()
        raise
    outdir.commit()
    if not result.unfinished:
        shutil.rmtree(jdir, ignore_errors=True)  # else kept: the same command goes on from it
    return result


def _fit(s: FitSettings, journal: Journal, log, on_trial) -> FitResult:
    board = None
    if s.host:  # reached before Ray starts or anything trains
        from .board import Board

        board = Board(s)
        board.reach()
    runner = Runner(s, journal.path)
    runner.board = board
    try:
        reference = _reference(s, journal, runner, log)
        impossible = unreachable(s, reference)
        if impossible:
            return FitResult(settings=asdict(s), reference=reference, trials=journal.records,
                             front=[], best=None, test={}, closest={
                                 "number": None, "label": impossible[0],
                                 "misses": impossible[1]})
        shipped = [_shipped(s, journal, runner, name, log) for name in s.compare]
        _search(s, journal, runner, reference, log, on_trial)
        trials = [r for r in journal.records if r["kind"] == "search"]
        for t in trials:
            if t["status"] == "complete":
                t["misses"] = misses(t, s, reference)
        feasible = [t for t in trials if t["status"] == "complete" and not t["misses"]]
        front = pareto([t for t in trials if t["status"] == "complete"] if not feasible else feasible)
        # The best must meet the drop by a standard error to spare: a point just inside the
        # budget on validation is as likely as not to be outside it on new data.
        sure = [t for t in feasible if confident(t, s)]
        best = min(sure or feasible,
                   key=lambda t: (t["latency_ms"], t["gzip_bytes"], -t["accuracy"]), default=None)
        notes = [f"left out of the search: {q} ({why})"
                 for q, why in reference.get("unavailable", {}).items()]
        if best is not None and not sure:
            notes.append("no point meets the accuracy budget by one standard error of its drop "
                         "on validation: the best is inside the budget by less than the "
                         "validation split can tell")
        closest = None
        if best is None:
            complete = [t for t in trials if t["status"] == "complete"]
            if complete:
                near = min(complete, key=lambda t: shortfall(t, s, reference))
                closest = {"number": near["number"], "label": near["label"],
                           "misses": "; ".join(near["misses"])}
        chosen = sorted({t["number"] for t in front} | ({best["number"]} if best else set()))
        test = _test_split(s, journal, runner, reference, chosen, log)
    finally:
        runner.close()
    return FitResult(settings=asdict(s), reference=reference, trials=journal.records,
                     front=[t["number"] for t in front], best=best["number"] if best else None,
                     closest=closest, test=test, shipped=shipped, notes=notes)


# --- running trials ------------------------------------------------------------------------

def _reference(s: FitSettings, journal: Journal, runner: Runner, log) -> dict:
    """The input model at every quantization, and its layers ranked by int8 error.

    No training: the exports give the baseline accuracy and the bounds; the ranking
    (`convert --explain`) gives the layers selective quantization may keep in float.
    """
    kept = journal.find("reference")
    ranking = journal.find("explain")
    refs = {}
    if kept is None:
        log("reference: the input model at every quantization ...")
        doc = {"name": "reference", "description": "the input model, no training",
               "export": [{"format": "tflite", "quantization": q} for q in REFERENCE_QUANTIZATIONS],
               "evaluate": {"metric": "accuracy", "split": "val"}}
        refs["reference"] = runner.submit(runner.job(0, doc, tag="-reference"))
    if ranking is None:
        job = runner.job(0, {"name": "explain"}, tag="-explain")
        job["out"] += ".tflite"
        refs["explain"] = runner.submit(job, kind="explain")
    results = {k: runner.get(ref) for k, ref in refs.items()}
    unavailable = {}
    if "reference" in results:
        result = results["reference"]
        if result["status"] != "complete":  # one export may fail alone: try each on its own
            log("reference: an export failed; exporting each quantization on its own ...")
            result, unavailable = _reference_each(runner, doc)
        exports = result["exports"]
        if runner.board is not None:  # the input model on the board: the search's units
            log(f"reference: measuring {len(exports)} exports on {s.host} ...")
            exports = [runner.board.apply({**e, "status": "complete"}) for e in exports]
            failed = [e for e in exports if e["status"] != "complete"]
            if failed:  # each export measured once; the first failure is the message
                raise UsageError(failed[0]["error"], "check that the board's runtime runs "
                                 f"{failed[0]['quantization']} models: `edgenn profile "
                                 "MODEL.tflite --host ...`")
            exports = [{k: v for k, v in e.items() if k != "status"} for e in exports]
        kept = {"number": -1, "kind": "reference", "status": "complete",
                "exports": exports, "baseline": result["baseline"],
                "layer_classes": result.get("layer_classes"), "unavailable": unavailable,
                "seconds": result["seconds"]}
        journal.add(kept)
    if "explain" in results:
        result = results["explain"]
        ranking = {"number": -2, "kind": "explain", "status": result["status"],
                   "layers": result.get("layers", []), "growth": result.get("growth", []),
                   "error": result.get("error"), "seconds": result["seconds"]}
        journal.add(ranking)
    return ({e["quantization"]: e for e in kept["exports"]}
            | {"baseline": kept["baseline"], "sensitive": ranking.get("layers", []),
               "sensitive_error": ranking.get("error"),
               "layer_classes": kept.get("layer_classes"),
               "unavailable": kept.get("unavailable") or {}})


def _reference_each(runner: Runner, doc: dict) -> tuple[dict, dict]:
    """The reference run with one export per job.

    Returns (the runs that completed, merged; each quantization the model cannot take -> why).
    A quantization the converter refuses for this
    model (int8 of a recurrent loop) leaves the search, not ends it;
    a failing float32 export is the model, data or flags, and ends it as compress said.
    """
    refs = {q: runner.submit(runner.job(0, {**doc, "export": [{"format": "tflite",
                                                                  "quantization": q}]},
                                        tag=f"-reference-{q}"))
            for q in REFERENCE_QUANTIZATIONS}
    results = {q: runner.get(ref) for q, ref in refs.items()}
    first = results["float32"]
    if first["status"] != "complete":
        if first.get("exit_code") == 2:  # the model, data or flags: as compress said
            raise UsageError(first["error"])
        from ..errors import ConversionError

        raise ConversionError(f"the input model does not run through compress: "
                              f"{first['error']}", "run `edgenn compress MODEL -r int8-ptq` "
                              "with the same data to see the whole error")
    if all(results[q]["status"] != "complete" for q in space.QUANTIZATIONS):
        raise UsageError(f"the input model exports at none of the quantizations fit searches "
                         f"({', '.join(space.QUANTIZATIONS)}): int8: {results['int8']['error']}",
                         "convert it as float32 with `edgenn convert`")
    done = [r for r in results.values() if r["status"] == "complete"]
    merged = {**first, "exports": [e for r in done for e in r["exports"]],
              "seconds": round(sum(r["seconds"] for r in results.values()), 1)}
    unavailable = {q: _first_sentence(r.get("error") or "failed")
                   for q, r in results.items() if r["status"] != "complete"}
    return merged, unavailable


def _first_sentence(error: str) -> str:
    """An error cut to its first sentence (a converter repeats one message per op)."""
    head = error.split(". ")[0].strip()
    return head if len(head) <= 200 else head[:197] + "..."


def _shipped(s: FitSettings, journal: Journal, runner: Runner, name: str, log) -> dict:
    """A shipped recipe run like a trial, for comparison (never chosen)."""
    from .. import recipe as rc
    from ..yamlio import read_yaml

    kept = journal.find("shipped", name=name)
    if kept is None:
        log(f"shipped recipe {name} for comparison ...")
        doc = read_yaml(rc.resolve(name))[0]
        doc = {**doc, "evaluate": {"metric": "accuracy", "split": "val"}}
        doc.pop("constraints", None)
        number = journal.next_number()
        result = runner.measured(runner.run_all([runner.job(number, doc, tag=f"-{name}")])[0])
        kept = {"number": number, "kind": "shipped", "name": name, "label": f"shipped {name}",
                **_row(result)}
        journal.add(kept)
    return kept


def _row(result: dict) -> dict:
    keep = ("status", "error", "exit_code", "accuracy", "drop_se_pt", "baseline", "latency_ms",
            "ram_mb",
            "bytes", "gzip_bytes", "tflite", "seconds", "notes", "estimate_ms", "rss_mb",
            "measured_on")
    return {k: result[k] for k in keep if k in result}


def _search(s: FitSettings, journal: Journal, runner: Runner, reference: dict, log,
            on_trial) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    directions = ["maximize", "minimize", "minimize"]
    # Constraints travel with each trial (Trial.set_constraint); TPE keeps the feasible first.
    sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=max(4, s.trials // 4))
    study = optuna.create_study(directions=directions, sampler=sampler)
    done = [r for r in journal.records if r["kind"] == "search"]
    for r in done:  # a resumed search: the sampler learns from what the journal kept
        study.add_trial(_frozen(r, s, reference))
    # First the points a --time-budget stopped unfinished (a resumed search runs them again),
    # then the seeds not measured yet (see _seeds).
    measured = [r.get("params") for r in done if r["status"] != "stopped"]
    retry = [r["params"] for r in done if r["status"] == "stopped"]
    for point in retry + [p for p in _seeds(s, reference) if p not in measured and p not in retry]:
        study.enqueue_trial(point, skip_if_exists=False)
    for r in done:  # the other exports of models trained before the interruption
        _queue_siblings(study, journal, r, reference)
    deadline = (time.monotonic() + s.time_budget_min * 60) if s.time_budget_min else None
    ran = sum(1 for r in done if r["status"] in ("complete", "failed"))
    asked = 0
    pending: dict = {}
    while True:
        while (len(pending) < max(1, s.workers) and ran + len(pending) < s.trials
               and asked < 20 * s.trials and not _past(deadline)):
            asked += 1
            trial = study.ask()
            p = space.suggest(trial, distill=s.distill,
                              sensitive=len(reference["sensitive"]))
            number = journal.next_number()
            record = {"number": number, "kind": "search", "params": p,
                      "distributions": {k: optuna.distributions.distribution_to_json(d)
                                        for k, d in trial.distributions.items()},
                      "label": space.describe(p)}
            same = _same_point(journal, p)
            if same is not None:  # the sampler asked again for a point already measured
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            why = _not_for_this_model(p, reference)
            if why is None:
                bound = space.lower_bound(p, reference)
                over = [f"{k} {bound[k]:,.4g} (at best) > {v:,.4g}" for k, v in
                        (("latency_ms", s.max_latency_ms), ("bytes", s.max_bytes),
                         ("ram_mb", s.max_ram_mb)) if v is not None and bound[k] > v]
                why = "cannot meet the budget: " + "; ".join(over) if over else None
            if why:
                record |= {"status": "skipped", "error": why}
                journal.add(record)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                on_trial(record, None)
                continue
            doc = space.recipe(p, f"fit-{number:03d}", sensitive=reference["sensitive"],
                               threads=runner.threads)
            key = space.steps_key(doc)
            if key is None and not doc["export"].get("keep_float"):
                # No training and a plain export: the reference run wrote this very file
                # (same model, data, calibration and threads), so it is measured already.
                record |= {"recipe": doc, "reused": "reference",
                           **_row({**reference[p["quantization"]], "status": "complete",
                                   "baseline": reference["baseline"], "seconds": 0.0})}
                record["drop_pt"] = round((reference["baseline"] - record["accuracy"]) * 100, 3)
                _tell(study, trial, record, s, reference)
                ran += 1
                journal.add(record)
                on_trial(record, None)
                continue
            cached = _cached(journal.path, key)
            if cached:  # the steps ran before: export their saved model
                record["reused"] = key
                job_doc = {**doc, "steps": []}
                job = runner.job(number, job_doc, model=str(cached))
            else:
                cache_to = str(journal.path / "cache" / f"{key}.keras") if key else None
                job = runner.job(number, doc, cache_to=cache_to)
            record["recipe"] = doc
            pending[runner.submit(job)] = (record, trial)
            on_trial({**record, "status": "running"}, None)
        if not pending:
            break
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = runner.wait(list(pending), timeout=remaining)
        if not ready and _past(deadline):
            for ref, (record, trial) in pending.items():
                runner.cancel(ref)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                # listed in front.json; a resumed search runs the point again
                record |= {"status": "stopped", "error": "stopped unfinished at --time-budget"}
                journal.add(record)
                on_trial(record, None)
            log(f"--time-budget reached: {len(pending)} running trial(s) stopped")
            pending.clear()
            break
        for ref in ready:
            record, trial = pending.pop(ref)
            result = runner.measured(runner.get(ref))
            record |= _row(result)
            if record["status"] == "complete":
                record["drop_pt"] = round((reference["baseline"] - record["accuracy"]) * 100, 3)
                if record.get("reused"):
                    record["drop_se_pt"] = _trained_se(journal, record["reused"])
                _tell(study, trial, record, s, reference)
                _queue_siblings(study, journal, record, reference)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            ran += 1
            journal.add(record)
            on_trial(record, result)


def _not_for_this_model(p: dict, reference: dict) -> str | None:
    """Why the input model cannot take point ``p`` at all, or None."""
    q = p["quantization"]
    if q in reference.get("unavailable", {}):
        return f"the input model does not export at {q}: {reference['unavailable'][q]}"
    if space.dense_only(p) and not has_dense(reference):
        return "the model has no Dense layer (16x1 blocks prune Dense kernels only)"
    return None


def _seeds(s: FitSettings, reference: dict) -> list[dict]:
    """The first points, in the order they run, that the input model can take.

    PTQ alone (the reference run measured it already); the Dense layers pruned to 80% and 50%
    and stored sparse (the file shrinks; 4 epochs of the Dense layers only); the two layers
    int8 hurts most kept in float (no training); with distillation, a student of 3/4 width
    (the MACs shrink; the longest seed, so the other worker goes on meanwhile with) the rest
    of the sparsity sweep, 70%, 90% and 60%: the size/accuracy trade-off a person picks from.
    """
    ptq = {"quantization": "int8", "width": 1.0, "sparsity": 0.0, "clusters": 0, "qat": False,
           "keep_float": 0}

    def pruned(sparsity):
        return {"quantization": "int8", "width": 1.0, "sparsity": sparsity, "block": "16x1",
                "clusters": 0, "qat": False, "epochs": 4, "learning_rate": 3e-4}

    seeds = [ptq, pruned(0.8), pruned(0.5), {**ptq, "keep_float": 1}, {**ptq, "keep_float": 2}]
    if s.distill:
        seeds.append({**ptq, "width": 0.75, "epochs": 8, "learning_rate": 1e-3})
    seeds += [pruned(0.7), pruned(0.9), pruned(0.6)]
    # left out: a point the model cannot take (a 16x1 point without Dense layers, an export
    # the converter refuses), or more layers kept float than the int8 ranking offers (Optuna
    # refuses a value outside a parameter's choices)
    offered = min(space.KEEP_FLOAT_MAX, len(reference["sensitive"]))
    return [p for p in seeds if _not_for_this_model(p, reference) is None
            and p.get("keep_float", 0) <= offered]


def _queue_siblings(study, journal: Journal, record: dict, reference: dict) -> None:
    """A newly trained model's other exports, queued after the points already waiting.

    Each costs an export (the model is cached by its steps), not a training.
    """
    if record["status"] != "complete" or record.get("reused") \
            or not space.steps_key(record.get("recipe") or {}):
        return
    for sibling in space.siblings(record["params"]):
        if _same_point(journal, sibling) is None \
                and sibling["quantization"] not in reference.get("unavailable", {}):
            study.enqueue_trial(sibling, skip_if_exists=False)


def _trained_se(journal: Journal, key: str) -> float | None:
    """The drop's standard error for a point exported from a cached model.

    Its compress run compared it with the cached model, not the input model, so that error
    says nothing; the trial that trained the model measured it against the input model, and
    the same training exported otherwise changes about the same answers.
    """
    for r in journal.records:
        if r["kind"] == "search" and r["status"] == "complete" and not r.get("reused") \
                and space.steps_key(r.get("recipe") or {}) == key:
            return r.get("drop_se_pt")
    return None


def has_dense(reference: dict) -> bool:
    """Whether the input model has a Dense layer (True when the reference did not say)."""
    classes = reference.get("layer_classes")
    return classes is None or "Dense" in classes


def _same_point(journal: Journal, p: dict) -> dict | None:
    for r in journal.records:
        if r["kind"] == "search" and r.get("params") == p and r["status"] not in ("failed",
                                                                                  "stopped"):
            return r
    return None


def _cached(folder: Path, key: str | None) -> Path | None:
    if not key:
        return None
    for suffix in (".keras", ".h5"):
        path = folder / "cache" / f"{key}{suffix}"
        if path.is_file():
            return path
    return None


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _constraints(record: dict, s: FitSettings, reference: dict) -> dict[str, float]:
    """Optuna's constraint values: <= 0 is feasible, each scaled by its budget."""
    values = {"none": 0.0}
    if s.max_drop is not None:
        values["drop"] = (reference["baseline"] - record["accuracy"]) * 100 - s.max_drop
    for key, budget in (("latency_ms", s.max_latency_ms), ("bytes", s.max_bytes),
                        ("ram_mb", s.max_ram_mb)):
        if budget is not None:
            values[key] = record[key] / budget - 1
    return values


def _tell(study, trial, record, s, reference) -> None:
    for key, value in _constraints(record, s, reference).items():
        trial.set_constraint(key, value)
    study.tell(trial, [record[k] for k in OBJECTIVES])


def _frozen(record: dict, s: FitSettings, reference: dict):
    import optuna

    dists = {k: optuna.distributions.json_to_distribution(v)
             for k, v in record.get("distributions", {}).items()}
    params = {k: v for k, v in record.get("params", {}).items() if k in dists}
    if record["status"] == "complete":
        return optuna.trial.create_trial(
            params=params, distributions=dists, values=[record[k] for k in OBJECTIVES],
            constraints=_constraints(record, s, reference))
    state = optuna.trial.TrialState.FAIL if record["status"] == "failed" \
        else optuna.trial.TrialState.PRUNED
    return optuna.trial.create_trial(params=params, distributions=dists, state=state)


def unreachable(s: FitSettings, reference: dict) -> tuple[str, str] | None:
    """(the smallest point, what it misses) when no point of the space can meet a budget."""
    width = min(space.WIDTHS) if s.distill else 1.0
    misses = []
    for key, flag, budget, unit in (("latency_ms", "--max-latency-ms", s.max_latency_ms, " ms"),
                                    ("bytes", "--max-bytes", s.max_bytes, " B"),
                                    ("ram_mb", "--max-ram-mb", s.max_ram_mb, " MB")):
        if budget is None:
            continue
        # sparse storage (int8, pruned) keeps at least the unpruned share of the bytes
        usable = [q for q in space.QUANTIZATIONS if q not in reference.get("unavailable", {})]
        kept = {q: 1 - max(space.SPARSITIES) if key == "bytes" and q == "int8" else 1.0
                for q in usable}
        q = min(usable, key=lambda q: reference[q][key] * kept[q])
        low = reference[q][key] * kept[q] * width ** 2
        if low > budget:
            misses.append(f"{flag} {budget:,.4g}{unit}: {low:,.4g}{unit} at best ({q}"
                          + (f", width {width:g}" if width < 1 else "")
                          + (f", {max(space.SPARSITIES):g} sparse" if kept[q] < 1 else "") + ")")
    if not misses:
        return None
    return ("the smallest model the search can make", "; ".join(misses))


# --- choosing ------------------------------------------------------------------------------

def misses(t: dict, s: FitSettings, reference: dict) -> list[str]:
    """The budgets point ``t`` breaks (validation accuracy; latency as the search measures it)."""
    out = []
    drop = (reference["baseline"] - t["accuracy"]) * 100
    if s.max_drop is not None and drop > s.max_drop:
        out.append(f"accuracy drop {drop:.2f} pt > {s.max_drop:g} pt")
    for key, budget, unit in (("latency_ms", s.max_latency_ms, " ms"), ("bytes", s.max_bytes, " B"),
                              ("ram_mb", s.max_ram_mb, " MB")):
        if budget is not None and t[key] > budget:
            out.append(f"{key} {t[key]:,.4g}{unit} > {budget:,.4g}{unit}")
    return out


def confident(t: dict, s: FitSettings) -> bool:
    """Whether point ``t`` meets the drop budget with one standard error of its drop to spare.

    The error is the paired one compress measures against the input model on the same
    validation samples (`evaluate.paired_change`); a point without it counts as exact.
    """
    if s.max_drop is None:
        return True
    return t["drop_pt"] + (t.get("drop_se_pt") or 0.0) <= s.max_drop


def shortfall(t: dict, s: FitSettings, reference: dict) -> float:
    """How far a point is from meeting every budget (sum of relative excesses)."""
    return sum(max(0.0, v) for v in _constraints(t, s, reference).values())


def pareto(points: list[dict]) -> list[dict]:
    """The points no other point beats on every objective, by latency."""
    def key(t):
        return (-t["accuracy"], t["latency_ms"], t["gzip_bytes"])

    front = []
    for t in points:
        kt = key(t)
        dominated = any(all(a <= b for a, b in zip(key(o), kt)) and key(o) != kt for o in points)
        if not dominated and all(key(f) != kt for f in front):
            front.append(t)
    return sorted(front, key=lambda t: t["latency_ms"])


# --- the test split ------------------------------------------------------------------------

def _test_split(s: FitSettings, journal: Journal, runner: Runner, reference: dict,
                chosen: list[int], log) -> dict:
    """Test accuracy of the input model and of each chosen point (exported again, same bytes)."""
    wanted = ["reference"] + [str(n) for n in chosen]
    kept = {r["of"]: r for r in journal.records if r["kind"] == "test"}
    jobs, labels = [], []
    records = {r["number"]: r for r in journal.records if r["kind"] == "search"}
    for label in wanted:
        if label in kept:
            continue
        if label == "reference":
            doc = {"name": "reference-test", "export": {"format": "tflite",
                                                        "quantization": "float32"}}
            jobs.append(runner.job(journal.next_number(), doc, tag="-test"))
        else:
            r = records[int(label)]
            cached = _cached(journal.path, space.steps_key(r["recipe"]))
            doc = {**r["recipe"], "evaluate": {"metric": "accuracy", "split": "test"}}
            if cached:
                doc = {**doc, "steps": []}
            jobs.append(runner.job(journal.next_number(), doc,
                                   model=str(cached) if cached else None, tag="-test"))
        labels.append(label)
    if jobs:
        log(f"scoring {len(jobs)} chosen model(s) on the test split ...")
    for label, job, result in zip(labels, jobs, runner.run_all(jobs)):
        number = int(Path(job["out"]).name.split("-")[0])
        record = {"number": number, "kind": "test", "of": label, **_row(result)}
        journal.add(record)
        kept[label] = record
    base = kept["reference"].get("accuracy")
    test = {}
    for label in wanted:
        r = kept.get(label, {})
        entry = {"accuracy": r.get("accuracy"), "status": r.get("status"), "error": r.get("error")}
        if base is not None and r.get("accuracy") is not None:
            entry["drop_pt"] = round((base - r["accuracy"]) * 100, 3)
        test[label] = entry
    return test


# --- writing OUT ---------------------------------------------------------------------------

def _write(result: FitResult, journal: Journal, staging: Path, out: Path) -> None:
    import yaml

    from .report import latency_source, markdown, plot

    (staging / "front").mkdir()
    records = {r["number"]: r for r in result.trials if r["kind"] == "search"}
    max_drop = result.settings.get("max_drop")

    def rerunnable(record: dict, name: str) -> dict:
        """The trial's recipe as `edgenn compress --recipe` reproduces it.

        Scored on the test split, its epochs scaled as the trial ran them, at its thread count.
        """
        return space.recipe(record["params"], name, max_drop=max_drop, split="test",
                            sensitive=result.reference["sensitive"],
                            threads=(record.get("recipe") or {}).get("threads"),
                            epochs_scale=result.settings.get("epochs_scale", 1.0))

    for i, number in enumerate(result.front):
        doc = rerunnable(records[number], f"fit-front-{i:02d}")
        (staging / "front" / f"{i:02d}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    if result.best is not None:
        best = records[result.best]
        doc = rerunnable(best, "fit-best")
        (staging / "best.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        shutil.copyfile(best["tflite"], staging / "best.tflite")
    front = {"settings": result.settings, "reference": result.reference,
             "front": result.front, "best": result.best, "closest": result.closest,
             "test": result.test, "trials": [t for t in result.trials if t["kind"] != "test"],
             "objectives": {"accuracy": "validation top-1 of the exported file (LiteRT), "
                                        "maximised",
                            "latency_ms": latency_source(result.settings) + ", minimised",
                            "gzip_bytes": "gzip size of the .tflite, minimised"}}
    (staging / "front.json").write_text(json.dumps(front, indent=1, default=str))
    plot(result, staging / "pareto.png")
    (staging / "report.md").write_text(markdown(result))
