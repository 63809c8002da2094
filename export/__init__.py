"""Export pipeline: GLFER-Net weights -> ONNX artifacts with the fused frontend (FP32, FP16, INT8 Q/DQ).

``export_artifacts`` is what ``glfer-edge export`` runs; ``export_onnx`` writes the FP32 graph of an
in-memory model. The runtime reads an artifact's contract with ``read_onnx_metadata`` and
``onnx_config`` (``glfer_edge.export.onnx_meta``, onnx only). Torch, onnxslim, onnxconverter-common
and the ORT quantizer are imported only when exporting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glfer_edge.export.onnx_meta import PRECISIONS, onnx_config, read_onnx_metadata

if TYPE_CHECKING:
    from glfer_edge.model.glfernet import GLFERNet

__all__ = [
    "export_onnx", "export_artifacts", "ExportResult", "read_onnx_metadata", "onnx_config", "PRECISIONS", "ARTIFACTS",
]

# What export_artifacts can write: one artifact per precision, plus the CPU flavour of INT8
# (metadata precision "int8", calibration target "cpu"; see glfer_edge.export.int8).
ARTIFACTS = (*PRECISIONS, "int8-cpu")

MAX_FOLDER_SEGMENTS = 512  # a larger calibration folder is subsampled (seed-deterministic)


def artifact_name(precision: str) -> str:
    return f"model.{precision}.onnx"


def export_onnx(
    model: "GLFERNet", path: str | Path, segment_seconds: float | None = None, opset: int = 17,
    weights_sha256: str = "unknown", single_batch: bool = False,
) -> Path:
    """Write the FP32 artifact of an in-memory model (atomic); ``single_batch``: the fixed batch-1 form."""
    from glfer_edge.export.fp32_cpu import prepare_fp32_cpu_graph
    from glfer_edge.export.onnx_fp32 import export_fp32

    graph = export_fp32(model, weights_sha256, segment_seconds, opset, single_batch)
    return _save(prepare_fp32_cpu_graph(graph), Path(path))


@dataclass(frozen=True)
class ExportResult:
    artifacts: dict[str, Path]  # precision -> ONNX file
    reports: tuple[Path, ...] = ()  # INT8 calibration report (.json, .md)
    fp32_max_error: float = 0.0  # ORT vs torch on a random segment
    notes: tuple[str, ...] = ()
    accuracies: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # INT8 artifact -> held-out parity


def export_artifacts(
    out_dir: str | Path,
    precisions: Sequence[str] = PRECISIONS,  # any of ARTIFACTS
    weights: str | Path | None = None,
    preset: str | None = None,
    segment_seconds: float | None = None,
    opset: int = 17,
    calib_dir: str | Path | None = None,
    calib_segments: int = 128,
    calib_method: str = "minmax",
    seed: int = 0,
    report_scenes: int = 16,
    log: Callable[[str], None] | None = None,
    single_batch: bool = False,
) -> ExportResult:
    """Export ``model.<precision>.onnx`` files into ``out_dir``.

    Weights: ``weights``, else the bundled demo model; ``preset`` without weights builds a randomly
    initialised model of that preset (speed measurements only). INT8 calibrates on ``calib_dir``
    (FOA recordings, up to 512 segments) or on ``calib_segments`` generated scenes. ``single_batch``
    fixes every artifact at batch 1 (static shapes; ODConv as one conv over its per-sample kernel).
    """
    from glfer_edge.errors import InputError
    from glfer_edge.export.fp32_cpu import prepare_fp32_cpu_graph
    from glfer_edge.export.onnx_fp32 import export_fp32, fp32_self_check

    unknown = [p for p in precisions if p not in ARTIFACTS]
    if unknown or not precisions:
        raise InputError(f"unknown precision(s) {unknown}; choose from {', '.join(ARTIFACTS)}")
    say = log or (lambda _msg: None)
    model, sha, notes = _load(weights, preset, seed)
    for note in notes:
        say(note)
    out_dir = Path(out_dir)
    shape = "fixed batch 1" if single_batch else "dynamic batch"
    say(f"exporting FP32 graph ({model.config.name}, segment {segment_seconds or model.config.segment_seconds:g} s, {shape})")
    fp32 = export_fp32(model, sha, segment_seconds, opset, single_batch)  # the FP16 and INT8 forms start here
    artifact = prepare_fp32_cpu_graph(fp32)  # the FP32 artifact: tuned for ONNX Runtime's CPU kernels
    error = fp32_self_check(artifact, model, seed)
    artifacts, reports = {}, ()
    if "fp32" in precisions:
        artifacts["fp32"] = _save(artifact, out_dir / artifact_name("fp32"))
    if "fp16" in precisions:
        from glfer_edge.export.fp16 import convert_fp16

        say("converting to strongly typed FP16 (frontend pinned to FP32)")
        artifacts["fp16"] = _save(convert_fp16(fp32), out_dir / artifact_name("fp16"))
    accuracies = {}
    for name, target in (("int8", "tensorrt"), ("int8-cpu", "cpu")):
        if name in precisions:
            artifacts[name], target_reports, accuracies[name] = _export_int8(
                fp32, out_dir / artifact_name(name), target, calib_dir, calib_segments, calib_method, seed,
                report_scenes, say,
            )
            reports += target_reports
    return ExportResult(artifacts, reports, error, tuple(notes), accuracies)


def _export_int8(
    fp32, path: Path, target: str, calib_dir, calib_segments: int, method: str, seed: int, report_scenes: int, say
):
    from glfer_edge.calibration.readers import DEFAULT_BATCH, FolderReader, SynthReader
    from glfer_edge.calibration.report import activation_ranges, held_out_accuracy, write_calibration_report
    from glfer_edge.export.int8 import quantize_int8
    from glfer_edge.export.onnx_meta import calibration_of, fixed_batch, graph_config, graph_metadata

    config = graph_config(fp32)
    batch = fixed_batch(fp32) or DEFAULT_BATCH  # calibration batches must fit a fixed-batch graph
    if calib_dir is not None:
        reader = FolderReader(calib_dir, config, MAX_FOLDER_SEGMENTS, seed, batch_size=batch)
    else:
        reader = SynthReader(config, calib_segments, seed, batch_size=batch)
    say(f"calibrating INT8 for {target} ({method}) on {reader.n_segments} segments from {reader.describe()['source']}")
    int8 = quantize_int8(fp32, reader, method, target=target)  # warns when the set is small or silent
    path = _save(int8, path)
    say(f"measuring INT8 vs FP32 on {report_scenes} held-out generated scenes")
    accuracy = held_out_accuracy(fp32, int8, config, report_scenes, seed) if report_scenes else None
    reports = write_calibration_report(path, calibration_of(graph_metadata(int8)), activation_ranges(int8), accuracy)
    return path, reports, accuracy


def _load(weights, preset: str | None, seed: int):
    """(model, weights sha256 or 'random-init:<preset>', notes)."""
    from glfer_edge.config import get_preset
    from glfer_edge.errors import InputError
    from glfer_edge.metadata import sha256_file
    from glfer_edge.weights import default_weights_path, load_model

    try:
        config = None if preset is None else get_preset(preset)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if weights is None and config is not None:
        import torch

        from glfer_edge.model.glfernet import GLFERNet

        torch.manual_seed(seed)
        note = f"WARNING: no weights given: randomly initialised '{preset}' model; its outputs are meaningless (speed only)"
        return GLFERNet(config).eval(), f"random-init:{preset}", [note]
    path = Path(weights) if weights is not None else default_weights_path()
    return load_model(path, config), sha256_file(path), []


def _save(graph, path: Path) -> Path:
    import onnx

    from glfer_edge._fileio import atomic_path

    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))
    return path
