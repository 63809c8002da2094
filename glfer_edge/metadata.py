"""Keys of the metadata every artifact carries (safetensors header, ONNX metadata_props, engine sidecar).

The runtime reads the model's contract from here; nothing is guessed on the side.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

FORMAT_VERSION = "1"

KEY_FORMAT = "glfer_edge.format_version"
KEY_VERSION = "glfer_edge.sdk_version"
KEY_CONFIG = "glfer_edge.config"  # SELDConfig JSON (features, model, segment, class names)
KEY_PRECISION = "glfer_edge.precision"  # fp32 | fp16 | int8
KEY_WEIGHTS_SHA256 = "glfer_edge.weights_sha256"
KEY_CALIBRATION = "glfer_edge.calibration"  # JSON summary (int8 only)
KEY_TRAINING = "glfer_edge.training"  # JSON provenance of the weights (optional)

INPUT_NAME = "audio"  # (batch, 4, samples) float32
OUTPUT_NAMES = ("sed", "doa")  # (batch, frames, classes) probabilities; (batch, frames, classes, 3)
DISTANCE_NAME = "distance"  # (batch, frames, classes) metres; only models with ModelConfig.distance


def output_names(config: Any) -> tuple[str, ...]:
    """The graph outputs of a model with this ``SELDConfig``, in order: sed, doa[, distance]."""
    return (*OUTPUT_NAMES, DISTANCE_NAME) if config.model.distance else OUTPUT_NAMES


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def graph_metadata(model: Any) -> dict[str, str]:
    """The ``metadata_props`` of an in-memory ONNX graph (``onnx.ModelProto``) as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def fixed_batch(model: Any) -> int | None:
    """The input's batch size when an in-memory ONNX graph fixes it (``--single-batch`` export), else None."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None
