"""Torch version of the fused frontend, for the exported graph.

The STFT is a strided Conv1d with a fixed windowed-DFT basis: no STFT/DFT op and no complex
tensors reach the ONNX graph, so TensorRT 10.3 (JetPack 6) builds it and FP16 export can pin the
whole frontend to FP32 by name (every node lives under the ``frontend`` scope).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glfer_edge.config import FeatureConfig
from glfer_edge.frontend.basis import dft_basis, foa_to_acn, frequency_map, used_bins


class FOAFrontend(nn.Module):
    """raw FOA (B, 4, N) -> standardized linspeciv features (B, 7, T, F), T = 1 + N // hop."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cos, sin = dft_basis(cfg)
        self.n_used = cos.shape[0]
        self.register_buffer("basis", torch.from_numpy(np.concatenate([cos, sin])[:, None, :]).float())
        # Used bins -> feature bins: an identity slice for the linear part, a small matrix for the bands.
        fmap = frequency_map(cfg)[:, used_bins(cfg)]  # (F, n_used)
        n_lin = cfg.n_linear_bins if cfg.compress_high_freq else fmap.shape[0]
        self.n_linear = n_lin
        self.register_buffer("band_map", torch.from_numpy(fmap[n_lin:, n_lin:].T.copy()).float())
        acn = foa_to_acn(cfg)
        self.register_buffer("to_acn", None if acn is None else torch.from_numpy(acn).float())
        # Standardization statistics (7, F): fitted on the training split, saved with the weights.
        self.register_buffer("mean", torch.zeros(7, cfg.n_bins))
        self.register_buffer("std", torch.ones(7, cfg.n_bins))

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def _map_bins(self, x: torch.Tensor) -> torch.Tensor:
        # (..., n_used) -> (..., F)
        if self.band_map.numel() == 0:
            return x
        return torch.cat([x[..., : self.n_linear], x[..., self.n_linear :] @ self.band_map], dim=-1)

    def linspeciv(self, audio: torch.Tensor) -> torch.Tensor:
        """Unstandardized features (B, 7, T, F)."""
        cfg = self.cfg
        if self.to_acn is not None:
            audio = torch.einsum("ij,bjn->bin", self.to_acn, audio)
        b, c, n = audio.shape
        x = audio.reshape(-1, 1, n)
        if cfg.center:
            x = F.pad(x, (cfg.n_fft // 2, cfg.n_fft // 2), mode=cfg.pad_mode)
        spec = F.conv1d(x, self.basis, stride=cfg.hop_length)  # (B*4, 2K, T)
        spec = spec.reshape(-1, c, 2, self.n_used, spec.shape[-1]).transpose(-1, -2)  # (B, 4, 2, T, K)
        re, im = spec[:, :, 0], spec[:, :, 1]  # (B, 4, T, K)
        power = self._map_bins(re * re + im * im)
        logspec = (10.0 / math.log(10.0)) * torch.log(torch.clamp(power, min=cfg.power_floor))
        iv = re[:, :1] * re[:, 1:] + im[:, :1] * im[:, 1:]  # Re(conj(W) X_k), (B, 3, T, K)
        iv = iv / (torch.sqrt(torch.sum(iv * iv, dim=1, keepdim=True)) + cfg.iv_eps)
        return torch.cat([logspec, self._map_bins(iv)], dim=1)

    def standardize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean[:, None, :]) / self.std[:, None, :]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # FP32 even under autocast, as in the FP16 artifacts: in FP16 the intensity vector's norm (squares
        # of |X|^2-sized products) passes 65504 for ordinary levels; on CUDA the outputs became inf/NaN.
        with torch.autocast(audio.device.type, enabled=False):
            return self.standardize(self.linspeciv(audio.float()))
