"""Latency histogram and CDF as a PNG (matplotlib, imported only when asked for)."""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingDependencyError


def plot_latency(results: list, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib", "pip install matplotlib") from None
    import numpy as np

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:  # result.Measurement
        times = r.times_ms
        if not times:
            continue
        label = f"{Path(r.model).name} ({r.runtime}/{r.accelerator})"
        hist.hist(times, bins=40, alpha=0.6, label=label)
        s = np.sort(times)
        cdf.plot(s, np.arange(1, len(s) + 1) / len(s), label=label)
    hist.set_xlabel("latency (ms)")
    hist.set_ylabel("runs")
    hist.set_title("latency histogram")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("fraction of runs")
    cdf.set_title("latency CDF")
    cdf.grid(alpha=0.3)
    hist.legend(fontsize=7)
    fig.tight_layout()
    from ..artifacts import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
