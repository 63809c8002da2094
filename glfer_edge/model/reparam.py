"""Deploy reparameterization: an algebraically identical GLFER-Net that does less work at inference.

Applied by the ONNX export (every artifact, every precision); the training model is untouched.

* CSS: the aggregation's first 1x1 conv over [shuffle(o), o] becomes one 1x1 conv over o
  (``CSS.fold_``): 0.39 of the paper preset's 14.8 GMAC per 8-s segment, plus a shuffle and a
  concatenation per GLF extractor;
* LFE: the BatchNorm after the sum of the two asymmetric paths folds into both paths' last convs
  (``LFEUnit.fold_bn_``), then the four asymmetric convs and their sum become one 3x3 conv
  (``FusedLFE``): 2.95 of the paper preset's 14.4 remaining GMAC per 8-s segment, and four convolutions
  plus an Add become one convolution plus an edge-term Add per unit.
"""

from __future__ import annotations

import copy

from glfer_edge.model.glfernet import GLFERNet
from glfer_edge.model.lfe import FusedLFE, LFEUnit
from glfer_edge.model.msfe import CSS

__all__ = ["reparameterize"]


def reparameterize(model: GLFERNet) -> GLFERNet:
    """Deploy copy of ``model`` in eval mode (same outputs up to float rounding); ``model`` is not modified."""
    deploy = copy.deepcopy(model).eval()
    for parent in list(deploy.modules()):
        for name, m in list(parent.named_children()):
            if isinstance(m, CSS):
                m.fold_()
            elif isinstance(m, LFEUnit):
                m.fold_bn_()
                setattr(parent, name, FusedLFE(m))
    return deploy
