"""GLF extractor block (GLFE): global branch (ODConv -> MSFE) + local branch (LFE -> LFE), AFF fusion,
1x1 shortcut, then FR. Fact sheet section 3.1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glfer_edge.config import ModelConfig
from glfer_edge.model.aff import AFF
from glfer_edge.model.fr import FR
from glfer_edge.model.lfe import LFEUnit
from glfer_edge.model.msfe import MSFE
from glfer_edge.model.odconv import ODConv2d


def _bn(channels: int, cfg: ModelConfig) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


def _fr(cfg: ModelConfig) -> nn.Module:
    return FR(cfg.fr_branches, cfg.fr_kernel, cfg.fr_combine) if cfg.fr_branches else nn.Identity()


class GLFExtractor(nn.Module):
    """(B, Cin, T, F) -> (B, P, T, F)."""

    def __init__(self, in_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.odconv = ODConv2d(
            in_ch, out_ch, 3, stride=1, padding=1, kernel_num=cfg.odconv_kernel_num,
            reduction=cfg.odconv_reduction, min_channels=cfg.odconv_min_channels, temperature=cfg.odconv_temperature,
        )
        self.odconv_bn = _bn(out_ch, cfg)
        self.msfe = MSFE(
            out_ch, kernels=cfg.msfe_kernels, groups=cfg.msfe_groups, se_reduction=cfg.msfe_se_reduction,
            css_groups=cfg.css_groups, css_shuffle=cfg.css_shuffle, css_aggregation=cfg.css_aggregation,
        )
        self.lfe1 = LFEUnit(in_ch, out_ch, cfg.bn_eps, cfg.bn_momentum)
        self.lfe2 = LFEUnit(out_ch, out_ch, cfg.bn_eps, cfg.bn_momentum)
        self.aff = AFF(out_ch, cfg.aff_reduction, cfg.aff_factor)
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), _bn(out_ch, cfg))
        self.fr = _fr(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.msfe(F.gelu(self.odconv_bn(self.odconv(x))))  # global features
        l = self.lfe2(self.lfe1(x))  # local features
        return self.fr(F.gelu(self.aff(g, l) + self.shortcut(x)))


class ConvBlock(nn.Module):
    """Ablation 'plain conv': two 3x3 conv-BN-GELU layers in place of the GLF extractor, then FR."""

    def __init__(self, in_ch: int, out_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), _bn(out_ch, cfg), nn.GELU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), _bn(out_ch, cfg), nn.GELU(),
        )
        self.fr = _fr(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fr(self.body(x))
