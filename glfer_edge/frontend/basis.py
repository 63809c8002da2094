"""Fixed matrices of the SALSA 'linspeciv' frontend, shared by the numpy and torch versions."""

from __future__ import annotations

import numpy as np

from glfer_edge.config import FeatureConfig


def window(cfg: FeatureConfig) -> np.ndarray:
    """Periodic Hann window of win_length, zero-padded (centred) to n_fft, as librosa."""
    if cfg.window != "hann":
        raise ValueError(f"unsupported window {cfg.window!r}; only 'hann' is implemented")
    n = np.arange(cfg.win_length)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / cfg.win_length)
    left = (cfg.n_fft - cfg.win_length) // 2
    return np.pad(w, (left, cfg.n_fft - cfg.win_length - left))


def used_bins(cfg: FeatureConfig) -> np.ndarray:
    """STFT bins that reach the features: DC and Nyquist are dropped (SALSA)."""
    if cfg.compress_high_freq:
        last = min(cfg.n_linear_bins + cfg.n_compressed_bands * cfg.band_width, cfg.n_fft // 2 - 1)
    else:
        last = cfg.n_fft // 2
    return np.arange(1, last + 1)


def frequency_map(cfg: FeatureConfig) -> np.ndarray:
    """Matrix (n_bins, n_fft//2 + 1) mapping STFT bins to feature bins (SALSA's W).

    Compressed: output 0..191 = STFT bins 1..192; outputs 192..199 average 8 bins each from bin 193.
    The last band only has 7 bins below Nyquist (249..255) but keeps the 1/8 weight (SALSA quirk).
    """
    n_stft = cfg.n_fft // 2 + 1
    if not cfg.compress_high_freq:
        m = np.zeros((cfg.n_fft // 2, n_stft))
        m[np.arange(cfg.n_fft // 2), np.arange(1, n_stft)] = 1.0
        return m
    m = np.zeros((cfg.n_bins, n_stft))
    m[np.arange(cfg.n_linear_bins), np.arange(1, cfg.n_linear_bins + 1)] = 1.0
    for band in range(cfg.n_compressed_bands):
        start = cfg.n_linear_bins + 1 + band * cfg.band_width
        stop = min(start + cfg.band_width, n_stft - 1)  # Nyquist excluded
        m[cfg.n_linear_bins + band, start:stop] = 1.0 / cfg.band_width
    return m


def dft_basis(cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Windowed real DFT basis (cos, -sin), each (len(used_bins), n_fft), for STFT-as-convolution."""
    k = used_bins(cfg)[:, None]
    n = np.arange(cfg.n_fft)[None, :]
    phase = 2.0 * np.pi * k * n / cfg.n_fft
    w = window(cfg)[None, :]
    return w * np.cos(phase), -w * np.sin(phase)


def foa_to_acn(cfg: FeatureConfig) -> np.ndarray | None:
    """4x4 matrix turning the configured channel order into ACN/SN3D (W, Y, Z, X); None if already ACN."""
    if cfg.channel_order == "acn":
        return None
    if cfg.channel_order == "fuma":
        # FuMa: W, X, Y, Z with W carrying -3 dB
        return np.array(
            [[np.sqrt(2.0), 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float64
        )
    raise ValueError(f"unknown channel_order {cfg.channel_order!r}; use 'acn' or 'fuma'")
