"""A figure like the paper's Fig. 8: SED activity per class, then azimuth and elevation over time.

Predictions are coloured by class, with a legend of the classes present beside the direction panels;
a reference (DCASE rows, 100-ms frames) is drawn over them in black (thin bars for activity, crosses for
directions). A model with distance (DCASE 2024) gets a fourth panel, each class's distance in metres
over its active frames (reference rows with a distance as black crosses). Uses matplotlib's object API with the Agg canvas, so no display and no global pyplot state
are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from glfer_edge._fileio import atomic_path
from glfer_edge.config import LABEL_HOP_SECONDS
from glfer_edge.errors import require
from glfer_edge.postprocess import doa_to_angles

__all__ = ["seld_figure", "save_figure"]


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure atomically; the format comes from the suffix (png, pdf, svg, jpg)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
    return path


def seld_figure(
    active: np.ndarray,
    doa: np.ndarray,
    frame_times: np.ndarray,
    hop_seconds: float,
    class_names: Sequence[str],
    *,
    reference: Sequence | None = None,
    title: str | None = None,
    distance: np.ndarray | None = None,
):
    """The figure of decisions ``active`` (T, C) and ``doa`` (T, C, 3): activity, azimuth and elevation panels;
    with ``distance`` (T, C) metres, a distance panel below them."""
    require("matplotlib", "plot", "--plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 3 if distance is None else 4
    fig = Figure(figsize=(11, 7 if distance is None else 8.5), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1, 1][:panels]})
    sed_ax, az_ax, el_ax = axes[:3]
    dist_ax = axes[3] if distance is not None else None
    azimuth, elevation = doa_to_angles(doa)
    for c, name in enumerate(class_names):
        t = frame_times[active[:, c]]
        if t.size:
            sed_ax.broken_barh([(x, hop_seconds) for x in t], (c - 0.4, 0.8), color=_color(c))
            az_ax.plot(t + hop_seconds / 2, azimuth[active[:, c], c], ".", color=_color(c), label=name)
            el_ax.plot(t + hop_seconds / 2, elevation[active[:, c], c], ".", color=_color(c))
            if dist_ax is not None:
                dist_ax.plot(t + hop_seconds / 2, distance[active[:, c], c], ".", color=_color(c))
    if reference:
        _draw_reference(sed_ax, az_ax, el_ax, reference, dist_ax)
    sed_ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    sed_ax.set_ylim(-0.6, len(class_names) - 0.4)
    sed_ax.set_ylabel("class")
    az_ax.set_ylim(-180, 180)
    az_ax.set_yticks([-180, -90, 0, 90, 180])
    az_ax.set_ylabel("azimuth (°)")
    el_ax.set_ylim(-90, 90)
    el_ax.set_yticks([-90, -45, 0, 45, 90])
    el_ax.set_ylabel("elevation (°)")
    if dist_ax is not None:
        dist_ax.set_ylim(bottom=0)
        dist_ax.set_ylabel("distance (m)")
    axes[-1].set_xlabel("time (s)")
    end = float(frame_times[-1] + hop_seconds) if len(frame_times) else 1.0
    axes[-1].set_xlim(0, end)
    for ax in axes:
        ax.grid(alpha=0.3)
    sed_ax.set_title((title or "SELD predictions") + (" (black: reference)" if reference else ""))
    if az_ax.get_legend_handles_labels()[0]:  # the colours of the direction panels: one entry per class shown
        az_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=2, frameon=False,
                     title="class", title_fontsize=8)
    return fig


def _color(c: int) -> tuple[float, ...]:
    from matplotlib import colormaps

    return colormaps["tab20"](c % 20)


def _draw_reference(sed_ax, az_ax, el_ax, rows: Sequence, dist_ax=None) -> None:
    t = np.array([r.frame * LABEL_HOP_SECONDS for r in rows])
    c = np.array([r.class_idx for r in rows])
    for ci in np.unique(c):
        sed_ax.broken_barh([(x, LABEL_HOP_SECONDS) for x in t[c == ci]], (ci - 0.1, 0.2), color="k")
    centre = t + LABEL_HOP_SECONDS / 2
    az_ax.plot(centre, [r.azimuth for r in rows], "x", color="k", markersize=3, label="reference")
    el_ax.plot(centre, [r.elevation for r in rows], "x", color="k", markersize=3)
    ranged = [i for i, r in enumerate(rows) if getattr(r, "distance", None) is not None]
    if dist_ax is not None and ranged:
        dist_ax.plot(centre[ranged], [rows[i].distance for i in ranged], "x", color="k", markersize=3)
