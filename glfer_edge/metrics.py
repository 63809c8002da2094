"""The DCASE Task 3 SELD metrics, as the official code of each edition computes them.

2021-2023 (ER20, F20, LE_CD, LR_CD, SELD score): location-aware detection and class-aware
localization are counted in 1-s segments of 10 label frames, following the official baselines
(sharathadavanne/seld-dcase2021, -2022, -2023) quirk for quirk; the project fact sheet
seld-metrics.md (shared/docs) documents each one:

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
* 2022/2023 average per class ('macro', the challenge default) or over all counts ('micro');
  2021 is micro only.

2024 (partha2409/DCASE2024_seld_baseline, F20, DOA error AE_CD, relative distance error RDE_CD):
frame-level. In every frame up to (excluding) the reference's largest frame index, each class's
reference and predicted sources are matched with the Hungarian algorithm on the angle between unit
vectors (the official Cartesian formula, whose +1e-10 in the norms makes identical directions
0.00081 deg apart); a matched pair is a TP when its angle is <= 20 deg AND its relative distance
error |d - d_ref| / d_ref is <= 1, otherwise a spatial FP. AE, DE and RDE average over all matched
pairs; in macro mode a class without matches has no AE/DE/RDE (NaN) and the class mean skips it;
SELD = nanmean(1 - F, AE / 180, RDE), per class then averaged in macro mode.

Classes outside [0, C) are ignored here, as the official code does; ``evaluate_folders`` refuses
them with the file and line. Jackknife confidence intervals over files (2022+, ``ci=True``) follow
the official ``jackknife_estimation``: leave one file out, bias-corrected estimate +- t(0.975, n-1)
standard errors; the reported value stays the global one.

``strict=True`` fixes three defects of the official scripts and is NOT the official metric: a
reference without prediction counts as all misses, an empty reference is scored instead of
crashing, and 2022+ score every frame up to the last reference or predicted frame.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from glfer_edge.config import DCASE2021_CLASSES, STARSS23_CLASSES
from glfer_edge.data.dcase import LabelRow, MetadataFile, check_edition, load_metadata
from glfer_edge.errors import InputError

DOA_THRESHOLD = 20.0  # degrees; inclusive, as the official code
REL_DISTANCE_THRESHOLD = 1.0  # 2024: |d - d_ref| / d_ref; inclusive (official lad_reldist_thresh)
FRAMES_PER_SEGMENT = 10  # 1-s segments of 100-ms label frames
NB_FRAMES_2021 = 600  # official 2021: 60-s clips
CI_SIGNIFICANCE = 0.05  # official jackknife: 95 % intervals
_EPS = np.finfo(float).eps

# the official result names and order of each edition (its return tuple and classwise rows)
_NAMES = {"2024": ("ER", "F", "AE", "DE", "RDE", "LR", "SELD")}
_NAMES_SEGMENT = ("ER", "F", "LE", "LR", "SELD")
# DCASE names of the official results, for printing and JSON
DCASE_NAMES = {"ER": "ER20", "F": "F20", "LE": "LE_CD", "LR": "LR_CD", "SELD": "SELD", "AE": "AE_CD",
               "DE": "DE_CD", "RDE": "RDE_CD"}

# segments[b][class][frame offset] = DOAs (azimuth, elevation in degrees) in file row order
_Segments = list[dict[int, dict[int, list[tuple[float, float]]]]]


def result_names(edition: str) -> tuple[str, ...]:
    """Names of the official results of an edition, in the official order."""
    return _NAMES.get(check_edition(edition), _NAMES_SEGMENT)


def headline_order(edition: str) -> tuple[str, ...]:
    """Official names in reporting order: 2024 leads with its challenge metrics F, AE, RDE and SELD."""
    return ("F", "AE", "RDE", "SELD", "ER", "LR", "DE") if check_edition(edition) == "2024" else _NAMES_SEGMENT


@dataclass(frozen=True)
class SELDCounts:
    """Raw counters: per-class tuples (length C), then the pooled S, D, I."""

    tp: tuple[int, ...]
    fp: tuple[int, ...]  # extra instances and predictions of absent classes
    fp_spatial: tuple[int, ...]  # detections beyond the thresholds (2021 adds them to FP)
    fn: tuple[int, ...]
    nref: tuple[int, ...]
    de_tp: tuple[int, ...]
    de_fn: tuple[int, ...]
    total_de: tuple[float, ...]  # summed angular errors (degrees)
    substitutions: int
    deletions: int
    insertions: int
    total_dist: tuple[float, ...] = ()  # 2024: summed |d - d_ref| (m)
    total_rel_dist: tuple[float, ...] = ()  # 2024: summed |d - d_ref| / d_ref


@dataclass(frozen=True)
class ClasswiseScores:
    """Per-class scores of macro averaging (ER20 is global). 2024: ``le`` is AE_CD; ``de``/``rde``
    hold DE_CD and RDE_CD, NaN for a class without matched pair."""

    f: tuple[float, ...]
    le: tuple[float, ...]
    lr: tuple[float, ...]
    seld: tuple[float, ...]
    de: tuple[float, ...] | None = None
    rde: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SELDResult:
    er: float
    f: float
    le: float  # degrees (2024: AE_CD, NaN when nothing matched)
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
    de: float | None = None  # 2024: DE_CD, metres
    rde: float | None = None  # 2024: RDE_CD
    doa_threshold: float = DOA_THRESHOLD
    rel_distance_threshold: float | None = None  # 2024 only
    # jackknife 95 % intervals by official name ("F", "LE", ...; "classwise/F" rows of C (low, high))
    ci: dict[str, Any] | None = field(default=None, compare=False)

    def values(self) -> dict[str, float]:
        """The official results by their official names, in the official order."""
        v = {"ER": self.er, "F": self.f, "LE": self.le, "LR": self.lr, "SELD": self.seld}
        if self.edition == "2024":
            v = {"ER": self.er, "F": self.f, "AE": self.le, "DE": self.de, "RDE": self.rde, "LR": self.lr,
                 "SELD": self.seld}
        return v

    def classwise_values(self) -> dict[str, tuple[float, ...]] | None:
        """Class-wise rows as the official ``classwise_results`` (macro only)."""
        if self.classwise is None:
            return None
        cw = self.classwise
        rows = {"ER": (self.er,) * self.num_classes, "F": cw.f, "LE": cw.le, "LR": cw.lr, "SELD": cw.seld}
        if self.edition == "2024":
            rows = {"ER": rows["ER"], "F": cw.f, "AE": cw.le, "DE": cw.de, "RDE": cw.rde, "LR": cw.lr, "SELD": cw.seld}
        return rows

    def scores(self) -> dict[str, float]:
        """The headline numbers by their DCASE names (2024: F20, AE_CD, RDE_CD and SELD first)."""
        v = self.values()
        return {DCASE_NAMES[k]: v[k] for k in headline_order(self.edition)}

    def describe(self) -> str:
        """One line: the edition's scoring rules as applied (printed with every result)."""
        if self.edition == "2024":
            rule = (f"frame-level, F20 needs DOA error <= {self.doa_threshold:g} deg and relative distance error <= "
                    f"{self.rel_distance_threshold:g}")
        else:
            rule = f"1-s segments, F20 needs DOA error <= {self.doa_threshold:g} deg"
        mode = "STRICT (not the official metric)" if self.strict else "official"
        return (f"DCASE {self.edition} SELD metrics, {self.average} averaging, {self.num_classes} classes, {rule}; "
                f"{self.num_files} file(s), {mode}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the keys of ``glfer-edge evaluate --json``); NaN = no estimate."""
        classwise = None
        rows = self.classwise_values()
        if rows is not None:
            classwise = {str(c): {DCASE_NAMES[k]: v[c] for k, v in rows.items()} for c in range(self.num_classes)}
        ci = None
        if self.ci is not None:
            ci = {DCASE_NAMES[k]: list(v) for k, v in self.ci.items() if not k.startswith("classwise/")}
            if rows is not None:
                ci["classwise"] = {
                    str(c): {DCASE_NAMES[k]: list(self.ci[f"classwise/{k}"][c]) for k in rows}
                    for c in range(self.num_classes)
                }
        return {
            **self.scores(), "classwise": classwise, "ci95": ci, "edition": self.edition, "average": self.average,
            "num_classes": self.num_classes, "num_files": self.num_files, "strict": self.strict,
            "official": not self.strict, "doa_threshold_deg": self.doa_threshold,
            "rel_distance_threshold": self.rel_distance_threshold, "description": self.describe(),
            "unscored_references": list(self.unscored),
            "counts": asdict(self.counts),
        }


def default_num_classes(edition: str) -> int:
    """12 classes for TAU-NIGENS 2021, 13 for STARSS22/23 (2022-2024)."""
    return len(DCASE2021_CLASSES) if check_edition(edition) == "2021" else len(STARSS23_CLASSES)


def check_average(edition: str, average: str | None) -> str:
    """The averaging mode: default macro for 2022+, micro (the only mode) for 2021."""
    if average is None:
        return "micro" if edition == "2021" else "macro"
    if average not in ("macro", "micro"):
        raise InputError(f"unknown averaging {average!r}; choose macro or micro")
    if edition == "2021" and average != "micro":
        raise InputError("the 2021 metrics are micro-averaged only; drop the averaging option or choose micro")
    return average


class _Counters:
    """The official accumulators of one file (summed over files for the result)."""

    FIELDS = ("tp", "fp", "fp_spatial", "fn", "nref", "de_tp", "de_fn", "total_de", "total_dist", "total_rel")

    def __init__(self, num_classes: int) -> None:
        for name in self.FIELDS:
            setattr(self, name, np.zeros(num_classes))
        self.s = self.d = self.i = 0

    @classmethod
    def total(cls, parts: Sequence[_Counters], num_classes: int) -> _Counters:
        out = cls(num_classes)
        for p in parts:
            for name in cls.FIELDS:
                getattr(out, name).__iadd__(getattr(p, name))
            out.s, out.d, out.i = out.s + p.s, out.d + p.d, out.i + p.i
        return out

    def pool(self, loc_fp: int, loc_fn: int) -> None:
        """S, D and I of one segment (2021-2023) or frame (2024), pooled over classes."""
        self.s += min(loc_fp, loc_fn)
        self.d += max(0, loc_fn - loc_fp)
        self.i += max(0, loc_fp - loc_fn)


class SELDMetrics:
    """Accumulates the official SELD counters over files; ``update`` per file, then ``compute``."""

    def __init__(
        self,
        num_classes: int,
        *,
        edition: str | int = "2023",
        average: str | None = None,
        doa_threshold: float = DOA_THRESHOLD,
        rel_distance_threshold: float = REL_DISTANCE_THRESHOLD,
        nb_frames_2021: int = NB_FRAMES_2021,
        strict: bool = False,
    ) -> None:
        self.edition = check_edition(edition)
        self.average = check_average(self.edition, average)
        if num_classes < 1 or nb_frames_2021 < 0:
            raise InputError(f"need num_classes >= 1 and nb_frames_2021 >= 0, got {num_classes} and {nb_frames_2021}")
        self.num_classes = num_classes
        self.doa_threshold = doa_threshold
        self.rel_distance_threshold = rel_distance_threshold
        self.nb_frames_2021 = nb_frames_2021
        self.strict = strict
        self._files: list[_Counters] = []

    @property
    def num_files(self) -> int:
        return len(self._files)

    def update(
        self, ref_rows: Sequence[LabelRow], pred_rows: Sequence[LabelRow], *, ref_last_frame: int | None = None
    ) -> None:
        """Score one file. ``ref_last_frame``: the reference file's largest frame index on any line
        (MetadataFile.last_frame); defaults to the largest frame of ``ref_rows``."""
        counters = _Counters(self.num_classes)
        if self.edition == "2024":
            self._update_frames(counters, ref_rows, pred_rows, self._n_frames(ref_rows, pred_rows, ref_last_frame))
        else:
            self._update_segments(counters, ref_rows, pred_rows, ref_last_frame)
        self._files.append(counters)

    def _reference_frames(self, ref_rows, pred_rows, ref_last: int | None) -> list[int]:
        ref_frames = [r.frame for r in ref_rows] + ([] if ref_last is None else [ref_last])
        if self.strict:
            return ref_frames + [r.frame for r in pred_rows]
        if not ref_frames:
            raise InputError(
                f"an empty reference cannot be scored by the official {self.edition} metrics (their code crashes); "
                "use strict mode to score it"
            )
        return ref_frames

    def _n_frames(self, ref_rows, pred_rows, ref_last: int | None) -> int:
        """2024: frames 0 .. M-1 of the largest reference frame index M (official organize_labels)."""
        frames = self._reference_frames(ref_rows, pred_rows, ref_last)
        if self.strict:
            return max(frames) + 1 if frames else 0
        return max(frames)

    def _n_segments(self, ref_rows, pred_rows, ref_last: int | None) -> int:
        if self.edition == "2021":
            return math.ceil(self.nb_frames_2021 / FRAMES_PER_SEGMENT)
        frames = self._reference_frames(ref_rows, pred_rows, ref_last)
        if self.strict:  # score every frame up to the last annotated or predicted one
            return math.ceil((max(frames) + 1) / FRAMES_PER_SEGMENT) if frames else 0
        return math.ceil(max(frames) / FRAMES_PER_SEGMENT)  # official: largest index, not count

    # -- 2021-2023: 1-s segments -----------------------------------------------------------------

    def _update_segments(self, k: _Counters, ref_rows, pred_rows, ref_last: int | None) -> None:
        n_segments = self._n_segments(ref_rows, pred_rows, ref_last)
        ref = _segment(ref_rows, n_segments, self.num_classes)
        pred = _segment(pred_rows, n_segments, self.num_classes)
        for ref_seg, pred_seg in zip(ref, pred):
            loc_fp = loc_fn = 0
            for c in range(self.num_classes):
                fp, fn = self._score_class(k, c, ref_seg.get(c), pred_seg.get(c))
                loc_fp, loc_fn = loc_fp + fp, loc_fn + fn
            k.pool(loc_fp, loc_fn)

    def _score_class(
        self, k: _Counters, c: int, ref: dict[int, list[tuple[float, float]]] | None,
        pred: dict[int, list[tuple[float, float]]] | None,
    ) -> tuple[int, int]:
        """Update the counters of class c for one segment; returns its (FP, FN) for S/D/I."""
        n_ref = max(len(v) for v in ref.values()) if ref else 0
        n_pred = max(len(v) for v in pred.values()) if pred else 0
        k.nref[c] += n_ref
        if ref and pred:
            buckets: dict[int, list[float]] = {}  # reference row position within the frame -> distances
            for offset in sorted(ref):
                if offset in pred:
                    distances, rows = _match(ref[offset], pred[offset])
                    for d, r in zip(distances, rows):
                        buckets.setdefault(int(r), []).append(d)
            if not buckets:  # official quirk: never in the same frame -> FN += prediction count
                k.fn[c] += n_pred
                k.de_fn[c] += n_pred
                return 0, n_pred
            loc_fp = loc_fn = 0
            for distances in buckets.values():
                avg = sum(distances) / len(distances)
                k.total_de[c] += avg
                k.de_tp[c] += 1
                if avg <= self.doa_threshold:
                    k.tp[c] += 1
                else:
                    k.fp_spatial[c] += 1
                    loc_fp += 1
            if n_pred > n_ref:
                k.fp[c] += n_pred - n_ref
                loc_fp += n_pred - n_ref
            elif n_pred < n_ref:
                k.fn[c] += n_ref - n_pred
                k.de_fn[c] += n_ref - n_pred
                loc_fn += n_ref - n_pred
            return loc_fp, loc_fn
        if ref:
            k.fn[c] += n_ref
            k.de_fn[c] += n_ref
            return 0, n_ref
        if pred:
            k.fp[c] += n_pred
            return n_pred, 0
        return 0, 0

    # -- 2024: frames ----------------------------------------------------------------------------

    def _update_frames(self, k: _Counters, ref_rows, pred_rows, n_frames: int) -> None:
        ref = _frames(ref_rows, n_frames, self.num_classes)
        pred = _frames(pred_rows, n_frames, self.num_classes)
        for t in sorted(set(ref) | set(pred)):  # frames without any source add nothing
            loc_fp = loc_fn = 0
            ref_t, pred_t = ref.get(t, {}), pred.get(t, {})
            for c in sorted(set(ref_t) | set(pred_t)):
                gt, pr = ref_t.get(c), pred_t.get(c)
                if gt:
                    k.nref[c] += len(gt)
                if gt and pr:
                    doa_err, dist_err, rel_err = _match_3d(gt, pr)
                    n_gt, n_pr = len(gt), len(pr)
                    fn, fp_extra, matched = max(0, n_gt - n_pr), max(0, n_pr - n_gt), min(n_gt, n_pr)
                    # a matched pair beyond either threshold is a spatial FP (official: bool OR, then count)
                    far = int(np.sum((doa_err > self.doa_threshold) | (rel_err > self.rel_distance_threshold)))
                    k.total_de[c] += doa_err.sum()
                    k.total_dist[c] += dist_err.sum()
                    k.total_rel[c] += rel_err.sum()
                    k.tp[c] += matched - far
                    k.de_tp[c] += matched
                    k.fp[c] += fp_extra
                    k.fp_spatial[c] += far
                    k.fn[c] += fn
                    k.de_fn[c] += fn
                    loc_fp += fp_extra + far
                    loc_fn += fn
                elif gt:
                    k.fn[c] += len(gt)
                    k.de_fn[c] += len(gt)
                    loc_fn += len(gt)
                else:
                    k.fp[c] += len(pr)
                    loc_fp += len(pr)
            k.pool(loc_fp, loc_fn)

    # -- results ---------------------------------------------------------------------------------

    def compute(self, *, ci: bool = False) -> SELDResult:
        """The metrics of everything accumulated so far (formulas and eps as the official code).

        ``ci``: add jackknife 95 % intervals over the files (2022+), as the official code offers."""
        total = _Counters.total(self._files, self.num_classes)
        values, classwise = self._values(total)
        intervals = self._jackknife(values, classwise) if ci else None
        cw = None
        if classwise is not None:
            t = {k: tuple(float(x) for x in v) for k, v in classwise.items()}
            if self.edition == "2024":
                cw = ClasswiseScores(f=t["F"], le=t["AE"], lr=t["LR"], seld=t["SELD"], de=t["DE"], rde=t["RDE"])
            else:
                cw = ClasswiseScores(f=t["F"], le=t["LE"], lr=t["LR"], seld=t["SELD"])
        le = values["AE"] if self.edition == "2024" else values["LE"]
        return SELDResult(
            er=values["ER"], f=values["F"], le=le, lr=values["LR"], seld=values["SELD"],
            edition=self.edition, average=self.average, num_classes=self.num_classes, strict=self.strict,
            num_files=self.num_files, counts=self._counts(total), classwise=cw,
            de=values.get("DE"), rde=values.get("RDE"), doa_threshold=self.doa_threshold,
            rel_distance_threshold=self.rel_distance_threshold if self.edition == "2024" else None, ci=intervals,
        )

    def _values(self, k: _Counters) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
        """Official results (by official name) and, for macro, the class-wise rows."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of no matched class: NaN, as official
            if self.edition == "2024":
                return self._values_2024(k)
            return self._values_segments(k)

    def _values_segments(self, k: _Counters) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
        tp, fp, fp_sp, fn, de_tp, de_fn, total_de = k.tp, k.fp, k.fp_spatial, k.fn, k.de_tp, k.de_fn, k.total_de
        er = (k.s + k.d + k.i) / (k.nref.sum() + _EPS)
        if self.average == "macro":
            f_c = tp / (_EPS + tp + fp_sp + 0.5 * (fp + fn))
            le_c = total_de / (de_tp + _EPS)
            le_c[de_tp == 0] = 180.0
            lr_c = de_tp / (_EPS + de_tp + de_fn)
            seld_c = np.mean([np.repeat(er, self.num_classes), 1 - f_c, le_c / 180, 1 - lr_c], 0)
            rows = {"ER": np.repeat(er, self.num_classes), "F": f_c, "LE": le_c, "LR": lr_c, "SELD": seld_c}
            return {"ER": float(er), **{n: float(rows[n].mean()) for n in ("F", "LE", "LR", "SELD")}}, rows
        if self.edition == "2021":  # spatial FPs are ordinary FPs: half an error in F
            f = tp.sum() / (_EPS + tp.sum() + 0.5 * ((fp + fp_sp).sum() + fn.sum()))
        else:
            f = tp.sum() / (_EPS + tp.sum() + fp_sp.sum() + 0.5 * (fp.sum() + fn.sum()))
        le = total_de.sum() / float(de_tp.sum() + _EPS) if de_tp.sum() else 180.0
        lr = de_tp.sum() / (_EPS + de_tp.sum() + de_fn.sum())
        seld = np.mean([er, 1 - f, le / 180, 1 - lr], 0)
        return {"ER": float(er), "F": float(f), "LE": float(le), "LR": float(lr), "SELD": float(seld)}, None

    def _values_2024(self, k: _Counters) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
        tp, fp, fp_sp, fn, de_tp, de_fn = k.tp, k.fp, k.fp_spatial, k.fn, k.de_tp, k.de_fn
        er = (k.s + k.d + k.i) / (k.nref.sum() + _EPS)
        if self.average == "macro":
            f_c = tp / (_EPS + tp + fp_sp + 0.5 * (fp + fn))
            ae_c, de_c, rde_c = (total / (de_tp + _EPS) for total in (k.total_de, k.total_dist, k.total_rel))
            for a in (ae_c, de_c, rde_c):
                a[de_tp == 0] = np.nan  # no matched pair: no estimate (official NaN)
            lr_c = de_tp / (_EPS + de_tp + de_fn)
            seld_c = np.nanmean([1 - f_c, ae_c / 180, rde_c], 0)
            rows = {"ER": np.repeat(er, self.num_classes), "F": f_c, "AE": ae_c, "DE": de_c, "RDE": rde_c,
                    "LR": lr_c, "SELD": seld_c}
            values = {"ER": float(er), "F": float(f_c.mean()), "AE": float(np.nanmean(ae_c)),
                      "DE": float(np.nanmean(de_c)), "RDE": float(np.nanmean(rde_c)), "LR": float(lr_c.mean()),
                      "SELD": float(seld_c.mean())}
            return values, rows
        f = tp.sum() / (_EPS + tp.sum() + fp_sp.sum() + 0.5 * (fp.sum() + fn.sum()))
        matched = de_tp.sum()
        ae, de, rde = (total.sum() / float(matched + _EPS) if matched else np.nan
                       for total in (k.total_de, k.total_dist, k.total_rel))
        lr = matched / (_EPS + matched + de_fn.sum())
        seld = np.nanmean([1 - f, ae / 180, rde], 0)
        return {"ER": float(er), "F": float(f), "AE": float(ae), "DE": float(de), "RDE": float(rde),
                "LR": float(lr), "SELD": float(seld)}, None

    def _jackknife(self, values: dict[str, float], classwise: dict[str, np.ndarray] | None) -> dict[str, Any]:
        """Official leave-one-file-out jackknife: 95 % interval of every value (and class-wise row)."""
        if self.edition == "2021":
            raise InputError("the official 2021 code has no confidence intervals; use --edition 2022 or later")
        partials = []
        for i in range(len(self._files)):
            rest = _Counters.total(self._files[:i] + self._files[i + 1:], self.num_classes)
            partials.append(self._values(rest))
        out: dict[str, Any] = {}
        for name, value in values.items():
            out[name] = _jackknife_interval(value, [p[0][name] for p in partials])
        if classwise is not None:
            for name, row in classwise.items():
                out[f"classwise/{name}"] = tuple(
                    _jackknife_interval(float(row[c]), [float(p[1][name][c]) for p in partials])
                    for c in range(self.num_classes)
                )
        return out

    def _counts(self, k: _Counters) -> SELDCounts:
        def ints(a: np.ndarray) -> tuple[int, ...]:
            return tuple(int(v) for v in a)

        def floats(a: np.ndarray) -> tuple[float, ...]:
            return tuple(float(v) for v in a)

        return SELDCounts(
            tp=ints(k.tp), fp=ints(k.fp), fp_spatial=ints(k.fp_spatial), fn=ints(k.fn),
            nref=ints(k.nref), de_tp=ints(k.de_tp), de_fn=ints(k.de_fn), total_de=floats(k.total_de),
            substitutions=int(k.s), deletions=int(k.d), insertions=int(k.i),
            total_dist=floats(k.total_dist) if self.edition == "2024" else (),
            total_rel_dist=floats(k.total_rel) if self.edition == "2024" else (),
        )


def _jackknife_interval(global_value: float, partials: Sequence[float]) -> tuple[float, float]:
    """Official ``jackknife_estimation``: bias-corrected estimate +- t(1 - a/2, n-1) * standard error.
    NaN where a partial is NaN or n < 2 (as the official code)."""
    from scipy import stats

    p = np.asarray(partials, dtype=float)
    n = len(p)
    if n == 0:
        return (math.nan, math.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.mean(p)
        bias = (n - 1) * (mean - global_value)
        std_err = np.sqrt((n - 1) * np.mean((p - mean) * (p - mean), axis=0))
        estimate = global_value - bias
        t = stats.t.ppf(1 - CI_SIGNIFICANCE / 2, n - 1)
        return (float(estimate - t * std_err), float(estimate + t * std_err))


def _segment(rows: Sequence[LabelRow], n_segments: int, num_classes: int) -> _Segments:
    """Group rows by 1-s segment, class and frame offset, keeping file row order within a frame."""
    segments: _Segments = [{} for _ in range(n_segments)]
    n_frames = n_segments * FRAMES_PER_SEGMENT
    for r in rows:
        if 0 <= r.frame < n_frames and 0 <= r.class_idx < num_classes:
            seg, offset = divmod(r.frame, FRAMES_PER_SEGMENT)
            segments[seg].setdefault(r.class_idx, {}).setdefault(offset, []).append((r.azimuth, r.elevation))
    return segments


def _frames(rows: Sequence[LabelRow], n_frames: int, num_classes: int) -> dict[int, dict[int, list[LabelRow]]]:
    """2024: rows by frame and class in file order (the official track re-keying keeps every row)."""
    out: dict[int, dict[int, list[LabelRow]]] = {}
    for r in rows:
        if 0 <= r.frame < n_frames and 0 <= r.class_idx < num_classes:
            if r.distance is None:
                raise InputError(f"frame {r.frame} class {r.class_idx} has no distance; DCASE 2024 scoring needs "
                                 "a distance on every row (score without distance with edition 2023)")
            out.setdefault(r.frame, {}).setdefault(r.class_idx, []).append(r)
    return out


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


def _unit(rows: Sequence[LabelRow]) -> np.ndarray:
    """Unit vectors of polar rows by the official conversion (scalar by scalar, as its loader)."""
    out = []
    for r in rows:
        ele, azi = r.elevation * np.pi / 180.0, r.azimuth * np.pi / 180.0
        cos_ele = np.cos(ele)
        out.append((np.cos(azi) * cos_ele, np.sin(azi) * cos_ele, np.sin(ele)))
    return np.array(out, dtype=float)


def _match_3d(ref: Sequence[LabelRow], pred: Sequence[LabelRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2024: Hungarian assignment on the Cartesian angle; (DOA errors deg, |dd| m, |dd| / d_ref) per pair."""
    gt, pr = _unit(ref), _unit(pred)
    n, m = len(ref), len(pred)
    rows, cols = np.tile(np.arange(n), m), np.repeat(np.arange(m), n)  # pair order of the official code
    cost = np.zeros((n, m))
    cost[rows, cols] = cartesian_angle(gt[rows], pr[cols])
    row_ind, col_ind = linear_sum_assignment(cost)
    d_ref = np.array([r.distance for r in ref], dtype=float)[row_ind]
    d_pred = np.array([r.distance for r in pred], dtype=float)[col_ind]
    dist_err = np.abs(d_ref - d_pred)
    return cost[row_ind, col_ind], dist_err, dist_err / (d_ref + _EPS)


def angular_distance(az1: np.ndarray, ele1: np.ndarray, az2: np.ndarray, ele2: np.ndarray) -> np.ndarray:
    """Great-circle distance in degrees between directions given in radians (official formula)."""
    dist = np.sin(ele1) * np.sin(ele2) + np.cos(ele1) * np.cos(ele2) * np.cos(np.abs(az1 - az2))
    return np.arccos(np.clip(dist, -1, 1)) * 180 / np.pi


def cartesian_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors (..., 3), official 2024 formula (+1e-10 inside each norm)."""
    x1, y1, z1, x2, y2, z2 = a[..., 0], a[..., 1], a[..., 2], b[..., 0], b[..., 1], b[..., 2]
    n1 = np.sqrt(x1**2 + y1**2 + z1**2 + 1e-10)
    n2 = np.sqrt(x2**2 + y2**2 + z2**2 + 1e-10)
    x1, y1, z1, x2, y2, z2 = x1 / n1, y1 / n1, z1 / n1, x2 / n2, y2 / n2, z2 / n2
    dot = x1 * x2 + y1 * y2 + z1 * z2
    return np.arccos(np.clip(dot, -1, 1)) * 180 / np.pi


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
    rel_distance_threshold: float = REL_DISTANCE_THRESHOLD,
    ci: bool = False,
) -> SELDResult:
    """Score the prediction CSVs of ``pred_dir`` against the references under ``ref_dir``.

    Official folder semantics: references are ``ref_dir/<split>/<name>.csv`` (CSVs directly in
    ``ref_dir`` are accepted too), predictions a flat folder matched by file name; a prediction
    without reference is an error, a reference without prediction is not scored (listed in
    ``SELDResult.unscored``; ``strict=True`` counts it as all misses). ``average`` defaults to macro
    for 2022+ and micro for 2021; ``num_classes`` to 12 (2021) or 13. Where the official code
    would silently drop input, this refuses it naming the file and line: a class index outside
    [0, num_classes), a line with a column count the edition does not read (see data.dcase).
    ``ci``: jackknife 95 % intervals over the scored files (2022+).
    """
    edition = check_edition(edition)
    num_classes = default_num_classes(edition) if num_classes is None else num_classes
    metrics = SELDMetrics(
        num_classes, edition=edition, average=average, doa_threshold=doa_threshold,
        rel_distance_threshold=rel_distance_threshold, nb_frames_2021=nb_frames_2021, strict=strict,
    )
    if ci and edition == "2021":
        raise InputError("the official 2021 code has no confidence intervals; drop --ci or use --edition 2022 or later")
    refs = {}
    for name, path in _reference_files(Path(ref_dir)).items():
        refs[name] = _checked(load_metadata(path, edition), path, edition, num_classes)
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
    for path in pred_paths:
        ref = refs.get(path.name)
        if ref is None:
            raise InputError(f"prediction {path} has no reference {path.name} under {ref_dir}; remove it or fix the name")
        pred = _checked(load_metadata(path, edition, prediction=True), path, edition, num_classes)
        metrics.update(ref.rows, pred.rows, ref_last_frame=ref.last_frame)
    unscored = sorted(set(refs) - {p.name for p in pred_paths})
    if strict:
        for name in unscored:
            metrics.update(refs[name].rows, [], ref_last_frame=refs[name].last_frame)
    return replace(metrics.compute(ci=ci), unscored=() if strict else tuple(unscored))


def _checked(meta: MetadataFile, path: Path, edition: str, num_classes: int) -> MetadataFile:
    """Refuse what the official loaders would drop silently: unread lines, classes outside [0, C)."""
    if meta.first_ignored is not None:
        line, n = meta.first_ignored
        formats = {"2021": "5 or 6", "2022": "5 or 6", "2023": "5, 6 or 7", "2024": "6 or 7"}[edition]
        guess = "DCASE 2023 or 2024" if n == 7 else "another edition"
        raise InputError(
            f"{path} line {line}: {n} columns, which the DCASE {edition} format does not read ({formats}); "
            f"a file written for {guess}? check --edition"
        )
    for row, line in zip(meta.rows, meta.row_lines):
        if row.class_idx < 0:
            raise InputError(
                f"{path} line {line}: negative class index {row.class_idx}; classes are 0-{num_classes - 1}"
            )
        if row.class_idx >= num_classes:
            hint = " (STARSS22/23 labels have 13 classes)" if edition == "2021" and row.class_idx < 13 else ""
            raise InputError(
                f"{path} line {line}: class {row.class_idx} is outside the {num_classes} classes scored for DCASE "
                f"{edition}{hint}; pass --num-classes {row.class_idx + 1} or higher"
            )
    return meta


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
