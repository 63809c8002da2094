"""User-facing errors: one line that names the problem and the fix.

The CLI prints ``error: <message>`` for these and exits with status 2, without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class GlferError(Exception):
    """A problem with the user's input or environment, with a one-line fix in the message."""


class InputError(GlferError, ValueError):
    """Bad audio, file or argument (wrong channels or rate, NaN, empty or corrupt file)."""


class ArtifactError(GlferError):
    """A weights file, ONNX model or engine that is corrupt, mismatched or from another SDK version."""


class MissingDependencyError(GlferError, ImportError):
    """An optional dependency (torch, tensorrt, cuda-python) is needed but not installed."""


# Optional top-level modules -> the pyproject extra that installs them (glfer-edge[<extra>]).
EXTRAS: dict[str, str] = {
    "torch": "torch", "onnx": "torch", "onnxslim": "torch", "onnxconverter_common": "torch",
    "tensorrt": "trt", "tensorrt_rtx": "trt-rtx", "cuda": "trt", "pycuda": "trt",
    "matplotlib": "plot", "pytriton": "serve", "tritonclient": "serve", "openvino": "openvino",
}


def missing_extra_message(exc: ModuleNotFoundError, what: str) -> str | None:
    """The one-line fix for an optional module that is not installed, or None for any other missing module."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return f"{what} needs '{module}', which this install lacks; install it with: pip install 'glfer-edge[{extra}]'"


def require(module: str, extra: str, purpose: str):
    """Import an optional module or raise MissingDependencyError with the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs '{module}' ({exc}); install it with: pip install 'glfer-edge[{extra}]'"
        ) from None
