"""Latency and throughput against batch size (matplotlib, Agg; the ``plot`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_results"]


def plot_results(results: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Latency per call and throughput against batch size, one line per model x backend."""
    from glfer_edge.errors import require

    matplotlib = require("matplotlib", "plot", "glfer-edge bench --plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glfer_edge._fileio import atomic_path

    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "latency_ms" in r:
            series.setdefault(f"{r['model']} {r['backend']}", []).append(r)
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r["batch"])
        batches = [r["batch"] for r in rows]
        ax_lat.plot(batches, [r["latency_ms"]["median"] for r in rows], marker="o", label=name)
        ax_thr.plot(batches, [r["throughput_segments_per_s"] for r in rows], marker="o", label=name)
    batches = sorted({r["batch"] for rows in series.values() for r in rows})
    for ax, ylabel in ((ax_lat, "latency per call (ms, median)"), (ax_thr, "throughput (segments/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_thr.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
