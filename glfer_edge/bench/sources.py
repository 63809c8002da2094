"""What the bench times: a model's weights and its artifacts, exported or built on demand into a cache.

A :class:`ModelSource` holds the weights (torch backends), the ONNX file of each precision form
(onnxruntime and OpenVINO backends) and TensorRT engines (trt backends). ``resolve_source`` exports
the missing forms from the weights with ``glfer_edge.export`` (keyed by weights hash, segment length
and a hash of the exporter code) and builds missing engines; what cannot be made is recorded with
the reason, and its cases are skipped with it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from glfer_edge.bench.backends import get_backend
from glfer_edge.config import SELDConfig
from glfer_edge.errors import InputError
from glfer_edge.precision import artifact_name

__all__ = ["ModelSource", "resolve_source", "default_cache_dir", "preset_weights", "TIMING_CALIBRATION_SEGMENTS"]

TIMING_CALIBRATION_SEGMENTS = 8  # INT8 exports for timing only


@dataclass(frozen=True)
class ModelSource:
    """What a case runs: weights (torch backends), ONNX artifacts per form, TensorRT engines per form."""

    label: str
    config: SELDConfig  # segment length applied
    weights: str | None = None  # .safetensors; a preset's random weights are saved to the cache first
    artifacts: dict[str, str] = field(default_factory=dict)  # form (fp32, int8-cpu, ...) -> .onnx path
    unavailable: dict[str, str] = field(default_factory=dict)  # bench backend -> why it has no artifact
    engines: dict[str, str] = field(default_factory=dict)  # form -> .engine path

    def file_for(self, backend: str) -> str | None:
        """The file a bench backend opens (weights, .onnx or .engine), None when there is none."""
        b = get_backend(backend)
        if b.form is None:
            return self.weights
        return (self.engines if b.runtime == "tensorrt" else self.artifacts).get(b.form)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glfer_edge" / "bench"


def preset_weights(preset: str, cache_dir: Path) -> Path:
    """Random weights of a preset (torch seed 0), saved once to the cache: for speed measurements only."""
    path = Path(cache_dir) / f"{preset}-random-seed0.safetensors"
    if not path.is_file():
        import torch

        from glfer_edge.config import get_preset
        from glfer_edge.model.glfernet import GLFERNet
        from glfer_edge.weights import save_weights

        try:
            config = get_preset(preset)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        torch.manual_seed(0)
        save_weights(GLFERNet(config).eval(), path)
    return path


def resolve_source(
    path: str | Path,
    backends: Sequence[str],
    batches: Sequence[int],
    *,
    segment_seconds: float | None = None,
    cache_dir: Path | None = None,
    label: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ModelSource:
    """A model file -> its config and the file of every requested backend, exporting or building what is
    missing into ``cache_dir``."""
    from glfer_edge.runtime.artifact import artifact_kind, artifact_metadata, calibration_of, config_from_metadata

    path = Path(path)
    kind = artifact_kind(path)
    meta = artifact_metadata(path)
    config, precision = config_from_metadata(meta, path)
    if precision == "int8" and (calibration_of(meta) or {}).get("target") == "cpu":
        precision = "int8-cpu"
    if segment_seconds is not None and kind != "torch" and segment_seconds != config.segment_seconds:
        raise InputError(f"{path} is fixed to {config.segment_seconds:g}-s segments; drop --segment-seconds "
                         "or pass the weights (.safetensors) to export at another length")
    config = config.replace(segment_seconds=segment_seconds) if segment_seconds else config
    source = ModelSource(
        label or path.stem, config, str(path) if kind == "torch" else None,
        artifacts={precision: str(path)} if kind == "onnxruntime" else {},
        engines={precision: str(path)} if kind == "tensorrt" else {},
    )
    cache = Path(cache_dir or default_cache_dir())
    if kind == "torch" and config.segment_seconds != config_from_metadata(meta, path)[0].segment_seconds:
        source = dataclasses.replace(source, weights=str(_resegmented(path, config, cache)))
    if kind == "torch":
        source = _with_exports(source, backends, cache, progress)
    if kind != "tensorrt":
        source = _with_engines(source, backends, batches, progress)
    return source


def _resegmented(weights: Path, config: SELDConfig, cache_dir: Path) -> Path:
    """The weights re-saved for another segment length (the weights do not depend on it), so that the torch
    backend's SELDRuntime takes segments of the bench's length."""
    from glfer_edge.metadata import sha256_file

    out = cache_dir / f"{weights.stem}-{sha256_file(weights)[:16]}-{config.segment_seconds:g}s.safetensors"
    if not out.is_file():
        from glfer_edge.model.glfernet import GLFERNet
        from glfer_edge.weights import load_model, save_weights

        model = GLFERNet(config)
        model.load_state_dict(load_model(weights).state_dict())
        out.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model.eval(), out)
    return out


def _with_exports(source: ModelSource, backends: Sequence[str], cache_dir: Path,
                  progress: Callable[[str], None] | None) -> ModelSource:
    """ONNX artifacts for the ort/openvino/trt backends, exported once from the weights."""
    from glfer_edge.metadata import sha256_file

    trt_ok = not trt_missing()
    wanted = sorted({b.form for b in map(get_backend, backends)
                     if b.form is not None and (b.runtime != "tensorrt" or trt_ok)})
    if not wanted:
        return source
    out_dir = cache_dir / f"{sha256_file(source.weights)[:16]}-{source.config.segment_seconds:g}s-{_exporter_hash()}"
    artifacts, unavailable = dict(source.artifacts), dict(source.unavailable)
    missing = [p for p in wanted if not (out_dir / artifact_name(p)).is_file()]
    try:
        if missing:
            from glfer_edge.export import CalibrationConfig, ExportConfig, export_artifacts

            if progress:
                progress(f"exporting {source.label} {', '.join(missing)} ONNX to {out_dir}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # converter notes on FP16 rounding: not the benchmark's business
                export_artifacts(out_dir, ExportConfig(
                    precisions=tuple(missing), weights=source.weights, segment_seconds=source.config.segment_seconds,
                    calibration=CalibrationConfig(synth_segments=TIMING_CALIBRATION_SEGMENTS), report_scenes=0,
                ))
    except Exception as exc:  # the cases are skipped with the reason; the other backends still run
        for b in backends:
            if get_backend(b).form in missing:
                unavailable[b] = f"export failed: {one_line(exc)}"
    for p in wanted:
        if (out_dir / artifact_name(p)).is_file():
            artifacts[p] = str(out_dir / artifact_name(p))
    return dataclasses.replace(source, artifacts=artifacts, unavailable=unavailable)


def _exporter_hash() -> str:
    """Hash of the code that writes an artifact (model, frontend, export, calibration): a cached export
    from older code must not be timed as if it were the current one. complexity.py only counts."""
    import hashlib

    import glfer_edge.calibration
    import glfer_edge.export
    import glfer_edge.frontend
    import glfer_edge.model

    digest = hashlib.sha256()
    for package in (glfer_edge.model, glfer_edge.frontend, glfer_edge.export, glfer_edge.calibration):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            if path.name != "complexity.py":
                digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:8]


def _with_engines(source: ModelSource, backends: Sequence[str], batches: Sequence[int],
                  progress: Callable[[str], None] | None) -> ModelSource:
    """TensorRT engines (batch profile 1..max) for the trt backends, built from the ONNX artifacts."""
    engines, unavailable = dict(source.engines), dict(source.unavailable)
    for name in backends:
        b = get_backend(name)
        onnx_path = source.artifacts.get(b.form or "")
        if b.runtime != "tensorrt" or b.form in engines or onnx_path is None or trt_missing():
            continue
        engine = Path(onnx_path).with_suffix(f".b{max(batches)}.engine")
        try:
            if not engine.is_file():
                from glfer_edge.export.trt_build import build_engine

                if progress:
                    progress(f"building {engine}")
                build_engine(onnx_path, engine, batch=(1, max(batches), max(batches)), progress=False)
            engines[b.form] = str(engine)
        except Exception as exc:  # the case is skipped with the reason
            unavailable[name] = f"engine build failed: {one_line(exc)}"
    return dataclasses.replace(source, engines=engines, unavailable=unavailable)


def trt_missing() -> str | None:
    """Why TensorRT engines cannot run here (TensorRT-RTX builds ahead of time but runs on a GPU too)."""
    from glfer_edge.runtime.trt_compat import tensorrt_missing

    return tensorrt_missing()


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]

