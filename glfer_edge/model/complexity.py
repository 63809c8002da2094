"""Parameter and MAC (multiply-accumulate) counts per segment, by forward hooks on one real forward pass.

Counted: convolutions (incl. ODConv's dynamic convolution), linears, the GRU, and the frontend's
STFT-as-convolution (reported apart, as the paper's numbers exclude it). Element-wise ops,
pooling and attention GAPs are not counted (fact sheet section 6 does the same).
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
