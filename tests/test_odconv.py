"""ODConv: the export-friendly shifted formulation equals the batch-folded reference."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from glfer_edge.model.odconv import ODConv2d  # noqa: E402


def _pair(in_ch: int, out_ch: int, k: int, kernel_num: int, stride: int = 1) -> tuple[ODConv2d, ODConv2d]:
    torch.manual_seed(k * 10 + kernel_num)
    ref = ODConv2d(in_ch, out_ch, k, stride=stride, padding=k // 2, kernel_num=kernel_num, reduction=0.25,
                   formulation="folded")
    # random (not default-initialised) attention weights and BN statistics, so every head matters
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        ref.attention.bn.running_mean.uniform_(-0.5, 0.5)
        ref.attention.bn.running_var.uniform_(0.5, 2.0)
    new = ODConv2d(in_ch, out_ch, k, stride=stride, padding=k // 2, kernel_num=kernel_num, reduction=0.25,
                   formulation="shifted")
    new.load_state_dict(ref.state_dict())
    return ref.eval(), new.eval()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("kernel_num", [1, 4])
def test_shifted_equals_folded(batch: int, kernel_size: int, kernel_num: int) -> None:
    ref, new = _pair(16, 24, kernel_size, kernel_num)
    x = torch.randn(batch, 16, 20, 13)
    with torch.no_grad():
        a, b = ref(x), new(x)
    assert a.shape == b.shape == (batch, 24, 20, 13)
    assert (a - b).abs().max().item() <= 1e-5
    assert a.abs().mean().item() > 1e-2  # not trivially zero


def test_shifted_equals_folded_with_stride() -> None:
    ref, new = _pair(8, 8, 3, 1, stride=2)
    x = torch.randn(2, 8, 15, 10)
    with torch.no_grad():
        assert (ref(x) - new(x)).abs().max().item() <= 1e-5


def test_per_sample_kernels_differ() -> None:
    """Dynamic convolution: the same input patch gives a different kernel per sample."""
    _, conv = _pair(8, 8, 3, 1)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        y = conv(x)
        y_swapped = conv(x.flip(0))
    assert torch.allclose(y.flip(0), y_swapped, atol=1e-5)  # batch items are independent
    a_c, _, a_s, _ = conv.attention(x)
    assert (a_s[0] - a_s[1]).abs().max() > 1e-3
