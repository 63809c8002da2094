"""Benchmark harness over the real runtime: latency, throughput, cold start, memory and interleaved ratios.

Split by concern: :mod:`~glfer_edge.bench.backends` (the bench's backend names, each a ``SELDRuntime``
file + backend + options), :mod:`~glfer_edge.bench.sources` (weights and artifacts, exported on demand),
:mod:`~glfer_edge.bench.timing` (cases in subprocesses, interleaved rounds, SGEMM peak),
:mod:`~glfer_edge.bench.report` (JSON and markdown) and :mod:`~glfer_edge.bench.plots` (matplotlib).
The CLI is ``glfer-edge bench`` (glfer_edge/commands/bench.py).
"""

from glfer_edge.bench.backends import BACKEND_NAMES, BACKENDS, BenchBackend, get_backend
from glfer_edge.bench.plots import plot_results
from glfer_edge.bench.report import make_report, render_markdown
from glfer_edge.bench.sources import (TIMING_CALIBRATION_SEGMENTS, ModelSource, default_cache_dir, preset_weights,
                                      resolve_source)
from glfer_edge.bench.timing import (BenchOptions, Case, latency_stats, open_runtime, run_case, run_matrix,
                                     run_rounds, segment_gflop, skip_reason)
from glfer_edge.machine import describe_machine
from glfer_edge.runtime.ort import scope_shares
from glfer_edge.runtime.options import GRAPH_OPTIMIZATION_LEVELS as ORT_OPT_LEVELS

__all__ = [
    "BACKENDS", "BACKEND_NAMES", "BenchBackend", "get_backend", "BenchOptions", "Case", "ModelSource",
    "run_case", "run_matrix", "run_rounds", "open_runtime", "skip_reason", "describe_machine", "latency_stats",
    "scope_shares", "default_cache_dir", "preset_weights", "resolve_source", "make_report", "render_markdown",
    "plot_results", "segment_gflop", "ORT_OPT_LEVELS", "TIMING_CALIBRATION_SEGMENTS",
]
