"""Fused frontend: torch graph module vs numpy reference vs an independent scipy.signal.stft computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from signals import FS, foa_plane_wave, speech_like
from glfer_edge.config import FeatureConfig
from glfer_edge.frontend import extract_features, linspeciv, standardize
from glfer_edge.frontend.basis import frequency_map

torch = pytest.importorskip("torch")
from glfer_edge.frontend.module import FOAFrontend  # noqa: E402

CFG = FeatureConfig()


def scipy_linspeciv(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Independent path: scipy.signal.stft on the reflect-padded signal, full mapping matrix, float64."""
    pad = cfg.n_fft // 2
    x = np.pad(audio.astype(np.float64), ((0, 0), (pad, pad)), mode="reflect")
    win = signal.get_window("hann", cfg.win_length)  # periodic
    _, _, z = signal.stft(
        x, fs=cfg.sample_rate, window=win, nperseg=cfg.n_fft, noverlap=cfg.n_fft - cfg.hop_length,
        boundary=None, padded=False, return_onesided=True,
    )
    z = z * win.sum()  # undo scipy's 'spectrum' scaling
    z = np.moveaxis(z, -1, -2)  # (4, T, K)
    fmap = frequency_map(cfg)
    power = np.einsum("ctk,fk->ctf", np.abs(z) ** 2, fmap)
    logspec = 10 * np.log10(np.maximum(power, cfg.power_floor))
    iv = np.real(np.conj(z[:1]) * z[1:])
    iv /= np.sqrt((iv**2).sum(0, keepdims=True)) + cfg.iv_eps
    return np.concatenate([logspec, np.einsum("ctk,fk->ctf", iv, fmap)])


def _scenes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    seconds = 1.5
    speech = foa_plane_wave(speech_like(seconds, rng), 40, 10)
    speech += foa_plane_wave(speech_like(seconds, rng), -120, -30) * 0.5
    noise = 0.1 * rng.standard_normal((4, int(seconds * FS)))
    return {"speech": speech.astype(np.float32), "noise": noise.astype(np.float32)}


# An fp32 DFT-as-convolution (512-tap sums, fp32-rounded basis) resolves a bin only down to about
# 70 dB below its frame's strongest bin: below that, rounding of the strong bins' partial sums shows
# (measured: 1.3e-3 dB worst case on speech-like input, Rayleigh-deep noise bins). Bins within
# DYNAMIC_RANGE_DB of their frame's peak are held to 1e-3 dB (SIV: 1e-4); all bins to 1e-2.
DYNAMIC_RANGE_DB = 60.0


@pytest.mark.parametrize("content", ["speech", "noise"])
def test_torch_numpy_scipy_agree(content: str, rng: np.random.Generator) -> None:
    audio = _scenes(rng)[content]
    ref = scipy_linspeciv(audio, CFG)
    npy = linspeciv(audio, CFG)
    with torch.no_grad():
        tor = FOAFrontend(CFG).linspeciv(torch.from_numpy(audio)[None])[0].numpy()
    assert ref.shape == npy.shape == tor.shape == (7, 1 + audio.shape[1] // CFG.hop_length, 200)
    in_range = ref[:4] >= ref[:4].max(axis=-1, keepdims=True) - DYNAMIC_RANGE_DB
    assert in_range.mean() > 0.99
    assert np.abs(npy - ref).max() <= 1e-4  # numpy reference: float64 throughout
    err_db = np.abs(tor[:4] - ref[:4])
    assert err_db[in_range].max() <= 1e-3
    assert err_db.max() <= 1e-2
    err_iv = np.abs(tor[4:] - ref[4:])  # unit intensity vectors: direction of the W-weighted bin
    assert err_iv[:, in_range[0]].max() <= 1e-4
    assert err_iv.max() <= 1e-2


def test_standardization_is_applied_per_channel_and_bin(rng: np.random.Generator) -> None:
    audio = _scenes(rng)["noise"]
    mean = rng.standard_normal((7, 200)).astype(np.float32)
    std = rng.uniform(0.5, 2.0, (7, 200)).astype(np.float32)
    raw = linspeciv(audio, CFG)
    std_np = extract_features(audio, CFG, mean, std)
    np.testing.assert_allclose(std_np * std[:, None] + mean[:, None], raw, atol=1e-4)
    fe = FOAFrontend(CFG)
    fe.set_statistics(mean, std)
    with torch.no_grad():
        got = fe(torch.from_numpy(audio)[None])[0].numpy()
        raw_torch = fe.linspeciv(torch.from_numpy(audio)[None])[0].numpy()
    np.testing.assert_allclose(got, standardize(raw_torch, mean, std), atol=1e-5)


@pytest.mark.parametrize("azimuth, elevation", [(0, 0), (90, 0), (-135, 20), (30, 60), (170, -60), (-60, -45)])
def test_plane_wave_intensity_points_to_source(azimuth: float, elevation: float, rng: np.random.Generator) -> None:
    audio = foa_plane_wave(speech_like(1.0, rng), azimuth, elevation).astype(np.float32)
    feats = linspeciv(audio, CFG)
    power = 10 ** (feats[0] / 10)  # weight bins by W energy
    y, z, x = (np.sum(feats[4 + i] * power) for i in range(3))
    est_az = np.degrees(np.arctan2(y, x))
    est_el = np.degrees(np.arctan2(z, np.hypot(x, y)))
    a, e = np.radians([azimuth, elevation])
    ea, ee = np.radians([est_az, est_el])
    angle = np.degrees(np.arccos(np.clip(np.sin(e) * np.sin(ee) + np.cos(e) * np.cos(ee) * np.cos(a - ea), -1, 1)))
    assert angle <= 2.0, (est_az, est_el)


def test_fuma_input_matches_acn(rng: np.random.Generator) -> None:
    acn = foa_plane_wave(speech_like(0.5, rng), 50, 20)
    w, y, z, x = acn
    fuma = np.stack([w / np.sqrt(2), x, y, z]).astype(np.float32)
    got = linspeciv(fuma, FeatureConfig(channel_order="fuma"))
    np.testing.assert_allclose(got, linspeciv(acn.astype(np.float32), CFG), atol=1e-3)


def test_uncompressed_bins(rng: np.random.Generator) -> None:
    cfg = FeatureConfig(compress_high_freq=False)
    audio = _scenes(rng)["noise"][:, :4800]
    with torch.no_grad():
        tor = FOAFrontend(cfg).linspeciv(torch.from_numpy(audio)[None])[0].numpy()
    ref = scipy_linspeciv(audio, cfg)
    assert tor.shape[-1] == 256
    assert np.abs(tor[:4] - ref[:4]).max() <= 1e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_features_stay_fp32_under_autocast(dtype: torch.dtype) -> None:
    """Mixed-precision callers (torch autocast) get the FP32 features, as the FP16 artifacts do. In FP16
    the intensity vector's norm, a sum of squared |X|^2-sized products, passes 65504 for any tone above
    about -40 dBFS; on CUDA that made the bundled model's outputs inf/NaN."""
    fe = FOAFrontend(FeatureConfig()).eval()
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(FS) / FS)
    audio = torch.from_numpy(np.stack([tone, 0.5 * tone, 0.5 * tone, 0.5 * tone])[None].astype(np.float32))
    spec = torch.nn.functional.conv1d(audio.reshape(-1, 1, FS), fe.basis, stride=fe.cfg.hop_length)
    assert float(spec.square().amax()) ** 2 > 65504  # the squares that overflowed
    with torch.no_grad():
        reference = fe(audio)
        with torch.autocast("cpu", dtype=dtype):
            mixed = fe(audio)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    torch.testing.assert_close(mixed, reference, rtol=0, atol=0)
