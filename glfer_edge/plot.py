"""A figure like the paper's Fig. 8: SED activity per class, then azimuth and elevation over time.

Predictions are coloured by class, with a legend of the classes present beside the direction panels;
a reference (DCASE rows, 100-ms frames) is drawn over them in black (thin bars for activity, crosses for
directions). Uses matplotlib's object API with the Agg canvas, so no display and no global pyplot state
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
):
    """The figure of decisions ``active`` (T, C) and ``doa`` (T, C, 3): activity, azimuth and elevation panels."""
    require("matplotlib", "plot", "--plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), constrained_layout=True)
    FigureCanvasAgg(fig)
    sed_ax, az_ax, el_ax = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1]})
    azimuth, elevation = doa_to_angles(doa)
    for c, name in enumerate(class_names):
        t = frame_times[active[:, c]]
        if t.size:
            sed_ax.broken_barh([(x, hop_seconds) for x in t], (c - 0.4, 0.8), color=_color(c))
            az_ax.plot(t + hop_seconds / 2, azimuth[active[:, c], c], ".", color=_color(c), label=name)
            el_ax.plot(t + hop_seconds / 2, elevation[active[:, c], c], ".", color=_color(c))
    if reference:
        _draw_reference(sed_ax, az_ax, el_ax, reference)
    sed_ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    sed_ax.set_ylim(-0.6, len(class_names) - 0.4)
    sed_ax.set_ylabel("class")
    az_ax.set_ylim(-180, 180)
    az_ax.set_yticks([-180, -90, 0, 90, 180])
    az_ax.set_ylabel("azimuth (°)")
    el_ax.set_ylim(-90, 90)
    el_ax.set_yticks([-90, -45, 0, 45, 90])
    el_ax.set_ylabel("elevation (°)")
    el_ax.set_xlabel("time (s)")
    end = float(frame_times[-1] + hop_seconds) if len(frame_times) else 1.0
    el_ax.set_xlim(0, end)
    for ax in (sed_ax, az_ax, el_ax):
        ax.grid(alpha=0.3)
    sed_ax.set_title((title or "SELD predictions") + (" (black: reference)" if reference else ""))
    if az_ax.get_legend_handles_labels()[0]:  # the colours of the direction panels: one entry per class shown
        az_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=2, frameon=False,
                     title="class", title_fontsize=8)
    return fig


def _color(c: int) -> tuple[float, ...]:
    from matplotlib import colormaps

    return colormaps["tab20"](c % 20)


def _draw_reference(sed_ax, az_ax, el_ax, rows: Sequence) -> None:
    t = np.array([r.frame * LABEL_HOP_SECONDS for r in rows])
    c = np.array([r.class_idx for r in rows])
    for ci in np.unique(c):
        sed_ax.broken_barh([(x, LABEL_HOP_SECONDS) for x in t[c == ci]], (ci - 0.1, 0.2), color="k")
    centre = t + LABEL_HOP_SECONDS / 2
    az_ax.plot(centre, [r.azimuth for r in rows], "x", color="k", markersize=3, label="reference")
    el_ax.plot(centre, [r.elevation for r in rows], "x", color="k", markersize=3)
