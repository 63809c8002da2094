"""``RuntimeOptions``: the backend settings beyond the model file, device and thread count.

::

    from glfer_edge.runtime import RuntimeOptions, SELDRuntime

    rt = SELDRuntime.open("model.int8.onnx", backend="openvino", threads=2)
    rt = SELDRuntime.open("model.fp32.onnx", backend="openvino", options=RuntimeOptions(precision="bf16"))
    rt = SELDRuntime.open("model.fp32.onnx", options=RuntimeOptions(graph_optimization="extended"))
    rt = SELDRuntime.open("model.safetensors", options=RuntimeOptions(compile=True))

Every field names the backends it applies to. The defaults are what each backend does without options;
a field set away from its default for a backend it does not apply to is refused (``InputError``),
never ignored. ``glfer-edge bench`` times its variants through these options, so a benchmark row is
a runtime a user can open.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from glfer_edge.errors import InputError

__all__ = ["RuntimeOptions", "GRAPH_OPTIMIZATION_LEVELS", "OPENVINO_PRECISIONS", "PERFORMANCE_HINTS",
           "check_options", "default_openvino_cache"]

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")  # onnxruntime's GraphOptimizationLevel
OPENVINO_PRECISIONS = ("f32", "bf16")  # OpenVINO's INFERENCE_PRECISION_HINT values we allow
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")  # OpenVINO's PERFORMANCE_HINT


@dataclass(frozen=True)
class RuntimeOptions:
    """Backend settings; the defaults are each backend's plain behaviour."""

    # onnxruntime: graph optimization level ('disable', 'basic', 'extended', 'all'); None: 'all', except FP16
    # artifacts, which run with 'disable' (onnxruntime's optimizer crashes on FP16 graphs, deployment notes 8).
    graph_optimization: str | None = None
    # onnxruntime: whether intra-op threads spin-wait between parallel sections (None: onnxruntime's default,
    # on). Off measured 1.26-1.38x faster per round on a 2-core AMD EPYC Zen 3 shared with other processes
    # (benchmarks/RESULTS.md); spinning burns the cores other work needs. Not measured on an idle machine.
    spinning: bool | None = None
    # onnxruntime, torch, openvino: record time per model scope, read back with the backend's ``time_shares()``
    # (frontend and BiGRU shares of the run time); costs a little time per call.
    profile: bool = False
    # torch: run the model through torch.compile (inductor; on CUDA mode 'reduce-overhead', i.e. CUDA graphs).
    compile: bool = False
    # torch on CUDA: forward under FP16 autocast (outputs returned as float32).
    fp16_autocast: bool = False
    # openvino: INFERENCE_PRECISION_HINT, 'f32' (default: what the artifact holds) or 'bf16' (only on CPUs with
    # bf16 arithmetic; refused elsewhere instead of silently running f32). Checked with the 'openvino-bf16'
    # tolerance row of glfer_edge.tolerances.
    precision: str | None = None
    # openvino: PERFORMANCE_HINT 'LATENCY' (default: one stream, all threads on one call) or 'THROUGHPUT'.
    performance_hint: str | None = None
    # openvino: NUM_STREAMS (None: what the hint picks).
    streams: int | None = None
    # openvino: reshape the graph to the batch size of each call (static shapes; one compiled model per batch
    # size, compiled on first use) instead of one dynamic-batch model.
    static_batch: bool = False
    # openvino: CACHE_DIR for compiled blobs (None: ~/.cache/glfer_edge/openvino, XDG_CACHE_HOME honoured).
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.graph_optimization not in (None, *GRAPH_OPTIMIZATION_LEVELS):
            raise InputError(f"graph_optimization {self.graph_optimization!r} is not one of "
                             f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}")
        if self.precision not in (None, *OPENVINO_PRECISIONS):
            raise InputError(f"precision {self.precision!r} is not one of {', '.join(OPENVINO_PRECISIONS)} "
                             "(the artifact's own precision is in its file; this is OpenVINO's compute precision)")
        if self.performance_hint not in (None, *PERFORMANCE_HINTS):
            raise InputError(f"performance_hint {self.performance_hint!r} is not one of {', '.join(PERFORMANCE_HINTS)}")
        if self.streams is not None and self.streams < 1:
            raise InputError(f"streams must be >= 1, got {self.streams}")


# Which backends each field applies to (fields left at their default are fine everywhere).
_APPLIES = {
    "graph_optimization": ("onnxruntime",),
    "spinning": ("onnxruntime",),
    "profile": ("onnxruntime", "torch", "openvino"),
    "compile": ("torch",),
    "fp16_autocast": ("torch",),
    "precision": ("openvino",),
    "performance_hint": ("openvino",),
    "streams": ("openvino",),
    "static_batch": ("openvino",),
    "cache_dir": ("openvino",),
}


def check_options(options: RuntimeOptions, backend: str) -> None:
    """InputError when ``options`` sets a field that ``backend`` does not have."""
    defaults = RuntimeOptions()
    foreign = [f.name for f in dataclasses.fields(options)
               if getattr(options, f.name) != getattr(defaults, f.name) and backend not in _APPLIES[f.name]]
    if foreign:
        where = "; ".join(f"{name}: {', '.join(_APPLIES[name])}" for name in foreign)
        raise InputError(f"runtime option(s) {', '.join(foreign)} do not apply to the {backend} backend "
                         f"({where}); drop them or open the model with that backend")


def default_openvino_cache() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glfer_edge" / "openvino"
