"""Artifact kinds and their embedded contract (SELDConfig, precision) read from glfer-edge metadata.

Every artifact carries the keys of :mod:`glfer_edge.metadata`: safetensors in its header, ONNX in
``metadata_props``, engines in the sidecar JSON (which copies the ONNX metadata). Reading ONNX
metadata goes through onnxruntime (a core dependency) so that deploy installs need no ``onnx``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glfer_edge import metadata as md
from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.precision import METADATA_PRECISIONS

__all__ = ["artifact_kind", "artifact_metadata", "config_from_metadata", "read_onnx_metadata", "SUFFIXES"]

SUFFIXES = {".safetensors": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}


def artifact_kind(path: str | Path) -> str:
    """Backend name for a model file, from its suffix; raises for a missing file or unknown suffix."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"model {path} has an unknown suffix {path.suffix!r}; pass a {', '.join(SUFFIXES)} file"
        )
    if not path.is_file():
        raise InputError(f"model file {path} not found; check the path or build it (glfer-edge export / build)")
    return kind


def artifact_metadata(path: str | Path) -> dict[str, str]:
    """The glfer-edge metadata of any artifact: a weights header, ONNX ``metadata_props``, or the ONNX
    metadata an engine's sidecar copied; nothing is loaded onto a device."""
    kind = artifact_kind(path)
    if kind == "torch":
        from glfer_edge.weights import read_metadata

        return read_metadata(path)
    if kind == "onnxruntime":
        return read_onnx_metadata(path)
    from glfer_edge.runtime.trt_compat import read_sidecar

    return read_sidecar(path).get("onnx_metadata", {})


def config_from_metadata(meta: dict[str, str], source: str | Path) -> tuple[SELDConfig, str]:
    """(SELDConfig, precision) from an artifact's metadata; ArtifactError when missing or foreign."""
    if md.KEY_CONFIG not in meta:
        raise ArtifactError(
            f"{source} carries no glfer-edge metadata ({md.KEY_CONFIG}); export it with 'glfer-edge export'"
        )
    version = meta.get(md.KEY_FORMAT)
    if version is not None and version != md.FORMAT_VERSION:
        raise ArtifactError(
            f"{source} uses glfer-edge artifact format {version} (this SDK reads {md.FORMAT_VERSION}, "
            f"written by glfer-edge {meta.get(md.KEY_VERSION, '?')}); re-export it with this SDK"
        )
    try:
        config = SELDConfig.from_json(meta[md.KEY_CONFIG])
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{source}: embedded config is invalid ({exc}); re-export it with this SDK") from None
    precision = meta.get(md.KEY_PRECISION, "fp32")
    if precision not in METADATA_PRECISIONS:
        raise ArtifactError(f"{source}: unknown precision {precision!r} in its metadata; re-export it with this SDK")
    return config, precision


def calibration_of(meta: dict[str, str]) -> dict[str, Any] | None:
    """The calibration summary in an INT8 artifact's metadata (None for other precisions)."""
    raw = meta.get(md.KEY_CALIBRATION)
    return None if raw is None else json.loads(raw)


# runtime -> (INT8 forms whose 8-bit weights its x86 kernels saturate without VNNI, the effect measured on the
# test model, the fix). Measured on an AMD EPYC Zen 3 (AVX2 only): onnxruntime 1.32 on the CPU form
# (tests/test_calibration.py); OpenVINO 2026.4 on both forms (tests/parity/test_openvino_parity.py, where the
# int8-cpu form with 7-bit weights agreed on 0.994 of the decisions with 2.6 degrees).
_SATURATION = {
    "onnxruntime": (("cpu",), "mean DOA error 6.9 deg instead of 0.8 on the test model",
                    "re-export it with 'glfer-edge export --precision int8-cpu' (7-bit weights)"),
    "openvino": (("cpu", "tensorrt"), "SED agreement 0.87 and a 34-degree mean DOA error against FP32 on the test model",
                 "run the int8-cpu artifact (7-bit weights; glfer-edge export --precision int8-cpu) instead"),
}


def saturation_warning(meta: dict[str, str], source: str | Path, runtime: str = "onnxruntime") -> str | None:
    """A warning when an INT8 artifact with 8-bit weights runs on ``runtime``'s x86 kernels where their U8S8
    multiply saturates (no VNNI: glfer_edge.machine.u8s8_saturates); the CPU form of this SDK carries 7-bit
    weights and gets none."""
    from glfer_edge.machine import cpu_label, u8s8_saturates

    targets, effect, fix = _SATURATION[runtime]
    calibration = calibration_of(meta)  # None: not an INT8 artifact
    if calibration is None or calibration.get("target", "tensorrt") not in targets or calibration.get("weight_bits", 8) < 8:
        return None
    if not u8s8_saturates():
        return None
    return (f"{source} has 8-bit INT8 weights, which {runtime}'s kernels saturate on this CPU without VNNI "
            f"({cpu_label()}; {effect}): {fix}")


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (external data next to it is fine).

    Graph optimizations are off: this only reads the metadata, and FP16 files exported before the
    Transpose-MatMul rewrite (export/fp16.py) crash onnxruntime 1.23-1.32's optimizer.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/… types
        raise ArtifactError(f"{path} is not a loadable ONNX model ({_first_line(exc)}); re-export it") from None
    return dict(session.get_modelmeta().custom_metadata_map)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
