"""Artifact metadata in ONNX ``metadata_props``: what the runtime reads to know the model's contract.

Only ``onnx`` is imported here (no torch), so a deploy-only runtime can read the SELDConfig, the
precision and the provenance of an artifact without the build-time dependencies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from glfer_edge import metadata as md
from glfer_edge._version import __version__
from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError
from glfer_edge.metadata import fixed_batch, graph_metadata  # noqa: F401 (re-exported)
from glfer_edge.precision import METADATA_PRECISIONS
from glfer_edge.runtime.artifact import calibration_of, config_from_metadata  # noqa: F401 (re-exported)


def write_onnx_metadata(
    model: onnx.ModelProto,
    config: SELDConfig,
    precision: str,
    weights_sha256: str,
    calibration: dict[str, Any] | None = None,
) -> None:
    """Set the glfer-edge keys in ``model.metadata_props`` (replacing earlier values of the same keys)."""
    if precision not in METADATA_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {METADATA_PRECISIONS}")
    props = {
        md.KEY_FORMAT: md.FORMAT_VERSION,
        md.KEY_VERSION: __version__,
        md.KEY_CONFIG: config.to_json(),
        md.KEY_PRECISION: precision,
        md.KEY_WEIGHTS_SHA256: weights_sha256,
    }
    if calibration is not None:
        props[md.KEY_CALIBRATION] = json.dumps(calibration, sort_keys=True)
    onnx.helper.set_model_props(model, {**graph_metadata(model), **props})


def set_precision(model: onnx.ModelProto, precision: str, calibration: dict[str, Any] | None = None) -> None:
    """Re-label a converted copy of an artifact (FP16, INT8), keeping its config and provenance."""
    meta = graph_metadata(model)
    if md.KEY_CONFIG not in meta:
        raise ValueError("the graph carries no glfer-edge metadata; call write_onnx_metadata first")
    write_onnx_metadata(model, graph_config(model), precision, meta[md.KEY_WEIGHTS_SHA256], calibration)


def graph_config(model: onnx.ModelProto) -> SELDConfig:
    """The SELDConfig of an in-memory graph written by this module."""
    return SELDConfig.from_json(graph_metadata(model)[md.KEY_CONFIG])


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of a glfer-edge ONNX artifact; ArtifactError if unreadable or foreign."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {path} not found; run 'glfer-edge export' first")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for damaged files
        raise ArtifactError(f"{path} is not a readable ONNX file ({exc}); re-export it") from None
    meta = graph_metadata(model)
    config_from_metadata(meta, path)  # the runtime's checks: our metadata, this format, a valid config
    return meta


def onnx_config(path: str | Path) -> SELDConfig:
    """The SELDConfig embedded in an artifact (including the export's segment length)."""
    return config_from_metadata(read_onnx_metadata(path), path)[0]

