"""Loading and checking FOA recordings for inference.

Any format libsndfile reads (WAV int16/int24/int32/float, FLAC, ...) is decoded to float32 in
[-1, 1). A recording must have 4 channels (first-order ambisonics, ACN/SN3D W, Y, Z, X as DCASE),
finite samples and at least :data:`MIN_SECONDS` of audio: one 100-ms DCASE label frame, the
shortest span that yields a scored output. Another sample rate is resampled to the model's with a
polyphase filter (``scipy.signal.resample_poly``) unless the caller refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glfer_edge.config import LABEL_HOP_SECONDS
from glfer_edge.errors import InputError

__all__ = ["Recording", "load_audio", "audio_files", "check_audio", "resample", "MIN_SECONDS", "FOA_CHANNELS", "AUDIO_SUFFIXES"]

FOA_CHANNELS = 4
MIN_SECONDS = LABEL_HOP_SECONDS
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")  # what soundfile decodes; batch runs take these


@dataclass(frozen=True)
class Recording:
    audio: np.ndarray  # (4, N) float32 at ``sample_rate``
    sample_rate: int
    source_rate: int  # rate of the file before resampling
    path: Path | None = None

    @property
    def resampled(self) -> bool:
        return self.source_rate != self.sample_rate

    @property
    def duration(self) -> float:
        return self.audio.shape[1] / self.sample_rate


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliasing FIR, Kaiser window), float32 out."""
    from scipy.signal import resample_poly

    g = math.gcd(int(source_rate), int(target_rate))
    return resample_poly(audio, target_rate // g, source_rate // g, axis=-1).astype(np.float32)


def check_audio(audio: np.ndarray, sample_rate: int, name: str = "audio") -> np.ndarray:
    """Validate a (4, N) recording; returns it as C-contiguous float32. InputError names the fix."""
    if audio.ndim != 2 or audio.shape[0] != FOA_CHANNELS:
        raise InputError(
            f"{name} has shape {audio.shape}; expected (4, N): 4-channel first-order ambisonics "
            "(ACN/SN3D W, Y, Z, X, as the DCASE FOA format)"
        )
    n = audio.shape[1]
    if n < MIN_SECONDS * sample_rate:
        what = "is empty" if n == 0 else f"is {n / sample_rate * 1000:.0f} ms long"
        raise InputError(f"{name} {what}; need at least {MIN_SECONDS * 1000:.0f} ms (one DCASE label frame)")
    finite = np.isfinite(audio)
    if not finite.all():
        first = int(np.argmin(finite.all(axis=0)))
        raise InputError(
            f"{name} has {int(finite.size - finite.sum())} NaN/Inf samples (first at {first / sample_rate:.3f} s); "
            "repair or re-export the recording"
        )
    return np.ascontiguousarray(audio, dtype=np.float32)


def audio_files(folder: str | Path) -> list[Path]:
    """The audio files of a folder and its subfolders (``AUDIO_SUFFIXES``), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def load_audio(path: str | Path, sample_rate: int, *, allow_resample: bool = True) -> Recording:
    """Read a FOA file as float32 (4, N) at ``sample_rate``; every problem is an InputError."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} not found; check the path")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot decode {path} as audio ({str(exc).strip()[:120]}); pass a WAV or FLAC file") from None
    audio = data.T
    if audio.shape[0] != FOA_CHANNELS:
        raise InputError(
            f"{path} has {audio.shape[0]} channel(s); GLFER-Net needs 4-channel first-order ambisonics "
            "(ACN/SN3D W, Y, Z, X, as the DCASE FOA format)"
        )
    audio = check_audio(audio, rate, str(path))
    if rate != sample_rate:
        if not allow_resample:
            raise InputError(
                f"{path} is sampled at {rate} Hz and the model expects {sample_rate} Hz; "
                "drop --no-resample to resample it, or resample the file first"
            )
        audio = resample(audio, rate, sample_rate)
    return Recording(audio, sample_rate, int(rate), path)
