"""Benchmark harness: latency, throughput, cold start and memory per backend x batch, named as trtexec names them.

Each case (backend, batch) runs in a fresh subprocess (``python -m glfer_edge.bench``) so that its
cold start, peak host RSS (``VmHWM``) and GPU memory belong to that case alone. A case loads the
model, times one first inference, warms up, then times end-to-end calls with host (numpy) input and
output: trtexec's **Latency** (H2D + compute + D2H). On CUDA it also times the network alone on
device-resident input (CUDA events for torch, enqueue + stream synchronize for TensorRT):
trtexec's **GPU Compute Time**. On CUDA, ``torch-compile`` compiles with ``mode="reduce-overhead"``
(inductor kernels replayed as CUDA graphs); the ``*-fp16`` torch backends run the forward under
FP16 autocast (CUDA only). Throughput follows trtexec:
executions x batch / total host walltime. A separate profiling pass gives the share of the time
spent in the fused frontend (``/frontend/`` scope) and in the BiGRU (``/decoder/gru/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge.config import SELDConfig
from glfer_edge.errors import InputError
from glfer_edge.machine import _run_text, describe_machine

__all__ = [
    "BACKENDS", "BenchOptions", "Case", "ModelSource", "run_case", "run_matrix", "describe_machine",
    "latency_stats", "scope_shares", "default_cache_dir", "preset_weights", "resolve_source",
    "render_markdown", "plot_results",
]

# ort-int8 runs the TensorRT-form INT8 artifact (model.int8.onnx), ort-int8-cpu onnxruntime's CPU form
# (model.int8-cpu.onnx); see glfer_edge.export.int8.
BACKENDS = (
    "torch", "torch-compile", "torch-fp16", "torch-compile-fp16",
    "ort-fp32", "ort-fp16", "ort-int8", "ort-int8-cpu", "trt-fp32", "trt-fp16", "trt-int8",
)
ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")
FRONTEND_SCOPE = "/frontend/"
GRU_SCOPE = "/decoder/gru/"
_PROFILE_RUNS = 3
_MIN_TIMED_RUNS = 3  # with --duration: at least this many timed calls
TIMING_CALIBRATION_SEGMENTS = 8  # INT8 exports for timing only
_INPUT_RMS = 0.05  # white noise near -26 dBFS: no denormals, no clipping


@dataclass(frozen=True)
class BenchOptions:
    """How each case is timed (trtexec: --warmUp, --iterations, --duration) and which levers are set."""

    warmup: int = 3
    iterations: int | None = None  # exactly N timed calls; None: time-based
    duration_s: float = 5.0  # with iterations None: time at least this long (and >= 3 calls)
    threads: int | None = None  # intra-op threads (torch.set_num_threads, ORT intra_op_num_threads)
    device: str = "cpu"  # cpu | cuda (torch and ORT backends; TensorRT is always cuda)
    ort_opt_level: str = "all"
    profile: bool = True  # frontend / GRU time shares (one extra, untimed pass)


@dataclass(frozen=True)
class ModelSource:
    """What a case runs: weights (torch backends) and the artifacts of the other backends."""

    label: str
    config: SELDConfig  # segment length applied
    weights: str | None = None  # .safetensors; a preset's random weights are saved to the cache first
    artifacts: dict[str, str] = field(default_factory=dict)  # backend -> .onnx / .engine path
    unavailable: dict[str, str] = field(default_factory=dict)  # backend -> why it has no artifact


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


# -- runners: one per backend family, used inside the case subprocess ---------------------------


class _TorchRunner:
    """PyTorch eager or torch.compile (inductor; CUDA graphs on CUDA), FP32 or FP16 autocast,
    inference mode, features included (raw audio in)."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.compile_model = case.backend.startswith("torch-compile")
        self.fp16 = case.backend.endswith("-fp16")

    def load(self) -> None:
        import torch

        from glfer_edge.model.glfernet import GLFERNet
        from glfer_edge.weights import load_model

        opts, src = self.case.options, self.case.source
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.torch, self.device = torch, torch.device(opts.device)
        model = GLFERNet(src.config)  # the bench's segment length; weights do not depend on it
        model.load_state_dict(load_model(src.weights).state_dict())
        self.eager = model.eval().to(self.device)
        # CUDA graphs remove batch 1's launch overhead, the GPU's analogue of trtexec --useCudaGraph
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self.model = torch.compile(self.eager, mode=mode) if self.compile_model else self.eager
        self.threads = torch.get_num_threads()

    def _forward(self, x: Any) -> tuple[Any, Any]:
        torch = self.torch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16):
            return self.model(x)

    def infer(self, audio: np.ndarray) -> None:
        for out in self._forward(self.torch.from_numpy(audio).to(self.device)):
            out.float().cpu().numpy()  # D2H and FP32 host arrays, as a caller gets them

    def compute_times(self, audio: np.ndarray, runs: int) -> list[float] | None:
        """GPU Compute Time: CUDA events around the forward pass on device-resident input."""
        if self.device.type != "cuda":
            return None
        torch = self.torch
        x = torch.from_numpy(audio).to(self.device)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        out = []
        for _ in range(runs):
            start.record()
            self._forward(x)
            stop.record()
            stop.synchronize()
            out.append(start.elapsed_time(stop) / 1e3)
        return out

    def shares(self, audio: np.ndarray) -> dict[str, float] | None:
        """Frontend and BiGRU shares of the eager forward, timed with forward hooks (not for compiled graphs)."""
        if self.compile_model:
            return None
        torch, parts = self.torch, {"frontend": self.eager.frontend, "gru": self.eager.decoder.gru}
        spent = dict.fromkeys(parts, 0.0)
        starts: dict[str, float] = {}
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

        def pre(name: str) -> Callable:
            def hook(*_: Any) -> None:
                sync()
                starts[name] = time.perf_counter()
            return hook

        def post(name: str) -> Callable:
            def hook(*_: Any) -> None:
                sync()
                spent[name] += time.perf_counter() - starts[name]
            return hook

        handles = [m.register_forward_pre_hook(pre(n)) for n, m in parts.items()]
        handles += [m.register_forward_hook(post(n)) for n, m in parts.items()]
        try:
            t0 = time.perf_counter()
            for _ in range(_PROFILE_RUNS):
                self.infer(audio)
            total = time.perf_counter() - t0
        finally:
            for h in handles:
                h.remove()
        return {f"{n}_share": spent[n] / total for n in parts}

    def gpu_peak_mb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return self.torch.cuda.max_memory_allocated() / 2**20

    def close(self) -> None:
        self.model = self.eager = None


class _OrtRunner:
    """onnxruntime InferenceSession on an exported artifact (CPU or CUDA provider)."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.path = case.source.artifacts[case.backend]

    def _session(self, profile: bool):
        import onnxruntime as ort

        opts = self.case.options
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[_ort_opt_level(self.case)]
        if opts.threads:
            so.intra_op_num_threads = opts.threads
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"glfer_bench_{os.getpid()}")
        providers = ["CUDAExecutionProvider"] if opts.device == "cuda" else ["CPUExecutionProvider"]
        return ort.InferenceSession(self.path, so, providers=providers)

    def load(self) -> None:
        self.session = self._session(profile=False)
        self.threads = self.case.options.threads  # None: onnxruntime default (physical cores)

    def infer(self, audio: np.ndarray) -> None:
        self.session.run(None, {"audio": audio})

    def compute_times(self, audio: np.ndarray, runs: int) -> list[float] | None:
        return None  # ORT-CUDA: device-resident timing needs IO binding; end-to-end Latency only

    def shares(self, audio: np.ndarray) -> dict[str, float]:
        session = self._session(profile=True)
        for _ in range(_PROFILE_RUNS + 1):
            session.run(None, {"audio": audio})
        path = Path(session.end_profiling())
        try:
            events = json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
        return scope_shares(events, skip_first_run=True)

    def gpu_peak_mb(self) -> float | None:
        return None

    def close(self) -> None:
        self.session = None


def _ort_opt_level(case: Case) -> str:
    # ORT's CPU optimizer crashes on FP16 graphs at default levels (deployment notes, TL;DR 8)
    return "disable" if case.backend == "ort-fp16" else case.options.ort_opt_level


def scope_shares(events: list[dict], skip_first_run: bool = False) -> dict[str, float]:
    """Frontend and BiGRU shares of the summed node time in an ORT profile (one JSON event list).

    Nodes that ORT fused or inserted lose their scope in the name (``Gelu_token_12``,
    ``ReorderInput_token_3``); they are charged to the scope of the node that ran just before.
    """
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    if skip_first_run and len(runs) > 1:
        nodes = [e for e in nodes if e["ts"] >= runs[1]["ts"]]
    spent = {"frontend": 0.0, "gru": 0.0, "total": 0.0}
    scope = ""
    for e in nodes:
        if e["name"].startswith("/"):
            scope = e["name"]
        spent["total"] += e["dur"]
        if scope.startswith(FRONTEND_SCOPE):
            spent["frontend"] += e["dur"]
        elif scope.startswith(GRU_SCOPE):
            spent["gru"] += e["dur"]
    total = spent["total"] or 1.0
    return {"frontend_share": spent["frontend"] / total, "gru_share": spent["gru"] / total}


class _TrtRunner:
    """A TensorRT engine through glfer_edge.runtime's backend (pinned buffers, one stream)."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.path = case.source.artifacts[case.backend]

    def load(self) -> None:
        from glfer_edge.runtime.trt import TensorRTBackend

        device = self.case.options.device
        self.backend = TensorRTBackend(self.path, device="cuda" if device == "cpu" else device)
        self.threads = None

    def infer(self, audio: np.ndarray) -> None:
        self.backend.run(audio)

    def compute_times(self, audio: np.ndarray, runs: int) -> list[float]:
        """GPU Compute Time: enqueue + stream synchronize on input already on the device (no H2D/D2H),
        timed on the host, so it includes the launch overhead trtexec's CUDA events leave out."""
        b = self.backend
        b.run(audio)  # binds this batch shape and leaves the input on the device
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            b._enqueue(len(audio))
            b._cuda.synchronize(b._stream)
            out.append(time.perf_counter() - t0)
        return out

    def shares(self, audio: np.ndarray) -> dict[str, float] | None:
        return None  # would need a TensorRT IProfiler; `trtexec --dumpProfile` gives per-layer times

    def gpu_peak_mb(self) -> float | None:
        return _gpu_process_mb()

    def close(self) -> None:
        self.backend.close()


def _gpu_process_mb() -> float | None:
    """GPU memory this process holds now (nvidia-smi), MiB; None without nvidia-smi."""
    text = _run_text(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    for line in (text or "").splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(used)
    return None


def _make_runner(case: Case):
    if case.backend.startswith("torch"):
        return _TorchRunner(case)
    if case.backend.startswith("ort-"):
        return _OrtRunner(case)
    return _TrtRunner(case)


# -- one case (inside its subprocess) -----------------------------------------------------------


def _timed_calls(fn: Callable[[], None], options: BenchOptions) -> tuple[list[float], float]:
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


def run_case(case: Case) -> dict[str, Any]:
    """Load, first inference, warm-up, timed calls, profile: the result record of one case."""
    cfg, opts = case.source.config, case.options
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((case.batch, 4, cfg.segment_samples)) * _INPUT_RMS).astype(np.float32)
    baseline_rss = _status_mb("VmRSS")
    runner = _make_runner(case)
    t0 = time.perf_counter()
    runner.load()
    t1 = time.perf_counter()
    runner.infer(audio)
    t2 = time.perf_counter()
    for _ in range(opts.warmup):
        runner.infer(audio)
    samples, walltime = _timed_calls(lambda: runner.infer(audio), opts)
    compute = runner.compute_times(audio, len(samples))
    shares = runner.shares(audio) if opts.profile else None
    mean_s = float(np.mean(samples))
    result = {
        "backend": case.backend, "batch": case.batch, "model": case.source.label,
        "segment_seconds": cfg.segment_seconds, "threads": runner.threads,
        "load_s": t1 - t0, "first_inference_s": t2 - t1, "cold_start_s": t2 - t0,
        "iterations": len(samples), "warmup": opts.warmup, "total_host_walltime_s": walltime,
        "latency_ms": latency_stats(samples),
        "gpu_compute_ms": latency_stats(compute) if compute else None,
        "throughput_segments_per_s": len(samples) * case.batch / walltime,
        "throughput_audio_s_per_s": len(samples) * case.batch * cfg.segment_seconds / walltime,
        "rtf": mean_s / (case.batch * cfg.segment_seconds),
        "frontend_share": shares["frontend_share"] if shares else None,
        "gru_share": shares["gru_share"] if shares else None,
        "gpu_peak_mb": runner.gpu_peak_mb(),
        "baseline_rss_mb": baseline_rss,
    }
    runner.close()
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _worker_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="glfer-edge benchmark worker: runs one case (internal)")
    p.add_argument("case_file")
    p.add_argument("out_file")
    args = p.parse_args(argv)
    case = Case.from_json(Path(args.case_file).read_text())
    if case.options.threads:  # before torch / ORT create their pools
        os.environ["OMP_NUM_THREADS"] = str(case.options.threads)
    Path(args.out_file).write_text(json.dumps(run_case(case)))
    return 0


# -- model sources: weights, presets, exported artifacts (parent process) ----------------------


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glfer_edge" / "bench"


def preset_weights(preset: str, cache_dir: Path) -> Path:
    """Random weights of a preset (torch seed 0), saved once to the cache: for speed measurements only."""
    path = Path(cache_dir) / f"{preset}-random-seed0.safetensors"
    if not path.is_file():
        import torch

        from glfer_edge.config import get_preset
        from glfer_edge.model.glfernet import GLFERNet
        from glfer_edge.weights import save_weights

        try:
            config = get_preset(preset)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        torch.manual_seed(0)
        save_weights(GLFERNet(config).eval(), path)
    return path


def resolve_source(
    path: str | Path,
    backends: Sequence[str],
    batches: Sequence[int],
    *,
    segment_seconds: float | None = None,
    cache_dir: Path | None = None,
    label: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ModelSource:
    """A model file -> its config and the artifact of every requested backend, exporting or building
    what is missing into ``cache_dir`` (keyed by weights hash, segment length, exporter code and precision)."""
    from glfer_edge.runtime.artifact import artifact_kind, artifact_metadata, calibration_of, config_from_metadata

    path = Path(path)
    kind = artifact_kind(path)
    meta = artifact_metadata(path)
    config, precision = config_from_metadata(meta, path)
    if kind == "onnxruntime" and precision == "int8" and (calibration_of(meta) or {}).get("target") == "cpu":
        precision = "int8-cpu"
    if segment_seconds is not None and kind != "torch" and segment_seconds != config.segment_seconds:
        raise InputError(f"{path} is fixed to {config.segment_seconds:g}-s segments; drop --segment-seconds "
                         "or pass the weights (.safetensors) to export at another length")
    config = config.replace(segment_seconds=segment_seconds) if segment_seconds else config
    prefix = {"onnxruntime": "ort", "tensorrt": "trt"}.get(kind)
    artifacts = {f"{prefix}-{precision}": str(path)} if prefix else {}
    source = ModelSource(label or path.stem, config, str(path) if kind == "torch" else None, artifacts)
    if kind == "torch":
        source = _with_exports(source, backends, Path(cache_dir or default_cache_dir()), progress)
    if kind != "tensorrt":
        source = _with_engines(source, backends, batches, Path(cache_dir or default_cache_dir()), progress)
    return source


def _with_exports(source: ModelSource, backends: Sequence[str], cache_dir: Path,
                  progress: Callable[[str], None] | None) -> ModelSource:
    """ONNX artifacts for the ort-*/trt-* backends, exported once from the weights with glfer_edge.export."""
    from glfer_edge.metadata import sha256_file

    trt_ok = not _trt_missing()
    wanted = sorted({b[4:] for b in backends if b.startswith("ort-") or (b.startswith("trt-") and trt_ok)})
    if not wanted:
        return source
    out_dir = cache_dir / f"{sha256_file(source.weights)[:16]}-{source.config.segment_seconds:g}s-{_exporter_hash()}"
    artifacts, unavailable = dict(source.artifacts), dict(source.unavailable)
    missing = [p for p in wanted if not (out_dir / f"model.{p}.onnx").is_file()]
    try:
        if missing:
            from glfer_edge.export import CalibrationConfig, ExportConfig, export_artifacts

            if progress:
                progress(f"exporting {source.label} {', '.join(missing)} ONNX to {out_dir}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # converter notes on FP16 rounding: not the benchmark's business
                export_artifacts(out_dir, ExportConfig(
                    precisions=tuple(missing), weights=source.weights, segment_seconds=source.config.segment_seconds,
                    calibration=CalibrationConfig(synth_segments=TIMING_CALIBRATION_SEGMENTS), report_scenes=0,
                ))
    except Exception as exc:  # the cases are skipped with the reason; the other backends still run
        for p in missing:
            unavailable[f"ort-{p}"] = unavailable[f"trt-{p}"] = f"export failed: {_one_line(exc)}"
    for p in wanted:
        if (out_dir / f"model.{p}.onnx").is_file():
            artifacts[f"ort-{p}"] = str(out_dir / f"model.{p}.onnx")
    return dataclasses.replace(source, artifacts=artifacts, unavailable=unavailable)


def _exporter_hash() -> str:
    """Hash of the code that writes an artifact (model, frontend, export, calibration): a cached export
    from older code must not be timed as if it were the current one."""
    import hashlib

    import glfer_edge.calibration
    import glfer_edge.export
    import glfer_edge.frontend
    import glfer_edge.model

    digest = hashlib.sha256()
    for package in (glfer_edge.model, glfer_edge.frontend, glfer_edge.export, glfer_edge.calibration):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:8]


def _with_engines(source: ModelSource, backends: Sequence[str], batches: Sequence[int], cache_dir: Path,
                  progress: Callable[[str], None] | None) -> ModelSource:
    """TensorRT engines (batch profile 1..max) for the trt-* backends, built from the ONNX artifacts."""
    from glfer_edge.export.trt_build import build_engine

    artifacts, unavailable = dict(source.artifacts), dict(source.unavailable)
    for backend in backends:
        onnx_path = artifacts.get("ort-" + backend[4:])
        if not backend.startswith("trt-") or backend in artifacts or onnx_path is None or _trt_missing():
            continue
        engine = Path(onnx_path).with_suffix(f".b{max(batches)}.engine")
        try:
            if not engine.is_file():
                if progress:
                    progress(f"building {engine}")
                build_engine(onnx_path, engine, batch=(1, max(batches), max(batches)), progress=False)
            artifacts[backend] = str(engine)
        except Exception as exc:  # the case is skipped with the reason
            unavailable[backend] = f"engine build failed: {_one_line(exc)}"
    return dataclasses.replace(source, artifacts=artifacts, unavailable=unavailable)


def _trt_missing() -> str | None:
    """Why TensorRT engines cannot run here (TensorRT-RTX builds ahead of time but runs on a GPU too)."""
    from importlib.util import find_spec

    if find_spec("tensorrt") is None and find_spec("tensorrt_rtx") is None:
        return "TensorRT not installed"
    if not _run_text(["nvidia-smi", "-L"]):
        return "no CUDA GPU"
    return None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


# -- the matrix (parent process) ----------------------------------------------------------------


def _skip_reason(backend: str, source: ModelSource, options: BenchOptions) -> str | None:
    from importlib.util import find_spec

    if backend.startswith("torch") and not source.weights:
        return "needs weights (.safetensors) or --preset"
    if backend.startswith("torch") and find_spec("torch") is None:
        return "torch not installed (pip install 'glfer-edge[torch]')"
    if backend.startswith("torch") and backend.endswith("-fp16") and options.device != "cuda":
        return "FP16 autocast is timed on CUDA only (--device cuda)"
    if backend.startswith("torch") and options.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device (install a CUDA build of torch, or --device cpu)"
    if backend.startswith("trt-") and _trt_missing():
        return _trt_missing()
    if options.device == "cuda" and backend.startswith("ort-"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
    if backend.startswith(("ort-", "trt-")) and backend not in source.artifacts:
        return source.unavailable.get(backend, f"no {backend} artifact for {source.label}")
    return None


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
        gflop = _gflop_per_segment(source.config)
        for backend in backends:
            reason = _skip_reason(backend, source, options)
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
                    record["achieved_gflops"] = gflop * batch / (record["latency_ms"]["mean"] / 1e3)
                results.append(record)
    return results


def _gflop_per_segment(config: SELDConfig) -> float | None:
    """FLOPs = 2 x MACs of one segment, frontend included (glfer_edge.model.complexity)."""
    from importlib.util import find_spec

    if find_spec("torch") is None:
        return None
    from glfer_edge.model.complexity import measure_complexity
    from glfer_edge.model.glfernet import GLFERNet

    return 2 * measure_complexity(GLFERNet(config)).total_macs / 1e9


# -- reports ------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _loads(values: Sequence[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in values) if values else "?"


def render_markdown(report: dict[str, Any]) -> str:
    """One table row per case, then skipped/failed cases and the machine."""
    rows = report["results"]
    ref = {(r["model"], r["batch"]): r["latency_ms"]["mean"]
           for r in rows if r["backend"] == "torch" and "latency_ms" in r}
    gpu = any(r.get("gpu_compute_ms") for r in rows)
    head = ["model", "backend", "batch", "Latency mean ms", "p50", "p90", "p99"]
    head += ["GPU Compute mean ms"] if gpu else []
    head += ["segments/s", "audio-s/s", "RTF", "x torch", "GFLOP/s", "cold start s", "peak RSS MiB",
             "frontend %", "GRU %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "latency_ms" not in r:
            continue
        lat = r["latency_ms"]
        base = ref.get((r["model"], r["batch"]))
        cells = [r["model"], r["backend"], str(r["batch"]), f"{lat['mean']:.1f}", f"{lat['median']:.1f}",
                 f"{lat['p90']:.1f}", f"{lat['p99']:.1f}"]
        cells += [_fmt((r.get("gpu_compute_ms") or {}).get("mean"), ".2f")] if gpu else []
        cells += [
            f"{r['throughput_segments_per_s']:.2f}", f"{r['throughput_audio_s_per_s']:.1f}", f"{r['rtf']:.4f}",
            _fmt(base / lat["mean"] if base else None, ".2f"), _fmt(r.get("achieved_gflops"), ".1f"),
            f"{r['cold_start_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
            _fmt(None if r["frontend_share"] is None else 100 * r["frontend_share"], ".1f"),
            _fmt(None if r["gru_share"] is None else 100 * r["gru_share"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['model']} {r['backend']} batch {r['batch']}: " + (f"skipped ({r['skipped']})" if "skipped" in r
             else f"FAILED ({r['error']})") for r in rows if "latency_ms" not in r]
    m = report["machine"]
    cpu = m["cpu"]
    lines += ["", "Latency = end-to-end call with host arrays (trtexec 'Latency'); throughput = calls x batch / "
              "total host walltime; RTF = mean latency / audio seconds per call; 'x torch' = PyTorch eager mean "
              "latency / this one (same model and batch); GFLOP/s from 2 x MACs per segment incl. the frontend.", ""]
    lines += notes + ([""] if notes else [])
    flags = ", ".join(cpu["flags"]) or "–"
    lines.append(f"Machine: {cpu['model']}, {cpu['logical_cores']} logical cores, flags {flags}; "
                 f"GPU {', '.join(m['gpu']) if m.get('gpu') else 'none'}; load average (1, 5, 15 min) at start "
                 f"{_loads(m.get('load_average'))}, at end {_loads(report.get('load_average_end'))}.")
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines.append(f"Versions: {versions}.")
    lines.append(f"Command: `{report['command']}`")
    return "\n".join(lines) + "\n"


def plot_results(results: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Latency per call and throughput against batch size, one line per model x backend (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glfer_edge._fileio import atomic_path

    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "latency_ms" in r:
            series.setdefault(f"{r['model']} {r['backend']}", []).append(r)
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r["batch"])
        batches = [r["batch"] for r in rows]
        ax_lat.plot(batches, [r["latency_ms"]["mean"] for r in rows], marker="o", label=name)
        ax_thr.plot(batches, [r["throughput_segments_per_s"] for r in rows], marker="o", label=name)
    batches = sorted({r["batch"] for rows in series.values() for r in rows})
    for ax, ylabel in ((ax_lat, "latency per call (ms, mean)"), (ax_thr, "throughput (segments/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_thr.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(_worker_main())
