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

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, F) -> the gate, shaped to broadcast along its axis: (B, C, 1, 1), (B, 1, T, 1) or (B, 1, 1, F)."""
        others = tuple(d for d in (1, 2, 3) if d != self.dim)
        desc = x.mean(dim=others)  # (B, D)
        gate = torch.sigmoid(self.conv(desc.unsqueeze(1))).squeeze(1)  # (B, D)
        shape = [gate.shape[0], 1, 1, 1]
        shape[self.dim] = gate.shape[1]
        return gate.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


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
        # sum_b x * g_b computed as x * sum_b g_b: the gates broadcast against each other, (B, 1, T, 1) +
        # (B, C, 1, 1) stays small, so the full map is written twice instead of five times.
        gate = self.branches[0].gate(x)
        for branch in self.branches[1:]:
            gate = gate + branch.gate(x)
        out = x * gate
        return out * self.scale if self.scale != 1.0 else out
