"""The Triton server that the ``nvidia-pytriton`` wheel carries, and the environment its Python stub needs.

The wheel holds a real ``tritonserver`` binary, the Python backend (``libtriton_python.so``) and one
Python-backend stub per Python minor version; its shared libraries sit in ``nvidia_pytriton.libs``. The
stub embeds the interpreter through ``libpython3.X.so.1.0``: with an interpreter outside the system's
library path (pyenv, conda, a custom prefix) the loader finds none (``cannot open shared object file``)
or the system's own, mismatched one (``'_thread.RLock' object has no attribute '_recursion_count'``).
:func:`server_env` puts ``sysconfig.get_config_var('LIBDIR')`` first on ``LD_LIBRARY_PATH`` so the stub
loads the interpreter that runs glfer-edge, and :func:`check_libpython` refuses a Python built without a
shared libpython with the one-line fix.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from glfer_edge.errors import MissingDependencyError

__all__ = ["TritonDistribution", "find_distribution", "check_libpython", "server_env", "prepare_backends"]


@dataclass(frozen=True)
class TritonDistribution:
    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # the wheel's bundled shared libraries

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info[0]}.{sys.version_info[1]}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return version("nvidia-pytriton")


def find_distribution() -> TritonDistribution:
    """The bundled Triton of the installed ``nvidia-pytriton`` (found without importing it)."""
    try:
        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):  # a broken or blocked pytriton
        spec = None
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("No module named 'pytriton'", name="pytriton")
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    libs = package.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():  # an editable pytriton checkout keeps them inside the package
        libs = root / "external_libs"
    dist = TritonDistribution(root, libs)
    if not dist.binary.is_file():
        raise MissingDependencyError(
            f"nvidia-pytriton at {package} has no tritonserver binary ({dist.binary}); reinstall it with: "
            "pip install --force-reinstall 'glfer-edge[serve]'"
        )
    stub = dist.stub()
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir()) if root.is_dir() else []
        raise MissingDependencyError(
            f"nvidia-pytriton has no Python-backend stub for Python {sys.version_info[0]}.{sys.version_info[1]} "
            f"(it has {', '.join(have)}); run glfer-edge serve under one of those Pythons"
        )
    return dist


def libpython() -> Path:
    """The shared libpython of this interpreter (``LIBDIR/INSTSONAME``), which the stub must load."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    soname = sysconfig.get_config_var("INSTSONAME") or f"libpython{sys.version_info[0]}.{sys.version_info[1]}.so.1.0"
    return Path(libdir) / soname


def check_libpython() -> Path:
    """The libpython the stub will load; MissingDependencyError with the fix for a static-only Python."""
    path = libpython()
    if not path.is_file() or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise MissingDependencyError(
            f"the Triton Python-backend stub needs this interpreter's shared libpython ({path}), but "
            f"{sys.executable} was built without one; use a Python built with --enable-shared "
            "(pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install <version>) or the system Python"
        )
    return path


def server_env(dist: TritonDistribution, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of ``tritonserver`` and its stubs: this interpreter's LIBDIR first on the loader path
    (the stub then embeds this very Python, not a system libpython of the same name), the wheel's bundled
    libraries after it, and this environment's ``bin`` first on PATH (the stub's Python finds its prefix)."""
    env = dict(os.environ if base is None else base)
    libdir = str(check_libpython().parent)
    paths = [libdir, str(dist.libs), *[p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]]
    env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths))
    env["PATH"] = f"{Path(sys.executable).parent}:{Path(sys.exec_prefix) / 'bin'}:{env.get('PATH', '')}"
    # The stub's interpreter sees the same packages as this one (a venv's site-packages, editable installs).
    import glfer_edge

    package_root = str(Path(glfer_edge.__file__).resolve().parent.parent)  # an editable install's checkout too
    env["PYTHONPATH"] = ":".join(dict.fromkeys(p for p in [package_root, *sys.path, env.get("PYTHONPATH", "")] if p))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def prepare_backends(dist: TritonDistribution, directory: Path) -> Path:
    """A backend directory with the Python backend and this Python's stub (``--backend-directory``)."""
    python = directory / "python"
    if python.exists():
        shutil.rmtree(python)
    shutil.copytree(dist.python_backend, python, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(dist.stub(), python / "triton_python_backend_stub")
    return directory
