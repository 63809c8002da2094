"""Deterministic test signals shared by the frontend and model tests."""

from __future__ import annotations

import numpy as np

FS = 24000


def speech_like(seconds: float, rng: np.random.Generator, fs: int = FS) -> np.ndarray:
    """Voiced formant babble: a glottal pulse train with a wandering pitch through 3 formant resonators,
    syllable-rate amplitude modulation and a -45 dB noise floor."""
    from scipy import signal

    n = int(seconds * fs)
    t = np.arange(n) / fs
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t) + 10 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / fs
    pulses = (np.diff(np.floor(phase / (2 * np.pi)), prepend=0) > 0).astype(float)
    x = np.zeros(n)
    for formant, bw in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * bw / fs)
        b, a = [1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / fs), r * r]
        x += signal.lfilter(b, a, pulses)
    x *= 0.5 * (1 + np.sin(2 * np.pi * 4 * t))  # syllables
    x /= np.max(np.abs(x)) + 1e-12
    return 0.3 * x + 10 ** (-45 / 20) * rng.standard_normal(n)


def foa_plane_wave(mono: np.ndarray, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """ACN/SN3D (W, Y, Z, X) encoding of a far-field source (DCASE convention)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    gains = np.array([1.0, np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    return gains[:, None] * mono[None, :]
