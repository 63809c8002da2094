"""FOA channel swaps as numpy maps, their inverses, the TTA order, and TTA through the runtime."""

from __future__ import annotations

import numpy as np
import pytest

from glfer_edge.channel_swap import FOA_TRANSFORMS, TTA_SIZES, TTA_TRANSFORMS, tta_transforms
from glfer_edge.data.synth import SceneConfig, generate_scene
from glfer_edge.errors import InputError
from glfer_edge.runtime import SELDRuntime
from glfer_edge.runtime.segments import infer_long


def _matrix(swap) -> np.ndarray:
    """The 3x3 map of directions (column j: the image of axis j)."""
    return swap.apply_doa(np.eye(3)).T


def test_inverse_undoes_every_transform(rng):
    doa = rng.standard_normal((5, 13, 3))
    audio = rng.standard_normal((2, 4, 32))
    original = audio.copy()
    for swap in FOA_TRANSFORMS:
        np.testing.assert_array_equal(swap.inverse.apply_doa(swap.apply_doa(doa)), doa)
        np.testing.assert_allclose(_matrix(swap.inverse) @ _matrix(swap), np.eye(3))
        assert swap.apply_audio(audio) is not audio  # a copy: the caller's buffer is never negated in place
    np.testing.assert_array_equal(audio, original)


def test_numpy_and_torch_give_the_same_scene(rng):
    torch = pytest.importorskip("torch")
    audio, doa = rng.standard_normal((3, 4, 64)), rng.standard_normal((3, 7, 3))
    for swap in FOA_TRANSFORMS:
        for order in ("acn", "fuma"):
            np.testing.assert_array_equal(swap.apply_audio(torch.from_numpy(audio), order).numpy(),
                                          swap.apply_audio(audio, order))
        np.testing.assert_array_equal(swap.apply_doa(torch.from_numpy(doa)).numpy(), swap.apply_doa(doa))


def test_tta_order_holds_all_16_and_every_prefix_is_a_group_of_rotations():
    assert sorted(TTA_TRANSFORMS, key=FOA_TRANSFORMS.index) == list(FOA_TRANSFORMS)
    dets = [round(np.linalg.det(_matrix(t))) for t in TTA_TRANSFORMS]
    assert dets == [1] * 8 + [-1] * 8 and TTA_TRANSFORMS[0].is_identity
    for size in TTA_SIZES:
        key = lambda m: tuple(np.rint(m).astype(int).ravel())  # noqa: E731
        members = {key(_matrix(t)) for t in tta_transforms(size)}
        products = {key(_matrix(a) @ _matrix(b)) for a in tta_transforms(size) for b in tta_transforms(size)}
        assert products == members, size  # closed under composition: the average is over a symmetric set


@pytest.mark.parametrize("size", [0, 3, 32])
def test_other_tta_sizes_are_refused(size):
    with pytest.raises(InputError, match="1, 2, 4, 8, 16"):
        tta_transforms(size)


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SceneConfig(duration_s=8.0), seed=11, index=0)


def test_tta_averages_the_mapped_back_outputs(scene):
    with SELDRuntime.open(None) as rt:  # bundled ONNX on ORT CPU
        plain = infer_long(rt, scene.audio)
        np.testing.assert_array_equal(infer_long(rt, scene.audio, tta=1).doa, plain.doa)
        swap = TTA_TRANSFORMS[1]
        other = infer_long(rt, swap.apply_audio(scene.audio))
        tta = infer_long(rt, scene.audio, tta=2)
    np.testing.assert_allclose(tta.sed, (plain.sed + other.sed) / 2, atol=1e-6)
    np.testing.assert_allclose(tta.doa, (plain.doa + swap.inverse.apply_doa(other.doa)) / 2, atol=1e-6)
    assert np.abs(other.doa - plain.doa).max() > 0.1  # the network is not invariant: the views differ


@pytest.mark.parametrize("size, members", [(4, (1, 2, 3)), (8, (4, 7))])  # half turns; a quarter turn, about y
def test_tta_over_a_group_is_exactly_equivariant(scene, size, members):
    """Rotating the scene by a member of the group rotates the TTA output: the average sees the same views."""
    with SELDRuntime.open(None) as rt:
        ref = infer_long(rt, scene.audio, tta=size)
        for swap in (TTA_TRANSFORMS[i] for i in members):
            out = infer_long(rt, swap.apply_audio(scene.audio), tta=size)
            np.testing.assert_allclose(out.sed, ref.sed, atol=1e-5)
            np.testing.assert_allclose(out.doa, swap.apply_doa(ref.doa), atol=1e-5)
