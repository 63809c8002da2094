"""TensorRT flavours and feature detection: the only module that knows TensorRT 10 from 11 from RTX.

Flavours: ``tensorrt`` (10.x on JetPack, 11.x on x86 pip) and ``tensorrt_rtx`` (TensorRT for RTX:
builds ahead-of-time without a GPU, engines portable across its supported GPUs). Differences are
found with ``hasattr``/behaviour, never by parsing version strings, and a missing capability fails
loudly instead of silently building something else (rf-detr#1453 built FP32 when FP16 was asked).

The engine sidecar (``MODEL.engine.json``) is defined here too: the builder writes it and the
runtime checks it before deserializing, so a plan from another TensorRT or GPU is refused with
the command that rebuilds it.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from glfer_edge.errors import ArtifactError, MissingDependencyError

__all__ = [
    "TensorRT", "load_tensorrt", "network_flags", "timing_cache_support", "sidecar_path", "read_sidecar",
    "check_sidecar", "rebuild_hint", "FLAVOURS", "SIDECAR_FORMAT", "AHEAD_OF_TIME",
]

FLAVOURS = ("tensorrt", "tensorrt_rtx")
ENV_FLAVOUR = "GLFER_EDGE_TENSORRT"  # force one flavour when both are installed
SIDECAR_FORMAT = "glfer-edge engine sidecar 1"
AHEAD_OF_TIME = "ahead-of-time, no GPU"


@dataclass(frozen=True)
class TensorRT:
    """An imported TensorRT flavour."""

    module: ModuleType
    flavour: str  # 'tensorrt' | 'tensorrt_rtx'
    version: str

    @property
    def portable_engines(self) -> bool:
        """TensorRT-RTX compiles ahead of time for a set of GPUs and JIT-specializes at load time."""
        return self.flavour == "tensorrt_rtx"

    def logger(self, verbose: bool = False) -> Any:
        trt = self.module
        return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


def load_tensorrt(flavour: str | None = None) -> TensorRT:
    """Import TensorRT: ``flavour``, else $GLFER_EDGE_TENSORRT, else the first of tensorrt, tensorrt_rtx."""
    wanted = flavour or os.environ.get(ENV_FLAVOUR) or None
    if wanted is not None and wanted not in FLAVOURS:
        raise MissingDependencyError(f"unknown TensorRT flavour {wanted!r}; choose one of {', '.join(FLAVOURS)}")
    errors = []
    for name in (wanted,) if wanted else FLAVOURS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # also OSError-like load failures surface as ImportError
            errors.append(f"{name}: {exc}")
            continue
        return TensorRT(module, name, str(getattr(module, "__version__", "unknown")))
    raise MissingDependencyError(
        "TensorRT is not importable (" + "; ".join(errors) + "). On Jetson use JetPack's python3-libnvinfer "
        "(venv with --system-site-packages); on x86 pip install tensorrt; to build without a GPU: "
        "pip install 'glfer-edge[trt-rtx]'"
    )


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


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ArtifactError(
            f"engine {engine_path} has no sidecar {path.name}: glfer-edge cannot tell how it was built; "
            f"rebuild it with: glfer-edge build MODEL.onnx --out {engine_path}"
        )
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); rebuild the engine with glfer-edge build") from None
    found = sidecar.get("format") if isinstance(sidecar, dict) else type(sidecar).__name__
    if found != SIDECAR_FORMAT:
        raise ArtifactError(
            f"{path} is not a {SIDECAR_FORMAT!r} file (found {found!r}); "
            f"rebuild the engine with: glfer-edge build MODEL.onnx --out {engine_path}"
        )
    return sidecar


def rebuild_hint(sidecar: dict[str, Any], engine_path: str | Path) -> str:
    onnx = sidecar.get("onnx", {}).get("path", "MODEL.onnx")
    return f"rebuild it here with: glfer-edge build {onnx} --out {engine_path}"


def check_sidecar(sidecar: dict[str, Any], engine_path: str | Path, trt: TensorRT, gpu: Any | None) -> None:
    """Refuse an engine built by another TensorRT flavour/version, or (non-portable) for another GPU.

    ``gpu`` is the :class:`~glfer_edge.runtime.cuda.DeviceInfo` of the device that will run it.
    """
    built = sidecar.get("tensorrt", {})
    rebuild = rebuild_hint(sidecar, engine_path)
    if (built.get("flavour"), built.get("version")) != (trt.flavour, trt.version):
        raise ArtifactError(
            f"engine {engine_path} was built with {built.get('flavour')} {built.get('version')}, but this machine "
            f"has {trt.flavour} {trt.version} (plans are tied to the exact TensorRT version); {rebuild}"
        )
    target = sidecar.get("gpu", {})
    if trt.portable_engines or gpu is None or target.get("compute_capability") in (None, AHEAD_OF_TIME):
        return
    if target["compute_capability"] != gpu.sm:
        raise ArtifactError(
            f"engine {engine_path} was built for {target.get('name')} (compute capability "
            f"{target['compute_capability']}), this GPU is {gpu.name} ({gpu.sm}); {rebuild}"
        )
