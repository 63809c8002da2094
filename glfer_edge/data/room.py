"""Shoebox room acoustics for the synthetic scenes: image sources, a diffuse late tail, FOA encoding.

Axes follow DCASE: x front, y left, z up; the microphone's axes are aligned with the room's.
Impulse responses are relative to the direct path: the direct sound has gain 1 and arrives at
delay 0, so an event's level and onset are those of its direct sound at the microphone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "SPEED_OF_SOUND", "DIFFUSE_DIPOLE_GAIN", "ShoeboxRoom", "foa_gains", "plane_wave", "diffuse_foa",
    "early_reflections", "late_tail", "max_source_distance",
]

SPEED_OF_SOUND = 343.0  # m/s
# In a diffuse field an SN3D dipole (Y, Z, X) carries 1/3 of the omni (W) energy: E[sin^2] over
# the sphere of each axis component is 1/3.
DIFFUSE_DIPOLE_GAIN = 1.0 / np.sqrt(3.0)
_SABINE = 0.161  # s/m: RT60 = 0.161 V / A


@dataclass(frozen=True)
class ShoeboxRoom:
    """A rectangular room with uniform, frequency-independent wall absorption set by its RT60."""

    dims: tuple[float, float, float]  # metres along x, y, z
    rt60: float  # seconds

    @property
    def volume(self) -> float:
        return float(np.prod(self.dims))

    @property
    def surface(self) -> float:
        lx, ly, lz = self.dims
        return 2.0 * (lx * ly + lx * lz + ly * lz)

    @property
    def absorption(self) -> float:
        """Sabine absorption coefficient giving this RT60 (capped just below 1)."""
        return min(_SABINE * self.volume / (self.surface * self.rt60), 0.99)

    @property
    def reflection(self) -> float:
        """Pressure reflection coefficient per wall bounce."""
        return float(np.sqrt(1.0 - self.absorption))

    @property
    def room_constant(self) -> float:
        """R = S a / (1 - a); the reverberant energy is 16 pi / R times that of a direct path at 1 m."""
        a = self.absorption
        return self.surface * a / (1.0 - a)


def foa_gains(azimuth_deg, elevation_deg) -> np.ndarray:
    """ACN/SN3D first-order gains (W, Y, Z, X) for directions in degrees; shape (4, ...)."""
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    az, el = np.broadcast_arrays(az, el)
    return np.stack([np.ones_like(az), np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])


def plane_wave(signal: np.ndarray, azimuth_deg, elevation_deg) -> np.ndarray:
    """FOA-encode a mono signal arriving from (azimuth, elevation) in degrees: (4, N).

    W = s, Y = s sin(az) cos(el), Z = s sin(el), X = s cos(az) cos(el). The angles may be scalars or
    per-sample arrays of length N (a moving source).
    """
    signal = np.asarray(signal)
    return foa_gains(azimuth_deg, elevation_deg).reshape(4, -1) * signal


def diffuse_foa(noise: np.ndarray) -> np.ndarray:
    """Give four independent noises (4, N) the FOA statistics of a diffuse field (in place)."""
    noise[1:] *= DIFFUSE_DIPOLE_GAIN
    return noise


@lru_cache(maxsize=8)
def _image_indices(max_order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-axis mirror flags u and shifts q of all images up to ``max_order`` wall bounces.

    Along one axis the image of p is (1 - 2u) p + 2 q L after |2q - u| bounces (Allen & Berkley).
    Returns u (K, 3), q (K, 3) and the reflection order (K,), direct path first.
    """
    axis = [(u, q) for q in range(-max_order, max_order + 1) for u in (0, 1) if abs(2 * q - u) <= max_order]
    combos = [c for c in itertools.product(axis, repeat=3) if sum(abs(2 * q - u) for u, q in c) <= max_order]
    combos.sort(key=lambda c: sum(abs(2 * q - u) for u, q in c))
    u = np.array([[u for u, _ in c] for c in combos])
    q = np.array([[q for _, q in c] for c in combos])
    return u, q, np.abs(2 * q - u).sum(axis=1)


def early_reflections(
    room: ShoeboxRoom, source: np.ndarray, mic: np.ndarray, max_order: int, sample_rate: int
) -> np.ndarray:
    """FOA impulse response (4, L) of the wall reflections up to ``max_order`` bounces.

    Each image source is encoded from its own direction, delayed by its extra path over the direct
    sound (nearest sample) and scaled by reflection**order * r_direct / r_image. The direct path
    itself is left out (the caller renders it sample-exactly).
    """
    u, q, order = _image_indices(max_order)
    dims = np.asarray(room.dims)
    images = (1 - 2 * u) * np.asarray(source) + 2 * q * dims
    rel = images - np.asarray(mic)
    dist = np.linalg.norm(rel, axis=1)
    gains = room.reflection**order * dist[0] / dist
    delays = np.round((dist - dist[0]) / SPEED_OF_SOUND * sample_rate).astype(int)
    unit = rel / dist[:, None]
    ir = np.zeros((4, delays.max() + 1))
    # rows W, Y, Z, X = 1, y, z, x of the unit vector
    enc = np.stack([np.ones(len(dist)), unit[:, 1], unit[:, 2], unit[:, 0]]) * gains
    for ch in range(4):
        np.add.at(ir[ch], delays[1:], enc[ch, 1:])
    return ir


def late_tail(
    room: ShoeboxRoom, distance: float, start_s: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Diffuse late reverberation (4, L): exponentially decaying noise, independent per channel.

    From ``start_s`` (the span of the image sources) on, its expected W energy follows the
    statistical decay curve of the room: a reverberant energy of 16 pi r^2 / R relative to the
    direct sound at r = ``distance``, decaying by 60 dB over RT60. It fades in from ``start_s / 2``
    so it overlaps the last image sources instead of starting with a step.
    """
    n = int(max(room.rt60, start_s) * sample_rate)
    t = np.arange(n) / sample_rate
    rate = 6.0 * np.log(10.0) / room.rt60  # energy decay rate, 1/s
    energy = 16.0 * np.pi * distance**2 / room.room_constant
    envelope = np.sqrt(energy * rate / sample_rate * np.exp(-rate * t))
    rise = np.clip((t - start_s / 2) / max(start_s / 2, 1.0 / sample_rate), 0.0, 1.0)
    return diffuse_foa(rng.standard_normal((4, n))) * envelope * (0.5 - 0.5 * np.cos(np.pi * rise))


def max_source_distance(
    room: ShoeboxRoom, mic: np.ndarray, azimuth_deg: float, elevation_deg: float, *, orbit: bool,
    margin: float = 0.2,
) -> float:
    """Largest distance from ``mic`` that keeps a source ``margin`` metres inside the walls.

    ``orbit``: the source circles the microphone in azimuth at fixed elevation (a moving source),
    so the whole horizontal circle must fit.
    """
    lo = np.asarray(mic) - margin
    hi = np.asarray(room.dims) - margin - np.asarray(mic)
    el = np.deg2rad(elevation_deg)
    if orbit:
        radial = min(lo[0], lo[1], hi[0], hi[1]) / max(np.cos(el), 1e-9)
        vertical = (hi[2] if el >= 0 else lo[2]) / max(abs(np.sin(el)), 1e-9)
        return float(max(min(radial, vertical), 0.0))
    unit = foa_gains(azimuth_deg, elevation_deg)[[3, 1, 2]]  # x, y, z
    with np.errstate(divide="ignore"):
        limits = np.where(unit > 0, hi / unit, np.where(unit < 0, -lo / unit, np.inf))
    return float(max(limits.min(), 0.0))
