"""MSFE: multi-scale feature extraction (EPSANet's PSA, modified) with the CSS unit (cross-scale shuffle)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """View channels as (groups, C/groups), transpose, flatten."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class SEWeight(nn.Module):
    """Squeeze-and-excitation weights: GAP -> 1x1 -> ReLU -> 1x1 -> sigmoid (shared by all scales)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive pooling, not mean(dim=(2, 3)): it exports as GlobalAveragePool, which ORT runs quantized in INT8
        return torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class CSS(nn.Module):
    """Cross-scale shuffle: channel shuffle + aggregation block (two 1x1 convs over [shuffle(o), o])."""

    def __init__(self, channels: int, groups: int = 8, shuffle: bool = True, aggregation: bool = True) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"CSS groups {groups} must divide the {channels} channels")
        self.groups = groups if shuffle else 1
        self.aggregation = (
            nn.Sequential(
                nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.GELU(),
                nn.Conv2d(channels, channels, 1, bias=False),
            )
            if aggregation
            else None
        )
        self.folded = False

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        if self.folded:  # deploy form: shuffle and concatenation live in the first 1x1 conv
            return self.aggregation(o)
        q = channel_shuffle(o, self.groups) if self.groups > 1 else o
        if self.aggregation is None:
            return q
        return self.aggregation(torch.cat([q, o], dim=1))

    @torch.no_grad()
    def fold_(self) -> None:
        """Deploy reparameterization (exact): W_a shuffle(o) + W_b o = (W_a P^-1 + W_b) o, so the first
        aggregation conv takes o alone. Halves that conv's MACs and drops the shuffle and the concat."""
        if self.aggregation is None or self.folded:
            return
        conv = self.aggregation[0]
        c = conv.out_channels
        perm = channel_shuffle(torch.arange(c, dtype=torch.float32).reshape(1, c, 1, 1), self.groups).flatten().long()
        w = conv.weight[:, c:].clone()  # W_b, on o
        w[:, perm] += conv.weight[:, :c]  # W_a column j reads o[perm[j]]
        folded = nn.Conv2d(c, c, 1, bias=False).to(conv.weight)
        folded.weight.copy_(w)
        self.aggregation[0] = folded
        self.folded = True


class PSA(nn.Module):
    """Pyramid split attention over 4 scales, SE weights softmaxed across scales, then CSS; residuals o and u."""

    def __init__(
        self, channels: int, kernels: tuple[int, ...] = (1, 3, 5, 7), groups: tuple[int, ...] = (1, 2, 4, 8),
        se_reduction: int = 16, css_groups: int = 8, css_shuffle: bool = True, css_aggregation: bool = True,
    ) -> None:
        super().__init__()
        n = len(kernels)
        if channels % n:
            raise ValueError(f"MSFE width {channels} must be divisible by the {n} scales")
        split = channels // n
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, split, k, padding=k // 2, groups=g, bias=False) for k, g in zip(kernels, groups)
        )
        self.se = SEWeight(split, se_reduction)
        self.css = CSS(channels, css_groups, css_shuffle, css_aggregation)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        feats = [conv(u) for conv in self.branches]  # n x (B, P/n, T, F)
        # The scales' SE weights compete in a softmax across scales. Each scale is weighted on its own (not as
        # one stacked tensor): two passes over the maps (scale, concatenate) instead of five.
        att = torch.softmax(torch.stack([self.se(f) for f in feats], dim=1), dim=1)  # (B, n, P/n, 1, 1)
        o = torch.cat([feats[i] * att[:, i] for i in reversed(range(len(feats)))], dim=1)  # largest kernel first
        return self.css(o) + o + u


class MSFE(nn.Module):
    """MSFE(u) = GELU(GELU(BN(PSA(u))) + u)."""

    def __init__(self, channels: int, **psa_kwargs) -> None:
        super().__init__()
        self.psa = PSA(channels, **psa_kwargs)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return F.gelu(F.gelu(self.bn(self.psa(u))) + u)
