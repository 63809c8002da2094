"""The DCASE Task 3 SELD metrics (ER20, F20, LE_CD, LR_CD, SELD score), as the official code computes them.

Location-aware detection (ER20, F20) and class-aware localization (LE_CD, LR_CD) are counted in
1-s segments of 10 label frames, following the official baselines (sharathadavanne/seld-dcase2021,
-2022, -2023) quirk for quirk; the project fact sheet seld-metrics.md (shared/docs) documents each one:

* segments: 2021 scores a fixed ``nb_frames_2021`` frames per file (600 for 60-s clips); 2022/2023
  score ceil(M / 10) segments where M is the largest frame index of the reference file, so frame M
  itself is dropped when M is a multiple of 10 and predictions after the last reference segment are
  ignored;
* per segment and class, the reference and predicted DOAs of each common frame are matched with the
  Hungarian algorithm, and distances are averaged per *row position within the frame* (not per track
  id); a bucket average <= 20 degrees is a TP, otherwise a spatial FP (2021: an ordinary FP, half an
  error in F; 2022/2023: a full error);
* a class present in reference and prediction of a segment but never in the same frame adds the
  prediction count to FN;
* extra or missing same-class instances count as FP / FN; S, D and I pool all classes per segment;
* classes outside [0, C) are ignored; 2022/2023 average per class ('macro', the challenge default)
  or over all counts ('micro'); 2021 is micro only.

DOAs are scored in polar form: predictions given as Cartesian are converted with the official
formulas when read (glfer_edge.data.dcase), then the spherical law of cosines gives the distance.
``strict=True`` fixes three defects of the official scripts and is NOT the official metric: a
reference without prediction counts as all misses, an empty reference is scored instead of
crashing, and 2022/2023 score every frame up to the last reference or predicted frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from glfer_edge.config import DCASE2021_CLASSES, STARSS23_CLASSES
from glfer_edge.data.dcase import LabelRow, check_edition, load_metadata
from glfer_edge.errors import InputError

DOA_THRESHOLD = 20.0  # degrees; inclusive, as the official code
FRAMES_PER_SEGMENT = 10  # 1-s segments of 100-ms label frames
NB_FRAMES_2021 = 600  # official 2021: 60-s clips
_EPS = np.finfo(float).eps

# segments[b][class][frame offset] = DOAs (azimuth, elevation in degrees) in file row order
_Segments = list[dict[int, dict[int, list[tuple[float, float]]]]]


@dataclass(frozen=True)
class SELDCounts:
    """Raw counters: per-class tuples (length C), then the segment-pooled S, D, I."""

    tp: tuple[int, ...]
    fp: tuple[int, ...]  # extra instances and predictions of absent classes
    fp_spatial: tuple[int, ...]  # detections farther than the threshold (2021 adds them to FP)
    fn: tuple[int, ...]
    nref: tuple[int, ...]
    de_tp: tuple[int, ...]
    de_fn: tuple[int, ...]
    total_de: tuple[float, ...]
    substitutions: int
    deletions: int
    insertions: int


@dataclass(frozen=True)
class ClasswiseScores:
    """Per-class F20, LE_CD, LR_CD and SELD of macro averaging (ER20 is global)."""

    f: tuple[float, ...]
    le: tuple[float, ...]
    lr: tuple[float, ...]
    seld: tuple[float, ...]


@dataclass(frozen=True)
class SELDResult:
    er: float
    f: float
    le: float  # degrees
    lr: float
    seld: float
    edition: str
    average: str
    num_classes: int
    strict: bool
    num_files: int
    counts: SELDCounts
    classwise: ClasswiseScores | None = None
    unscored: tuple[str, ...] = ()  # references without prediction, not scored (official behaviour)
    ignored_lines: int = 0  # CSV lines with a column count the edition's loader ignores

    def scores(self) -> dict[str, float]:
        """The five headline numbers by their DCASE names."""
        return {"ER20": self.er, "F20": self.f, "LE_CD": self.le, "LR_CD": self.lr, "SELD": self.seld}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the keys of ``glfer-edge evaluate --json``)."""
        classwise = None
        if self.classwise is not None:
            cw = self.classwise
            classwise = {
                str(c): {"ER20": self.er, "F20": cw.f[c], "LE_CD": cw.le[c], "LR_CD": cw.lr[c], "SELD": cw.seld[c]}
                for c in range(self.num_classes)
            }
        return {
            **self.scores(), "classwise": classwise, "edition": self.edition, "average": self.average,
            "num_classes": self.num_classes, "num_files": self.num_files, "strict": self.strict,
            "official": not self.strict, "unscored_references": list(self.unscored),
            "ignored_lines": self.ignored_lines, "counts": asdict(self.counts),
        }


def default_num_classes(edition: str) -> int:
    """12 classes for TAU-NIGENS 2021, 13 for STARSS22/23."""
    return len(DCASE2021_CLASSES) if check_edition(edition) == "2021" else len(STARSS23_CLASSES)


def check_average(edition: str, average: str | None) -> str:
    """The averaging mode: default macro for 2022/2023, micro (the only mode) for 2021."""
    if average is None:
        return "micro" if edition == "2021" else "macro"
    if average not in ("macro", "micro"):
        raise InputError(f"unknown averaging {average!r}; choose macro or micro")
    if edition == "2021" and average != "micro":
        raise InputError("the 2021 metrics are micro-averaged only; drop the averaging option or choose micro")
    return average


class SELDMetrics:
    """Accumulates the official SELD counters over files; ``update`` per file, then ``compute``."""

    def __init__(
        self,
        num_classes: int,
        *,
        edition: str | int = "2023",
        average: str | None = None,
        doa_threshold: float = DOA_THRESHOLD,
        nb_frames_2021: int = NB_FRAMES_2021,
        strict: bool = False,
    ) -> None:
        self.edition = check_edition(edition)
        self.average = check_average(self.edition, average)
        if num_classes < 1 or nb_frames_2021 < 0:
            raise InputError(f"need num_classes >= 1 and nb_frames_2021 >= 0, got {num_classes} and {nb_frames_2021}")
        self.num_classes = num_classes
        self.doa_threshold = doa_threshold
        self.nb_frames_2021 = nb_frames_2021
        self.strict = strict
        self.num_files = 0
        c = num_classes
        self._tp, self._fp, self._fp_spatial, self._fn = (np.zeros(c) for _ in range(4))
        self._nref, self._total_de, self._de_tp, self._de_fn = (np.zeros(c) for _ in range(4))
        self._s = self._d = self._i = 0

    def update(
        self, ref_rows: Sequence[LabelRow], pred_rows: Sequence[LabelRow], *, ref_last_frame: int | None = None
    ) -> None:
        """Score one file. ``ref_last_frame``: the reference file's largest frame index on any line
        (MetadataFile.last_frame); defaults to the largest frame of ``ref_rows``."""
        n_segments = self._n_segments(ref_rows, pred_rows, ref_last_frame)
        ref = _segment(ref_rows, n_segments, self.num_classes)
        pred = _segment(pred_rows, n_segments, self.num_classes)
        for ref_seg, pred_seg in zip(ref, pred):
            loc_fp = loc_fn = 0
            for c in range(self.num_classes):
                fp, fn = self._score_class(c, ref_seg.get(c), pred_seg.get(c))
                loc_fp, loc_fn = loc_fp + fp, loc_fn + fn
            self._s += min(loc_fp, loc_fn)
            self._d += max(0, loc_fn - loc_fp)
            self._i += max(0, loc_fp - loc_fn)
        self.num_files += 1

    def _n_segments(self, ref_rows: Sequence[LabelRow], pred_rows: Sequence[LabelRow], ref_last: int | None) -> int:
        if self.edition == "2021":
            return math.ceil(self.nb_frames_2021 / FRAMES_PER_SEGMENT)
        ref_frames = [r.frame for r in ref_rows] + ([] if ref_last is None else [ref_last])
        if self.strict:  # score every frame up to the last annotated or predicted one
            frames = ref_frames + [r.frame for r in pred_rows]
            return math.ceil((max(frames) + 1) / FRAMES_PER_SEGMENT) if frames else 0
        if not ref_frames:
            raise InputError(
                "an empty reference cannot be scored by the official 2022/2023 metrics (their code crashes); "
                "use strict mode to score it"
            )
        return math.ceil(max(ref_frames) / FRAMES_PER_SEGMENT)  # official: largest index, not count

    def _score_class(
        self, c: int, ref: dict[int, list[tuple[float, float]]] | None, pred: dict[int, list[tuple[float, float]]] | None
    ) -> tuple[int, int]:
        """Update the counters of class c for one segment; returns its (FP, FN) for S/D/I."""
        n_ref = max(len(v) for v in ref.values()) if ref else 0
        n_pred = max(len(v) for v in pred.values()) if pred else 0
        self._nref[c] += n_ref
        if ref and pred:
            buckets: dict[int, list[float]] = {}  # reference row position within the frame -> distances
            for offset in sorted(ref):
                if offset in pred:
                    distances, rows = _match(ref[offset], pred[offset])
                    for d, r in zip(distances, rows):
                        buckets.setdefault(int(r), []).append(d)
            if not buckets:  # official quirk: never in the same frame -> FN += prediction count
                self._fn[c] += n_pred
                self._de_fn[c] += n_pred
                return 0, n_pred
            loc_fp = loc_fn = 0
            for distances in buckets.values():
                avg = sum(distances) / len(distances)
                self._total_de[c] += avg
                self._de_tp[c] += 1
                if avg <= self.doa_threshold:
                    self._tp[c] += 1
                else:
                    self._fp_spatial[c] += 1
                    loc_fp += 1
            if n_pred > n_ref:
                self._fp[c] += n_pred - n_ref
                loc_fp += n_pred - n_ref
            elif n_pred < n_ref:
                self._fn[c] += n_ref - n_pred
                self._de_fn[c] += n_ref - n_pred
                loc_fn += n_ref - n_pred
            return loc_fp, loc_fn
        if ref:
            self._fn[c] += n_ref
            self._de_fn[c] += n_ref
            return 0, n_ref
        if pred:
            self._fp[c] += n_pred
            return n_pred, 0
        return 0, 0

    def compute(self) -> SELDResult:
        """The metrics of everything accumulated so far (formulas and eps as the official code)."""
        tp, fp, fp_sp, fn = self._tp, self._fp, self._fp_spatial, self._fn
        de_tp, de_fn, total_de = self._de_tp, self._de_fn, self._total_de
        er = (self._s + self._d + self._i) / (self._nref.sum() + _EPS)
        classwise = None
        if self.average == "macro":
            f_c = tp / (_EPS + tp + fp_sp + 0.5 * (fp + fn))
            le_c = total_de / (de_tp + _EPS)
            le_c[de_tp == 0] = 180.0
            lr_c = de_tp / (_EPS + de_tp + de_fn)
            seld_c = np.mean([np.repeat(er, self.num_classes), 1 - f_c, le_c / 180, 1 - lr_c], 0)
            classwise = ClasswiseScores(*(tuple(float(v) for v in a) for a in (f_c, le_c, lr_c, seld_c)))
            f, le, lr, seld = f_c.mean(), le_c.mean(), lr_c.mean(), seld_c.mean()
        else:
            if self.edition == "2021":  # spatial FPs are ordinary FPs: half an error in F
                f = tp.sum() / (_EPS + tp.sum() + 0.5 * ((fp + fp_sp).sum() + fn.sum()))
            else:
                f = tp.sum() / (_EPS + tp.sum() + fp_sp.sum() + 0.5 * (fp.sum() + fn.sum()))
            le = total_de.sum() / float(de_tp.sum() + _EPS) if de_tp.sum() else 180.0
            lr = de_tp.sum() / (_EPS + de_tp.sum() + de_fn.sum())
            seld = np.mean([er, 1 - f, le / 180, 1 - lr], 0)
        return SELDResult(
            er=float(er), f=float(f), le=float(le), lr=float(lr), seld=float(seld),
            edition=self.edition, average=self.average, num_classes=self.num_classes, strict=self.strict,
            num_files=self.num_files, counts=self._counts(), classwise=classwise,
        )

    def _counts(self) -> SELDCounts:
        def ints(a: np.ndarray) -> tuple[int, ...]:
            return tuple(int(v) for v in a)

        return SELDCounts(
            tp=ints(self._tp), fp=ints(self._fp), fp_spatial=ints(self._fp_spatial), fn=ints(self._fn),
            nref=ints(self._nref), de_tp=ints(self._de_tp), de_fn=ints(self._de_fn),
            total_de=tuple(float(v) for v in self._total_de),
            substitutions=int(self._s), deletions=int(self._d), insertions=int(self._i),
        )


def _segment(rows: Sequence[LabelRow], n_segments: int, num_classes: int) -> _Segments:
    """Group rows by 1-s segment, class and frame offset, keeping file row order within a frame."""
    segments: _Segments = [{} for _ in range(n_segments)]
    n_frames = n_segments * FRAMES_PER_SEGMENT
    for r in rows:
        if 0 <= r.frame < n_frames and 0 <= r.class_idx < num_classes:
            seg, offset = divmod(r.frame, FRAMES_PER_SEGMENT)
            segments[seg].setdefault(r.class_idx, {}).setdefault(offset, []).append((r.azimuth, r.elevation))
    return segments


def _match(ref: list[tuple[float, float]], pred: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment of one frame's DOAs: (distances in degrees, reference row positions)."""
    ref_rad = np.array(ref) * np.pi / 180.0
    pred_rad = np.array(pred) * np.pi / 180.0
    n, m = len(ref), len(pred)
    rows, cols = np.tile(np.arange(n), m), np.repeat(np.arange(m), n)  # pair order of the official code
    cost = np.zeros((n, m))
    cost[rows, cols] = angular_distance(ref_rad[rows, 0], ref_rad[rows, 1], pred_rad[cols, 0], pred_rad[cols, 1])
    row_ind, col_ind = linear_sum_assignment(cost)
    return cost[row_ind, col_ind], row_ind


def angular_distance(az1: np.ndarray, ele1: np.ndarray, az2: np.ndarray, ele2: np.ndarray) -> np.ndarray:
    """Great-circle distance in degrees between directions given in radians (official formula)."""
    dist = np.sin(ele1) * np.sin(ele2) + np.cos(ele1) * np.cos(ele2) * np.cos(np.abs(az1 - az2))
    return np.arccos(np.clip(dist, -1, 1)) * 180 / np.pi


# -- folders ----------------------------------------------------------------------------------


def evaluate_folders(
    ref_dir: str | Path,
    pred_dir: str | Path,
    *,
    edition: str | int = "2023",
    average: str | None = None,
    num_classes: int | None = None,
    strict: bool = False,
    nb_frames_2021: int = NB_FRAMES_2021,
    doa_threshold: float = DOA_THRESHOLD,
) -> SELDResult:
    """Score the prediction CSVs of ``pred_dir`` against the references under ``ref_dir``.

    Official folder semantics: references are ``ref_dir/<split>/<name>.csv`` (CSVs directly in
    ``ref_dir`` are accepted too), predictions a flat folder matched by file name; a prediction
    without reference is an error, a reference without prediction is not scored (listed in
    ``SELDResult.unscored``; ``strict=True`` counts it as all misses). ``average`` defaults to macro
    for 2022/2023 and micro for 2021; ``num_classes`` to 12 (2021) or 13.
    """
    edition = check_edition(edition)
    num_classes = default_num_classes(edition) if num_classes is None else num_classes
    metrics = SELDMetrics(
        num_classes, edition=edition, average=average, doa_threshold=doa_threshold,
        nb_frames_2021=nb_frames_2021, strict=strict,
    )
    refs = {name: load_metadata(path, edition) for name, path in _reference_files(Path(ref_dir)).items()}
    if edition != "2021" and not strict:
        empty = sorted(name for name, ref in refs.items() if ref.last_frame is None)
        if empty:
            raise InputError(
                f"reference {empty[0]} in {ref_dir} is empty: the official {edition} metrics cannot score it "
                "(their code crashes); remove it or use strict mode"
            )
    pred_paths = sorted(p for p in Path(pred_dir).glob("*.csv") if p.is_file())
    if not pred_paths:
        raise InputError(f"no prediction CSV files in {pred_dir}; point --pred to the folder of <name>.csv outputs")
    ignored = sum(ref.ignored_lines for ref in refs.values())
    for path in pred_paths:
        ref = refs.get(path.name)
        if ref is None:
            raise InputError(f"prediction {path} has no reference {path.name} under {ref_dir}; remove it or fix the name")
        pred = load_metadata(path, edition)
        ignored += pred.ignored_lines
        metrics.update(ref.rows, pred.rows, ref_last_frame=ref.last_frame)
    unscored = sorted(set(refs) - {p.name for p in pred_paths})
    if strict:
        for name in unscored:
            metrics.update(refs[name].rows, [], ref_last_frame=refs[name].last_frame)
    return replace(metrics.compute(), unscored=() if strict else tuple(unscored), ignored_lines=ignored)


def _reference_files(ref_dir: Path) -> dict[str, Path]:
    if not ref_dir.is_dir():
        raise InputError(f"reference folder {ref_dir} does not exist; point --ref to metadata_dev (or one split of it)")
    found: dict[str, Path] = {}
    for path in sorted([*ref_dir.glob("*.csv"), *ref_dir.glob("*/*.csv")]):
        if path.name in found:
            raise InputError(f"two references named {path.name} ({found[path.name]} and {path}); keep one")
        found[path.name] = path
    if not found:
        raise InputError(f"no reference CSV files in {ref_dir} or its split folders; point --ref to metadata_dev")
    return found
