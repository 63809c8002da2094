"""numpy reference of the fused FOA frontend (SALSA 'linspeciv', fact sheet section 2).

Used by the runtime for feature inspection, by training statistics and as the independent
reference the torch/ONNX graph is tested against. Computes in float64, returns float32.
"""

from __future__ import annotations

import numpy as np

from glfer_edge.config import FeatureConfig
from glfer_edge.frontend.basis import foa_to_acn, frequency_map, window

_DB = 10.0


def stft(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Complex STFT (..., channels, frames, n_fft//2 + 1) of audio (..., channels, samples)."""
    x = np.asarray(audio, dtype=np.float64)
    if cfg.center:
        pad = [(0, 0)] * (x.ndim - 1) + [(cfg.n_fft // 2, cfg.n_fft // 2)]
        x = np.pad(x, pad, mode=cfg.pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft, axis=-1)[..., :: cfg.hop_length, :]
    return np.fft.rfft(frames * window(cfg), n=cfg.n_fft, axis=-1)


def linspeciv(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Unstandardized features (..., 7, frames, n_bins): 4 log-power spectrograms (dB) + 3 unit IVs.

    Input is FOA (..., 4, samples) in cfg.channel_order; the IV channels are Y, Z, X (ACN order),
    I_k = Re(conj(W) * X_k), normalised to unit length per TF bin before the frequency mapping.
    """
    audio = np.asarray(audio, dtype=np.float64)
    m = foa_to_acn(cfg)
    if m is not None:
        audio = np.einsum("ij,...jn->...in", m, audio)
    spec = stft(audio, cfg)  # (..., 4, T, K)
    fmap = frequency_map(cfg).T  # (K, F)
    power = np.abs(spec) ** 2 @ fmap
    logspec = _DB * np.log10(np.maximum(power, cfg.power_floor))
    iv = np.real(np.conj(spec[..., :1, :, :]) * spec[..., 1:, :, :])  # (..., 3, T, K)
    iv = iv / (np.sqrt(np.sum(iv**2, axis=-3, keepdims=True)) + cfg.iv_eps)
    return np.concatenate([logspec, iv @ fmap], axis=-3).astype(np.float32)


def standardize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-channel, per-bin z-score with statistics shaped (7, n_bins)."""
    return ((features - mean[:, None, :]) / std[:, None, :]).astype(np.float32)


def extract_features(
    audio: np.ndarray, cfg: FeatureConfig, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> np.ndarray:
    """Features (..., 7, frames, n_bins) as the model sees them (standardized when stats are given)."""
    feats = linspeciv(audio, cfg)
    if mean is None or std is None:
        return feats
    return standardize(feats, np.asarray(mean), np.asarray(std))


def fit_standardization(features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel-per-bin mean and std (7, n_bins) over a list of (7, T, F) feature arrays (float64 sums)."""
    n = 0
    s = s2 = None
    for f in features:
        f64 = np.asarray(f, dtype=np.float64)
        cur_s, cur_s2 = f64.sum(axis=-2), (f64**2).sum(axis=-2)
        s = cur_s if s is None else s + cur_s
        s2 = cur_s2 if s2 is None else s2 + cur_s2
        n += f64.shape[-2]
    if s is None or n == 0:
        raise ValueError("no features to fit standardization statistics on")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-4).astype(np.float32)
