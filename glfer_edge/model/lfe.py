"""LFE: local feature extraction unit with asymmetric 1x3 (frequency) and 3x1 (time) convolutions,
and its deploy form, one 3x3 convolution (``FusedLFE``)."""

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


class FusedLFE(nn.Module):
    """Deploy form of an ``LFEUnit`` (exact in eval mode): both asymmetric paths are linear up to the GELU, so
    conv3x1(conv1x3(x)) + conv1x3(conv3x1(x)) is one 3x3 convolution of x, plus the first convs' biases seen
    through the second convs. Inside the map that bias term is a constant per channel; on the first and last
    time frames (frequency bins) the 3x1 (1x3) second conv reads zero padding instead of the bias, so those
    edges get their own per-channel term. 9 Cin Cout MACs per pixel instead of 6 Cout (Cin + Cout):
    2x fewer for Cin = Cout / 2, 1.33x for Cin = Cout, and one convolution instead of four plus an Add."""

    def __init__(self, unit: LFEUnit) -> None:
        super().__init__()
        if not isinstance(unit.bn, nn.Identity):
            raise ValueError("fold the LFE unit's BatchNorm first (LFEUnit.fold_bn_)")
        (a1, a2), (b1, b2) = unit.freq_time, unit.time_freq  # a: 1x3 then 3x1; b: 3x1 then 1x3
        w_a2, w_b2 = a2.weight.double()[..., 0], b2.weight.double()[:, :, 0]  # (O, M, 3): taps over time / frequency
        kernel = (torch.einsum("omt,mif->oitf", w_a2, a1.weight.double()[:, :, 0])
                  + torch.einsum("omf,mit->oitf", w_b2, b1.weight.double()[..., 0]))
        through_a = torch.einsum("omt,m->ot", w_a2, a1.bias.double())  # (O, 3): a1's bias through each time tap
        through_b = torch.einsum("omf,m->of", w_b2, b1.bias.double())
        self.conv = nn.Conv2d(a1.in_channels, a2.out_channels, 3, padding=1)
        self.conv.weight.data = kernel.float()
        self.conv.bias.data = (a2.bias.double() + b2.bias.double() + through_a.sum(1) + through_b.sum(1)).float()
        # what the edges miss: tap 0 reads padding on the first frame/bin, tap 2 on the last
        self.register_buffer("time_edges", -through_a[:, [0, 2]].float())  # (O, 2)
        self.register_buffer("freq_edges", -through_b[:, [0, 2]].float())

    @staticmethod
    def _edges(values: torch.Tensor, size: int) -> torch.Tensor:
        """(O, 2) first/last terms -> (O, size), zero in between."""
        i = torch.arange(size, device=values.device)
        return values[:, :1] * (i == 0).to(values.dtype) + values[:, 1:] * (i == size - 1).to(values.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, f = x.shape[-2:]
        # two broadcast Adds, not one of their (O, T, F) sum: the export would fold that into a full-size constant
        y = self.conv(x) + self._edges(self.time_edges, t)[:, :, None]  # + (O, T, 1)
        return F.gelu(y + self._edges(self.freq_edges, f)[:, None, :])  # + (O, 1, F)
