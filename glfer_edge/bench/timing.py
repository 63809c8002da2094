"""The timing loop: one case per subprocess (cold start, peak RSS), and interleaved rounds for ratios.

Every case opens the real runtime, ``SELDRuntime.open(file, backend=..., threads=..., options=...)``
(see :mod:`glfer_edge.bench.backends`), and times ``rt.infer(audio)`` with host (numpy) input and
output: trtexec's **Latency**. A case runs in a fresh subprocess (``python -m glfer_edge.bench``) so
that its cold start (open + first call), peak host RSS (``VmHWM``) and GPU memory belong to it alone;
it times one first inference, warms up, then times calls (trtexec's --warmUp, --iterations,
--duration). On CUDA it also times the network alone on device-resident input (the backend's
``compute_time_s``: CUDA events): trtexec's **GPU Compute Time**. Throughput follows trtexec:
executions x batch / total host walltime. A profiling pass (a second runtime opened with
``RuntimeOptions(profile=True)``) gives the share of the time spent in the fused frontend and in the BiGRU.

Sequential cases on a shared machine are not comparable with each other: load comes and goes.
:func:`run_rounds` therefore times all backends of one batch size in one process, in interleaved
rounds (A, B, C, then C, B, A, ...), each timed call right after an untimed call of its own (warm, as a
deployment runs back to back); ratios are the median of per-round ratios. A SGEMM of known size runs
in every round too, so the share of this machine's measured peak is taken under the same load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge.bench.backends import BenchBackend, get_backend
from glfer_edge.bench.sources import ModelSource, trt_missing
from glfer_edge.config import SELDConfig
from glfer_edge.machine import _run_text

__all__ = [
    "BenchOptions", "Case", "run_case", "run_matrix", "run_rounds", "latency_stats", "open_runtime",
    "skip_reason", "segment_gflop", "SGEMM_SIZE",
]

_PROFILE_RUNS = 3
_MIN_TIMED_RUNS = 3  # with --duration: at least this many timed calls
_INPUT_RMS = 0.05  # white noise near -26 dBFS: no denormals, no clipping
SGEMM_SIZE = 1024  # the peak probe: (N x N) @ (N x N) float32, 2 N^3 FLOP


@dataclass(frozen=True)
class BenchOptions:
    """How each case is timed (trtexec: --warmUp, --iterations, --duration) and which runtime settings apply."""

    warmup: int = 3
    iterations: int | None = None  # exactly N timed calls; None: time-based
    duration_s: float = 5.0  # with iterations None: time at least this long (and >= 3 calls)
    threads: int | None = None  # SELDRuntime.open(threads=...): torch, onnxruntime, OpenVINO intra-op threads
    device: str = "cpu"  # cpu | cuda (torch and ORT backends; TensorRT is always cuda)
    ort_opt_level: str | None = None  # RuntimeOptions.graph_optimization of the ort-* backends (None: runtime default)
    profile: bool = True  # frontend / GRU time shares (one extra, untimed pass)


@dataclass(frozen=True)
class Case:
    backend: str
    batch: int
    source: ModelSource
    options: BenchOptions

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["source"]["config"] = self.source.config.to_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "Case":
        d = json.loads(text)
        src = d["source"]
        src["config"] = SELDConfig.from_dict(src["config"])
        return cls(d["backend"], d["batch"], ModelSource(**src), BenchOptions(**d["options"]))


# -- statistics ---------------------------------------------------------------------------------


def latency_stats(samples_s: Sequence[float]) -> dict[str, float]:
    """min / mean / median / p90 / p95 / p99 / max / std of call times, in milliseconds (trtexec's set)."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {
        "min": float(ms.min()), "mean": float(ms.mean()), "median": float(p50), "p90": float(p90),
        "p95": float(p95), "p99": float(p99), "max": float(ms.max()), "std": float(ms.std()),
    }


def _status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status (VmHWM: peak RSS, VmRSS: current RSS), MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return peak


def _gpu_process_mb() -> float | None:
    """GPU memory this process holds now (nvidia-smi), MiB; None without nvidia-smi."""
    text = _run_text(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    for line in (text or "").splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(used)
    return None


def bench_audio(config: SELDConfig, batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, 4, config.segment_samples)) * _INPUT_RMS).astype(np.float32)


# -- the runtime under test -----------------------------------------------------------------------


def open_runtime(backend: str, source: ModelSource, options: BenchOptions, *, profile: bool = False):
    """The SELDRuntime a user opens for this bench backend (same file, backend and options)."""
    from glfer_edge.runtime import SELDRuntime

    b = get_backend(backend)
    opts = b.options
    if b.runtime == "onnxruntime" and options.ort_opt_level is not None:
        opts = dataclasses.replace(opts, graph_optimization=options.ort_opt_level)
    if profile:
        opts = dataclasses.replace(opts, profile=True)
    device = "cuda" if b.runtime == "tensorrt" and options.device == "cpu" else options.device
    threads = None if b.runtime == "tensorrt" else options.threads
    return SELDRuntime.open(source.file_for(backend), device=device, backend=b.runtime, threads=threads, options=opts)


def _profiles(b: BenchBackend) -> bool:
    """Whether the backend reports frontend/GRU shares (torch eager, onnxruntime, OpenVINO)."""
    return b.runtime in ("onnxruntime", "openvino") or (b.runtime == "torch" and not b.options.compile)


def skip_reason(backend: str, source: ModelSource, options: BenchOptions) -> str | None:
    """Why a backend cannot run here (None when it can); the case is then reported as skipped."""
    from importlib.util import find_spec

    b = get_backend(backend)
    if b.runtime == "torch":
        if not source.weights:
            return "needs weights (.safetensors) or --preset"
        if find_spec("torch") is None:
            return "torch not installed (pip install 'glfer-edge[torch]')"
        if b.cuda_only and options.device != "cuda":
            return "FP16 autocast is timed on CUDA only (--device cuda)"
        if options.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return f"torch {torch.__version__} sees no CUDA device (install a CUDA build of torch, or --device cpu)"
    if b.runtime == "tensorrt" and (reason := trt_missing()):
        return reason
    if b.runtime == "openvino":
        if find_spec("openvino") is None:
            return "openvino not installed (pip install 'glfer-edge[openvino]')"
        if options.device != "cpu":
            return "OpenVINO runs on the CPU only (--device cpu)"
        if b.options.precision == "bf16":
            from glfer_edge.runtime.openvino import bf16_supported

            if not bf16_supported():
                return "this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX); OpenVINO would run f32"
    if b.runtime == "onnxruntime" and options.device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
    if b.needs_artifact and source.file_for(backend) is None:
        return source.unavailable.get(backend, f"no {backend} artifact for {source.label}")
    return None


# -- one case (inside its subprocess) -----------------------------------------------------------


def _timed_calls(fn: Callable[[], Any], options: BenchOptions) -> tuple[list[float], float]:
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if options.iterations is not None:
            if len(samples) >= options.iterations:
                break
        elif len(samples) >= _MIN_TIMED_RUNS and time.perf_counter() - start >= options.duration_s:
            break
    return samples, time.perf_counter() - start


def _shares(case: Case, audio: np.ndarray) -> dict[str, float] | None:
    """Frontend and BiGRU shares from a second runtime opened with profiling (the timed one runs without)."""
    if not case.options.profile or not _profiles(get_backend(case.backend)):
        return None
    with open_runtime(case.backend, case.source, case.options, profile=True) as rt:
        impl = rt.backend_impl
        rt.infer(audio)
        if get_backend(case.backend).runtime == "torch":
            impl.time_shares()  # drop the first call
        for _ in range(_PROFILE_RUNS):
            rt.infer(audio)
        return impl.time_shares()


def _gpu_peak_mb(rt: Any) -> float | None:
    if rt.backend == "tensorrt":
        return _gpu_process_mb()
    if rt.backend == "torch" and "cuda" in rt.description:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return None


def run_case(case: Case) -> dict[str, Any]:
    """Open, first inference, warm-up, timed calls, profile: the result record of one case."""
    cfg, opts = case.source.config, case.options
    audio = bench_audio(cfg, case.batch)
    baseline_rss = _status_mb("VmRSS")
    t0 = time.perf_counter()
    rt = open_runtime(case.backend, case.source, opts)
    t1 = time.perf_counter()
    rt.infer(audio)
    t2 = time.perf_counter()
    for _ in range(opts.warmup):
        rt.infer(audio)
    samples, walltime = _timed_calls(lambda: rt.infer(audio), opts)
    compute_fn = getattr(rt.backend_impl, "compute_time_s", None)
    compute = [compute_fn(audio) for _ in samples] if compute_fn is not None else None
    compute = None if compute is None or None in compute else compute
    description, gpu_peak = rt.description, _gpu_peak_mb(rt)
    rt.close()
    shares = _shares(case, audio)
    mean_s = float(np.mean(samples))
    return {
        "backend": case.backend, "batch": case.batch, "model": case.source.label, "runtime": description,
        "segment_seconds": cfg.segment_seconds, "threads": opts.threads,
        "load_s": t1 - t0, "first_inference_s": t2 - t1, "cold_start_s": t2 - t0,
        "iterations": len(samples), "warmup": opts.warmup, "total_host_walltime_s": walltime,
        "latency_ms": latency_stats(samples),
        "gpu_compute_ms": latency_stats(compute) if compute else None,
        "throughput_segments_per_s": len(samples) * case.batch / walltime,
        "throughput_audio_s_per_s": len(samples) * case.batch * cfg.segment_seconds / walltime,
        "rtf": mean_s / (case.batch * cfg.segment_seconds),
        "frontend_share": shares["frontend_share"] if shares else None,
        "gru_share": shares["gru_share"] if shares else None,
        "gpu_peak_mb": gpu_peak,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="glfer-edge benchmark worker: runs one case (internal)")
    p.add_argument("case_file")
    p.add_argument("out_file")
    args = p.parse_args(argv)
    case = Case.from_json(Path(args.case_file).read_text())
    if case.options.threads:  # before torch / ORT / OpenVINO create their pools
        os.environ["OMP_NUM_THREADS"] = str(case.options.threads)
    Path(args.out_file).write_text(json.dumps(run_case(case)))
    return 0


def _run_subprocess(case: Case, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="glfer_bench_") as tmp:
        case_file, out_file = Path(tmp) / "case.json", Path(tmp) / "result.json"
        case_file.write_text(case.to_json())
        cmd = [sys.executable, "-m", "glfer_edge.bench", str(case_file), str(out_file)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:g} s"}
        if proc.returncode != 0 or not out_file.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return {"error": f"worker exited with status {proc.returncode}: {tail[0][:300]}"}
        return json.loads(out_file.read_text())


# -- the matrix and the rounds (parent process) ---------------------------------------------------


def segment_gflop(config: SELDConfig) -> float | None:
    """FLOP (2 x MACs) of one segment, in 1e9: the one count, glfer_edge.model.complexity.segment_macs
    (executed graph after reparameterization, frontend included); None without torch."""
    from importlib.util import find_spec

    if find_spec("torch") is None:
        return None
    from glfer_edge.model.complexity import segment_macs

    return segment_macs(config).executed_gflop


def run_matrix(
    sources: Sequence[ModelSource],
    backends: Sequence[str],
    batches: Sequence[int],
    options: BenchOptions,
    *,
    timeout_s: float = 1800.0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every model x backend x batch case, each in its own subprocess; skipped or failed cases say why."""
    results = []
    for source in sources:
        gflop = segment_gflop(source.config)
        for backend in backends:
            reason = skip_reason(backend, source, options)
            for batch in batches:
                base = {"model": source.label, "backend": backend, "batch": batch}
                if reason:
                    results.append({**base, "skipped": reason})
                    continue
                if progress:
                    progress(f"{source.label} {backend} batch {batch}")
                record = {**base, **_run_subprocess(Case(backend, batch, source, options), timeout_s)}
                if gflop and "latency_ms" in record:
                    record["gflop_per_segment"] = gflop
                    record["achieved_gflops"] = gflop * batch / (record["latency_ms"]["median"] / 1e3)
                results.append(record)
    return results


def _sgemm_probe(threads: int | None) -> Callable[[], Any]:
    """One SGEMM of SGEMM_SIZE through onnxruntime's MatMul (its MLAS kernels, ``threads`` intra-op threads);
    the graph is built with ``onnx`` (the torch extra), numpy's BLAS (its own thread count) without it."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE)).astype(np.float32)
    b = rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE)).astype(np.float32)
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return lambda: a @ b
    import onnxruntime as ort

    shape = [SGEMM_SIZE, SGEMM_SIZE]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


def run_rounds(
    source: ModelSource,
    backends: Sequence[str],
    batch: int,
    options: BenchOptions,
    rounds: int,
    *,
    reference: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Interleaved rounds of every runnable backend (and the SGEMM probe) at one batch size, in this process.

    Per backend: every round's time (ms), the per-round median, and the median of per-round ratios
    reference-time / this-time ('x reference'); achieved GFLOP/s and its share of the SGEMM rate measured
    in the same rounds.
    """
    audio = bench_audio(source.config, batch)
    skipped = {b: reason for b in backends if (reason := skip_reason(b, source, options)) is not None}
    runnable = [b for b in backends if b not in skipped]
    calls: dict[str, Callable[[], Any]] = {}
    runtimes = []
    try:
        for b in runnable:
            if progress:
                progress(f"rounds: opening {b}")
            rt = open_runtime(b, source, options)
            runtimes.append(rt)
            calls[b] = (lambda r: lambda: r.infer(audio))(rt)
        probe = _sgemm_probe(options.threads)
        calls["_sgemm"] = probe
        for fn in calls.values():  # warm-up
            for _ in range(max(options.warmup, 1)):
                fn()
        times: dict[str, list[float]] = {k: [] for k in calls}
        order = list(calls.items())
        for r in range(rounds):  # every other round backwards: no variant always runs after the same one
            for name, fn in order if r % 2 == 0 else order[::-1]:
                fn()  # untimed call of its own first: warm, as when one model runs back to back
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
            if progress and (r + 1) % 5 == 0:
                progress(f"rounds: {r + 1}/{rounds} at batch {batch}")
        descriptions = {b: rt.description for b, rt in zip(runnable, runtimes)}
    finally:
        for rt in runtimes:
            rt.close()
    gflop = segment_gflop(source.config)
    sgemm = 2 * SGEMM_SIZE**3 / np.asarray(times.pop("_sgemm")) / 1e9  # GFLOP/s per round
    ref = reference if reference in times else (runnable[0] if runnable else None)
    rows = {}
    for b, t in times.items():
        t = np.asarray(t)
        row: dict[str, Any] = {
            "runtime": descriptions[b], "median_ms": 1e3 * float(np.median(t)),
            "rounds_ms": [round(1e3 * x, 3) for x in t],
            "x_reference": float(np.median(np.asarray(times[ref]) / t)) if ref else None,
            "audio_s_per_s": float(np.median(batch * source.config.segment_seconds / t)),
        }
        if gflop:
            achieved = gflop * batch / t
            row["achieved_gflops"] = float(np.median(achieved))
            row["share_of_sgemm"] = float(np.median(achieved / sgemm))
        rows[b] = row
    return {
        "model": source.label, "batch": batch, "rounds": rounds, "reference": ref,
        "gflop_per_segment": gflop, "sgemm_gflops_median": float(np.median(sgemm)), "sgemm_size": SGEMM_SIZE,
        "backends": rows,
        "skipped": skipped,
    }
