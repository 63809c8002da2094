"""Training segments of a DCASE-layout split: FOA audio (4, segment_samples) and 10-fps SED/DOA targets
(and, for a model with the distance head, 10-fps distance targets in metres).

Files of any length are cut into segments of ``segment_seconds`` on the 100-ms label grid, so the
audio and the label frames of a segment line up exactly:

* evaluation: contiguous segments from the start of the file, the last one zero-padded (the
  predictions of a file are the concatenation of its segments);
* training: one segment per ``hop_seconds`` (default: the segment length, the paper's
  non-overlapping 8-s segments), each start moved by a random offset in [0, hop) that is redrawn
  every epoch (``set_epoch``), so over epochs the model sees every alignment of a long file.

Audio is read from disk per segment (soundfile, partial reads) and only labels are kept in memory,
unless ``in_memory`` holds every file's samples in RAM (float32, 1.4 GB per hour of FOA audio at
24 kHz): on a GPU the per-segment reads, not the training steps, bound an epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from glfer_edge.config import LABEL_HOP_SECONDS, SELDConfig
from glfer_edge.data.dcase import LabelRow, labels_to_distance, labels_to_targets, load_metadata
from glfer_edge.data.layout import DatasetLayout, get_layout, list_pairs
from glfer_edge.errors import InputError

__all__ = ["DatasetFile", "SELDDataset"]


@dataclass(frozen=True)
class DatasetFile:
    """One wav/csv pair of a split, indexed without its audio: its length, reference rows (for scoring) and
    10-fps SED/DOA targets (for the loss)."""

    wav: Path
    n_samples: int
    n_label_frames: int
    rows: tuple[LabelRow, ...]
    last_frame: int | None  # the CSV's largest frame index (the official scorer's file length)
    sed: np.ndarray  # (n_label_frames, C)
    doa: np.ndarray  # (n_label_frames, C, 3)
    distance: np.ndarray | None = None  # (n_label_frames, C) metres, 0 where inactive; None: no distance targets

    @property
    def name(self) -> str:
        return self.wav.stem


class SELDDataset(Dataset):
    """Segments of one split; item i -> (audio (4, S) float32, sed (L, C), doa (L, C, 3)), L label frames,
    plus distance (L, C) in metres when ``config.model.distance`` (the layout's distance column)."""

    def __init__(
        self,
        root: str | Path,
        config: SELDConfig,
        split: str | list[str] | None,
        *,
        layout: str | DatasetLayout = "synth",
        train: bool = False,
        hop_seconds: float | None = None,
        seed: int = 0,
        in_memory: bool = False,
    ) -> None:
        self.config = config
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        self.train = train
        self.seed = seed
        self.distance = config.model.distance
        if self.distance and self.layout.distance_scale is None:
            raise InputError(f"dataset layout '{self.layout.name}' has no source distances; train a model without "
                             "--distance on it, or use a layout with distances (synth, starss23)")
        fs = config.features.sample_rate
        self.label_hop = int(round(LABEL_HOP_SECONDS * fs))
        self.segment_labels = int(round(config.segment_seconds / LABEL_HOP_SECONDS))
        if self.segment_labels * self.label_hop != config.segment_samples or self.segment_labels != 2 * config.output_frames:
            raise InputError(
                f"segment_seconds={config.segment_seconds} is not a whole number of 0.2-s output frames "
                "(two 100-ms label frames each); use e.g. 8.0"
            )
        hop = config.segment_seconds if hop_seconds is None else hop_seconds
        self.hop_labels = int(round(hop / LABEL_HOP_SECONDS))
        if self.hop_labels < 1:
            raise InputError(f"segment hop {hop} s is shorter than one 100-ms label frame; use a hop of at least 0.1 s")
        self.recordings = [self._load(wav, csv) for wav, csv in list_pairs(root, split, self.layout)]
        # (4, n) samples of each recording, read once; None: read per segment from disk
        self._samples = [_read(r.wav).T.copy() for r in self.recordings] if in_memory else None
        self._nominal = [(i, s) for i, r in enumerate(self.recordings) for s in self._starts(r)]
        self.segments = list(self._nominal)  # (recording index, start label frame)

    def _load(self, wav: Path, csv: Path) -> DatasetFile:
        try:
            info = sf.info(str(wav))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise InputError(f"cannot read {wav} ({exc}); replace the file or remove it from the split") from None
        fs = self.config.features.sample_rate
        if info.samplerate != fs or info.channels != 4:
            raise InputError(
                f"{wav} has {info.channels} channels at {info.samplerate} Hz; training needs 4-channel FOA at {fs} Hz "
                "(resample/convert the dataset first)"
            )
        meta = load_metadata(csv, self.layout.edition)
        n_labels = max(1, math.ceil(info.frames / self.label_hop))
        sed, doa = labels_to_targets(meta.rows, n_labels, self.config.model.num_classes)
        distance = None
        if self.distance:
            try:
                distance = labels_to_distance(meta.rows, n_labels, self.config.model.num_classes, self.layout.distance_scale)
            except ValueError as exc:
                raise InputError(f"{csv}: {exc}; a distance model needs a distance in every row "
                                 "(frame,class,track,azimuth,elevation,distance)") from None
        return DatasetFile(wav, info.frames, n_labels, meta.rows, meta.last_frame, sed, doa, distance)

    def _starts(self, rec: DatasetFile) -> range:
        seg = self.segment_labels
        if not self.train:
            return range(0, rec.n_label_frames, seg)
        return range(0, max(rec.n_label_frames - seg, 0) + 1, self.hop_labels)

    def set_epoch(self, epoch: int) -> None:
        """Training: move every segment start by a random offset in [0, hop), drawn from (seed, epoch)."""
        if not self.train:
            return
        rng = np.random.default_rng([self.seed, epoch])
        jitter = rng.integers(0, self.hop_labels, size=len(self._nominal))
        self.segments = [
            (i, int(min(s + j, max(self.recordings[i].n_label_frames - self.segment_labels, 0))))
            for (i, s), j in zip(self._nominal, jitter)
        ]

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        rec_index, start = self.segments[index]
        rec = self.recordings[rec_index]
        audio = self.read_audio(rec_index, start * self.label_hop, self.config.segment_samples)
        sed = np.zeros((self.segment_labels,) + rec.sed.shape[1:], dtype=np.float32)
        doa = np.zeros((self.segment_labels,) + rec.doa.shape[1:], dtype=np.float32)
        stop = min(start + self.segment_labels, rec.n_label_frames)
        sed[: stop - start], doa[: stop - start] = rec.sed[start:stop], rec.doa[start:stop]
        if rec.distance is None:
            return torch.from_numpy(audio), torch.from_numpy(sed), torch.from_numpy(doa)
        distance = np.zeros((self.segment_labels,) + rec.distance.shape[1:], dtype=np.float32)
        distance[: stop - start] = rec.distance[start:stop]
        return torch.from_numpy(audio), torch.from_numpy(sed), torch.from_numpy(doa), torch.from_numpy(distance)

    def read_audio(self, index: int, start: int, n_samples: int) -> np.ndarray:
        """Samples [start, start + n_samples) of recording ``index`` as (4, n_samples) float32, zero-padded past its end."""
        rec = self.recordings[index]
        out = np.zeros((4, n_samples), dtype=np.float32)
        stop = min(start + n_samples, rec.n_samples)
        if stop > start:
            if self._samples is not None:
                out[:, : stop - start] = self._samples[index][:, start:stop]
            else:
                out[:, : stop - start] = _read(rec.wav, start, stop).T
        return out


def _read(wav: Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames [start, stop) of a wav as (n, channels) float32."""
    data, _ = sf.read(str(wav), start=start, stop=stop, dtype="float32", always_2d=True)
    return data
