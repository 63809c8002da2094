"""Streaming SELD: audio chunks of any size in, frame outputs with absolute timestamps out.

The stream keeps a window buffer of exactly one model segment. Once it is full the window is
inferred, then it slides by ``hop_seconds`` (a multiple of the 0.2-s output hop, at most the
segment). Each output frame is emitted exactly once: the first window emits all its frames, every
later window only the frames of its newest hop region (the frames that no earlier window covered
to their end). With hop < segment the network sees ``segment - hop`` seconds of past context
for every emitted frame; emitted frames never see future context beyond their window.

Latency (after the first ``segment_seconds`` of audio): a frame is emitted when the window that
ends at or after the frame's end is inferred, i.e. at most ``hop_seconds + compute time`` after
the frame ends; the first output appears after one segment + compute.

Timestamps are computed from integer frame counters (``start_time + k x output_hop``), so they
do not drift however long the stream runs. Windows completed by one :meth:`push` are inferred in
batches (up to the runtime's batch range). :meth:`flush` ends the stream: it zero-pads the audio
received since the last window and emits the remaining frames that start before the stream end.
``tta`` averages each window over that many FOA channel swaps (``infer_views``), at K times the compute.
Every emitted frame carries the noise gate's inputs (``diffuseness``, ``level_dbfs``), measured on that
frame's own samples (``glfer_edge.gate``): the same values as ``infer_long`` on the whole recording.
"""

from __future__ import annotations

import numpy as np

from glfer_edge.channel_swap import tta_transforms
from glfer_edge.config import SELDConfig
from glfer_edge.errors import InputError
from glfer_edge.gate import frame_gate_features, frame_samples
from glfer_edge.runtime.base import FOA_CHANNELS, Outputs, SELDOutput, as_float32
from glfer_edge.runtime.segments import batch_plan, infer_views
from glfer_edge.runtime.seld import SELDRuntime

__all__ = ["StreamingSELD", "hop_frames"]


def hop_frames(config: SELDConfig, hop_seconds: float | None, name: str = "hop_seconds") -> int:
    """Output frames per window hop (None: the whole segment); InputError, naming ``name``, unless the hop is a
    multiple of the output hop between one output frame and the segment."""
    frames = config.output_frames
    hop = frames * config.output_hop_seconds if hop_seconds is None else float(hop_seconds)
    n = int(round(hop / config.output_hop_seconds))
    if abs(n * config.output_hop_seconds - hop) > 1e-6 or not 1 <= n <= frames:
        raise InputError(
            f"{name} {hop:g} must be a multiple of the {config.output_hop_seconds:g}-s output hop between "
            f"{config.output_hop_seconds:g} and {frames * config.output_hop_seconds:g} s"
        )
    return n


class StreamingSELD:
    """Sliding-window inference over a live FOA stream at the model's sample rate."""

    def __init__(
        self, runtime: SELDRuntime, hop_seconds: float | None = None, *, start_time: float = 0.0,
        batch_size: int | None = None, tta: int = 1,
    ) -> None:
        cfg = runtime.config
        self.runtime = runtime
        self.config = cfg
        self.start_time = float(start_time)
        self._frame_samples = frame_samples(cfg)
        self.hop_frames = hop_frames(cfg, hop_seconds)
        self.hop_samples = self.hop_frames * self._frame_samples
        self._transforms = tta_transforms(tta)
        self._batch, self._padded = batch_plan(runtime, batch_size)
        self._window = np.zeros((FOA_CHANNELS, cfg.segment_samples), dtype=np.float32)
        self._fill = 0  # valid samples in the window buffer
        self._windows = 0  # windows inferred so far
        self._emitted = 0  # frames emitted so far
        self._received = 0  # samples pushed so far
        self._closed = False

    @property
    def hop_seconds(self) -> float:
        return self.hop_frames * self.config.output_hop_seconds

    @property
    def frames_emitted(self) -> int:
        return self._emitted

    @property
    def samples_received(self) -> int:
        return self._received

    def push(self, chunk: np.ndarray) -> SELDOutput:
        """Add a float32 (4, n) chunk; returns the frames completed by it (possibly none)."""
        self._check_open()
        chunk = self._validate(chunk)
        self._received += chunk.shape[1]
        seg = self.config.segment_samples
        windows: list[np.ndarray] = []
        pos = 0
        while pos < chunk.shape[1]:
            take = min(seg - self._fill, chunk.shape[1] - pos)
            self._window[:, self._fill : self._fill + take] = chunk[:, pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == seg:
                windows.append(self._window.copy())
                self._slide()
        return self._infer(windows)

    def flush(self) -> SELDOutput:
        """End the stream: infer the zero-padded last window and emit the frames before the end."""
        self._check_open()
        self._closed = True
        total_frames = -(-self._received // self._frame_samples)
        if total_frames <= self._emitted:
            return self._infer([])
        self._window[:, self._fill :] = 0.0
        first = self._windows * self.hop_frames  # absolute index of the window's first frame
        out = self._run(self._window[None].copy())
        keep = slice(self._emitted - first, min(total_frames - first, self.config.output_frames))
        psi, level = frame_gate_features(self._window, self.config)
        distance = None if out.distance is None else out.distance[:, keep]
        return self._emit(out.sed[:, keep], out.doa[:, keep], psi[None, keep], level[None, keep], distance)

    def _slide(self) -> None:
        """Drop the oldest hop of the window buffer (the buffer never grows)."""
        seg, hop = self.config.segment_samples, self.hop_samples
        self._window[:, : seg - hop] = self._window[:, hop:]
        self._fill = seg - hop

    def _infer(self, windows: list[np.ndarray]) -> SELDOutput:
        frames, hop = self.config.output_frames, self.hop_frames
        seds, doas, dists, psis, levels = [], [], [], [], []
        per_call = max(1, self._batch // len(self._transforms))  # windows per call; each has tta views
        for i in range(0, len(windows), per_call):
            sed, doa, dist = self._run(np.stack(windows[i : i + per_call]))
            for b in range(sed.shape[0]):
                new = frames if self._windows == 0 else hop  # the first window has no predecessor
                seds.append(sed[b, frames - new :])
                doas.append(doa[b, frames - new :])
                if dist is not None:
                    dists.append(dist[b, frames - new :])
                psi, level = frame_gate_features(windows[i + b][:, (frames - new) * self._frame_samples :], self.config)
                psis.append(psi)
                levels.append(level)
                self._windows += 1
        if not seds:
            c = self.config.model.num_classes
            empty = np.zeros((1, 0), np.float32)
            distance = np.zeros((1, 0, c), np.float32) if self.config.model.distance else None
            return self._emit(np.zeros((1, 0, c), np.float32), np.zeros((1, 0, c, 3), np.float32), empty, empty,
                              distance)
        return self._emit(np.concatenate(seds)[None], np.concatenate(doas)[None],
                          np.concatenate(psis)[None], np.concatenate(levels)[None],
                          np.concatenate(dists)[None] if dists else None)

    def _run(self, batch: np.ndarray) -> Outputs:
        return infer_views(self.runtime, batch, self._transforms, self._batch, self._padded)

    def _emit(self, sed: np.ndarray, doa: np.ndarray, diffuseness: np.ndarray, level: np.ndarray,
              distance: np.ndarray | None) -> SELDOutput:
        n = sed.shape[1]
        times = self.start_time + (self._emitted + np.arange(n)) * self.config.output_hop_seconds
        self._emitted += n
        return SELDOutput(sed, doa, times, self.config.class_names, self.config, len(self._transforms),
                          diffuseness, level, distance)

    def _validate(self, chunk: object) -> np.ndarray:
        chunk = as_float32(chunk, "stream chunk")
        if chunk.ndim != 2 or chunk.shape[0] != FOA_CHANNELS:
            raise InputError(f"stream chunk has shape {chunk.shape}; expected (4, n) FOA samples (W, Y, Z, X)")
        if not np.isfinite(chunk).all():
            raise InputError("stream chunk has NaN/Inf samples; clean them before pushing")
        return chunk

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this stream was flushed; create a new StreamingSELD for a new stream")
