"""Parameter and MAC (multiply-accumulate) counts per segment, by forward hooks on one real forward pass.

Counted: convolutions (incl. ODConv's dynamic convolution), linears, the GRU, and the frontend's
STFT-as-convolution (reported apart, as the paper's numbers exclude it). Element-wise ops,
pooling and attention GAPs are not counted (fact sheet section 6 does the same).

**The one MAC count** of the project is :func:`segment_macs`: the multiply-accumulates of the graph that
runs, i.e. the deploy model after reparameterization (``glfer_edge.model.reparam``: CSS folded, LFE
fused), frontend included, per segment at batch 1. ``info``, ``bench`` (achieved GFLOP/s = 2 x MACs x
segments / s) and the export report use it; the paper's count (training network, frontend excluded) is
given beside it as ``paper_macs``. Paper preset, 8-s segment: 12.15 GMAC executed (11.48 network + 0.67
frontend), 14.82 GMAC as the paper counts. The FP32 artifact's CPU rewrite (export/fp32_cpu.py) adds a few
1x1 convolutions on top; they are not counted, so the figure is the same for every precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from glfer_edge.model.glfernet import GLFERNet
from glfer_edge.model.odconv import ODConv2d


@dataclass(frozen=True)
class Complexity:
    parameters: int
    network_macs: int  # per segment, batch 1, frontend excluded
    frontend_macs: int  # STFT-as-convolution and frequency mapping
    gru_macs: int

    @property
    def total_macs(self) -> int:
        return self.network_macs + self.frontend_macs


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates per segment (batch 1) of one model: the executed graph and the paper's count."""

    executed_macs: int  # reparameterized network + frontend: what every artifact computes
    paper_macs: int  # training network without the frontend (the paper's convention)
    frontend_macs: int
    gru_macs: int
    parameters: int  # of the training model
    deploy_parameters: int  # of the reparameterized model

    @property
    def executed_gflop(self) -> float:
        """FLOPs (2 per MAC) of the executed graph, in units of 1e9."""
        return 2 * self.executed_macs / 1e9


def segment_macs(model_or_config: GLFERNet | object) -> MacCount:
    """The one MAC count (see the module docstring) of a model, or of a fresh model of a SELDConfig."""
    from glfer_edge.model.reparam import reparameterize

    model = model_or_config if isinstance(model_or_config, GLFERNet) else GLFERNet(model_or_config)
    paper = measure_complexity(model)
    deploy = measure_complexity(reparameterize(model))
    return MacCount(deploy.total_macs, paper.network_macs, deploy.frontend_macs, deploy.gru_macs,
                    paper.parameters, deploy.parameters)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _frontend_macs(model: GLFERNet) -> int:
    cfg = model.config
    frames = cfg.features.n_frames(cfg.segment_samples)
    fe = model.frontend
    stft = 4 * frames * fe.basis.shape[0] * cfg.features.n_fft
    bands = 7 * frames * fe.band_map.numel()
    return stft + bands


@torch.no_grad()
def measure_complexity(model: GLFERNet) -> Complexity:
    """Count MACs of one segment (batch 1) through the model's encoder and decoder."""
    macs = {"net": 0, "gru": 0}

    def conv_hook(m: nn.Module, inp, out) -> None:
        if isinstance(m, ODConv2d):
            macs["net"] += out[0].numel() * m.in_ch * m.kernel_size**2 * m.kernel_num
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            k = 1
            for s in m.kernel_size:
                k *= s
            macs["net"] += out[0].numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, nn.Linear):
            macs["net"] += out[0].numel() * m.in_features

    def gru_hook(m: nn.GRU, inp, out) -> None:
        steps = out[0].shape[1]
        h = m.hidden_size
        n = 0
        for layer in range(m.num_layers):
            inp_size = m.input_size if layer == 0 else 2 * h
            n += 2 * steps * 3 * (inp_size * h + h * h)
        macs["gru"] += n

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.GRU):
            handles.append(mod.register_forward_hook(gru_hook))
        elif isinstance(mod, (ODConv2d, nn.Conv1d, nn.Conv2d, nn.Linear)):
            handles.append(mod.register_forward_hook(conv_hook))
    was_training = model.training
    model.eval()
    try:
        cfg = model.config
        feats = torch.zeros(1, 7, cfg.segment_frames, cfg.features.n_bins)
        model.logits(feats)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # the ODConv's attention 1x1 convs on pooled maps are hooked as Conv2d too; they are negligible
    return Complexity(count_parameters(model), macs["net"] + macs["gru"], _frontend_macs(model), macs["gru"])
