"""GLFER-Net reference model: shapes per preset, paper parameter count, training step, ONNX exportability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from glfer_edge.config import PRESETS, get_preset

torch = pytest.importorskip("torch")
from glfer_edge.model import GLFERNet  # noqa: E402
from glfer_edge.model.complexity import measure_complexity  # noqa: E402

# Fact sheet section 5: stride-1 ODConv, official AFF, 13 classes.
PAPER_PARAMETERS = 3_744_554


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_runs(name: str) -> None:
    cfg = get_preset(name).replace(segment_seconds=1.0)
    model = GLFERNet(cfg).eval()
    audio = torch.randn(2, 4, cfg.segment_samples) * 0.1
    with torch.no_grad():
        sed, doa = model(audio)
    c = cfg.model.num_classes
    assert cfg.segment_frames == 80 and cfg.output_frames == 5
    assert sed.shape == (2, 5, c) and doa.shape == (2, 5, c, 3)
    assert torch.all((sed > 0) & (sed < 1)) and torch.all(doa.abs() <= 1)


def test_paper_parameter_count_and_macs() -> None:
    c = measure_complexity(GLFERNet(get_preset("paper")))
    assert abs(c.parameters - PAPER_PARAMETERS) / PAPER_PARAMETERS <= 0.02
    assert c.parameters == PAPER_PARAMETERS
    assert abs(c.network_macs / 1e9 - 14.83) < 0.05  # fact sheet section 6


def test_eight_second_segment_gives_40_frames() -> None:
    cfg = get_preset("tiny")
    assert cfg.features.n_frames(cfg.segment_samples) == 641
    model = GLFERNet(cfg).eval()
    with torch.no_grad():
        sed, _ = model(torch.zeros(1, 4, cfg.segment_samples))
    assert sed.shape[1] == 40


def test_fr_sum_vs_mean_differ_by_three() -> None:
    base = get_preset("tiny").model
    from glfer_edge.model.fr import FR

    torch.manual_seed(0)
    fr_sum = FR(base.fr_branches, combine="sum")
    fr_mean = FR(base.fr_branches, combine="mean")
    fr_mean.load_state_dict(fr_sum.state_dict())
    x = torch.randn(2, 4, 6, 5)
    assert torch.allclose(fr_sum(x), 3 * fr_mean(x), atol=1e-6)


def test_css_shuffle_interleaves_scales() -> None:
    from glfer_edge.model.msfe import channel_shuffle

    x = torch.arange(8.0).reshape(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_one_optimizer_step_lowers_the_loss() -> None:
    cfg = get_preset("tiny").replace(segment_seconds=1.0)
    torch.manual_seed(0)
    model = GLFERNet(cfg).train()
    feats = torch.randn(4, 7, cfg.segment_frames, cfg.features.n_bins)
    sed_t = (torch.rand(4, cfg.output_frames, cfg.model.num_classes) > 0.7).float()
    doa_t = torch.nn.functional.normalize(torch.randn(4, cfg.output_frames, cfg.model.num_classes, 3), dim=-1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # same dropout masks for both evaluations
        sed, doa = model.logits(feats)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(sed, sed_t)
        mse = (((doa - doa_t) ** 2).sum(-1) * sed_t).sum() / sed_t.sum()
        return 0.3 * bce + 0.7 * mse

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()


def test_onnx_export_dynamic_batch_without_stft_or_per_sample_groups(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    cfg = get_preset("tiny").replace(segment_seconds=1.0)
    torch.manual_seed(0)
    model = GLFERNet(cfg).eval()
    path = tmp_path / "m.onnx"
    x = torch.randn(2, 4, cfg.segment_samples) * 0.1
    torch.onnx.export(
        model, (x,), str(path), input_names=["audio"], output_names=["sed", "doa"], opset_version=17,
        dynamic_axes={"audio": {0: "batch"}, "sed": {0: "batch"}, "doa": {0: "batch"}}, dynamo=False,
    )
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"STFT", "DFT"}
    init = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            assert group <= 8, node.name  # only the MSFE branch groups, never the batch
            assert node.input[1] in init, f"{node.name} has a runtime-computed (per-sample) weight"
    session = ort.InferenceSession(str(path))
    for batch in (1, 3):
        xb = torch.randn(batch, 4, cfg.segment_samples) * 0.1
        sed, doa = session.run(None, {"audio": xb.numpy()})
        with torch.no_grad():
            rs, rd = model(xb)
        assert sed.shape == (batch, 5, 13)
        assert np.abs(sed - rs.numpy()).max() < 1e-4 and np.abs(doa - rd.numpy()).max() < 1e-4


def test_odconv_formulation_switch_keeps_outputs() -> None:
    cfg = get_preset("tiny").replace(segment_seconds=1.0)
    torch.manual_seed(0)
    model = GLFERNet(cfg).eval()
    x = torch.randn(2, 4, cfg.segment_samples) * 0.1
    with torch.no_grad():
        a = model(x)[0]
        for m in model.modules():
            if hasattr(m, "formulation"):
                m.formulation = "folded"
        b = model(x)[0]
    assert (a - b).abs().max().item() < 1e-5
    assert dataclasses.is_dataclass(cfg)
