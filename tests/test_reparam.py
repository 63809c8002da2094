"""Deploy reparameterization (CSS fold, LFE as one 3x3 conv): same outputs, less work, training model untouched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from glfer_edge.config import get_preset  # noqa: E402
from glfer_edge.model import GLFERNet  # noqa: E402
from glfer_edge.model.complexity import measure_complexity  # noqa: E402
from glfer_edge.model.lfe import FusedLFE, LFEUnit  # noqa: E402
from glfer_edge.model.msfe import CSS  # noqa: E402
from glfer_edge.model.reparam import reparameterize  # noqa: E402


def _trained_looking(name: str) -> GLFERNet:
    """Random weights with non-trivial BatchNorm statistics and affine terms (fresh BN is the identity)."""
    torch.manual_seed(0)
    model = GLFERNet(get_preset(name).replace(segment_seconds=2.0))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["tiny", "paper", "ablation-css-no-shuffle"])
def test_deploy_form_matches_the_model(name):
    model = _trained_looking(name)
    deploy = reparameterize(model)
    audio = torch.randn(2, 4, model.config.segment_samples, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        (sed, doa), (sed_d, doa_d) = model(audio), deploy(audio)
    assert float((sed - sed_d).abs().max()) < 1e-5 and float((doa - doa_d).abs().max()) < 1e-5
    assert float((sed - sed_d).abs().max()) > 0 or name == "ablation-css-no-shuffle"  # the weights really changed
    css = [m for m in deploy.modules() if isinstance(m, CSS)]
    assert css and all(m.folded and m.aggregation[0].in_channels == m.aggregation[0].out_channels for m in css)
    assert not any(isinstance(m, LFEUnit) for m in deploy.modules())
    assert sum(isinstance(m, FusedLFE) for m in deploy.modules()) == 2 * len(model.config.model.glf_channels)
    assert not any(m.folded for m in model.modules() if isinstance(m, CSS))  # the source model is untouched


def test_deploy_form_saves_the_css_shuffle_and_the_asymmetric_lfe_convs():
    torch.manual_seed(0)
    model = GLFERNet(get_preset("paper")).eval()  # 8-s segments: stages (Cin -> C) at 320x100, 160x50, 80x25
    saved = measure_complexity(model).network_macs - measure_complexity(reparameterize(model)).network_macs
    stages = [(32, 64, 320 * 100), (64, 128, 160 * 50), (128, 256, 80 * 25)]
    # CSS: the first aggregation conv loses its C input channels of shuffle(o): C * C MACs per pixel
    css = sum(c * c * pixels for _, c, pixels in stages)
    # LFE: 3 Cout (Cin + Cout) MACs per path and pixel become 9 Cin Cout, for lfe1 (Cin -> C) and lfe2 (C -> C)
    units = [(cin, c, pixels) for stage_in, c, pixels in stages for cin in (stage_in, c)]
    lfe = sum((6 * c * (cin + c) - 9 * cin * c) * pixels for cin, c, pixels in units)
    assert css == 393_216_000 and lfe == 2_949_120_000
    assert saved == css + lfe


@pytest.mark.parametrize(("cin", "cout", "t", "f"), [(3, 5, 6, 4), (4, 4, 1, 7), (2, 3, 5, 1)])
def test_fused_lfe_is_the_unit_on_the_edges_too(cin, cout, t, f):
    torch.manual_seed(cin)
    unit = LFEUnit(cin, cout)
    with torch.no_grad():  # biases well away from zero: without the edge terms the border would be off by ~0.1-1
        for conv in (*unit.freq_time, *unit.time_freq):
            conv.bias.uniform_(0.5, 1.0)
        unit.bn.running_mean.uniform_(-0.5, 0.5)
        unit.bn.running_var.uniform_(0.5, 2.0)
    unit.eval()
    x = torch.randn(2, cin, t, f)
    with torch.no_grad():
        expected = unit(x)
        unit.fold_bn_()
        fused = FusedLFE(unit)
        got = fused(x)
        edges = FusedLFE._edges(fused.time_edges, t)[:, :, None] + FusedLFE._edges(fused.freq_edges, f)[:, None, :]
    assert float((got - expected).abs().max()) < 1e-5
    assert fused.conv.kernel_size == (3, 3) and fused.conv.in_channels == cin
    # what makes it exact: a term on the first and last frames and bins (the padding the paths' second convs
    # read instead of their first convs' biases), none inside
    border = torch.ones(t, f, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert float(edges[:, border].abs().min()) > 1e-3
    assert not edges[:, ~border].any()


def test_fused_lfe_needs_the_batchnorm_folded_first():
    with pytest.raises(ValueError, match="fold_bn_"):
        FusedLFE(LFEUnit(2, 2).eval())
