"""Parity tolerances and the statistics they are checked on: one module for export tests and the parity suite.

Numbers are the project's acceptance floors (export issue): FP32 ONNX must match the torch
reference to 1e-4; FP16 to 1e-2 on SED with <= 1 degree mean DOA error on active frames; INT8
must agree on >= 97 % of SED decisions at the 0.3 threshold, with <= 5 degrees mean DOA error and
a SELD-error delta <= 0.03 on a held-out generated set.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SED_THRESHOLD = 0.3


@dataclass(frozen=True)
class Tolerances:
    """Upper (max_*) or lower (min_*) bounds; None means not checked."""

    name: str
    sed_max_abs: float | None = None
    doa_max_abs: float | None = None
    sed_agreement_min: float | None = None  # fraction of frame-class cells with the same decision
    doa_angle_mean_max_deg: float | None = None  # on frames active in the reference
    seld_delta_max: float | None = None  # |SELD error(B) - SELD error(A)| against labels


TOLERANCES: dict[str, Tolerances] = {
    "fp32": Tolerances("fp32", sed_max_abs=1e-4, doa_max_abs=1e-4),
    "fp16": Tolerances("fp16", sed_max_abs=1e-2, doa_angle_mean_max_deg=1.0),
    "int8": Tolerances("int8", sed_agreement_min=0.97, doa_angle_mean_max_deg=5.0, seld_delta_max=0.03),
}


def get_tolerances(name_or_file: str) -> Tolerances:
    """A named set (fp32, fp16, int8) or a JSON file with Tolerances fields."""
    if name_or_file in TOLERANCES:
        return TOLERANCES[name_or_file]
    path = Path(name_or_file)
    if not path.is_file():
        raise ValueError(f"unknown tolerances {name_or_file!r}; use one of {', '.join(TOLERANCES)} or a JSON file")
    fields = json.loads(path.read_text())
    return Tolerances(**{"name": path.stem, **fields})


@dataclass(frozen=True)
class ParityStats:
    """Agreement of outputs B against reference A (sed (..., C), doa (..., C, 3))."""

    sed_max_abs: float
    sed_mean_abs: float
    sed_cosine: float
    doa_max_abs: float
    doa_mean_abs: float
    doa_cosine: float
    sed_agreement: float
    doa_angle_mean_deg: float  # NaN when the reference has no active cell
    doa_angle_p99_deg: float
    active_cells: int
    nonfinite: int  # NaN/Inf count in B

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between DOA vectors (..., 3), in degrees; vector norms are ignored."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def compare_outputs(
    sed_a: np.ndarray, doa_a: np.ndarray, sed_b: np.ndarray, doa_b: np.ndarray, threshold: float = SED_THRESHOLD
) -> ParityStats:
    """Statistics of B against reference A; DOA angles on cells where A is active (sed_a >= threshold)."""
    if sed_a.shape != sed_b.shape or doa_a.shape != doa_b.shape:
        raise ValueError(f"output shapes differ: sed {sed_a.shape} vs {sed_b.shape}, doa {doa_a.shape} vs {doa_b.shape}")
    nonfinite = int(np.size(sed_b) - np.isfinite(sed_b).sum() + np.size(doa_b) - np.isfinite(doa_b).sum())
    sed_err = np.abs(sed_a.astype(np.float64) - sed_b)
    doa_err = np.abs(doa_a.astype(np.float64) - doa_b)
    active = sed_a >= threshold
    angles = angular_error_deg(doa_a[active], doa_b[active])
    return ParityStats(
        sed_max_abs=float(np.nanmax(sed_err)) if nonfinite == 0 else float("inf"),
        sed_mean_abs=float(np.mean(sed_err)),
        sed_cosine=_cosine(sed_a, sed_b),
        doa_max_abs=float(np.nanmax(doa_err)) if nonfinite == 0 else float("inf"),
        doa_mean_abs=float(np.mean(doa_err)),
        doa_cosine=_cosine(doa_a, doa_b),
        sed_agreement=float(np.mean(active == (sed_b >= threshold))),
        doa_angle_mean_deg=float(np.mean(angles)) if angles.size else float("nan"),
        doa_angle_p99_deg=float(np.percentile(angles, 99)) if angles.size else float("nan"),
        active_cells=int(active.sum()),
        nonfinite=nonfinite,
    )


def violations(stats: ParityStats, tol: Tolerances, seld_delta: float | None = None) -> list[str]:
    """Human-readable list of exceeded tolerances (empty when everything passes)."""
    out = []
    if stats.nonfinite:
        out.append(f"{stats.nonfinite} NaN/Inf values in the outputs")
    checks = [
        ("SED max abs error", stats.sed_max_abs, tol.sed_max_abs, "max"),
        ("DOA max abs error", stats.doa_max_abs, tol.doa_max_abs, "max"),
        ("SED decision agreement", stats.sed_agreement, tol.sed_agreement_min, "min"),
        ("mean DOA angular error (deg)", stats.doa_angle_mean_deg, tol.doa_angle_mean_max_deg, "max"),
    ]
    if seld_delta is not None:
        checks.append(("SELD error delta", abs(seld_delta), tol.seld_delta_max, "max"))
    for label, value, bound, kind in checks:
        if bound is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if (kind == "max" and value > bound) or (kind == "min" and value < bound):
            sign = ">" if kind == "max" else "<"
            out.append(f"{label} {value:.4g} {sign} {bound:g} ({tol.name} tolerance)")
    return out
