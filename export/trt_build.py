"""Build a TensorRT engine from a glfer-edge ONNX artifact: strongly typed, one code path for all flavours.

Precision is whatever the ONNX holds (FP32, FP16 casts, INT8 Q/DQ): the network is strongly typed
and no precision builder flag is ever set, which is the only mode TensorRT 11 and TensorRT-RTX
have and an opt-in on TensorRT 10. The one exception is TF32, which TensorRT enables by default
and which strong typing does not turn off: FP32 engines clear it, or their convolutions and matmuls
run with 10-bit mantissas on Ampere and newer (Orin, H100) while the sidecar says fp32.
TensorRT-RTX engines are built with REQUIRE_USER_ALLOCATION, without which they cannot be captured
in a CUDA graph. The engine file is the raw plan (trtexec, Triton and DeepStream read it as is);
everything else goes to the sidecar ``MODEL.engine.json`` (its format: glfer_edge.runtime.trt_compat).

TensorRT-RTX builds ahead of time on a machine without a GPU; the plan is specialized for the GPU
when it is loaded. Standard TensorRT builds for the GPU it runs on.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from glfer_edge import metadata as md
from glfer_edge._fileio import atomic_path
from glfer_edge._version import __version__
from glfer_edge.errors import ArtifactError, InputError, MissingDependencyError
from glfer_edge.runtime.artifact import config_from_metadata, read_onnx_metadata
from glfer_edge.runtime.cuda import CudaError, DeviceInfo, open_cuda
from glfer_edge.runtime.trt_compat import AHEAD_OF_TIME, SIDECAR_FORMAT, TensorRT, load_tensorrt, sidecar_path

__all__ = ["BuildResult", "build_engine", "create_builder_config", "network_flags", "parse_batch", "timing_cache_support"]


@dataclass(frozen=True)
class BuildResult:
    engine_path: Path
    sidecar_path: Path
    seconds: float
    sidecar: dict[str, Any]
    notes: tuple[str, ...]  # things the user should know (timing cache unused, no GPU, ...)


def parse_batch(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' or a single 'N' (a fixed batch) -> (min, opt, max)."""
    parts = text.split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise InputError(f"--batch {text!r} is not MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (e.g. 1:4:8) or one N")
    return values  # type: ignore[return-value]


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    batch: tuple[int, int, int] = (1, 1, 1),
    timing_cache: str | Path | None = None,
    workspace_mb: int | None = None,
    flavour: str | None = None,
    progress: bool = True,
) -> BuildResult:
    """Parse ``onnx_path``, build a strongly typed engine with a batch profile, write plan + sidecar."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise InputError(f"ONNX model {onnx_path} not found; export one with 'glfer-edge export'")
    onnx_meta = read_onnx_metadata(onnx_path)
    config, precision = config_from_metadata(onnx_meta, onnx_path)
    trt = load_tensorrt(flavour)
    gpu, notes = _build_device(trt)
    t0 = time.perf_counter()
    builder = trt.module.Builder(trt.logger())
    network = builder.create_network(network_flags(trt))
    parser = trt.module.OnnxParser(network, trt.logger())  # the same logger: TensorRT keeps the first one
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ArtifactError(f"{trt.flavour} {trt.version} cannot parse {onnx_path}: {errors}")
    audio = _network_io(network)[0]
    if audio["name"] != md.INPUT_NAME or audio["shape"][1:] != [4, config.segment_samples]:
        raise ArtifactError(
            f"{onnx_path} input is {audio['name']} {audio['shape']}, expected {md.INPUT_NAME} "
            f"[batch, 4, {config.segment_samples}]; re-export it with 'glfer-edge export'"
        )
    outputs = [t["name"] for t in _network_io(network) if t["mode"] == "output"]
    if outputs != list(md.output_names(config)):  # sed, doa and, for distance models, distance
        raise ArtifactError(
            f"{onnx_path} outputs are {', '.join(outputs)}, but its metadata promises "
            f"{', '.join(md.output_names(config))}; re-export it with 'glfer-edge export'"
        )
    fixed = audio["shape"][0]
    if fixed != -1 and batch != (fixed,) * 3:
        raise InputError(f"{onnx_path} has a fixed batch of {fixed}; pass --batch {fixed} or export a dynamic batch")
    builder_config = create_builder_config(trt, builder, precision, workspace_mb)
    profile = builder.create_optimization_profile()
    shapes = [(b, 4, config.segment_samples) for b in batch]
    profile.set_shape(md.INPUT_NAME, *shapes)
    builder_config.add_optimization_profile(profile)
    cache_info, cache = _attach_timing_cache(trt, builder_config, timing_cache, notes)
    monitor = _progress_monitor(trt, builder_config) if progress else None
    try:
        plan = builder.build_serialized_network(network, builder_config)
    finally:
        if monitor is not None:
            monitor.close()
    if plan is None:
        raise ArtifactError(f"{trt.flavour} {trt.version} failed to build {onnx_path}; see the TensorRT log above")
    seconds = time.perf_counter() - t0
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(plan))
    if cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(memoryview(builder_config.get_timing_cache().serialize()))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "sdk_version": __version__,
        "tensorrt": {
            "flavour": trt.flavour, "version": trt.version,
            "onnx_parser": str(getattr(trt.module, "get_nv_onnx_parser_version", lambda: "unknown")()),
        },
        "gpu": _gpu_record(trt, gpu, builder_config),
        "precision": precision,
        "onnx": {"path": str(onnx_path), "sha256": md.sha256_file(onnx_path)},
        "io": _network_io(network),
        "profile": {md.INPUT_NAME: {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])}},
        "strongly_typed": True,
        "builder": _builder_record(trt, builder_config),
        "workspace_mb": workspace_mb,
        "timing_cache": cache_info,
        "build_seconds": round(seconds, 3),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "onnx_metadata": onnx_meta,
    }
    side = sidecar_path(engine_path)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return BuildResult(engine_path, side, seconds, sidecar, tuple(notes))


def _build_device(trt: TensorRT) -> tuple[DeviceInfo | None, list[str]]:
    """The GPU the build targets, or None (TensorRT-RTX builds ahead of time without one)."""
    try:
        cuda = open_cuda()
    except ImportError:
        if trt.portable_engines:
            return None, []
        return None, ["cuda-python is not installed: the sidecar records no GPU, so loading cannot check it"]
    status = cuda.driver_status()
    if status.devices == 0:
        if trt.portable_engines:
            return None, [f"no usable CUDA GPU ({status.problem}); {trt.flavour} builds ahead of time and "
                          "the engine is specialized at load"]
        raise CudaError(
            f"{trt.flavour} builds on the GPU that will run the engine, and here {status.problem}; "
            "or build ahead of time with TensorRT-RTX (pip install 'glfer-edge[trt-rtx]')"
        )
    return cuda.device_info(0), []


def network_flags(trt: TensorRT) -> int:
    """Creation flags of a strongly typed network: precision comes from the ONNX, never from builder flags.

    TensorRT 10 has STRONGLY_TYPED as an opt-in; 11 and RTX are strongly typed only (11 keeps the
    enum as a no-op). A TensorRT with weak-typing precision flags but no STRONGLY_TYPED (8.x)
    cannot honour the ONNX precision, so it is refused. EXPLICIT_BATCH is never passed.
    """
    flag_enum = trt.module.NetworkDefinitionCreationFlag
    strongly_typed = getattr(flag_enum, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        return 1 << int(strongly_typed)
    if hasattr(trt.module.BuilderFlag, "FP16"):
        raise MissingDependencyError(
            f"{trt.flavour} {trt.version} has no strongly typed networks, so it would ignore the precision "
            "stored in the ONNX; install TensorRT >= 10.0"
        )
    return 0


def create_builder_config(trt: TensorRT, builder: Any, precision: str, workspace_mb: int | None = None) -> Any:
    """The builder config of every glfer-edge build: TF32 off for FP32, capturable RTX engines."""
    config = builder.create_builder_config()
    flags = trt.module.BuilderFlag
    if precision == "fp32":
        config.clear_flag(flags.TF32)  # on by default in 10.3, 11.x and RTX; strong typing keeps it
    if trt.portable_engines and hasattr(flags, "REQUIRE_USER_ALLOCATION"):
        # TensorRT-RTX: without it the runtime may allocate during enqueue, and stream capture fails
        config.set_flag(flags.REQUIRE_USER_ALLOCATION)
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.module.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    return config


def _builder_record(trt: TensorRT, config: Any) -> dict[str, Any]:
    """The flags the engine was built with, read back from the config (the runtime reads the RTX one)."""
    flags = trt.module.BuilderFlag
    user_allocation = getattr(flags, "REQUIRE_USER_ALLOCATION", None)
    return {
        "tf32": bool(config.get_flag(flags.TF32)),
        "require_user_allocation": None if user_allocation is None else bool(config.get_flag(user_allocation)),
    }


def timing_cache_support(trt: TensorRT, builder_config: Any) -> str | None:
    """None when timing caches work here, else the reason they do not (RTX: operations are no-ops).

    Detected by behaviour: TensorRT-RTX accepts the calls but emits a DeprecationWarning.
    """
    if not hasattr(builder_config, "create_timing_cache"):
        return f"{trt.flavour} {trt.version} has no timing cache API"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = builder_config.create_timing_cache(b"")
        cache.serialize()
    for w in caught:
        if issubclass(w.category, DeprecationWarning):
            message = str(w.message).strip()
            return f"{trt.flavour} {trt.version} reports timing-cache calls as deprecated no-ops: {message}"
    return None


def _gpu_record(trt: TensorRT, gpu: DeviceInfo | None, builder_config: Any) -> dict[str, Any]:
    if gpu is None:
        record: dict[str, Any] = {"name": AHEAD_OF_TIME if trt.portable_engines else "unknown",
                                  "compute_capability": AHEAD_OF_TIME if trt.portable_engines else None}
    else:
        record = {"name": gpu.name, "compute_capability": gpu.sm}
    if trt.portable_engines:
        n = int(getattr(builder_config, "num_compute_capabilities", 0))
        targets = [str(builder_config.get_compute_capability(i)) for i in range(n)]
        record["target_compute_capabilities"] = targets or f"{trt.flavour} default set"
    return record


def _network_io(network: Any) -> list[dict[str, Any]]:
    tensors = [("input", network.get_input(i)) for i in range(network.num_inputs)]
    tensors += [("output", network.get_output(i)) for i in range(network.num_outputs)]
    return [
        {"name": t.name, "mode": mode, "shape": [int(d) for d in t.shape],
         "dtype": str(t.dtype).rsplit(".", 1)[-1].lower()}
        for mode, t in tensors
    ]


def _attach_timing_cache(
    trt: TensorRT, builder_config: Any, path: str | Path | None, notes: list[str]
) -> tuple[dict[str, Any] | None, Any]:
    """Load the cache file (if any) into the config; returns (sidecar record, cache or None)."""
    if path is None:
        return None, None
    path = Path(path)
    unsupported = timing_cache_support(trt, builder_config)
    if unsupported is not None:
        notes.append(f"timing cache not used ({unsupported})")
        return {"path": str(path), "used": False, "reason": unsupported}, None
    blob = path.read_bytes() if path.is_file() else b""
    cache = builder_config.create_timing_cache(blob)  # None for a blob this TensorRT cannot read
    try:
        attached = cache is not None and builder_config.set_timing_cache(cache, False)
    except TypeError:  # some bindings reject the cache object itself
        attached = False
    if not attached:
        raise ArtifactError(
            f"timing cache {path} is corrupt or from another TensorRT/GPU ({trt.flavour} {trt.version} cannot "
            "read it); delete it and build again"
        )
    notes.append(f"timing cache {'loaded from' if blob else 'will be saved to'} {path}")
    return {"path": str(path), "used": True, "loaded_bytes": len(blob)}, cache


def _progress_monitor(trt: TensorRT, builder_config: Any) -> Any:
    """A tqdm bar over the top-level build phase, when this TensorRT has IProgressMonitor."""
    if not (hasattr(trt.module, "IProgressMonitor") and hasattr(builder_config, "progress_monitor")):
        return None
    from tqdm import tqdm

    # The base class comes from the lazily imported TensorRT module, so the subclass is made here.
    class _Monitor(trt.module.IProgressMonitor):
        def __init__(self) -> None:
            trt.module.IProgressMonitor.__init__(self)
            self._bar: Any = None
            self._top: str | None = None

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None and self._bar is None:
                self._top = phase_name
                self._bar = tqdm(total=num_steps, desc=phase_name, unit="step", leave=False)
            elif self._bar is not None:
                self._bar.set_postfix_str(phase_name[:40], refresh=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name == self._top and self._bar is not None:
                self._bar.n = step + 1
                self._bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            if phase_name == self._top:
                self.close()

        def close(self) -> None:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    monitor = _Monitor()
    builder_config.progress_monitor = monitor
    return monitor
