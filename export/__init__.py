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

from glfer_edge.precision import DEFAULT_EXPORT, PRECISIONS, artifact_name, get_precision

if TYPE_CHECKING:
    from glfer_edge.model.glfernet import GLFERNet

__all__ = [
    "export_onnx", "export_artifacts", "ExportConfig", "CalibrationConfig", "ExportResult", "read_onnx_metadata",
    "onnx_config",
]

# onnx-backed names load on first use: the TensorRT builder (glfer_edge.export.trt_build) runs on Jetson
# deploy installs, which have TensorRT and onnxruntime but not onnx.
_LAZY = {"onnx_config": "glfer_edge.export.onnx_meta", "read_onnx_metadata": "glfer_edge.export.onnx_meta"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'glfer_edge.export' has no attribute {name!r}")


MAX_FOLDER_SEGMENTS = 512  # a larger calibration folder is subsampled (seed-deterministic)


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """INT8 calibration data: FOA recordings in ``folder`` (up to 512 segments), else ``synth_segments``
    generated scenes at -50..-3 dBFS peak; ``method``: the activation range estimator."""

    folder: Path | None = None
    synth_segments: int = 128
    method: str = "minmax"  # minmax | entropy | percentile


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What ``export_artifacts`` writes. Weights: ``weights``, else the bundled demo model; ``preset``
    without weights builds a randomly initialised model (speed measurements only)."""

    precisions: tuple[str, ...] = DEFAULT_EXPORT  # names of glfer_edge.precision.PRECISIONS
    weights: Path | None = None
    preset: str | None = None
    segment_seconds: float | None = None  # default: the model's (8 s for the presets)
    opset: int = 17
    single_batch: bool = False  # static batch 1; ODConv as one conv over its per-sample kernel
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    report_scenes: int = 16  # held-out generated scenes for the INT8 accuracy report (0: none)
    seed: int = 0  # calibration scenes and random init


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
    out_dir: str | Path, config: ExportConfig | None = None, *, log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``model.<precision>.onnx`` files into ``out_dir`` as ``config`` says (default: the bundled
    demo model's FP32, FP16 and INT8 forms)."""
    from glfer_edge.errors import InputError
    from glfer_edge.export.fp32_cpu import prepare_fp32_cpu_graph
    from glfer_edge.export.onnx_fp32 import export_fp32, fp32_self_check

    config = config or ExportConfig()
    if not config.precisions:
        raise InputError(f"no precision to export; choose from {', '.join(PRECISIONS)}")
    forms = [get_precision(p) for p in config.precisions]
    say = log or (lambda _msg: None)
    model, sha, notes = _load(config.weights, config.preset, config.seed)
    for note in notes:
        say(note)
    out_dir = Path(out_dir)
    seconds = config.segment_seconds or model.config.segment_seconds
    shape = "fixed batch 1" if config.single_batch else "dynamic batch"
    say(f"exporting FP32 graph ({model.config.name}, segment {seconds:g} s, {shape})")
    # the FP16 and INT8 forms start from the plain graph; the FP32 artifact is tuned for ORT's CPU kernels
    fp32 = export_fp32(model, sha, config.segment_seconds, config.opset, config.single_batch)
    artifact = prepare_fp32_cpu_graph(fp32)
    error = fp32_self_check(artifact, model, config.seed)
    artifacts, reports, accuracies = {}, (), {}
    for form in forms:
        path = out_dir / form.filename
        if form.int8_target is not None:
            artifacts[form.name], form_reports, accuracies[form.name] = _export_int8(fp32, path, form.int8_target, config, say)
            reports += form_reports
        elif form.name == "fp16":
            from glfer_edge.export.fp16 import convert_fp16

            say("converting to strongly typed FP16 (frontend pinned to FP32)")
            artifacts[form.name] = _save(convert_fp16(fp32), path)
        else:
            artifacts[form.name] = _save(artifact, path)
    return ExportResult(artifacts, reports, error, tuple(notes), accuracies)


def _export_int8(fp32, path: Path, target: str, config: ExportConfig, say):
    from glfer_edge.calibration.readers import DEFAULT_BATCH, FolderReader, SynthReader
    from glfer_edge.calibration.report import activation_ranges, held_out_accuracy, write_calibration_report
    from glfer_edge.export.int8 import quantize_int8
    from glfer_edge.export.onnx_meta import calibration_of, fixed_batch, graph_config, graph_metadata

    seld_config, cal = graph_config(fp32), config.calibration
    batch = fixed_batch(fp32) or DEFAULT_BATCH  # calibration batches must fit a fixed-batch graph
    if cal.folder is not None:
        reader = FolderReader(cal.folder, seld_config, MAX_FOLDER_SEGMENTS, config.seed, batch_size=batch)
    else:
        reader = SynthReader(seld_config, cal.synth_segments, config.seed, batch_size=batch)
    say(f"calibrating INT8 for {target} ({cal.method}) on {reader.n_segments} segments from {reader.describe()['source']}")
    int8 = quantize_int8(fp32, reader, cal.method, target=target)  # warns when the set is small or silent
    path = _save(int8, path)
    scenes = config.report_scenes
    say(f"measuring INT8 vs FP32 on {scenes} held-out generated scenes")
    accuracy = held_out_accuracy(fp32, int8, seld_config, scenes, config.seed) if scenes else None
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
