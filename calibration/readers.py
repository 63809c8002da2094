"""Calibration data for INT8: fixed-length FOA segments, batched for ONNX Runtime's calibrators.

Two sources: a folder of FOA WAVs of any length (cut into segments) and generated scenes
(glfer_edge.data.synth) scaled to random peak levels, so the calibration ranges cover quiet and
loud input. Both are deterministic for a seed and can be rewound and sliced (``set_range``): the
calibration reads one batch at a time instead of holding every activation in memory.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from onnxruntime.quantization import CalibrationDataReader

from glfer_edge import metadata as md
from glfer_edge.audio import AUDIO_SUFFIXES, audio_files
from glfer_edge.config import SELDConfig
from glfer_edge.errors import InputError

DEFAULT_LEVELS_DBFS = (-50.0, -3.0)  # peak level range of generated calibration scenes
DEFAULT_BATCH = 4  # segments per calibration batch: bounds the activations held in memory


def dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else float("-inf")


class SegmentReader(CalibrationDataReader):
    """Yields ``{'audio': (B, 4, N) float32}`` batches of segments 0..n-1 in order; subclasses load segment i."""

    def __init__(self, config: SELDConfig, n_segments: int, batch_size: int = DEFAULT_BATCH) -> None:
        if n_segments < 1:
            raise InputError(f"need at least one calibration segment, got {n_segments}")
        if batch_size < 1:
            raise InputError(f"calibration batch size must be >= 1, got {batch_size}")
        self.config = config
        self.n_segments = n_segments
        self.batch_size = batch_size
        self._batches = [range(i, min(i + batch_size, n_segments)) for i in range(0, n_segments, batch_size)]
        self.levels_seen: dict[int, float] = {}  # segment -> RMS dBFS, filled while the calibrator reads
        self.set_range(0, len(self._batches))

    @abc.abstractmethod
    def segment(self, index: int) -> np.ndarray:
        """Segment ``index`` as (4, segment_samples) float32."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance for the artifact's calibration metadata."""

    # CalibrationDataReader protocol ----------------------------------------------------------
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._stop:
            return None
        batch = np.stack([self.segment(i) for i in self._batches[self._next]])
        self.levels_seen.update((i, dbfs(x)) for i, x in zip(self._batches[self._next], batch))
        self._next += 1
        return {md.INPUT_NAME: batch}

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict (and rewind) iteration to batches [start_index, end_index)."""
        self._next, self._stop = start_index, min(end_index, len(self._batches))

    def rewind(self) -> None:
        self.set_range(0, len(self._batches))

    # statistics -------------------------------------------------------------------------------
    def level_stats(self) -> dict[str, float]:
        """RMS of the segments read so far and of the quietest / loudest one, in dBFS."""
        levels = list(self.levels_seen.values())
        if not levels:
            raise ValueError("no segment has been read yet; run the calibration first")
        power = np.mean([10 ** (lv / 10) if np.isfinite(lv) else 0.0 for lv in levels])
        return {
            "rms_dbfs": 10 * math.log10(power) if power > 0 else float("-inf"),
            "min_segment_rms_dbfs": float(min(levels)),
            "max_segment_rms_dbfs": float(max(levels)),
        }


class SynthReader(SegmentReader):
    """Generated scenes (one per segment, seed-deterministic), each scaled to a random peak level."""

    def __init__(
        self,
        config: SELDConfig,
        n_segments: int,
        seed: int = 0,
        levels_dbfs: tuple[float, float] = DEFAULT_LEVELS_DBFS,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        from glfer_edge.data.sources import SOURCE_CLASSES
        from glfer_edge.data.synth import SceneConfig

        super().__init__(config, n_segments, batch_size)
        if not levels_dbfs[0] <= levels_dbfs[1] <= 0:
            raise InputError(f"calibration levels {levels_dbfs} must be (low, high) dBFS with high <= 0")
        classes = config.class_names if set(config.class_names) <= set(SOURCE_CLASSES) else None
        self.scene_config = SceneConfig(
            duration_s=config.segment_seconds, sample_rate=config.features.sample_rate,
            **({"class_names": classes} if classes else {}),
        )
        self.seed = seed
        self.levels_dbfs = levels_dbfs

    def scene(self, index: int):
        from glfer_edge.data.synth import generate_scene

        return generate_scene(self.scene_config, self.seed, index)

    def segment(self, index: int) -> np.ndarray:
        audio = self.scene(index).audio
        level = np.random.default_rng([self.seed, index, 1]).uniform(*self.levels_dbfs)
        peak = max(float(np.abs(audio).max()), 1e-12)
        return _fit(audio * (10 ** (level / 20) / peak), self.config.segment_samples)

    def describe(self) -> dict[str, Any]:
        return {
            "source": "synth", "segments": self.n_segments, "seed": self.seed,
            "level_range_dbfs_peak": list(self.levels_dbfs),
        }


class FolderReader(SegmentReader):
    """FOA recordings (WAV/FLAC, 4 channels, the model's sample rate) cut into consecutive segments.

    A trailing part of at least half a segment is kept, zero-padded. With ``n_segments`` smaller
    than what the folder holds, a seed-deterministic subset is drawn.
    """

    def __init__(
        self, folder: str | Path, config: SELDConfig, n_segments: int | None = None, seed: int = 0, batch_size: int = DEFAULT_BATCH
    ) -> None:
        self.folder = Path(folder)
        self.seed = seed
        index = _index_folder(self.folder, config)
        if n_segments is not None and n_segments < len(index):
            picked = np.random.default_rng(seed).choice(len(index), size=n_segments, replace=False)
            index = [index[i] for i in sorted(picked)]
        self.index = index
        super().__init__(config, len(index), batch_size)

    def segment(self, index: int) -> np.ndarray:
        path, start = self.index[index]
        n = self.config.segment_samples
        audio, _ = sf.read(str(path), start=start, frames=n, dtype="float32", always_2d=True)
        return _fit(audio.T, n)

    def describe(self) -> dict[str, Any]:
        files = sorted({str(p.relative_to(self.folder)) for p, _ in self.index})
        return {"source": f"folder:{self.folder.name}", "segments": self.n_segments, "seed": self.seed, "files": len(files)}


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """(4, m) -> (4, n) float32, zero-padded or cut."""
    out = np.zeros((audio.shape[0], n), dtype=np.float32)
    m = min(n, audio.shape[1])
    out[:, :m] = audio[:, :m]
    return out


def _index_folder(folder: Path, config: SELDConfig) -> list[tuple[Path, int]]:
    if not folder.is_dir():
        raise InputError(f"calibration folder {folder} does not exist; pass a folder of 4-channel FOA WAV files")
    files = audio_files(folder)
    if not files:
        raise InputError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}; pass a folder of 4-channel FOA recordings")
    n = config.segment_samples
    index = []
    for path in files:
        try:
            info = sf.info(str(path))
        except RuntimeError as exc:
            raise InputError(f"cannot read {path} ({exc}); remove it from the calibration folder") from None
        if info.channels != 4 or info.samplerate != config.features.sample_rate:
            raise InputError(
                f"{path} has {info.channels} channels at {info.samplerate} Hz; calibration needs 4-channel FOA "
                f"at {config.features.sample_rate} Hz (resample or remove it)"
            )
        starts = list(range(0, info.frames - n + 1, n))
        tail = info.frames - (starts[-1] + n if starts else 0)
        if tail >= n // 2 or not starts:
            starts.append(starts[-1] + n if starts else 0)
        index += [(path, s) for s in starts]
    return index
