"""Trial jobs on Ray: a local Ray with ``--workers`` CPUs, or the cluster at ``--ray-address``."""

from __future__ import annotations

import os
from pathlib import Path

from .settings import FitSettings


class Runner:
    """Runs trial jobs on Ray (started here, or the cluster at ``ray_address``)."""

    def __init__(self, s: FitSettings, workdir: Path):
        import ray

        from .trial import explain, run

        self.ray = ray
        self.settings = s
        self.workdir = workdir
        if not ray.is_initialized():
            from ..quiet import quiet_stderr

            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
            kwargs = {"include_dashboard": False, "log_to_driver": False,
                      "logging_level": "ERROR", "configure_logging": True}
            with quiet_stderr():
                if s.ray_address:
                    ray.init(address=s.ray_address, **kwargs)
                else:
                    ray.init(num_cpus=s.workers, **kwargs)
        self.remote = ray.remote(num_cpus=1, max_retries=0)(run)
        self.remote_explain = ray.remote(num_cpus=1, max_retries=0)(explain)
        cores = os.cpu_count() or 1
        self.threads = 1 if s.ray_address else max(1, cores // s.workers)
        self.board = None  # edgenn.fit.board.Board with --host

    def measured(self, result: dict) -> dict:
        """A trial's result with its latency measured on the board (--host), else as it is."""
        return result if self.board is None else self.board.apply(result)

    def job(self, number: int, recipe_doc: dict, model: str | None = None,
            cache_to: str | None = None, tag: str = "") -> dict:
        import yaml

        folder = self.workdir / "trials"
        name = f"{number:03d}{tag}"
        recipe_path = folder / f"{name}.yaml"
        # every trial process runs at the search's thread count (the recipe pins it)
        recipe_doc = {**recipe_doc, "threads": recipe_doc.get("threads") or self.threads}
        recipe_path.write_text(yaml.safe_dump(recipe_doc, sort_keys=False))
        s = self.settings
        return {"model": str(Path(model or s.model).resolve()), "recipe": str(recipe_path),
                "data_args": list(s.data_args), "out": str(folder / name), "device": s.device,
                "epochs_scale": s.epochs_scale, "threads": self.threads,
                "allow_unsafe": s.allow_unsafe, "custom_objects": s.custom_objects,
                "cache_to": cache_to, "timeout": s.trial_timeout}

    def submit(self, job: dict, kind: str = "run"):
        return (self.remote_explain if kind == "explain" else self.remote).remote(job)

    def wait(self, refs: list, timeout: float | None):
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    def get(self, ref) -> dict:
        try:
            return self.ray.get(ref)
        except Exception as err:  # noqa: BLE001 - a worker that died is a failed trial
            text = " ".join(str(err).split())[:300]
            return {"status": "failed", "error": f"the Ray worker failed ({type(err).__name__}: "
                                                  f"{text})", "seconds": None}

    def cancel(self, ref) -> None:
        self.ray.cancel(ref, force=True)

    def run_all(self, jobs: list[dict]) -> list[dict]:
        refs = [self.submit(j) for j in jobs]
        return [self.get(r) for r in refs]

    def close(self) -> None:
        self.ray.shutdown()  # a local Ray stops; from a cluster the driver only disconnects
