"""The machine a figure comes from: CPU model and ISA flags, library versions, GPU, Jetson release.

Every accuracy or speed figure the SDK writes (bench JSON, calibration report) names its machine,
because both depend on it: onnxruntime's x86 U8S8 kernels, for example, compute INT8 convolutions
exactly only where the CPU has VNNI (see :func:`u8s8_saturates`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["cpu_info", "cpu_label", "describe_machine", "library_versions", "u8s8_saturates"]

# The ISA extensions that decide which kernels onnxruntime, OpenVINO and torch pick on this CPU.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimd", "asimddp")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
VERSIONED = ("numpy", "torch", "onnx", "onnxruntime", "openvino", "tensorrt", "tensorrt_rtx", "cuda-bindings")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """``{"model", "logical_cores", "flags"}``: the CPU's model name and the ISA flags of ``ISA_FLAGS`` it has."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count(), "flags": [f for f in ISA_FLAGS if f in flags]}


def cpu_label() -> str:
    """One line for reports: ``AMD EPYC (2 cores; avx2, fma)``."""
    cpu = cpu_info()
    return f"{cpu['model']} ({cpu['logical_cores']} cores; {', '.join(cpu['flags']) or 'no listed ISA flags'})"


def u8s8_saturates() -> bool:
    """True on x86 CPUs without VNNI, where onnxruntime multiplies U8 activations by S8 weights with
    VPMADDUBSW, whose int16 pair sums saturate for 8-bit weights (onnxruntime's quantization docs);
    7-bit weights (``reduce_range``) stay exact there."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return not any(f in cpu_info()["flags"] for f in VNNI_FLAGS)


def library_versions() -> dict[str, str | None]:
    """Python and the installed versions of the libraries a figure depends on (None: not installed)."""
    from importlib import metadata

    from glfer_edge._version import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "glfer_edge": __version__}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _run_text(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def describe_machine() -> dict[str, Any]:
    """Provenance of a run: CPU (model, cores, ISA flags), load, memory, GPU, Jetson release, versions."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpu": cpu_info(), "versions": library_versions()}
    try:
        info["load_average"] = list(os.getloadavg())
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
    gpu = _run_text(["nvidia-smi", query, "--format=csv,noheader"])
    info["gpu"] = gpu.splitlines() if gpu else None
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():  # Jetson: L4T release and power mode are part of every result
        info["jetson"] = {"l4t": tegra.read_text().splitlines()[0].strip(), "nvpmodel": _run_text(["nvpmodel", "-q"])}
    return info
