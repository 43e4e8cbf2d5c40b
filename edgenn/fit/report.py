"""What a person reads after `edgenn fit`: report.md and pareto.png."""

from __future__ import annotations

from pathlib import Path

from .board import RUNS


def _kb(n) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KB"


def _acc(v) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def markdown(result) -> str:
    s = result.settings
    ref = result.reference
    trials = result.search_trials
    complete = [t for t in trials if t["status"] == "complete"]
    failed = [t for t in trials if t["status"] == "failed"]
    skipped = [t for t in trials if t["status"] == "skipped"]
    stopped = [t for t in trials if t["status"] == "stopped"]
    budgets = [f"accuracy drop <= {s['max_drop']:g} pt" if s.get("max_drop") is not None else None,
               f"latency <= {s['max_latency_ms']:g} ms" if s.get("max_latency_ms") is not None else None,
               f"file <= {s['max_bytes']:,} B" if s.get("max_bytes") is not None else None,
               f"RAM <= {s['max_ram_mb']:g} MB" if s.get("max_ram_mb") is not None else None]
    lines = [
        f"# edgenn fit: {Path(s['model']).name} on {s['device']}",
        "",
        f"- budgets: {', '.join(b for b in budgets if b) or 'none (the whole front is shown)'}",
        f"- trials: {len(complete)} complete, {len(failed)} failed, {len(skipped)} not trained "
        f"(their lower bound broke a budget, or the model cannot take the point)"
        + (f", {len(stopped)} stopped unfinished by --time-budget" if stopped else "")
        + f"; {result.seconds:,.0f} s",
        f"- input model: validation accuracy {_acc(ref['baseline'])}; float32 "
        f"{_kb(ref['float32']['bytes'])}, {ref['float32']['latency_ms']:.3g} ms "
        + ("measured" if s.get("host") else "estimated"),
        "- accuracy below is measured on the exported .tflite by LiteRT; the search and the "
        "choice use the validation split only, the test column is scored once, afterwards",
        (f"- latency is the p50 of {RUNS} runs measured on {s['host']} ({s['device']}) "
         "over SSH, one model at a time; RAM is the tensor-arena estimate (peak + weights)"
         if s.get("host") else
         f"- latency and RAM are estimates for {s['device']} (MACs / the device profile's "
         "throughput; tensor-arena peak + weights), not measurements"),
        "",
    ]
    test = result.test
    if result.best is not None:
        best = next(t for t in trials if t["number"] == result.best)
        tb = test.get(str(result.best), {})
        se = best.get("drop_se_pt")
        lines += ["## Best: the lowest latency that meets every budget"
                  + (", the accuracy drop by one standard error" if s.get("max_drop") is not None
                     and not result.notes else ""), "",
                  f"#{best['number']}: {best['label']}: validation {_acc(best['accuracy'])} "
                  f"(drop {best['drop_pt']:.2f}" + (f" ± {se:.2f}" if se is not None else "")
                  + f" pt), test {_acc(tb.get('accuracy'))}"
                  + (f" (drop {tb['drop_pt']:.2f} pt against the input model's "
                     f"{_acc(test['reference']['accuracy'])})" if "drop_pt" in tb else "")
                  + f", {best['latency_ms']:.3g} ms, {_kb(best['bytes'])} "
                  f"({_kb(best['gzip_bytes'])} gzip), RAM {best['ram_mb']:.2f} MB", "",
                  "`best.tflite` is that file; `best.yaml` reproduces it with "
                  "`edgenn compress MODEL --recipe best.yaml` (same data flags and seed).", ""]
        lines += [f"Note: {note}.\n" for note in result.notes]
        if s.get("max_drop") is not None and tb.get("drop_pt") is not None \
                and tb["drop_pt"] > s["max_drop"]:
            lines += [f"Note: on the test split the drop is {tb['drop_pt']:.2f} pt, past the "
                      f"{s['max_drop']:g} pt budget met on validation: the validation split may be "
                      "too small to tell; rerun with more data.", ""]
    elif result.closest:
        c = result.closest
        lines += ["## No point meets every budget", "",
                  (f"The closest, #{c['number']} ({c['label']}), misses {c['misses']}."
                   if c["number"] is not None else
                   f"No point of the search space can: {c['misses']}, for {c['label']}. "
                   "Nothing was trained."), ""]
    lines += ["## Pareto front (validation accuracy, latency, gzip size)", "",
              "| # | recipe | val acc | test acc | drop (test) | latency ms | size | gzip | RAM MB | file |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for i, number in enumerate(result.front):
        t = next(x for x in trials if x["number"] == number)
        tt = test.get(str(number), {})
        drop = f"{tt['drop_pt']:.2f} pt" if "drop_pt" in tt else "-"
        star = " (best)" if number == result.best else ""
        lines.append(f"| {number}{star} | {t['label']} | {_acc(t['accuracy'])} | "
                     f"{_acc(tt.get('accuracy'))} | {drop} | {t['latency_ms']:.3g} | "
                     f"{_kb(t['bytes'])} | {_kb(t['gzip_bytes'])} | {t['ram_mb']:.2f} | "
                     f"front/{i:02d}.yaml |")
    if result.shipped:
        lines += ["", "## Shipped recipes, run the same way (for comparison; never chosen)", "",
                  "| recipe | val acc | latency ms | size | gzip |", "|---|---|---|---|---|"]
        for r in result.shipped:
            if r["status"] != "complete":
                lines.append(f"| {r['name']} | failed: {r.get('error', '')[:120]} | | | |")
                continue
            lines.append(f"| {r['name']} | {_acc(r['accuracy'])} | {r['latency_ms']:.3g} | "
                         f"{_kb(r['bytes'])} | {_kb(r['gzip_bytes'])} |")
    lines += ["", "## Every trial", "",
              "| # | recipe | status | val acc | latency ms | gzip | seconds | note |",
              "|---|---|---|---|---|---|---|---|"]
    for t in trials:
        if t["status"] == "complete":
            note = "; ".join(t.get("misses") or []) or "meets every budget"
            if not t.get("misses") and s.get("max_drop") is not None and t.get("drop_se_pt") \
                    and t["drop_pt"] + t["drop_se_pt"] > s["max_drop"]:
                note += f" (the drop, {t['drop_pt']:.2f} ± {t['drop_se_pt']:.2f} pt, not by a " \
                        "standard error)"
            if t.get("reused") == "reference":
                note += " (the reference run's export, not run again)"
            elif t.get("reused"):
                note += " (trained model reused)"
            lines.append(f"| {t['number']} | {t['label']} | complete | {_acc(t['accuracy'])} | "
                         f"{t['latency_ms']:.3g} | {_kb(t['gzip_bytes'])} | {t.get('seconds')} | "
                         f"{note} |")
        else:
            lines.append(f"| {t['number']} | {t['label']} | {t['status']} | - | - | - | "
                         f"{t.get('seconds') or '-'} | {(t.get('error') or '')[:160]} |")
    return "\n".join(lines) + "\n"


def plot(result, path: Path) -> None:
    """Accuracy against latency; marker area = gzip size; budgets and front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.settings
    complete = [t for t in result.search_trials if t["status"] == "complete"]
    front = set(result.front)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    biggest = max([t["gzip_bytes"] for t in complete] + [1])

    def area(t):
        return 30 + 400 * t["gzip_bytes"] / biggest

    others = [t for t in complete if t["number"] not in front]
    ax.scatter([t["latency_ms"] for t in others], [t["accuracy"] * 100 for t in others],
               s=[area(t) for t in others], alpha=0.35, color="tab:gray", label="trials")
    on = sorted((t for t in complete if t["number"] in front), key=lambda t: t["latency_ms"])
    ax.scatter([t["latency_ms"] for t in on], [t["accuracy"] * 100 for t in on],
               s=[area(t) for t in on], alpha=0.8, color="tab:blue", label="Pareto front")
    for t in on:
        ax.annotate(f"#{t['number']}", (t["latency_ms"], t["accuracy"] * 100), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    if result.best is not None:
        b = next(t for t in complete if t["number"] == result.best)
        ax.scatter([b["latency_ms"]], [b["accuracy"] * 100], marker="*", s=260, color="tab:red",
                   label=f"best (#{b['number']})", zorder=5)
    shipped = [r for r in result.shipped if r["status"] == "complete"]
    if shipped:
        ax.scatter([r["latency_ms"] for r in shipped], [r["accuracy"] * 100 for r in shipped],
                   marker="D", s=50, color="tab:green", label="shipped recipes", zorder=4)
        for r in shipped:
            ax.annotate(r["name"], (r["latency_ms"], r["accuracy"] * 100), fontsize=7,
                        xytext=(4, -10), textcoords="offset points", color="tab:green")
    base = result.reference["baseline"] * 100
    ax.axhline(base, color="black", lw=0.8, ls=":", label="input model")
    if s.get("max_drop") is not None:
        ax.axhline(base - s["max_drop"], color="tab:red", lw=1, ls="--",
                   label=f"budget: drop {s['max_drop']:g} pt")
    if s.get("max_latency_ms") is not None:
        ax.axvline(s["max_latency_ms"], color="tab:red", lw=1, ls="-.",
                   label=f"budget: {s['max_latency_ms']:g} ms")
    ax.set_xlabel(f"latency on {s['device']} ("
                  + (f"p50 on {s['host']}" if s.get("host") else "estimate") + ", ms)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("edgenn fit: accuracy against latency (marker area = gzip size)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency_source(settings: dict) -> str:
    """What the latency objective is, in words (front.json, the live table)."""
    if settings.get("host"):
        return f"p50 measured on {settings['host']} over SSH"
    return f"estimate on {settings['device']} (MACs / the profile's throughput)"
