"""Deploy reparameterization (CSS fold, LFE-BN fold): same outputs, less work, training model untouched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from glfer_edge.config import get_preset  # noqa: E402
from glfer_edge.model import GLFERNet  # noqa: E402
from glfer_edge.model.complexity import measure_complexity  # noqa: E402
from glfer_edge.model.lfe import LFEUnit  # noqa: E402
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
    assert all(isinstance(m.bn, torch.nn.Identity) for m in deploy.modules() if isinstance(m, LFEUnit))
    assert not any(m.folded for m in model.modules() if isinstance(m, CSS))  # the source model is untouched


def test_deploy_form_saves_one_css_conv_per_glf_extractor():
    torch.manual_seed(0)
    model = GLFERNet(get_preset("paper")).eval()  # 8-s segments: stages at 320x100, 160x50, 80x25
    saved = measure_complexity(model).network_macs - measure_complexity(reparameterize(model)).network_macs
    # the first aggregation conv loses its C input channels of shuffle(o): C * C MACs per pixel
    assert saved == 64 * 64 * 320 * 100 + 128 * 128 * 160 * 50 + 256 * 256 * 80 * 25  # 393,216,000
