"""TensorRT flavours and the engine sidecar: what the engine builder and the runtime share.

Flavours: ``tensorrt`` (10.x on JetPack, 11.x on x86 pip) and ``tensorrt_rtx`` (TensorRT for RTX:
builds ahead-of-time without a GPU, engines portable across its supported GPUs). Differences are
found with ``hasattr``/behaviour, never by parsing version strings.

The engine sidecar (``MODEL.engine.json``) is defined here: the builder
(:mod:`glfer_edge.export.trt_build`) writes it, the runtime (:mod:`glfer_edge.runtime.trt`, which
opens engines) and ``glfer-edge info`` read it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from glfer_edge.errors import ArtifactError, MissingDependencyError

__all__ = [
    "TensorRT", "load_tensorrt", "tensorrt_missing", "sidecar_path", "read_sidecar",
    "FLAVOURS", "SIDECAR_FORMAT", "AHEAD_OF_TIME",
]

FLAVOURS = ("tensorrt", "tensorrt_rtx")
ENV_FLAVOUR = "GLFER_EDGE_TENSORRT"  # force one flavour when both are installed
SIDECAR_FORMAT = "glfer-edge engine sidecar 1"
AHEAD_OF_TIME = "ahead-of-time, no GPU"

# TensorRT keeps the first logger it is given for the whole process and warns when a builder or
# runtime is handed another one, so each flavour gets exactly one.
_LOGGERS: dict[str, Any] = {}
_LOGGERS_LOCK = threading.Lock()


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

    def logger(self) -> Any:
        """The flavour's one process-wide ``Logger`` (WARNING and above)."""
        with _LOGGERS_LOCK:
            if self.flavour not in _LOGGERS:
                _LOGGERS[self.flavour] = self.module.Logger(self.module.Logger.WARNING)
            return _LOGGERS[self.flavour]


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


@functools.lru_cache(maxsize=1)
def tensorrt_missing() -> str | None:
    """Why TensorRT engines cannot run here (None when they can): TensorRT, a CUDA binding and a device.

    The GPU is asked for through the CUDA bindings, not nvidia-smi: JetPack may not ship a usable
    nvidia-smi, and the bindings also tell "no driver" and "driver too old for these bindings" apart
    from "no device", so the reason names the fix. Cached: the answer does not change in a process.
    """
    from glfer_edge.runtime.cuda import open_cuda

    try:
        load_tensorrt()
        cuda = open_cuda()
    except ImportError as exc:
        return str(exc)
    status = cuda.driver_status()
    return None if status.devices > 0 else f"{status.binding}: {status.problem}"


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
