"""SELD loss (paper eq. 8-9; fact sheet section 7): lambda * BCE(SED) + (1 - lambda) * masked DOA regression,
plus ``distance_weight`` * masked relative distance error for a model with the distance head (DCASE 2024).

Targets come at the 10-fps label rate, outputs at 5 fps (time downsampling 16 at 80 feature
frames/s), so output frame j covers label frames 2j and 2j + 1. The targets are reduced to the
output rate instead of repeating the outputs: a class is active in output frame j when it is
active in either label frame (max over the pair), and its DOA target is that of frame 2j if the
class is active there, else that of frame 2j + 1 (the frame that is active; inactive DOAs are 0).
Distance targets are reduced the same way (``reduce_distance``).

The distance term is the mean over active (frame, class) cells of |d_hat - d| / d, the quantity the
DCASE 2024 RDE metric averages. Relative, not the 2024 baseline's MSE on metres: an MSE weighs a
0.5-m error on a 5-m source 25 times more than a 0.1-m error on a 1-m source, although both are an
RDE of 0.1, so it spends the network on far sources, while the metric (and the 2024 F's
relative-distance threshold) judges every source relative to its own distance. Being a ratio, the
term is dimensionless and on the metric's own scale, so its weight does not depend on the dataset's
range of distances; the L1 form also keeps outliers from dominating the gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DistanceLossTerms", "LossTerms", "SELDLoss", "reduce_distance", "reduce_targets"]

MIN_TARGET_DISTANCE_M = 0.1  # relative errors divide by at least this (a 0-m label would divide by zero)


class LossTerms(NamedTuple):
    total: torch.Tensor
    sed: torch.Tensor
    doa: torch.Tensor


class DistanceLossTerms(NamedTuple):
    """Terms of a model with the distance head: ``distance`` is the masked mean relative error."""

    total: torch.Tensor
    sed: torch.Tensor
    doa: torch.Tensor
    distance: torch.Tensor


def reduce_targets(sed: torch.Tensor, doa: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-rate targets sed (B, T, C), doa (B, T, C, 3) -> output rate (B, n_out, C), (B, n_out, C, 3).

    Uses label frames [0, 2 n_out); T must be at least 2 n_out.
    """
    b, _, c = sed.shape
    return sed[:, : 2 * n_out].reshape(b, n_out, 2, c).amax(dim=2), _active_frame_values(sed, doa, n_out)


def reduce_distance(sed: torch.Tensor, distance: torch.Tensor, n_out: int) -> torch.Tensor:
    """Label-rate distance targets (B, T, C) -> output rate (B, n_out, C), as ``reduce_targets`` reduces the DOA:
    frame 2j's distance where the class is active in frame 2j, else frame 2j + 1's."""
    return _active_frame_values(sed, distance, n_out)


def _active_frame_values(sed: torch.Tensor, values: torch.Tensor, n_out: int) -> torch.Tensor:
    """Per output frame j and class, ``values`` (B, T, C, ...) of label frame 2j where the class is active
    there, else of frame 2j + 1."""
    if min(sed.shape[1], values.shape[1]) < 2 * n_out:
        raise ValueError(f"{min(sed.shape[1], values.shape[1])} label frames cannot cover {n_out} output frames (2 each)")
    b, _, c = sed.shape
    pairs = values[:, : 2 * n_out].reshape(b, n_out, 2, c, *values.shape[3:])
    first_active = (sed[:, : 2 * n_out].reshape(b, n_out, 2, c)[:, :, 0] > 0).reshape(b, n_out, c, *[1] * (values.dim() - 3))
    return torch.where(first_active, pairs[:, :, 0], pairs[:, :, 1])


class SELDLoss(nn.Module):
    """``sed_weight`` * BCEWithLogits + (1 - ``sed_weight``) * masked MSE (or MAE) of the class-wise DOA.

    The DOA term follows SALSA: per axis, sum of errors over active (frame, class) cells divided by
    their count, summed over x, y, z; zero when nothing is active.

    With ``distance`` and ``distance_target`` (a model with the distance head) the total adds
    ``distance_weight`` * the mean of |d_hat - d| / d over the same active cells (zero when nothing is
    active; inactive cells contribute neither error nor count) and the terms are :class:`DistanceLossTerms`.
    """

    def __init__(self, sed_weight: float = 0.3, doa_loss: str = "mse", distance_weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= sed_weight <= 1.0:
            raise ValueError(f"sed_weight must lie in [0, 1], got {sed_weight}")
        if doa_loss not in ("mse", "mae"):
            raise ValueError(f"doa_loss must be 'mse' or 'mae', got {doa_loss!r}")
        if not distance_weight >= 0.0:
            raise ValueError(f"distance_weight must be >= 0, got {distance_weight}")
        self.sed_weight = sed_weight
        self.doa_loss = doa_loss
        self.distance_weight = distance_weight

    def forward(
        self, sed_logits: torch.Tensor, doa: torch.Tensor, sed_target: torch.Tensor, doa_target: torch.Tensor,
        distance: torch.Tensor | None = None, distance_target: torch.Tensor | None = None,
    ) -> LossTerms | DistanceLossTerms:
        """Outputs (B, T', C), (B, T', C, 3)[, distance (B, T', C) m]; targets at the label rate (B, T, C),
        (B, T, C, 3)[, (B, T, C) m]."""
        if (distance is None) != (distance_target is None):
            raise ValueError("give both the predicted distance and its target, or neither")
        n_out = sed_logits.shape[1]
        sed_label = sed_target
        sed_target, doa_target = reduce_targets(sed_target, doa_target, n_out)
        sed_loss = F.binary_cross_entropy_with_logits(sed_logits, sed_target)
        err = doa - doa_target
        err = err * err if self.doa_loss == "mse" else err.abs()
        n_active = sed_target.sum().clamp(min=1.0)
        doa_loss = (err * sed_target[..., None]).sum() / n_active
        total = self.sed_weight * sed_loss + (1.0 - self.sed_weight) * doa_loss
        if distance is None:
            return LossTerms(total, sed_loss, doa_loss)
        d = reduce_distance(sed_label, distance_target, n_out)
        rel = (distance - d).abs() / d.clamp(min=MIN_TARGET_DISTANCE_M)
        # where() rather than a product: an inactive cell's target is 0, and its error must not reach the gradient
        distance_loss = torch.where(sed_target > 0, rel, torch.zeros_like(rel)).sum() / n_active
        return DistanceLossTerms(total + self.distance_weight * distance_loss, sed_loss, doa_loss, distance_loss)
