"""Network outputs -> decisions: thresholding, median filtering, DOA smoothing, events, DCASE rows, CSV/JSON
writers.

Frame-wise decision: class c is active in output frame t when ``sed[t, c] >= threshold`` (0.3 by
default, the config's ``sed_threshold``; per-class overrides by name or index), optionally
smoothed by a median filter over ``median_frames`` output frames (odd; 1 = off). The median of
the probabilities followed by the threshold equals the median of the binary decisions, so the
filter runs on the decisions.

DOA smoothing: each class's DOA vectors averaged over a centred window of ``doa_smoothing_frames``
output frames (the config's; odd; 1 = off), weighted by that class's SED probability. The DOA
loss is masked to active classes, so inactive frames carry arbitrary vectors: the weights keep
them out of an event's direction. A centred window needs (frames - 1) / 2 frames of look-ahead,
which a streaming user pays in latency.

Events: maximal runs of active frames of one class. GLFER-Net predicts one DOA per class and frame
(class-wise regression), so two simultaneous sources of one class are one event; a moving source
is one event whose ``track_*`` fields follow it frame by frame. DCASE rows are at the 10-fps label
rate: each 0.2-s output frame becomes two 100-ms label frames (repetition), track 0.

Noise gate (``glfer_edge.gate``, settings ``config.gate``): outputs of ``infer_long`` and
``StreamingSELD`` carry each frame's FOA diffuseness and W level measured on the audio; a frame
whose diffuseness exceeds ``gate.max_diffuseness`` or whose level is below ``gate.min_level_dbfs``,
and that lies more than ``gate.hold_frames`` frames from a frame that passes both, holds no event
(every class off, after the median filter). Each event reports its mean diffuseness
and its level (JSON events and the printed table; the DCASE CSV keeps the official columns).
:func:`decide` applies the whole chain to an output; ``gate=False`` there decides without the gate.

Distance (models with ``ModelConfig.distance``, DCASE 2024 3D SELD): the output holds one distance
(metres) per class and frame. An event's ``distance_m`` is the MEDIAN of its class's distance over
the event's frames, and ``track_distance_m`` the frame-wise values (like ``track_azimuth``). The
median, not the mean: the head is trained on active frames only, so the frames at an event's edges
(where the probability crosses the threshold) and an odd outlier frame carry poorly constrained
values that a mean would follow and a median ignores; the DCASE 2024 score is per frame and relative
(|d - d_ref| / d_ref), so one robust value per event is the natural summary. DCASE rows carry each
label frame's own distance (no smoothing), as the 2024 baseline writes them. For a model without
distance, events have no distance fields at all (``to_dict`` leaves the keys out: the JSON of such a
model is unchanged, and ``distance_m`` is never null), and rows have ``distance`` None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from glfer_edge._fileio import atomic_path
from glfer_edge.config import LABEL_HOP_SECONDS, GateConfig, SELDConfig
from glfer_edge.data.dcase import LabelRow, check_edition, targets_to_labels, write_metadata_csv
from glfer_edge.errors import InputError
from glfer_edge.gate import gate_passes

__all__ = [
    "Event", "Decisions", "activity", "smooth_doa", "label_rate_factor", "to_label_rate", "events_from_frames",
    "output_gate", "decide", "detect_events", "outputs_to_rows", "write_dcase_csv", "write_events_json",
    "format_events", "doa_to_angles",
]

ClassThresholds = Mapping[Any, float]  # class name or index -> threshold


@dataclass(frozen=True)
class Event:
    """One detected sound event; times in seconds, angles in degrees (azimuth CCW from +x)."""

    class_idx: int
    class_name: str
    onset: float
    offset: float
    azimuth: float  # direction of the mean unit DOA over the event
    elevation: float
    mean_probability: float
    track_times: tuple[float, ...]  # start of each output frame of the event
    track_azimuth: tuple[float, ...]
    track_elevation: tuple[float, ...]
    # Noise-gate measures of the event's frames (glfer_edge.gate); None where the output has none.
    diffuseness: float | None = None  # mean FOA diffuseness psi in [0, 1] (0: one plane wave)
    level_dbfs: float | None = None  # W level over the event's frames, dBFS (power mean)
    # Source distance (models with the distance head only; None otherwise): median over the event's frames.
    distance_m: float | None = None
    track_distance_m: tuple[float, ...] | None = None

    @property
    def duration(self) -> float:
        return self.offset - self.onset

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready fields; the distance keys only for a model with distance (never null)."""
        out = asdict(self)
        if self.distance_m is None:
            del out["distance_m"], out["track_distance_m"]
        return out


def doa_to_angles(doa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (degrees) of Cartesian vectors (..., 3); the norm is ignored."""
    x, y, z = doa[..., 0].astype(np.float64), doa[..., 1].astype(np.float64), doa[..., 2].astype(np.float64)
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y)))


def _thresholds(
    num_classes: int, class_names: Sequence[str], threshold: float, overrides: ClassThresholds | None
) -> np.ndarray:
    out = np.full(num_classes, float(threshold))
    for key, value in (overrides or {}).items():
        if isinstance(key, str):
            if key not in class_names:
                raise InputError(f"unknown class {key!r} in class thresholds; classes are {', '.join(class_names)}")
            key = list(class_names).index(key)
        if not 0 <= int(key) < num_classes or not 0.0 < float(value) < 1.0:
            raise InputError(f"class threshold {key}={value}: need a class index < {num_classes} and 0 < value < 1")
        out[int(key)] = float(value)
    return out


def activity(
    sed: np.ndarray, threshold: float = 0.3, *, class_thresholds: ClassThresholds | None = None,
    class_names: Sequence[str] = (), median_frames: int = 1, passes: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean (T, C) activity of probabilities (T, C); ``passes`` (T,): the noise gate's frame mask
    (``output_gate``), applied after the median filter (a failing frame has every class off)."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold {threshold} must be between 0 and 1 (the paper decides at 0.3)")
    check_odd_frames(median_frames, "median filter length")
    active = sed >= _thresholds(sed.shape[-1], class_names, threshold, class_thresholds)
    if median_frames > 1 and active.shape[0]:
        active = median_filter(active.astype(np.uint8), size=(median_frames, 1), mode="nearest").astype(bool)
    if passes is not None:
        if len(passes) != active.shape[0]:
            raise InputError(f"gate mask has {len(passes)} frames for outputs of {active.shape[0]} frames")
        active = active & np.asarray(passes, bool)[:, None]
    return active


def check_odd_frames(frames: int, what: str) -> None:
    """Refuse a window length that is not an odd number of frames >= 1 (centred windows), naming ``what``."""
    if frames < 1 or frames % 2 == 0:
        raise InputError(f"{what} {frames} must be an odd number of frames >= 1 (1 = off)")


def smooth_doa(sed: np.ndarray, doa: np.ndarray, frames: int) -> np.ndarray:
    """DOA vectors (T, C, 3) averaged over ``frames`` centred output frames, weighted by the probabilities (T, C)."""
    check_odd_frames(frames, "DOA smoothing length")
    if frames == 1 or not len(doa):
        return doa
    weighted = uniform_filter1d(doa * sed[..., None], frames, axis=0, mode="nearest")
    weight = uniform_filter1d(sed, frames, axis=0, mode="nearest")[..., None]
    # An active frame's own probability (>= threshold > 0) keeps the weight away from 0.
    return (weighted / np.maximum(weight, 1e-12)).astype(doa.dtype, copy=False)


def label_rate_factor(config: SELDConfig) -> int:
    """Label frames per output frame (2: 0.2-s output frames, 0.1-s DCASE label frames)."""
    factor = config.output_hop_seconds / LABEL_HOP_SECONDS
    if abs(factor - round(factor)) > 1e-6 or round(factor) < 1:
        raise InputError(f"output hop {config.output_hop_seconds} s is not a multiple of the 0.1-s label hop")
    return int(round(factor))


def to_label_rate(frames: np.ndarray, factor: int = 2) -> np.ndarray:
    """Repeat each output frame ``factor`` times along axis 0 (output rate -> 10-fps label rate)."""
    return np.repeat(frames, factor, axis=0)


def events_from_frames(
    active: np.ndarray, sed: np.ndarray, doa: np.ndarray, frame_times: np.ndarray, hop_seconds: float,
    class_names: Sequence[str], *, diffuseness: np.ndarray | None = None, level_dbfs: np.ndarray | None = None,
    distance: np.ndarray | None = None,
) -> list[Event]:
    """Events from a decision matrix (T, C) and the outputs it came from, sorted by onset then class.
    ``diffuseness`` and ``level_dbfs`` (T,), the gate's measures, fill each event's fields of those names;
    ``distance`` (T, C) metres (distance models) gives each event ``distance_m`` (median over its frames)
    and ``track_distance_m``."""
    events = []
    azimuth, elevation = doa_to_angles(doa)
    distance = _check_distance(distance, active.shape)
    for c in range(active.shape[1]):
        padded = np.concatenate([[False], active[:, c], [False]])
        edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
        for start, stop in zip(edges[::2], edges[1::2]):
            frames = slice(start, stop)
            unit = doa[frames, c].astype(np.float64)
            unit /= np.maximum(np.linalg.norm(unit, axis=-1, keepdims=True), 1e-12)
            mean_az, mean_el = doa_to_angles(unit.mean(axis=0))
            events.append(Event(
                class_idx=c, class_name=class_names[c] if c < len(class_names) else str(c),
                onset=_us(frame_times[start]), offset=_us(frame_times[stop - 1] + hop_seconds),
                azimuth=float(mean_az), elevation=float(mean_el), mean_probability=float(sed[frames, c].mean()),
                track_times=tuple(_us(t) for t in frame_times[frames]),
                track_azimuth=tuple(float(a) for a in azimuth[frames, c]),
                track_elevation=tuple(float(e) for e in elevation[frames, c]),
                diffuseness=None if diffuseness is None else round(float(np.mean(diffuseness[frames])), 4),
                level_dbfs=None if level_dbfs is None else _power_mean_db(level_dbfs[frames]),
                distance_m=None if distance is None else float(np.median(distance[frames, c].astype(np.float64))),
                track_distance_m=None if distance is None else tuple(float(d) for d in distance[frames, c]),
            ))
    return sorted(events, key=lambda e: (e.onset, e.class_idx))


def _check_distance(distance: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Distances (T, C) matching decisions of ``shape``, as an array; None passes through."""
    if distance is None:
        return None
    distance = np.asarray(distance)
    if distance.shape != tuple(shape):
        raise InputError(f"distance outputs have shape {distance.shape}; expected {tuple(shape)} (frames, classes)")
    return distance


def _power_mean_db(level_dbfs: np.ndarray) -> float:
    """Level (dB, 0.01-dB steps) of the mean power of frames given in dB."""
    return round(float(10.0 * np.log10(np.mean(10.0 ** (np.asarray(level_dbfs, np.float64) / 10.0)))), 2)


def _us(seconds: float) -> float:
    """Times rounded to microseconds: k x 0.2 prints as 0.6, not 0.6000000000000001."""
    return round(float(seconds), 6)


def output_gate(output: Any, index: int = 0, gate: GateConfig | bool | None = None) -> np.ndarray | None:
    """The noise gate's frame mask (T',) for clip ``index`` of a SELDOutput: True where the frame may
    hold events. ``gate``: None = the output config's :class:`~glfer_edge.config.GateConfig`, False = no
    gate, or a GateConfig. None (no gate) where the output carries no diffuseness/level (one segment of
    ``SELDRuntime.infer``)."""
    if gate is False or output.diffuseness is None or output.level_dbfs is None:
        return None
    settings = output.config.gate if gate is None or gate is True else gate
    if not settings.enabled:
        return None
    return gate_passes(output.diffuseness[index], output.level_dbfs[index], settings)


@dataclass(frozen=True)
class Decisions:
    """What :func:`decide` makes of one clip: the pair it decided at, the frame decisions, the (smoothed)
    DOAs, the events and the DCASE label rows (``rows`` holds no event the gate removed; with distance
    for a distance model)."""

    threshold: float
    doa_smoothing: int
    active: np.ndarray  # (T', C) bool, after threshold, median filter and gate
    doa: np.ndarray  # (T', C, 3) DOA after smoothing
    events: list[Event]
    rows: list[LabelRow]
    distance: np.ndarray | None = None  # (T', C) metres as the model gave them; None without the distance head


def decide(
    output: Any, index: int = 0, *, threshold: float | None = None, class_thresholds: ClassThresholds | None = None,
    median_frames: int = 1, doa_smoothing: int | None = None, duration: float | None = None,
    gate: GateConfig | bool | None = None,
) -> Decisions:
    """Threshold, median filter, noise gate, DOA smoothing, events and DCASE rows of clip ``index`` of a
    :class:`~glfer_edge.runtime.SELDOutput`, in one call (``glfer-edge run``'s chain). ``threshold`` and
    ``doa_smoothing`` default to the config's pair for the output's TTA views, ``gate`` to the config's
    gate (``False``: off). ``duration`` (s) drops label rows past the end of the recording."""
    threshold, doa_smoothing = output.config.decision(output.views, threshold, doa_smoothing)
    cfg = output.config
    sed = output.sed[index]
    doa = smooth_doa(sed, output.doa[index], doa_smoothing)
    passes = output_gate(output, index, gate)
    active = activity(
        sed, threshold, class_thresholds=class_thresholds, class_names=output.class_names,
        median_frames=median_frames, passes=passes,
    )
    distance = getattr(output, "distance", None)
    distance = None if distance is None else _check_distance(distance[index], active.shape)
    events = events_from_frames(
        active, sed, doa, output.frame_times, cfg.output_hop_seconds, output.class_names,
        diffuseness=None if output.diffuseness is None else output.diffuseness[index],
        level_dbfs=None if output.level_dbfs is None else output.level_dbfs[index], distance=distance,
    )
    rows = _label_rows(active, doa, cfg, duration, distance)
    return Decisions(threshold, doa_smoothing, active, doa, events, rows, distance)


def detect_events(
    output: Any, index: int = 0, *, threshold: float | None = None, class_thresholds: ClassThresholds | None = None,
    median_frames: int = 1, doa_smoothing: int | None = None, gate: GateConfig | bool | None = None,
) -> list[Event]:
    """Events of clip ``index`` of a :class:`~glfer_edge.runtime.SELDOutput` (``threshold`` and
    ``doa_smoothing`` default to the config's pair for the output's TTA views). On the few frames a
    ``StreamingSELD.push`` returns, the smoothing window stops at the chunk's edges; ``doa_smoothing=1``
    keeps the raw directions. Frames that fail the noise gate (``config.gate``; ``gate=False`` turns it
    off) hold no event; each event reports its ``diffuseness`` and ``level_dbfs``. Outputs of one
    segment (``SELDRuntime.infer``) carry no gate measures and are decided without the gate."""
    return decide(
        output, index, threshold=threshold, class_thresholds=class_thresholds, median_frames=median_frames,
        doa_smoothing=doa_smoothing, gate=gate,
    ).events


def outputs_to_rows(
    sed: np.ndarray, doa: np.ndarray, config: SELDConfig, *, threshold: float | None = None,
    class_thresholds: ClassThresholds | None = None, median_frames: int = 1, doa_smoothing: int | None = None,
    duration: float | None = None, views: int = 1, passes: np.ndarray | None = None,
    distance: np.ndarray | None = None,
) -> list[LabelRow]:
    """DCASE label rows (10 fps, track 0) of one recording's outputs (T, C) and (T, C, 3) from time 0
    (``threshold`` and ``doa_smoothing`` default to the config's pair for outputs of ``views`` TTA views).
    ``distance`` (T, C) metres, a distance model's third output, fills each row's ``distance`` (the
    row's own frame and class: DCASE 2024 rows); None leaves it None.

    ``duration`` (seconds) drops label frames that start at or after the end of the recording (the
    second half of a last output frame that straddles the end). ``passes`` (T,): the noise gate's
    frame mask (:func:`output_gate`); None = no gate (these arrays carry no audio measures; :func:`decide`
    takes a SELDOutput and applies the config's gate).
    """
    threshold, doa_smoothing = config.decision(views, threshold, doa_smoothing)
    active = activity(
        sed, threshold, class_thresholds=class_thresholds, class_names=config.class_names, median_frames=median_frames,
        passes=passes,
    )
    distance = _check_distance(distance, active.shape)
    return _label_rows(active, smooth_doa(sed, doa, doa_smoothing), config, duration, distance)


def _label_rows(
    active: np.ndarray, doa: np.ndarray, config: SELDConfig, duration: float | None,
    distance: np.ndarray | None = None,
) -> list[LabelRow]:
    """Label rows of output-rate decisions (T, C), DOAs (T, C, 3) and distances (T, C) or None, cut at
    ``duration`` seconds."""
    factor = label_rate_factor(config)
    rows = targets_to_labels(to_label_rate(active, factor), to_label_rate(doa, factor))
    if distance is not None:
        labelled = to_label_rate(distance, factor)
        rows = [replace(r, distance=float(labelled[r.frame, r.class_idx])) for r in rows]
    if duration is None:
        return rows
    n_frames = math.ceil(duration / LABEL_HOP_SECONDS - 1e-9)
    return [r for r in rows if r.frame < n_frames]


def write_dcase_csv(
    path: str | Path, rows: Sequence[LabelRow], *, cartesian: bool = False, edition: str = "2023"
) -> None:
    """Prediction rows as a DCASE metadata CSV (100-ms frames, no header), written atomically.

    ``edition`` "2024": ``frame,class,source,azimuth,elevation,distance`` with the distance in metres
    (predictions, as the 2024 baseline writes them and its scorer reads them); every row needs a
    distance (rows of a distance model), else the write is refused and nothing is written. Earlier
    editions have no distance column for predictions: distances are left out (a 2023 file's sixth
    column is the STARSS23 reference's, in centimetres; 2021/2022 would read it as Cartesian).
    """
    if check_edition(edition) != "2024":
        rows = [r if r.distance is None else replace(r, distance=None) for r in rows]
    write_metadata_csv(path, rows, cartesian=cartesian, edition=edition, prediction=True)


def write_events_json(path: str | Path, events: Sequence[Event], extra: Mapping[str, Any] | None = None) -> None:
    """``{..extra, "events": [...]}`` as JSON, written atomically."""
    payload = {**(extra or {}), "events": [e.to_dict() for e in events]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def format_events(events: Sequence[Event], *, distance: bool | None = None) -> str:
    """A fixed-width table: one line per event; the gate's diffuseness and level (dBFS) where measured,
    the distance (metres, the event's median) for a distance model. ``distance``: show that column (True),
    or not (False); None: where an event has a distance."""
    gated = any(e.diffuseness is not None for e in events)
    ranged = any(e.distance_m is not None for e in events) if distance is None else distance
    extra = f" {'diffuse':>7} {'dBFS':>6}" if gated else ""
    extra += f" {'dist m':>6}" if ranged else ""
    lines = [f"{'onset':>8} {'offset':>8}  {'class':<16} {'azimuth':>8} {'elevation':>9} {'p':>5}{extra}"]
    for e in events:
        cells = ""
        if gated:
            psi = f"{e.diffuseness:7.2f}" if e.diffuseness is not None else f"{'-':>7}"
            level = f"{e.level_dbfs:6.1f}" if e.level_dbfs is not None else f"{'-':>6}"
            cells = f" {psi} {level}"
        if ranged:
            cells += f" {e.distance_m:6.2f}" if e.distance_m is not None else f" {'-':>6}"
        lines.append(
            f"{e.onset:8.1f} {e.offset:8.1f}  {e.class_name[:16]:<16} {e.azimuth:8.1f} {e.elevation:9.1f} "
            f"{e.mean_probability:5.2f}{cells}"
        )
    if not events:
        lines.append("(no events above the threshold)")
    return "\n".join(lines)
