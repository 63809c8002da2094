"""Task-level parity: two artifacts on the same labelled scenes, compared as outputs and as SELD systems.

``compare_artifacts`` runs both artifacts through :class:`glfer_edge.runtime.SELDRuntime` on the
same :class:`LabelledScene` list (generated scenes or a DCASE folder) and reports, for B against the
reference A, the output statistics of :mod:`glfer_edge.parity.tensors` (distance too when both
sides have the distance output) and both sides' DCASE SELD metrics against the labels (ER20, F20,
LE_CD, LR_CD and the aggregate SELD error) with their delta, checked against a row of
:data:`glfer_edge.tolerances.TOLERANCES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glfer_edge._fileio import json_safe
from glfer_edge.config import SELDConfig
from glfer_edge.data.dcase import LabelRow
from glfer_edge.errors import InputError
from glfer_edge.parity.tensors import ParityStats, compare_outputs, violations
from glfer_edge.tolerances import Tolerances, tolerances_for

if TYPE_CHECKING:
    from glfer_edge.metrics import SELDResult
    from glfer_edge.parity.layers import LayerReport

__all__ = [
    "LabelledScene", "ArtifactSummary", "ParityReport", "SELD_KEYS", "synth_recordings", "dcase_recordings",
    "score_recordings", "compare_artifacts",
]

SELD_KEYS = ("ER20", "F20", "LE_CD", "LR_CD", "SELD")  # the DCASE metrics each side is scored on


@dataclass(frozen=True)
class LabelledScene:
    """FOA audio with its DCASE labels (a generated scene or a dataset recording), scored as one file;
    it is cut into the model's segments (the tail zero-padded)."""

    name: str
    audio: np.ndarray  # (4, N) float32
    rows: tuple[LabelRow, ...]  # DCASE label rows, 100-ms frames from the start of the recording
    edition: str = "2023"


def synth_recordings(config: SELDConfig, n: int, seed: int = 0) -> list[LabelledScene]:
    """``n`` generated scenes of one segment each, with the model's classes where the generator has them."""
    from glfer_edge.config import SYNTH_CLASSES
    from glfer_edge.data.sources import SOURCE_CLASSES
    from glfer_edge.data.synth import SceneConfig, generate_scene

    if n < 1:
        raise InputError(f"--synth {n}: generate at least one scene")
    classes = config.class_names
    if not set(classes) <= set(SOURCE_CLASSES):  # e.g. STARSS23 names: labels by index, scores still comparable
        classes = SYNTH_CLASSES[: config.model.num_classes]
    scene_cfg = SceneConfig(duration_s=max(config.segment_seconds, 1.0), sample_rate=config.features.sample_rate,
                            class_names=classes, max_polyphony=min(3, len(classes)))
    scenes = [generate_scene(scene_cfg, seed, i) for i in range(n)]
    n_samples = config.segment_samples
    return [LabelledScene(f"scene{i:04d}", s.audio[:, :n_samples], tuple(s.rows)) for i, s in enumerate(scenes)]


def dcase_recordings(
    root: str | Path, sample_rate: int, *, layout: str = "synth", select: str | Sequence[str] | None = None,
    max_files: int | None = None,
) -> list[LabelledScene]:
    """The recordings of a DCASE-layout folder (glfer_edge.data.layout.list_pairs), labelled, at ``sample_rate``."""
    from glfer_edge.audio import load_audio
    from glfer_edge.data.dcase import read_metadata_csv
    from glfer_edge.data.layout import get_layout, list_pairs

    lay = get_layout(layout)
    out = []
    for wav, csv in list_pairs(root, select, lay)[:max_files]:
        # both sides must see the file's own samples: no resampling, and every check of run's loader
        audio = load_audio(wav, sample_rate, allow_resample=False).audio
        out.append(LabelledScene(wav.stem, audio, tuple(read_metadata_csv(csv, lay.edition)), lay.edition))
    return out


# -- running artifacts ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactSummary:
    path: str
    backend: str
    precision: str
    description: str


@dataclass(frozen=True)
class _Outputs:
    summary: ArtifactSummary
    config: SELDConfig
    sed: list[np.ndarray]  # per recording (T, C) at the output frame rate
    doa: list[np.ndarray]  # per recording (T, C, 3)
    distance: list[np.ndarray] | None = None  # per recording (T, C) metres; None without the distance head


def _run(
    path: str | Path, recordings: Sequence[LabelledScene], *, batch: int, device: str, backend: str | None = None,
    options: Any = None,
) -> _Outputs:
    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.segments import infer_long

    with SELDRuntime.open(path, device=device, backend=backend, options=options) as rt:
        outs = [infer_long(rt, rec.audio, batch_size=batch) for rec in recordings]
        summary = ArtifactSummary(str(path), rt.backend, rt.precision, rt.description)
        distance = [o.distance[0] for o in outs] if all(o.distance is not None for o in outs) else None
        return _Outputs(summary, rt.config, [o.sed[0] for o in outs], [o.doa[0] for o in outs], distance)


def score_recordings(
    config: SELDConfig, recordings: Sequence[LabelledScene], sed: Sequence[np.ndarray], doa: Sequence[np.ndarray]
) -> SELDResult:
    """DCASE metrics of per-recording outputs (T, C) and (T, C, 3) against the labels, each recording one file."""
    from glfer_edge.metrics import SELDMetrics
    from glfer_edge.postprocess import outputs_to_rows

    metrics = SELDMetrics(config.model.num_classes, edition=recordings[0].edition)
    for rec, s, d in zip(recordings, sed, doa):
        metrics.update(list(rec.rows), outputs_to_rows(s, d, config))
    return metrics.compute()


def _seld(config: SELDConfig, out: _Outputs, recordings: Sequence[LabelledScene]) -> dict[str, float]:
    """ER20, F20, LE_CD, LR_CD and SELD of one side against the labels, decided as ``config`` decides."""
    return score_recordings(config, recordings, out.sed, out.doa).scores()


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityReport:
    """B against reference A on ``n_recordings`` recordings (``n_frames`` output frames in all)."""

    a: ArtifactSummary
    b: ArtifactSummary
    tolerances: Tolerances
    stats: ParityStats
    violations: tuple[str, ...]
    data: str
    n_recordings: int
    n_frames: int
    seld_a: dict[str, float] | None = None  # ER20, F20, LE_CD, LR_CD, SELD
    seld_b: dict[str, float] | None = None
    layers: LayerReport | None = None  # per-layer search, when asked

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def seld_delta(self) -> float | None:
        return None if self.seld_a is None or self.seld_b is None else self.seld_b["SELD"] - self.seld_a["SELD"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinities become None."""
        d = dataclasses.asdict(self)
        d["stats"] = self.stats.to_dict()  # distance fields only where measured
        if not self.stats.has_distance:  # a model without distance reports as before
            d["tolerances"] = {k: v for k, v in d["tolerances"].items() if not k.startswith("distance_")}
        d["passed"], d["seld_delta"] = self.passed, self.seld_delta
        return json_safe(d)


def compare_artifacts(
    a: str | Path,
    b: str | Path,
    recordings: Sequence[LabelledScene],
    *,
    tolerances: Tolerances | None = None,
    data: str = "",
    batch: int = 4,
    device: str = "cpu",
    with_seld: bool = True,
    backend_b: str | None = None,
    options_b: Any = None,
) -> ParityReport:
    """Run A (reference) and B on the same recordings; tolerances default to the row of B's precision
    (on B's backend where it has its own, e.g. ``openvino-bf16``). ``backend_b`` and ``options_b``
    open B as :meth:`SELDRuntime.open` does (e.g. ``"openvino"`` for an ONNX file)."""
    if not recordings:
        raise InputError("no recordings to compare on; pass --synth N or a --data folder with recordings")
    out_a = _run(a, recordings, batch=batch, device=device)
    out_b = _run(b, recordings, batch=batch, device=device, backend=backend_b, options=options_b)
    ca, cb = out_a.config, out_b.config
    if ca.segment_samples != cb.segment_samples or ca.model.num_classes != cb.model.num_classes:
        raise InputError(
            f"{a} and {b} are not the same model contract ({ca.segment_seconds:g}-s segments, "
            f"{ca.model.num_classes} classes vs {cb.segment_seconds:g}-s, {cb.model.num_classes}); "
            "export both from the same weights and segment length"
        )
    tol = tolerances or tolerances_for(out_b.summary.precision, out_b.summary.backend)
    both = out_a.distance is not None and out_b.distance is not None  # one side alone: nothing to compare
    stats = compare_outputs(
        np.concatenate(out_a.sed), np.concatenate(out_a.doa), np.concatenate(out_b.sed), np.concatenate(out_b.doa),
        threshold=ca.sed_threshold, distance_a=np.concatenate(out_a.distance) if both else None,
        distance_b=np.concatenate(out_b.distance) if both else None,
    )
    # Both sides decided at A's threshold and DOA smoothing: the deltas are the networks', not the settings'.
    seld_a = _seld(ca, out_a, recordings) if with_seld else None
    seld_b = _seld(ca, out_b, recordings) if with_seld else None
    delta = None if seld_a is None or seld_b is None else seld_b["SELD"] - seld_a["SELD"]
    frames = sum(len(s) for s in out_a.sed)
    return ParityReport(
        out_a.summary, out_b.summary, tol, stats, tuple(violations(stats, tol, delta)), data,
        len(recordings), frames, seld_a, seld_b,
    )
