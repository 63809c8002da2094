"""Synthetic FOA scenes in DCASE layout: procedural sources, shoebox reverberation, diffuse noise.

A scene places up to ``max_polyphony`` overlapping events (one per track slot; never two of the
same class at once) from the 13 procedural classes of :mod:`glfer_edge.data.sources`. Each event
is a point source at (azimuth, elevation, distance) from the microphone, static or circling it in
azimuth at constant angular velocity. Its direct sound is FOA-encoded sample by sample (ACN/SN3D),
wall reflections come from an image-source model of a random shoebox room and the late tail is
diffuse decaying noise (:mod:`glfer_edge.data.room`); ``reverb=False`` keeps the direct sound only.
Diffuse ambient noise is added at a random SNR.

Labels: 100-ms frames; an event is active in frame k when it covers at least half of the frame,
which is the same as covering the frame centre 0.1 k + 0.05 s. The DOA of a frame is the source
direction at that centre; the track is the event's slot. Scene i of seed K draws everything from
``SeedSequence([K, i])``, so a scene does not depend on how many scenes are generated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq
from scipy.signal import fftconvolve

from glfer_edge._fileio import atomic_path
from glfer_edge.config import LABEL_HOP_SECONDS, SYNTH_CLASSES
from glfer_edge.data.dcase import LabelRow, write_metadata_csv
from glfer_edge.data.room import (
    ShoeboxRoom, diffuse_foa, early_reflections, late_tail, max_source_distance, plane_wave,
)
from glfer_edge.data.sources import SOURCE_CLASSES, synthesize
from glfer_edge.errors import InputError

__all__ = ["SceneConfig", "SceneEvent", "Scene", "generate_scene", "label_rows", "write_dataset", "plane_wave"]

# float32 WAV: events go down to -30 dBFS and their reverb tails decay 60 dB further, to about
# -90 dBFS, within ~10 dB of the 16-bit quantisation floor (about -101 dBFS); float32 stores the
# synthesized field as the network reads it, with no quantisation noise.
WAV_SUBTYPE = "FLOAT"
_BLOCK_S = 0.05  # moving sources: reflections recomputed every 50 ms (Hann crossfades)
_MIN_DISTANCE_M = 0.3


@dataclass(frozen=True)
class SceneConfig:
    """How synthetic scenes are drawn. Ranges are (low, high), sampled uniformly per scene/event."""

    duration_s: float = 8.0
    sample_rate: int = 24000
    class_names: tuple[str, ...] = SYNTH_CLASSES
    max_polyphony: int = 3
    event_duration_s: tuple[float, float] = (0.5, 4.0)
    level_dbfs: tuple[float, float] = (-30.0, -6.0)  # each event's direct sound (W), loudest 100-ms RMS
    snr_db: tuple[float, float] | None = (6.0, 30.0)  # ambient noise; None: no noise
    reverb: bool = True  # False: 'dry', direct sound only
    rt60_s: tuple[float, float] = (0.2, 0.8)
    room_dims_m: tuple[tuple[float, float], ...] = ((4.0, 10.0), (3.0, 8.0), (2.5, 4.0))
    max_reflection_order: int = 3
    distance_m: tuple[float, float] = (1.0, 3.0)
    elevation_deg: tuple[float, float] = (-60.0, 60.0)
    moving_prob: float = 0.3
    angular_speed_dps: tuple[float, float] = (10.0, 60.0)
    peak: float = 0.99  # the scene is scaled down (never clipped) to keep |sample| <= peak

    def __post_init__(self) -> None:
        unknown = [c for c in self.class_names if c not in SOURCE_CLASSES]
        if unknown or not self.class_names:
            raise InputError(f"unknown synthetic classes {unknown}; choose from {', '.join(SOURCE_CLASSES)}")
        if not 1 <= self.max_polyphony <= len(self.class_names):
            raise InputError(f"max_polyphony {self.max_polyphony} must be between 1 and {len(self.class_names)}")
        if len(self.room_dims_m) != 3:
            raise InputError(f"room_dims_m needs (low, high) ranges for x, y and z; got {len(self.room_dims_m)}")
        if self.duration_s < 1.0:
            raise InputError(f"scene duration {self.duration_s} s is too short; use at least 1 s")
        ranges = {
            "event_duration_s": self.event_duration_s, "level_dbfs": self.level_dbfs, "rt60_s": self.rt60_s,
            "distance_m": self.distance_m, "elevation_deg": self.elevation_deg,
            "angular_speed_dps": self.angular_speed_dps, **({"snr_db": self.snr_db} if self.snr_db else {}),
            **{f"room_dims_m[{i}]": r for i, r in enumerate(self.room_dims_m)},
        }
        for name, (lo, hi) in ranges.items():
            if not lo <= hi:
                raise InputError(f"{name} range ({lo}, {hi}) is reversed; give (low, high)")
        if not 0.1 <= self.event_duration_s[0] <= self.duration_s:
            raise InputError(f"shortest event {self.event_duration_s[0]} s must be in [0.1, duration]")
        if self.level_dbfs[1] > 0 or not 0 < self.peak < 1 or not 0 <= self.moving_prob <= 1:
            raise InputError("levels must be <= 0 dBFS, peak in (0, 1) and moving_prob in [0, 1]")


@dataclass(frozen=True)
class SceneEvent:
    """One sound event of a scene; the direction is the one at onset."""

    class_idx: int
    track: int
    onset_s: float
    offset_s: float
    azimuth_deg: float
    elevation_deg: float
    distance_m: float
    angular_velocity_dps: float  # azimuth rate, counter-clockwise positive; 0 for a static source
    level_dbfs: float  # RMS of the loudest 100 ms of the direct sound in W, before peak scaling

    def azimuth_at(self, time_s):
        """Azimuth in [-180, 180) at scene time(s) ``time_s``."""
        return _wrap(self.azimuth_deg + self.angular_velocity_dps * (np.asarray(time_s) - self.onset_s))


@dataclass(frozen=True)
class Scene:
    audio: np.ndarray  # (4, N) float32, ACN/SN3D W, Y, Z, X
    rows: list[LabelRow]
    events: tuple[SceneEvent, ...]
    sample_rate: int
    gain: float  # scale applied to keep the peak <= config.peak (1.0 when none was needed)
    snr_db: float | None
    room: ShoeboxRoom | None


def generate_scene(config: SceneConfig, seed: int, index: int) -> Scene:
    """Scene ``index`` of ``seed``: deterministic, independent of the other scenes."""
    if seed < 0 or index < 0:
        raise InputError(f"seed {seed} and scene index {index} must be non-negative integers")
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    fs = config.sample_rate
    n = int(round(config.duration_s * fs))
    room, mic = _random_room(config, rng) if config.reverb else (None, None)
    audio = np.zeros((4, n))
    events = []
    for track, onset, class_idx, dry in _schedule(config, rng):
        event = _place_source(config, rng, track, onset, class_idx, len(dry) / fs, room, mic)
        wet = _render(event, dry * 10 ** (event.level_dbfs / 20), fs, room, mic, config.max_reflection_order, rng)
        start = int(round(onset * fs))
        stop = min(n, start + wet.shape[1])
        audio[:, start:stop] += wet[:, : stop - start]
        events.append(event)
    snr = float(rng.uniform(*config.snr_db)) if config.snr_db else None
    if snr is not None:
        active = _active_mask(events, n, fs)
        noise = _ambient_noise(n, fs, rng)
        audio += noise * np.sqrt(np.mean(audio[0, active] ** 2) / 10 ** (snr / 10))
    gain = min(1.0, config.peak / max(np.abs(audio).max(), 1e-12))
    n_frames = math.ceil(config.duration_s / LABEL_HOP_SECONDS - 1e-9)
    return Scene(
        audio=(audio * gain).astype(np.float32), rows=label_rows(events, n_frames), events=tuple(events),
        sample_rate=fs, gain=gain, snr_db=snr, room=room,
    )


def label_rows(events: Sequence[SceneEvent], n_frames: int) -> list[LabelRow]:
    """DCASE rows at 100-ms frames: active when the event covers the frame centre (>= half the frame)."""
    rows = []
    by_track = sorted(events, key=lambda e: e.track)
    for k in range(n_frames):
        centre = (k + 0.5) * LABEL_HOP_SECONDS
        for ev in by_track:
            if ev.onset_s <= centre < ev.offset_s:
                azimuth = float(_wrap(round(float(ev.azimuth_at(centre)))))
                elevation, distance = float(round(ev.elevation_deg)), round(ev.distance_m, 2)
                rows.append(LabelRow(k, ev.class_idx, ev.track, azimuth, elevation, distance))
    return rows


def write_dataset(
    out_dir: str | Path,
    n_scenes: int,
    config: SceneConfig,
    seed: int,
    split: str = "train",
    progress: bool = True,
    workers: int = 1,
) -> list[tuple[Path, Path]]:
    """Write scenes as ``foa_dev/<split>/<name>.wav`` + ``metadata_dev/<split>/<name>.csv``.

    Names are ``synth_s{seed}_{i:05d}``. Each file appears atomically, CSV first, so an interrupted
    run leaves no partial file and no WAV without labels. ``workers`` > 1 writes scenes in that many
    processes; the files are the same, since scene i depends only on (seed, i). Returns the (wav, csv) pairs.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    if n_scenes < 1:
        raise InputError(f"n_scenes {n_scenes} must be at least 1")
    if workers < 1:
        raise InputError(f"workers {workers} must be at least 1")
    if not split or Path(split).name != split or split in (".", ".."):
        raise InputError(f"split {split!r} must be a plain folder name such as 'train'")
    jobs = [(Path(out_dir), config, seed, split, i) for i in range(n_scenes)]
    bar = dict(total=n_scenes, disable=not progress, unit="scene", desc="synth")
    if workers == 1:
        return [_write_scene(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(min(workers, n_scenes)) as pool:
        return list(tqdm(pool.map(_write_scene, jobs, chunksize=1), **bar))


def _write_scene(job: tuple[Path, SceneConfig, int, str, int]) -> tuple[Path, Path]:
    out_dir, config, seed, split, i = job
    scene = generate_scene(config, seed, i)
    name = f"synth_s{seed}_{i:05d}"
    wav = out_dir / "foa_dev" / split / f"{name}.wav"
    csv = out_dir / "metadata_dev" / split / f"{name}.csv"
    write_metadata_csv(csv, scene.rows, edition="2024")  # STARSS23's format: distance in whole centimetres
    with atomic_path(wav) as tmp:
        sf.write(tmp, scene.audio.T, scene.sample_rate, subtype=WAV_SUBTYPE, format="WAV")
    return wav, csv


# -- scene composition -------------------------------------------------------------------------
def _schedule(config: SceneConfig, rng: np.random.Generator):
    """(track, onset_s, class_idx, dry signal) per event; later tracks are sparser."""
    fs, total = config.sample_rate, config.duration_s
    placed: list[tuple[int, float, float, int, np.ndarray]] = []
    for track in range(config.max_polyphony):
        spread = 1.0 + 2.0 * track
        t = rng.uniform(0.0, min(spread, total - config.event_duration_s[0]))
        while t + config.event_duration_s[0] <= total:
            t = round(t * fs) / fs
            want = min(rng.uniform(*config.event_duration_s), total - t)
            busy = {c for _, on, off, c, _ in placed if on < t + want and off > t}
            free = [c for c in range(len(config.class_names)) if c not in busy]
            if free:
                class_idx = int(rng.choice(free))
                dry = synthesize(config.class_names[class_idx], want, fs, rng)
                placed.append((track, t, t + len(dry) / fs, class_idx, dry))
                t += len(dry) / fs
            t += rng.uniform(0.1, 1.5) * spread
    return [(track, on, c, dry) for track, on, _, c, dry in placed]


def _random_room(config: SceneConfig, rng: np.random.Generator) -> tuple[ShoeboxRoom, np.ndarray]:
    dims = tuple(float(rng.uniform(lo, hi)) for lo, hi in config.room_dims_m)
    room = ShoeboxRoom(dims=dims, rt60=float(rng.uniform(*config.rt60_s)))
    mic = np.array([rng.uniform(0.35, 0.65) * dims[0], rng.uniform(0.35, 0.65) * dims[1],
                    rng.uniform(1.0, min(2.0, dims[2] - 0.5))])
    return room, mic


def _place_source(config, rng, track, onset, class_idx, length_s, room, mic) -> SceneEvent:
    azimuth = float(rng.uniform(-180.0, 180.0))
    elevation = float(rng.uniform(*config.elevation_deg))
    moving = rng.random() < config.moving_prob
    speed = float(rng.uniform(*config.angular_speed_dps) * rng.choice([-1.0, 1.0])) if moving else 0.0
    distance = float(rng.uniform(*config.distance_m))
    if room is not None:
        fit = max_source_distance(room, mic, azimuth, elevation, orbit=moving)
        distance = max(min(distance, fit), _MIN_DISTANCE_M)
    return SceneEvent(
        class_idx=class_idx, track=track, onset_s=onset, offset_s=onset + length_s, azimuth_deg=azimuth,
        elevation_deg=elevation, distance_m=distance, angular_velocity_dps=speed,
        level_dbfs=float(rng.uniform(*config.level_dbfs)),
    )


def _render(event: SceneEvent, dry: np.ndarray, fs: int, room, mic, order: int, rng) -> np.ndarray:
    """FOA signal of one event from its onset: exact direct path, then reflections and tail."""
    n = len(dry)
    times = event.onset_s + np.arange(n) / fs
    azimuth = event.azimuth_at(times) if event.angular_velocity_dps else event.azimuth_deg
    direct = plane_wave(dry, azimuth, event.elevation_deg)
    if room is None:
        return direct

    def position(t):
        return mic + event.distance_m * _unit(event.azimuth_at(t), event.elevation_deg)

    if event.angular_velocity_dps:
        reflections, span = _moving_reflections(dry, times[0], position, room, mic, order, fs)
    else:
        early = early_reflections(room, position(event.onset_s), mic, order, fs)
        reflections, span = fftconvolve(dry[None], early, axes=-1), early.shape[1]
    tail = fftconvolve(dry[None], late_tail(room, event.distance_m, span / fs, fs, rng), axes=-1)
    out = np.zeros((4, max(reflections.shape[1], tail.shape[1])))
    out[:, :n] += direct
    out[:, : reflections.shape[1]] += reflections
    out[:, : tail.shape[1]] += tail
    return out


def _moving_reflections(dry, onset_s, position, room, mic, order, fs) -> tuple[np.ndarray, int]:
    """Image-source reflections of a moving source, recomputed every 50 ms with Hann crossfades.

    Periodic Hann windows of two hops at 50 % overlap sum to one, so the blocks add back up to the
    source signal; each block is convolved with the reflections of the position at its centre.
    """
    hop = int(_BLOCK_S * fs)
    n = len(dry)
    n_blocks = -(-n // hop) + 1
    padded = np.zeros((n_blocks + 1) * hop)
    padded[hop:hop + n] = dry
    window = 0.5 - 0.5 * np.cos(np.pi * np.arange(2 * hop) / hop)
    blocks = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n_blocks] * window
    irs = [early_reflections(room, position(onset_s + j * hop / fs), mic, order, fs) for j in range(n_blocks)]
    span = max(ir.shape[1] for ir in irs)
    stack = np.zeros((n_blocks, 4, span))
    for j, ir in enumerate(irs):
        stack[j, :, : ir.shape[1]] = ir
    m = 2 * hop + span - 1
    nfft = next_fast_len(m, real=True)
    wet = irfft(rfft(blocks, nfft)[:, None] * rfft(stack, nfft), nfft)[..., :m]
    out = np.zeros((4, n_blocks * hop + m))
    for j in range(n_blocks):
        out[:, j * hop: j * hop + m] += wet[j]
    return out[:, hop:], span


def _ambient_noise(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Diffuse room tone (4, n): independent coloured noises (1/f^b, b random, >= 20 Hz), W RMS 1."""
    freqs = rfftfreq(n, 1.0 / fs)
    shape = np.where(freqs >= 20.0, np.maximum(freqs, 20.0) ** (-rng.uniform(0.5, 1.5) / 2), 0.0)
    noise = irfft(rfft(rng.standard_normal((4, n))) * shape, n)
    return diffuse_foa(noise / np.sqrt(np.mean(noise[0] ** 2)))


def _active_mask(events, n: int, fs: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for ev in events:
        mask[int(round(ev.onset_s * fs)):int(round(ev.offset_s * fs))] = True
    return mask


def _unit(azimuth_deg, elevation_deg) -> np.ndarray:
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    return np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])


def _wrap(azimuth_deg):
    return (np.asarray(azimuth_deg) + 180.0) % 360.0 - 180.0
