"""AFF: attentional feature fusion (Dai et al., WACV 2021; official ASKCFuse) of the global and local branches."""

from __future__ import annotations

import torch
from torch import nn


def _attention_stack(channels: int, reduction: int) -> list[nn.Module]:
    hidden = max(channels // reduction, 1)
    return [
        nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1), nn.BatchNorm2d(channels),
    ]


class AFF(nn.Module):
    """z = f*x*w + f*y*(1-w), w = sigmoid(local(x+y) + global(x+y)); f = 2 in the official code."""

    def __init__(self, channels: int, reduction: int = 4, factor: float = 2.0) -> None:
        super().__init__()
        self.local_att = nn.Sequential(*_attention_stack(channels, reduction))
        self.global_att = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_attention_stack(channels, reduction))
        self.factor = factor

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xa = x + y
        w = torch.sigmoid(self.local_att(xa) + self.global_att(xa))
        return self.factor * (y + w * (x - y))  # = f (x w + y (1 - w)), one pass over the maps fewer
