"""LFE: local feature extraction unit with asymmetric 1x3 (frequency) and 3x1 (time) convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, kernel: tuple[int, int]) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=(kernel[0] // 2, kernel[1] // 2))


class LFEUnit(nn.Module):
    """GELU(BN(conv3x1(conv1x3(x)) + conv1x3(conv3x1(x)))): kernels are (time x frequency)."""

    def __init__(self, in_ch: int, out_ch: int, bn_eps: float = 1e-3, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.freq_time = nn.Sequential(_conv(in_ch, out_ch, (1, 3)), _conv(out_ch, out_ch, (3, 1)))
        self.time_freq = nn.Sequential(_conv(in_ch, out_ch, (3, 1)), _conv(out_ch, out_ch, (1, 3)))
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.bn(self.freq_time(x) + self.time_freq(x)))

    @torch.no_grad()
    def fold_bn_(self) -> None:
        """Deploy reparameterization (exact in eval mode): BN(a + b) = s a + s b + t folds into the last conv
        of both paths (ONNX Runtime and TensorRT fuse a BN only into a Conv it directly follows, not after an Add)."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        s = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        t = self.bn.bias - s * self.bn.running_mean
        last = (self.freq_time[-1], self.time_freq[-1])
        for conv in last:
            conv.weight.mul_(s[:, None, None, None])
            conv.bias.mul_(s)
        last[0].bias.add_(t)
        self.bn = nn.Identity()
