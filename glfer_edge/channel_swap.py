"""FOA channel swapping: the 16 axis swaps and sign flips of a first-order Ambisonics scene.

Swapping the X and Y dipoles and negating any of X, Y, Z maps a recorded scene onto the scene
whose sources sit at the correspondingly transformed directions, exactly: the omni channel is
unchanged and each dipole is the source signal times one direction cosine. The paper trains with
them (section 4.1, after SALSA; ``glfer_edge.training.augment``). At inference the same transforms
give test-time augmentation (TTA, as DCASE systems use it): run the network on K transformed copies,
map each DOA back and average, with no retraining (``glfer_edge.runtime.segments.infer_long``).

Works on numpy arrays and torch tensors alike (indexing and in-place negation of a copy only), so
the deploy path needs no torch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, TypeVar

from glfer_edge.errors import InputError

__all__ = ["CHANNEL_ORDERS", "ChannelSwap", "FOA_TRANSFORMS", "TTA_TRANSFORMS", "TTA_SIZES", "tta_transforms"]

# Audio channel index of the x, y, z dipoles per channel order (ACN W,Y,Z,X; FuMa W,X,Y,Z).
_DIPOLES = {"acn": (3, 1, 2), "fuma": (1, 2, 3)}
CHANNEL_ORDERS: tuple[str, ...] = tuple(_DIPOLES)

Array = TypeVar("Array", bound=Any)  # numpy.ndarray or torch.Tensor


@dataclass(frozen=True)
class ChannelSwap:
    """One of the 16 FOA transforms: optional x<->y swap, then sign flips of x, y, z (on the swapped axes).

    As a map of directions, (x, y, z) -> (sx * y, sy * x, sz * z) with a swap, (sx * x, sy * y, sz * z)
    without one, where s = -1 for a negated axis.
    """

    swap_xy: bool
    negate_x: bool
    negate_y: bool
    negate_z: bool

    @property
    def is_identity(self) -> bool:
        return not (self.swap_xy or self.negate_x or self.negate_y or self.negate_z)

    @property
    def is_rotation(self) -> bool:
        """True for the 8 proper rotations (determinant +1); the other 8 are mirror images."""
        return (self.swap_xy + self.negate_x + self.negate_y + self.negate_z) % 2 == 0

    @property
    def inverse(self) -> "ChannelSwap":
        """The transform that undoes this one: the swap moves each sign flip to the other axis."""
        if not self.swap_xy:
            return self
        return ChannelSwap(True, self.negate_y, self.negate_x, self.negate_z)

    def _apply(self, array: Array, axis_index: tuple[int, int, int], axis: int) -> Array:
        x, y, z = axis_index
        order = list(range(array.shape[axis]))
        if self.swap_xy:
            order[x], order[y] = y, x
        index = (Ellipsis, order) + (slice(None),) * (-axis - 1)
        out = array[index]  # advanced indexing copies, in numpy and torch
        for channel, flip in ((x, self.negate_x), (y, self.negate_y), (z, self.negate_z)):
            if flip:
                out[(Ellipsis, channel) + (slice(None),) * (-axis - 1)] *= -1
        return out

    def apply_audio(self, audio: Array, channel_order: str = "acn") -> Array:
        """FOA audio (..., 4, N) in ``channel_order`` -> the audio of the transformed scene (a copy)."""
        if channel_order not in _DIPOLES:
            raise ValueError(f"unknown channel_order {channel_order!r}; use 'acn' or 'fuma'")
        return self._apply(audio, _DIPOLES[channel_order], axis=-2)

    def apply_doa(self, doa: Array) -> Array:
        """Cartesian DOA (..., 3) -> the DOA in the transformed scene (a copy; zeros stay zeros)."""
        return self._apply(doa, (0, 1, 2), axis=-1)


FOA_TRANSFORMS: tuple[ChannelSwap, ...] = tuple(ChannelSwap(*bits) for bits in itertools.product((False, True), repeat=4))

# TTA order: every prefix of size 1, 2, 4, 8 is a group of rotations, so each size averages over a
# symmetric set of views: identity; + the half turn about the (1, -1, 0) diagonal; + the half
# turns about z and the (1, 1, 0) diagonal (Klein four-group); + the quarter turns about z and the
# half turns about x and y (the 8 rotations of a square); then the 8 mirror images.
TTA_TRANSFORMS: tuple[ChannelSwap, ...] = (
    ChannelSwap(False, False, False, False),
    ChannelSwap(True, True, True, True),
    ChannelSwap(False, True, True, False),
    ChannelSwap(True, False, False, True),
    ChannelSwap(True, False, True, False),
    ChannelSwap(True, True, False, False),
    ChannelSwap(False, False, True, True),
    ChannelSwap(False, True, False, True),
    *(t for t in FOA_TRANSFORMS if not t.is_rotation),
)
TTA_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16)


def tta_transforms(size: int) -> tuple[ChannelSwap, ...]:
    """The first ``size`` TTA transforms; 1 = the identity alone (no TTA)."""
    if size not in TTA_SIZES:
        raise InputError(f"TTA size {size}: use one of {', '.join(map(str, TTA_SIZES))} (1 = off)")
    return TTA_TRANSFORMS[:size]
