"""Recordings of any length -> model segments -> one output track for the whole recording.

Segments advance by the audio span their output frames cover (``output_frames`` x 16 feature hops;
exactly the segment length for every preset, e.g. 8 s = 40 frames of 0.2 s), so output frames tile
the recording without gaps or double frames. The last partial segment is zero-padded to a full
segment and the output frames that start at or after the end of the audio are dropped; frames
near the end of a padded segment therefore see silence as their right context.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from glfer_edge.channel_swap import ChannelSwap, tta_transforms
from glfer_edge.config import SELDConfig
from glfer_edge.errors import InputError
from glfer_edge.gate import frame_gate_features
from glfer_edge.runtime.base import FOA_CHANNELS, Outputs, SELDOutput, as_float32, output_frame_times
from glfer_edge.runtime.seld import SELDRuntime

__all__ = [
    "segment_hop_samples", "segment_starts", "iter_segment_batches", "batch_plan", "pad_batch", "infer_batches", "infer_views",
    "infer_long", "DEFAULT_BATCH",
]

DEFAULT_BATCH = 8


def segment_hop_samples(config: SELDConfig) -> int:
    """Samples between consecutive segment starts: the span covered by one segment's output frames."""
    return config.output_frames * config.model.time_downsample * config.features.hop_length


def segment_starts(n_samples: int, config: SELDConfig) -> np.ndarray:
    """Start sample of every segment needed to cover ``n_samples`` (at least one)."""
    hop = segment_hop_samples(config)
    return np.arange(max(1, -(-n_samples // hop)), dtype=np.int64) * hop


def iter_segment_batches(
    audio: np.ndarray, config: SELDConfig, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (start samples (b,), zero-padded segments (b, 4, segment_samples) float32)."""
    n = audio.shape[-1]
    seg = config.segment_samples
    starts = segment_starts(n, config)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        batch = np.zeros((len(chunk), audio.shape[0], seg), dtype=np.float32)
        for j, s in enumerate(chunk):
            part = audio[:, s : s + seg]
            batch[j, :, : part.shape[-1]] = part
        yield chunk, batch


def batch_plan(runtime: SELDRuntime, requested: int | None = None) -> tuple[int, int]:
    """(most segments per call, fewest segments per call) within the runtime's batch range.

    A call with fewer segments than the model's minimum (a fixed-batch engine) gets silent segments
    appended, whose outputs are dropped; no call is padded beyond that minimum, so a stream's one new
    window costs one segment of compute, not a batch of them.
    """
    lo, hi = runtime.batch_range
    size = requested or DEFAULT_BATCH
    size = max(1, lo, size if hi is None else min(size, hi))
    return size, max(1, lo)


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """Append silent segments up to ``size`` (no copy when already that large)."""
    if batch.shape[0] >= size:
        return batch
    return np.concatenate([batch, np.zeros((size - batch.shape[0],) + batch.shape[1:], np.float32)])


def infer_batches(runtime: SELDRuntime, batch: np.ndarray, size: int, padded: int) -> Outputs:
    """Outputs of segments (n, 4, segment) in calls of at most ``size`` rows, each padded with silent
    segments to at least ``padded`` rows (the model's minimum batch); exactly n clips come back."""
    parts = []
    for i in range(0, len(batch), size):
        part = batch[i : i + size]
        out = runtime.infer(pad_batch(part, padded))
        parts.append(Outputs(out.sed, out.doa, out.distance).rows(0, len(part)))
    return Outputs.concat(parts)


def infer_views(
    runtime: SELDRuntime, batch: np.ndarray, transforms: tuple[ChannelSwap, ...], size: int, padded: int,
) -> Outputs:
    """SED (n, T', C), DOA (n, T', C, 3) and distance (n, T', C; None without the distance head) of
    segments (n, 4, segment), averaged over their ``transforms`` views (test-time augmentation; DOAs
    mapped back first; a channel swap leaves distance unchanged), in calls of at most
    ``size`` rows, padded to at least ``padded`` (the model's minimum batch). The views of a segment
    share calls: 8 rows hold 2 x 4 views."""
    order, n = runtime.config.features.channel_order, len(batch)
    views = [batch if t.is_identity else t.apply_audio(batch, order) for t in transforms]
    stacked = views[0] if len(views) == 1 else np.concatenate(views)
    out = infer_batches(runtime, stacked, size, padded)  # transform-major: view i is rows i*n .. (i+1)*n
    if len(transforms) == 1 and transforms[0].is_identity:
        return out
    sed_v, doa_v, dist_v = out
    k = len(transforms)
    sed = sed_v.reshape(k, n, *sed_v.shape[1:]).mean(axis=0)
    doa = np.mean([t.inverse.apply_doa(doa_v[i * n : (i + 1) * n]) for i, t in enumerate(transforms)], axis=0)
    distance = None if dist_v is None else dist_v.reshape(k, n, *dist_v.shape[1:]).mean(axis=0)
    return Outputs(sed, doa, distance)


def infer_long(
    runtime: SELDRuntime, audio: np.ndarray, *, batch_size: int | None = None, progress: bool = False, tta: int = 1,
) -> SELDOutput:
    """Run a (4, N) recording at the model's sample rate; returns B = 1 with frame_times from its start.

    ``tta`` > 1: test-time augmentation over that many FOA channel swaps (1, 2, 4, 8 or 16; see
    ``glfer_edge.channel_swap`` and ``infer_views``): K times the inference, on every backend.
    The output carries the noise gate's inputs per frame (``diffuseness``, ``level_dbfs``; see
    ``glfer_edge.gate``), measured on the recording itself, not on the TTA views.
    """
    from tqdm import tqdm

    config = runtime.config
    audio = as_float32(audio, "recording")
    if audio.ndim != 2 or audio.shape[0] != FOA_CHANNELS:
        raise InputError(f"expected a (4, N) recording, got shape {audio.shape}; pass time last (audio.T if needed)")
    transforms = tta_transforms(tta)
    size, padded = batch_plan(runtime, batch_size)
    starts = segment_starts(audio.shape[-1], config)
    frames = config.output_frames
    sed = np.zeros((len(starts) * frames, config.model.num_classes), dtype=np.float32)
    doa = np.zeros((len(starts) * frames, config.model.num_classes, 3), dtype=np.float32)
    distance = np.zeros_like(sed) if config.model.distance else None
    with tqdm(total=len(starts), unit="segment", desc="inference", disable=not progress, leave=False) as bar:
        done = 0
        for chunk, batch in iter_segment_batches(audio, config, max(1, size // tta)):
            k = len(chunk)
            out = infer_views(runtime, batch, transforms, size, padded)
            sed[done * frames : (done + k) * frames] = out.sed.reshape(-1, sed.shape[1])
            doa[done * frames : (done + k) * frames] = out.doa.reshape(-1, *doa.shape[1:])
            if distance is not None:
                distance[done * frames : (done + k) * frames] = out.distance.reshape(-1, sed.shape[1])
            done += k
            bar.update(k)
    times = output_frame_times(config, len(sed))  # segments tile: frame k of the file starts at k x hop
    keep = times < audio.shape[-1] / config.features.sample_rate
    diffuseness, level = frame_gate_features(audio, config)  # one per kept frame: ceil(N / frame samples)
    return SELDOutput(sed[keep][None], doa[keep][None], times[keep], config.class_names, config, tta,
                      diffuseness[None], level[None], None if distance is None else distance[keep][None])
