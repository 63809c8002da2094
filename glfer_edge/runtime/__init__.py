"""Inference runtime: one API over torch (.safetensors), onnxruntime or OpenVINO (.onnx) and TensorRT (.engine/.plan).

Importing this package needs numpy only; each backend imports its library when a model is opened.
"""

from glfer_edge.runtime.base import SELDOutput
from glfer_edge.runtime.options import RuntimeOptions
from glfer_edge.runtime.seld import SELDRuntime
from glfer_edge.runtime.streaming import StreamingSELD

__all__ = ["SELDRuntime", "SELDOutput", "StreamingSELD", "RuntimeOptions"]
