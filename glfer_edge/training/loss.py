"""SELD loss (paper eq. 8-9; fact sheet section 7): lambda * BCE(SED) + (1 - lambda) * masked DOA regression.

Targets come at the 10-fps label rate, outputs at 5 fps (time downsampling 16 at 80 feature
frames/s), so output frame j covers label frames 2j and 2j + 1. The targets are reduced to the
output rate instead of repeating the outputs: a class is active in output frame j when it is
active in either label frame (max over the pair), and its DOA target is that of frame 2j if the
class is active there, else that of frame 2j + 1 (the frame that is active; inactive DOAs are 0).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossTerms", "SELDLoss", "reduce_targets"]


class LossTerms(NamedTuple):
    total: torch.Tensor
    sed: torch.Tensor
    doa: torch.Tensor


def reduce_targets(sed: torch.Tensor, doa: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-rate targets sed (B, T, C), doa (B, T, C, 3) -> output rate (B, n_out, C), (B, n_out, C, 3).

    Uses label frames [0, 2 n_out); T must be at least 2 n_out.
    """
    if sed.shape[1] < 2 * n_out:
        raise ValueError(f"{sed.shape[1]} label frames cannot cover {n_out} output frames (2 each)")
    b, _, c = sed.shape
    pairs = sed[:, : 2 * n_out].reshape(b, n_out, 2, c)
    doa_pairs = doa[:, : 2 * n_out].reshape(b, n_out, 2, c, 3)
    first_active = pairs[:, :, 0, :, None] > 0
    return pairs.amax(dim=2), torch.where(first_active, doa_pairs[:, :, 0], doa_pairs[:, :, 1])


class SELDLoss(nn.Module):
    """``sed_weight`` * BCEWithLogits + (1 - ``sed_weight``) * masked MSE (or MAE) of the class-wise DOA.

    The DOA term follows SALSA: per axis, sum of errors over active (frame, class) cells divided by
    their count, summed over x, y, z; zero when nothing is active.
    """

    def __init__(self, sed_weight: float = 0.3, doa_loss: str = "mse") -> None:
        super().__init__()
        if not 0.0 <= sed_weight <= 1.0:
            raise ValueError(f"sed_weight must lie in [0, 1], got {sed_weight}")
        if doa_loss not in ("mse", "mae"):
            raise ValueError(f"doa_loss must be 'mse' or 'mae', got {doa_loss!r}")
        self.sed_weight = sed_weight
        self.doa_loss = doa_loss

    def forward(
        self, sed_logits: torch.Tensor, doa: torch.Tensor, sed_target: torch.Tensor, doa_target: torch.Tensor
    ) -> LossTerms:
        """Outputs (B, T', C), (B, T', C, 3); targets at the label rate (B, T, C), (B, T, C, 3)."""
        sed_target, doa_target = reduce_targets(sed_target, doa_target, sed_logits.shape[1])
        sed_loss = F.binary_cross_entropy_with_logits(sed_logits, sed_target)
        err = doa - doa_target
        err = err * err if self.doa_loss == "mse" else err.abs()
        doa_loss = (err * sed_target[..., None]).sum() / sed_target.sum().clamp(min=1.0)
        total = self.sed_weight * sed_loss + (1.0 - self.sed_weight) * doa_loss
        return LossTerms(total, sed_loss, doa_loss)
