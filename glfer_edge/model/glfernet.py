"""GLFER-Net end to end: fused frontend -> encoder (stem + 3 GLFE stages) -> BiGRU -> SED and DOA heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glfer_edge.config import ModelConfig, SELDConfig
from glfer_edge.frontend.module import FOAFrontend
from glfer_edge.model.glf import ConvBlock, GLFExtractor, _bn


DISTANCE_BIAS_INIT = 1.85  # softplus(1.85) = 2.0 m


class Encoder(nn.Module):
    """(B, 7, T, F) -> (B, C_last, T/16, F/16): stem, then GLFE stages, each followed by 2x2 average pooling."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s = cfg.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, s, 3, padding=1), _bn(s, cfg), nn.GELU(),
            nn.Conv2d(s, s, 3, padding=1), _bn(s, cfg), nn.GELU(),
        )
        block = GLFExtractor if cfg.block == "glf" else ConvBlock
        widths = (s, *cfg.glf_channels)
        self.stages = nn.ModuleList(block(cin, cout, cfg) for cin, cout in zip(widths[:-1], widths[1:]))
        self.pool = nn.AvgPool2d(2)
        self.dropout = nn.Dropout2d(cfg.last_pool_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))  # (B, 32, T/2, F/2)
        for stage in self.stages:
            x = self.pool(stage(x))  # channels up, T and F halved
        return self.dropout(x)


def _head(width: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out)
    )


class SELDDecoder(nn.Module):
    """Frequency pooling -> 2-layer BiGRU -> SED logits (B, T', C), class-wise DOA (B, T', C, 3) in [-1, 1]
    and, with ``ModelConfig.distance``, class-wise source distance (B, T', C) in metres (softplus: > 0)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width = cfg.glf_channels[-1]
        self.freq_pool = cfg.freq_pool
        self.gru = nn.GRU(
            width, cfg.gru_hidden, num_layers=cfg.gru_layers, batch_first=True, bidirectional=True,
            dropout=cfg.gru_dropout if cfg.gru_layers > 1 else 0.0,
        )
        rnn_out = 2 * cfg.gru_hidden
        self.sed_head = _head(rnn_out, cfg.head_hidden, cfg.num_classes, cfg.head_dropout)
        self.doa_heads = nn.ModuleList(_head(rnn_out, cfg.head_hidden, cfg.num_classes, cfg.head_dropout) for _ in "xyz")
        self.distance_head = _head(rnn_out, cfg.head_hidden, cfg.num_classes, cfg.head_dropout) if cfg.distance else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.freq_pool == "avg":
            x = x.mean(dim=3)
        elif self.freq_pool == "max":
            x = x.amax(dim=3)
        else:  # 'avg_max'
            x = x.mean(dim=3) + x.amax(dim=3)
        x, _ = self.gru(x.transpose(1, 2))  # (B, T', 2H)
        doa = torch.stack([torch.tanh(head(x)) for head in self.doa_heads], dim=-1)  # (B, T', C, 3)
        if self.distance_head is None:
            return self.sed_head(x), doa
        return self.sed_head(x), doa, F.softplus(self.distance_head(x))  # distance (B, T', C) metres


class GLFERNet(nn.Module):
    """raw FOA audio (B, 4, N) -> ``sed`` (B, T', C) probabilities and ``doa`` (B, T', C, 3)
    (and ``distance`` (B, T', C) in metres when ``config.model.distance``).

    T' = (feature frames // 16) where feature frames = 1 + N // hop (641 for 8 s at 24 kHz -> 40).
    A frame count that is not a multiple of 16 is cropped to the last multiple before the encoder,
    so output frame j covers feature frames [16j, 16j + 16), i.e. label frames 2j and 2j + 1.
    """

    def __init__(self, config: SELDConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = FOAFrontend(config.features)
        self.encoder = Encoder(config.model)
        self.decoder = SELDDecoder(config.model)
        self._init_decoder()

    def _init_decoder(self) -> None:
        # SALSA: xavier-uniform linears with zero bias; GRU gates uniform, recurrent 'n' gate orthogonal.
        for m in self.decoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.decoder.sed_head[-1].bias, self.config.model.sed_bias_init)
        if self.decoder.distance_head is not None:  # start near the middle of indoor distances
            nn.init.constant_(self.decoder.distance_head[-1].bias, DISTANCE_BIAS_INIT)
        for name, p in self.decoder.gru.named_parameters():
            if name.startswith("bias"):
                nn.init.zeros_(p)
            elif name.startswith("weight_hh"):
                h = p.shape[1]
                nn.init.orthogonal_(p[2 * h :])
                bound = (3.0 / h) ** 0.5
                nn.init.uniform_(p[: 2 * h], -bound, bound)
            else:
                bound = (3.0 / p.shape[1]) ** 0.5
                nn.init.uniform_(p, -bound, bound)

    def logits(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Standardized features (B, 7, T, F) -> SED logits (B, T', C), DOA (B, T', C, 3)[, distance (B, T', C)]."""
        t = features.shape[2]
        features = features[:, :, : t - t % self.config.model.time_downsample]
        return self.decoder(self.encoder(features))

    def forward_features(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sed, *rest = self.logits(features)
        return (torch.sigmoid(sed), *rest)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward_features(self.frontend(audio))
