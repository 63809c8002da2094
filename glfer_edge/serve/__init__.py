"""Serving glfer-edge models on NVIDIA Triton Inference Server.

One module per concept:

- :mod:`~glfer_edge.serve.distribution`: the ``tritonserver`` binary, Python backend and stub that the
  ``nvidia-pytriton`` wheel carries, and the environment the stub needs (its interpreter's libpython).
- :mod:`~glfer_edge.serve.repository`: Triton model repositories (``config.pbtxt`` for the Python-backend,
  ONNX and TensorRT forms); ``glfer-edge export-triton`` and ``glfer-edge serve`` write them.
- :mod:`~glfer_edge.serve.python_model`: the Python-backend model (``glfer`` stateless with dynamic
  batching, ``glfer_stream`` one :class:`~glfer_edge.runtime.StreamingSELD` per Triton sequence).
- :mod:`~glfer_edge.serve.server`: a ``tritonserver`` process on a repository (start, ready, stop).
- :mod:`~glfer_edge.serve.client`: :class:`SELDClient` (``tritonclient`` over HTTP or gRPC) and its stream
  sessions, which resume after a server restart without losing or repeating a frame.

Everything here imports without torch; ``tritonclient`` and ``nvidia-pytriton`` come with the ``serve`` extra.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SELDClient": "glfer_edge.serve.client",
    "StreamSession": "glfer_edge.serve.client",
    "ServerError": "glfer_edge.serve.client",
    "TritonServer": "glfer_edge.serve.server",
    "write_repository": "glfer_edge.serve.repository",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'glfer_edge.serve' has no attribute {name!r}")
