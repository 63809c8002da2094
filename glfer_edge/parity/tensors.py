"""Output agreement of artifact B against reference A: the statistics and the checks against a tolerance row.

On the network's outputs, SED activity (..., C) and ACCDOA-style DOA vectors (..., C, 3): max /
mean absolute error and cosine similarity per output, SED decision agreement at a threshold, and
the DOA angular error on the frame-class cells A marks active. For models with the distance head
(``ModelConfig.distance``), when both sides give ``distance`` (..., C) in metres: max / mean
absolute error over all cells and the relative error |B - A| / A on the cells A marks active
(elsewhere the distance of an absent source means nothing). :data:`CHECKS` names each bound of a
:class:`~glfer_edge.tolerances.Tolerances` row once, for :func:`violations` and the reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from glfer_edge.tolerances import SED_THRESHOLD, Tolerances

__all__ = ["ParityStats", "Check", "CHECKS", "angular_error_deg", "compare_outputs", "violations"]


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
    # distance (metres), None unless both sides have the distance output
    distance_max_abs: float | None = None
    distance_mean_abs: float | None = None
    distance_rel_mean: float | None = None  # mean |B - A| / A on cells active in A; NaN when none is
    distance_rel_max: float | None = None

    @property
    def has_distance(self) -> bool:
        return self.distance_max_abs is not None

    def to_dict(self) -> dict[str, float]:
        """All fields; the distance ones only when measured (a model without distance reports as before)."""
        d = dataclasses.asdict(self)
        return d if self.has_distance else {k: v for k, v in d.items() if not k.startswith(DISTANCE_PREFIX)}


DISTANCE_PREFIX = "distance_"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between DOA vectors (..., 3), in degrees; vector norms are ignored."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)  # zero vectors: angle 90 deg, not NaN
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def compare_outputs(
    sed_a: np.ndarray, doa_a: np.ndarray, sed_b: np.ndarray, doa_b: np.ndarray, threshold: float = SED_THRESHOLD,
    *, distance_a: np.ndarray | None = None, distance_b: np.ndarray | None = None,
) -> ParityStats:
    """Statistics of B against reference A; DOA angles and relative distance errors on cells where A is active
    (sed_a >= threshold). Distance statistics when both ``distance_a`` and ``distance_b`` (..., C) are given."""
    if sed_a.shape != sed_b.shape or doa_a.shape != doa_b.shape:
        raise ValueError(f"output shapes differ: sed {sed_a.shape} vs {sed_b.shape}, doa {doa_a.shape} vs {doa_b.shape}")
    with_distance = distance_a is not None and distance_b is not None
    if with_distance and not distance_a.shape == distance_b.shape == sed_a.shape:
        raise ValueError(f"distance shapes {distance_a.shape} and {distance_b.shape} differ from sed {sed_a.shape}")
    nonfinite = int(np.size(sed_b) - np.isfinite(sed_b).sum() + np.size(doa_b) - np.isfinite(doa_b).sum())
    if with_distance:
        nonfinite += int(np.size(distance_b) - np.isfinite(distance_b).sum())
    sed_err = np.abs(sed_a.astype(np.float64) - sed_b)
    doa_err = np.abs(doa_a.astype(np.float64) - doa_b)
    active = sed_a >= threshold
    angles = angular_error_deg(doa_a[active], doa_b[active])
    distance = _distance_stats(distance_a, distance_b, active, nonfinite) if with_distance else {}
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
        **distance,
    )


def _distance_stats(a: np.ndarray, b: np.ndarray, active: np.ndarray, nonfinite: int) -> dict[str, float]:
    err = np.abs(a.astype(np.float64) - b)
    # softplus keeps A's distances > 0; the floor only guards a reference that underflowed to 0
    rel = err[active] / np.maximum(a[active].astype(np.float64), 1e-6)
    return {
        "distance_max_abs": float(np.nanmax(err)) if nonfinite == 0 else float("inf"),
        "distance_mean_abs": float(np.mean(err)),
        "distance_rel_mean": float(np.mean(rel)) if rel.size else float("nan"),
        "distance_rel_max": float(np.max(rel)) if rel.size else float("nan"),
    }


@dataclass(frozen=True)
class Check:
    """One bound of a tolerance row: the Tolerances field, the value it bounds, and its direction."""

    bound: str  # Tolerances field
    stat: str | None  # ParityStats field; None: the SELD-error delta (task level), bounded in magnitude
    label: str
    kind: str  # "max": value <= bound; "min": value >= bound

    @property
    def sign(self) -> str:
        """The bound as the reports write it."""
        return "≤" if self.kind == "max" else "≥"

    def value(self, stats: ParityStats, seld_delta: float | None = None) -> float | None:
        """The measured value (the signed SELD delta; None when not measured)."""
        return seld_delta if self.stat is None else getattr(stats, self.stat)

    def applies(self, stats: ParityStats) -> bool:
        """Whether the check belongs in a report on ``stats``: distance checks only for distance models."""
        return stats.has_distance or not (self.stat or "").startswith(DISTANCE_PREFIX)

    def fails(self, value: float | None, tol: Tolerances) -> bool:
        """Whether ``value`` leaves the row's bound; an unchecked bound or an unmeasured value never fails."""
        bound = getattr(tol, self.bound)
        if bound is None or value is None or np.isnan(value):
            return False
        value = abs(value) if self.stat is None else value
        return value > bound if self.kind == "max" else value < bound


CHECKS: tuple[Check, ...] = (
    Check("sed_max_abs", "sed_max_abs", "SED max abs error", "max"),
    Check("doa_max_abs", "doa_max_abs", "DOA max abs error", "max"),
    Check("sed_agreement_min", "sed_agreement", "SED decision agreement", "min"),
    Check("doa_angle_mean_max_deg", "doa_angle_mean_deg", "mean DOA angular error (deg)", "max"),
    Check("seld_delta_max", None, "SELD error delta", "max"),
    Check("distance_max_abs", "distance_max_abs", "distance max abs error (m)", "max"),
    Check("distance_rel_mean_max", "distance_rel_mean", "mean relative distance error", "max"),
)


def violations(stats: ParityStats, tol: Tolerances, seld_delta: float | None = None) -> list[str]:
    """Human-readable list of exceeded tolerances (empty when everything passes)."""
    out = []
    if stats.nonfinite:
        out.append(f"{stats.nonfinite} NaN/Inf values in the outputs")
    for check in CHECKS:
        value = check.value(stats, seld_delta)
        if check.fails(value, tol):
            value = abs(value) if check.stat is None else value
            sign = ">" if check.kind == "max" else "<"
            out.append(f"{check.label} {value:.4g} {sign} {getattr(tol, check.bound):g} ({tol.name} tolerance)")
    return out
