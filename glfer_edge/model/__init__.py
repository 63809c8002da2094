"""GLFER-Net reference model (torch). Modules are named after the paper's components."""

from glfer_edge.model.aff import AFF
from glfer_edge.model.fr import FR, AxisAttention
from glfer_edge.model.glf import ConvBlock, GLFExtractor
from glfer_edge.model.glfernet import Encoder, GLFERNet, SELDDecoder
from glfer_edge.model.lfe import FusedLFE, LFEUnit
from glfer_edge.model.msfe import CSS, MSFE, PSA, SEWeight, channel_shuffle
from glfer_edge.model.odconv import ODConv2d

__all__ = [
    "AFF", "CSS", "ConvBlock", "Encoder", "FR", "AxisAttention", "FusedLFE", "GLFERNet", "GLFExtractor",
    "LFEUnit", "MSFE", "ODConv2d", "PSA", "SEWeight", "SELDDecoder", "channel_shuffle",
]
