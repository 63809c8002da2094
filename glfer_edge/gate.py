"""Physical noise gate: FOA diffuseness and level of every output frame, computed from the audio in numpy.

The network alone reports confident events on stationary noise and silence. Two physical
measures of each output frame's audio (0.2 s: ``time_downsample x hop_length`` samples) decide
whether the frame can hold a localizable sound event at all:

* **Diffuseness** (DirAC), psi = 1 - ||<I>|| / (c <E>) in [0, 1]. With SN3D FOA (W, Y, Z, X) the
  active intensity of a time-frequency bin is I = Re(conj(W) [Y, Z, X]) and the energy density
  E = (|W|^2 + |X|^2 + |Y|^2 + |Z|^2) / 2 (units with rho c = 1); a plane wave gives ||I|| = E, so
  psi = 0 for one point source and psi -> 1 for a diffuse field or independent channel noise, whose
  intensities cancel in the average. Averages: I is summed over the frame's STFT windows (Hann
  ``n_fft``, hop ``n_fft / 2``, inside the frame's span) and over bands of ``BAND_BINS`` STFT bins
  (1.5 kHz at 24 kHz) from ``FIRST_BIN`` (94 Hz; below it a 0.2-s frame holds too few periods to
  average, and pink noise's sub-audio drift leaking into bin 1 reads as directional);
  psi = 1 - sum_b ||sum I_b|| / sum E, the energy-weighted mean of the band diffuseness, so sources
  in different bands do not cancel each other and a narrow-band source is weighted by its energy.
  A finite average is biased low: uncorrelated noise reads about 0.96 (white, diffuse, pink; pink
  varies most, its energy sitting in the lowest band), lowest 0.90 in 10 minutes, never exactly 1.
  Events of the reverberant synthetic validation scenes read 0.61 (median; 90 % below 0.85).
  A frame without energy reads 1 (nothing to localize).
* **Level** in dBFS: 10 log10 of the mean square of W over the frame (0 dBFS = a full-scale square
  wave; a full-scale sine reads -3 dBFS), floored at ``LEVEL_FLOOR_DBFS`` (digital silence).

A frame passes the gate when psi <= ``GateConfig.max_diffuseness`` and level >=
``GateConfig.min_level_dbfs``, or when a frame within ``GateConfig.hold_frames`` of it does (the
hold keeps a source's gaps and reverberant tail open; it looks that many frames ahead, within the
look-ahead the DOA smoothing already takes). Settings: ``glfer_edge.config.GateConfig``, stored with
the model's decisions.
:func:`glfer_edge.postprocess.detect_events` switches off every class in a frame that fails and
reports both measures per event. Both depend only on the frame's own samples, so file inference
(``infer_long``) and streaming (``StreamingSELD``) compute identical values, and TTA channel swaps
(which rotate the sound field) leave them unchanged. Known limit: a point source of noise (one
noise signal encoded in one direction) is not diffuse and passes the physical gate.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter1d

from glfer_edge.config import GateConfig, SELDConfig
from glfer_edge.frontend.basis import foa_to_acn

__all__ = ["BAND_BINS", "FIRST_BIN", "LEVEL_FLOOR_DBFS", "frame_samples", "frame_gate_features", "gate_passes"]

BAND_BINS = 32  # STFT bins summed per band before the intensity norm (32 x 46.9 Hz = 1.5 kHz)
FIRST_BIN = 2  # lowest STFT bin measured (94 Hz): bin 1 takes the window's leakage of DC and sub-audio drift
LEVEL_FLOOR_DBFS = -120.0  # level reported for digital silence (mean square below 1e-12)
_BLOCK_FRAMES = 128  # output frames per numpy block: bounds memory on long recordings (about 40 MB)


def frame_samples(config: SELDConfig) -> int:
    """Audio samples per output frame (4800: 16 feature hops of 300 samples at 24 kHz)."""
    return config.model.time_downsample * config.features.hop_length


def frame_gate_features(audio: np.ndarray, config: SELDConfig) -> tuple[np.ndarray, np.ndarray]:
    """(diffuseness, level_dbfs), each float32 (T',), of the output frames of FOA audio (4, N).

    Frame j covers samples [j x S, (j + 1) x S) with S = :func:`frame_samples`; T' = ceil(N / S) and
    a last partial frame is zero-padded, as the segment runner pads the last segment. ``audio`` is in
    ``config.features.channel_order``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    s = frame_samples(config)
    n_frames = -(-audio.shape[-1] // s)
    diffuseness = np.ones(n_frames, np.float32)
    level = np.full(n_frames, LEVEL_FLOOR_DBFS, np.float32)
    m = foa_to_acn(config.features)
    n_fft = config.features.n_fft
    hop = n_fft // 2
    win = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    band_starts = np.arange(FIRST_BIN, n_fft // 2, BAND_BINS)  # bins FIRST_BIN .. n_fft/2 - 1: no Nyquist
    for a in range(0, n_frames, _BLOCK_FRAMES):
        b = min(a + _BLOCK_FRAMES, n_frames)
        block = np.zeros((audio.shape[0], (b - a) * s), np.float32)
        part = audio[:, a * s : b * s]
        block[:, : part.shape[-1]] = part
        if m is not None:
            block = (m.astype(np.float32) @ block).astype(np.float32)
        frames = block.reshape(block.shape[0], b - a, s)  # (4, F, S)
        ms = np.mean(frames[0].astype(np.float64) ** 2, axis=-1)
        level[a:b] = 10.0 * np.log10(np.maximum(ms, 10.0 ** (LEVEL_FLOOR_DBFS / 10.0)))
        windows = np.lib.stride_tricks.sliding_window_view(frames, n_fft, axis=-1)[..., ::hop, :]
        spec = scipy.fft.rfft(windows * win, axis=-1)[..., FIRST_BIN : n_fft // 2]  # (4, F, W, K) complex64
        intensity = np.real(np.conj(spec[:1]) * spec[1:]).sum(axis=2)  # (3, F, K): summed over windows
        energy = 0.5 * (np.abs(spec) ** 2).sum(axis=(0, 2, 3))  # (F,)
        band_i = np.add.reduceat(intensity, band_starts - FIRST_BIN, axis=-1)  # (3, F, bands)
        directional = np.sqrt((band_i**2).sum(axis=0)).sum(axis=-1)  # (F,)
        has_energy = energy > 1e-20
        psi = 1.0 - directional / np.where(has_energy, energy, 1.0)
        diffuseness[a:b] = np.where(has_energy, np.clip(psi, 0.0, 1.0), 1.0)
    return diffuseness, level


def gate_passes(diffuseness: np.ndarray, level_dbfs: np.ndarray, gate: GateConfig) -> np.ndarray:
    """Boolean (..., T') mask of the frames that may hold events (all of them when the gate is off):
    psi <= max and level >= min, widened by ``gate.hold_frames`` frames on each side along the last axis.
    On the frames of one ``StreamingSELD.push`` the hold stops at the chunk's edges."""
    diffuseness, level_dbfs = np.asarray(diffuseness), np.asarray(level_dbfs)
    if not gate.enabled:
        return np.ones(diffuseness.shape, bool)
    passes = (diffuseness <= gate.max_diffuseness) & (level_dbfs >= gate.min_level_dbfs)
    if gate.hold_frames and passes.shape[-1]:
        size = 2 * gate.hold_frames + 1
        passes = maximum_filter1d(passes.astype(np.uint8), size, axis=-1, mode="constant").astype(bool)
    return passes
