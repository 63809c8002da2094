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


def require(module: str, extra: str, purpose: str):
    """Import an optional module or raise MissingDependencyError with the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs '{module}' ({exc}); install it with: pip install 'glfer-edge[{extra}]'"
        ) from None
