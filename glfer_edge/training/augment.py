"""The paper's three consecutive augmentations (section 4.1, after SALSA; fact sheet section 9).

1. FOA channel swap (the 16 axis swaps / sign flips of ``glfer_edge.channel_swap``) on the raw
   AUDIO with the matching DOA-label transform. On audio it is exact: swapping the Y and X
   channels swaps their spectrograms and intensity vectors, negating a dipole channel negates its
   intensity vector (SALSA applies it to standardized features, where a negated IV is only
   approximately the standardized negated IV).
2. Frequency shift of the standardized features by 1..9 bins up or down, reflect-filled.
3. CompositeCutout on the standardized features: random cutout, SpecAugment stripes or 8 holes of
   8x8; spectrogram channels get one value drawn uniformly in [min, max] of the tensor, the IV
   channels are set to 0.

Each is applied with probability 0.5. Every draw comes from the caller's torch.Generator, so a
batch is augmented identically for the same generator state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from glfer_edge.channel_swap import CHANNEL_ORDERS, FOA_TRANSFORMS, ChannelSwap

__all__ = ["AugmentConfig", "ChannelSwap", "FOA_TRANSFORMS", "SELDAugment", "composite_cutout", "frequency_shift"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probability of each augmentation (0 disables it) and the largest frequency shift in bins."""

    channel_swap: float = 0.5
    frequency_shift: float = 0.5
    cutout: float = 0.5
    max_shift: int = 9


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high)."""
    return int(torch.randint(low, high, (), generator=g))


def frequency_shift(features: torch.Tensor, g: torch.Generator, max_shift: int = 9) -> torch.Tensor:
    """Shift (C, T, F) features by 1..max_shift bins up or down; the vacated bins are reflect-filled."""
    k = _randint(g, 1, max_shift + 1)
    n_bins = features.shape[-1]
    if _uniform(g) < 0.5:  # up: content moves to higher bins
        return F.pad(features, (k, 0), mode="reflect")[..., :n_bins]
    return F.pad(features, (0, k), mode="reflect")[..., k:]


def _fill(x: torch.Tensor, t: slice, f: slice, value: float) -> None:
    x[:4, t, f] = value  # log spectrograms
    x[4:, t, f] = 0.0  # intensity vectors


def composite_cutout(features: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One of random cutout, SpecAugment (one time + one frequency stripe) or 8 holes of 8x8, on (7, T, F)."""
    x = features.clone()
    n_t, n_f = x.shape[-2:]
    low, high = float(x.min()), float(x.max())
    kind = _randint(g, 0, 3)
    if kind == 0:  # random cutout: area 2-30 %, aspect ratio scaled by the map's T/F (SALSA RandomCutoutNp)
        aspect = n_t / n_f
        r_1 = 0.3 * aspect if aspect > 1 else 0.3
        r_2 = aspect / 0.3 if aspect < 1 else 1 / 0.3
        area = _uniform(g, 0.02, 0.3) * n_t * n_f
        ratio = _uniform(g, r_1, r_2)
        h, w = min(int(math.sqrt(area * ratio)), n_t - 1), min(int(math.sqrt(area / ratio)), n_f - 1)
        top, left = _randint(g, 0, n_t - h), _randint(g, 0, n_f - w)
        _fill(x, slice(top, top + h), slice(left, left + w), _uniform(g, low, high))
    elif kind == 1:  # SpecAugment: a time stripe up to 15 % of T and a frequency stripe up to 20 % of F
        h = _randint(g, 1, max(int(0.15 * n_t), 1) + 1)
        top = _randint(g, 0, n_t - h + 1)
        _fill(x, slice(top, top + h), slice(None), _uniform(g, low, high))
        w = _randint(g, 1, max(int(0.2 * n_f), 1) + 1)
        left = _randint(g, 0, n_f - w + 1)
        _fill(x, slice(None), slice(left, left + w), _uniform(g, low, high))
    else:  # 8 holes of 8x8
        for _ in range(8):
            top, left = _randint(g, 0, max(n_t - 8, 0) + 1), _randint(g, 0, max(n_f - 8, 0) + 1)
            _fill(x, slice(top, top + 8), slice(left, left + 8), _uniform(g, low, high))
    return x


class SELDAugment:
    """Applies the augmentations to a batch: ``audio`` before the frontend, ``features`` after standardization."""

    def __init__(self, config: AugmentConfig = AugmentConfig(), channel_order: str = "acn") -> None:
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"unknown channel_order {channel_order!r}; use 'acn' or 'fuma'")
        self.config = config
        self.channel_order = channel_order

    def audio(
        self, audio: torch.Tensor, doa: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel swap per sample: audio (B, 4, N), DOA labels (B, T, C, 3) -> transformed copies."""
        audio, doa = audio.clone(), doa.clone()
        for i in range(audio.shape[0]):
            if _uniform(g) < self.config.channel_swap:
                swap = FOA_TRANSFORMS[_randint(g, 0, len(FOA_TRANSFORMS))]
                audio[i] = swap.apply_audio(audio[i], self.channel_order)
                doa[i] = swap.apply_doa(doa[i])
        return audio, doa

    def features(self, features: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Frequency shift, then CompositeCutout, per sample of standardized features (B, 7, T, F)."""
        out = []
        for x in features:
            if _uniform(g) < self.config.frequency_shift:
                x = frequency_shift(x, g, self.config.max_shift)
            if _uniform(g) < self.config.cutout:
                x = composite_cutout(x, g)
            out.append(x)
        return torch.stack(out)
