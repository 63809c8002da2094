"""FR: feature recalibration with time, channel and frequency attention branches (TriAttention in [G])."""

from __future__ import annotations

import torch
from torch import nn

# axis of (B, C, T, F) each branch re-weights
_AXES = {"channel": 1, "time": 2, "frequency": 3}


class AxisAttention(nn.Module):
    """ECA-style gate along one axis: GAP over the other two axes -> Conv1d(k) -> sigmoid -> scale."""

    def __init__(self, axis: str, kernel_size: int = 3) -> None:
        super().__init__()
        self.dim = _AXES[axis]
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        others = tuple(d for d in (1, 2, 3) if d != self.dim)
        desc = x.mean(dim=others)  # (B, D)
        gate = torch.sigmoid(self.conv(desc.unsqueeze(1))).squeeze(1)  # (B, D)
        shape = [gate.shape[0], 1, 1, 1]
        shape[self.dim] = gate.shape[1]
        return x * gate.reshape(shape)


class FR(nn.Module):
    """Feature recalibration: combine the branch outputs by sum (paper) or mean (authors' code)."""

    def __init__(self, branches: tuple[str, ...], kernel_size: int = 3, combine: str = "sum") -> None:
        super().__init__()
        if not branches:
            raise ValueError("FR needs at least one branch; use nn.Identity to disable it")
        if combine not in ("sum", "mean"):
            raise ValueError(f"FR combine must be 'sum' or 'mean', got {combine!r}")
        self.branches = nn.ModuleList(AxisAttention(b, kernel_size) for b in branches)
        self.scale = 1.0 if combine == "sum" else 1.0 / len(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out * self.scale if self.scale != 1.0 else out
