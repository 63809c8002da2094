"""What every backend shares: the output record, the backend interface and input validation.

A backend runs one fixed-length segment (``config.segment_samples`` samples of 4-channel FOA at the
model's sample rate) for a batch of B clips and returns :class:`Outputs`: ``sed`` (B, T', C)
probabilities, ``doa`` (B, T', C, 3) Cartesian vectors and, for models with ``ModelConfig.distance``,
``distance`` (B, T', C) in metres. Longer recordings go through
:mod:`glfer_edge.runtime.segments` (files) or :class:`~glfer_edge.runtime.streaming.StreamingSELD`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from glfer_edge.config import SELDConfig
from glfer_edge.errors import InputError

__all__ = ["SELDOutput", "Outputs", "Backend", "output_frame_times", "validate_audio", "FOA_CHANNELS"]

FOA_CHANNELS = 4  # first-order ambisonics, ACN/SN3D W, Y, Z, X


class Outputs(NamedTuple):
    """One backend call's arrays, float32; ``distance`` None for models without the distance head."""

    sed: np.ndarray  # (B, T', C)
    doa: np.ndarray  # (B, T', C, 3)
    distance: np.ndarray | None = None  # (B, T', C) metres

    def rows(self, start: int, stop: int) -> "Outputs":
        """Clips ``start:stop`` of every array (views)."""
        return Outputs(*(None if a is None else a[start:stop] for a in self))

    @staticmethod
    def concat(parts: "list[Outputs]") -> "Outputs":
        """The parts' clips one after another (the part itself, uncopied, when there is one)."""
        if len(parts) == 1:
            return parts[0]
        return Outputs(*(None if arrays[0] is None else np.concatenate(arrays) for arrays in zip(*parts)))


@dataclass(frozen=True)
class SELDOutput:
    """Network outputs for B clips.

    ``frame_times[j]`` is the start of output frame j in seconds, relative to the start of the audio
    that was passed (the segment for :meth:`SELDRuntime.infer`, the file or stream otherwise); each
    frame lasts ``config.output_hop_seconds`` (0.2 s: two 100-ms DCASE label frames).
    """

    sed: np.ndarray  # (B, T', C) float32 probabilities
    doa: np.ndarray  # (B, T', C, 3) float32 Cartesian DOA per class (not unit length)
    frame_times: np.ndarray  # (T',) float64 seconds
    class_names: tuple[str, ...]
    config: SELDConfig
    views: int = 1  # test-time-augmentation views averaged into these outputs; picks config.decision(views)
    # The noise gate's inputs per output frame, computed from the audio (glfer_edge.gate): FOA diffuseness
    # in [0, 1] and W level in dBFS, each (B, T') float32. None where no audio span was measured (one
    # segment from SELDRuntime.infer): detect_events then decides without the gate.
    diffuseness: np.ndarray | None = None
    level_dbfs: np.ndarray | None = None
    # (B, T', C) float32 source distance in metres per class track; None for models without distance.
    distance: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return int(self.sed.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.sed.shape[1])


def output_frame_times(config: SELDConfig, n_frames: int | None = None, start: float = 0.0) -> np.ndarray:
    """Start times (s) of output frames; computed from integer frame indices so they never drift."""
    n = config.output_frames if n_frames is None else n_frames
    return start + np.arange(n, dtype=np.float64) * config.output_hop_seconds


def as_float32(audio: object, what: str = "audio") -> np.ndarray:
    """The one dtype rule of every entry point (``infer``, ``infer_long``, ``StreamingSELD.push``, Triton):
    float arrays of any width are converted to float32 (soundfile reads float64); integer PCM, whose
    scale is ambiguous, is refused with the fix."""
    if not isinstance(audio, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(audio).__name__}; pass np.asarray(x, np.float32)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise InputError(
            f"{what} dtype is {audio.dtype}; pass float samples in [-1, 1] (soundfile.read(path, dtype='float32'), "
            "or divide integer PCM by its full scale)"
        )
    return audio if audio.dtype == np.float32 else audio.astype(np.float32)


def validate_audio(audio: object, config: SELDConfig, batch_range: tuple[int, int | None]) -> np.ndarray:
    """Check one segment batch and return it as a C-contiguous float32 (B, 4, N) array.

    Raises InputError naming the problem and the fix for a wrong type, dtype, rank, channel count,
    length, batch size or non-finite samples. A (4, N) array is treated as a batch of one.
    """
    audio = as_float32(audio)
    if audio.ndim == 2:
        audio = audio[None]
    if audio.ndim != 3:
        raise InputError(
            f"audio has shape {audio.shape}; expected (4, N) or (B, 4, N) with N = {config.segment_samples}"
        )
    b, channels, n = audio.shape
    if channels != FOA_CHANNELS:
        hint = " (time first? pass audio.T)" if n == FOA_CHANNELS else ""
        raise InputError(
            f"audio has {channels} channels on axis -2{hint}; GLFER-Net needs 4-channel FOA (ACN/SN3D W, Y, Z, X)"
        )
    if n != config.segment_samples:
        raise InputError(
            f"audio has {n} samples; this model takes segments of exactly {config.segment_samples} "
            f"({config.segment_seconds:g} s at {config.features.sample_rate} Hz): split longer audio with "
            "glfer_edge.runtime.segments or StreamingSELD, zero-pad shorter audio"
        )
    lo, hi = batch_range
    if b < lo or (hi is not None and b > hi):
        raise InputError(
            f"batch of {b} segments is outside this model's batch range {lo}..{hi}; split or pad the batch"
        )
    if not np.isfinite(audio).all():
        bad = int(np.size(audio) - np.isfinite(audio).sum())
        raise InputError(
            f"audio has {bad} NaN/Inf samples; clean or replace them (e.g. np.nan_to_num) before inference"
        )
    return np.ascontiguousarray(audio)


class Backend(abc.ABC):
    """One loaded artifact. Subclasses set the attributes in ``__init__`` and implement ``run``/``close``.

    ``run`` receives validated float32 (B, 4, N) input and is never called concurrently
    (:class:`SELDRuntime` serializes calls with its lock).
    """

    name: str  # 'torch' | 'onnxruntime' | 'tensorrt'
    config: SELDConfig
    precision: str  # 'fp32' | 'fp16' | 'int8'
    batch_range: tuple[int, int | None]  # max None: unbounded
    description: str  # one line for logs: file, device, providers

    @abc.abstractmethod
    def run(self, audio: np.ndarray) -> Outputs:
        """(B, 4, N) float32 -> sed (B, T', C), doa (B, T', C, 3)[, distance (B, T', C)] float32 numpy arrays."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free the backend's resources; must be safe to call twice and must not raise."""
