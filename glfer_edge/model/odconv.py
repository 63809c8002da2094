"""ODConv: omni-dimensional dynamic convolution (Li et al., ICLR 2022), the GLF extractor's global branch.

Two mathematically identical formulations of the same module (same parameters):

* ``folded`` (reference, as the official code): build a per-sample kernel and fold the batch into
  conv groups. An exported graph then has ``group = batch`` baked in, so it cannot serve a dynamic
  batch in TensorRT; at a fixed batch of one it is a plain convolution with a computed kernel
  (the static-shape export, ``export_fp32(single_batch=True)``).
* ``shifted`` (export-friendly, the default): scale the input by the channel attention, gather the
  k*k shifted views of the zero-padded input, scale each view by its per-sample spatial attention,
  and run one dense 1x1 convolution over the stacked views (im2col with attention); the filter
  attention scales the output. No per-sample weights, so the batch axis stays dynamic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ODConvAttention(nn.Module):
    """GAP -> 1x1 conv -> BN -> ReLU, then channel, filter, spatial and kernel attention heads."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, kernel_num: int, reduction: float,
        min_channels: int, temperature: float,
    ) -> None:
        super().__init__()
        hidden = max(int(in_ch * reduction), min_channels)
        self.temperature = temperature
        self.kernel_size = kernel_size
        self.kernel_num = kernel_num
        self.fc = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.channel_fc = nn.Conv2d(hidden, in_ch, 1)
        self.filter_fc = nn.Conv2d(hidden, out_ch, 1)
        self.spatial_fc = nn.Conv2d(hidden, kernel_size * kernel_size, 1) if kernel_size > 1 else None
        self.kernel_fc = nn.Conv2d(hidden, kernel_num, 1) if kernel_num > 1 else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):
        h = F.relu(self.bn(self.fc(F.adaptive_avg_pool2d(x, 1))))  # (B, A, 1, 1); GlobalAveragePool in ONNX
        t = self.temperature
        a_c = torch.sigmoid(self.channel_fc(h) / t)  # (B, Cin, 1, 1)
        a_f = torch.sigmoid(self.filter_fc(h) / t)  # (B, Cout, 1, 1)
        b = x.shape[0]
        a_s = None if self.spatial_fc is None else torch.sigmoid(self.spatial_fc(h) / t).reshape(b, -1)  # (B, k*k)
        a_k = None if self.kernel_fc is None else torch.softmax(self.kernel_fc(h).reshape(b, -1) / t, dim=1)  # (B, n)
        return a_c, a_f, a_s, a_k


class ODConv2d(nn.Module):
    """Omni-dimensional dynamic 2-D convolution, no bias, groups 1 (as GLFER-Net uses it)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
        kernel_num: int = 1, reduction: float = 0.0625, min_channels: int = 16, temperature: float = 1.0,
        formulation: str = "shifted",
    ) -> None:
        super().__init__()
        if formulation not in ("shifted", "folded"):
            raise ValueError(f"formulation must be 'shifted' or 'folded', got {formulation!r}")
        self.in_ch, self.out_ch = in_ch, out_ch
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.kernel_num = kernel_num
        self.formulation = formulation
        self.attention = ODConvAttention(in_ch, out_ch, kernel_size, kernel_num, reduction, min_channels, temperature)
        self.weight = nn.Parameter(torch.empty(kernel_num, out_ch, in_ch, kernel_size, kernel_size))
        for i in range(kernel_num):
            nn.init.kaiming_normal_(self.weight[i], mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_c, a_f, a_s, a_k = self.attention(x)
        if self.formulation == "folded":
            return self._forward_folded(x, a_c, a_f, a_s, a_k)
        return self._forward_shifted(x, a_c, a_f, a_s, a_k)

    def _forward_folded(self, x, a_c, a_f, a_s, a_k) -> torch.Tensor:
        b, c, h, w = x.shape
        if b == 1:  # a plain convolution; a literal batch keeps the kernel's traced shape static for export
            return F.conv2d(x * a_c, self._kernels(a_s, a_k, 1)[0], stride=self.stride, padding=self.padding) * a_f
        k = self.kernel_size
        weight = self._kernels(a_s, a_k, b).reshape(b * self.out_ch, c, k, k)
        y = F.conv2d((x * a_c).reshape(1, b * c, h, w), weight, stride=self.stride, padding=self.padding, groups=b)
        return y.reshape(b, self.out_ch, y.shape[-2], y.shape[-1]) * a_f

    def _kernels(self, a_s, a_k, b: int) -> torch.Tensor:
        """(B, O, I, k, k) per-sample kernels: spatial and kernel-wise attention applied, kernels summed."""
        k = self.kernel_size
        weight = self.weight.unsqueeze(0)  # (1, n, O, I, k, k)
        if a_s is not None:
            weight = weight * a_s.reshape(b, 1, 1, 1, k, k)
        if a_k is not None:
            weight = weight * a_k.reshape(b, self.kernel_num, 1, 1, 1, 1)
        return weight.expand(b, -1, -1, -1, -1, -1).sum(dim=1)

    def _forward_shifted(self, x, a_c, a_f, a_s, a_k) -> torch.Tensor:
        k, s, p = self.kernel_size, self.stride, self.padding
        x = x * a_c
        h_out = (x.shape[-2] + 2 * p - k) // s + 1
        w_out = (x.shape[-1] + 2 * p - k) // s + 1
        xp = F.pad(x, (p, p, p, p)) if p else x
        views = []
        for u in range(k):
            for v in range(k):
                view = xp[:, :, u : u + s * (h_out - 1) + 1 : s, v : v + s * (w_out - 1) + 1 : s]
                views.append(view if a_s is None else view * a_s[:, u * k + v, None, None, None])
        cols = torch.cat(views, dim=1)  # (B, k*k*Cin, H', W'), view-major
        # weight (n, O, I, k, k) -> (n*O, k*k*I, 1, 1) matching the view-major column order
        w = self.weight.permute(0, 1, 3, 4, 2).reshape(self.kernel_num * self.out_ch, -1, 1, 1)
        y = F.conv2d(cols, w)  # (B, n*O, H', W')
        if a_k is not None:
            y = (y.reshape(y.shape[0], self.kernel_num, self.out_ch, h_out, w_out) * a_k[:, :, None, None, None]).sum(1)
        return y * a_f
