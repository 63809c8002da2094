"""glfer-edge: edge-deployment SDK for GLFER-Net sound event localization and detection.

Deploy-time names (no torch needed) are imported eagerly; torch-backed names (the reference
model, weights loading) resolve lazily on first use so ``import glfer_edge`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from glfer_edge._version import __version__
from glfer_edge.config import (
    DCASE2021_CLASSES, PRESETS, STARSS23_CLASSES, SYNTH_CLASSES, FeatureConfig, ModelConfig, SELDConfig, get_preset,
)
from glfer_edge.errors import ArtifactError, GlferError, InputError, MissingDependencyError
from glfer_edge.frontend import extract_features
from glfer_edge.tolerances import TOLERANCES, Tolerances

_LAZY = {
    "GLFERNet": "glfer_edge.model",
    "load_model": "glfer_edge.weights",
    "save_weights": "glfer_edge.weights",
    "default_weights_path": "glfer_edge.weights",
    "SELDRuntime": "glfer_edge.runtime",
    "SELDOutput": "glfer_edge.runtime",
    "StreamingSELD": "glfer_edge.runtime",
    "infer_long": "glfer_edge.runtime.segments",
    "Event": "glfer_edge.postprocess",
    "detect_events": "glfer_edge.postprocess",
    "SELDMetrics": "glfer_edge.metrics",
    "evaluate_folders": "glfer_edge.metrics",
    "compare_outputs": "glfer_edge.parity",
    "Precision": "glfer_edge.precision",
    "PRECISIONS": "glfer_edge.precision",
    "SELDClient": "glfer_edge.serve.client",  # a model served on Triton (glfer-edge serve); tritonclient: serve extra
}

__all__ = [
    "__version__", "DCASE2021_CLASSES", "PRESETS", "STARSS23_CLASSES", "SYNTH_CLASSES", "FeatureConfig", "ModelConfig",
    "SELDConfig", "get_preset", "ArtifactError", "GlferError", "InputError", "MissingDependencyError",
    "extract_features", "TOLERANCES", "Tolerances", *_LAZY,
]


_NEEDS_TORCH = {"GLFERNet"}  # a deploy install (no [torch] extra) gets the pip command, not a bare ImportError


def __getattr__(name: str) -> Any:
    if name in _NEEDS_TORCH:
        from glfer_edge.errors import require

        require("torch", "torch", f"glfer_edge.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'glfer_edge' has no attribute {name!r}")
