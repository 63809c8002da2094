"""Levers for the CPU targets, timed side by side: each variant runs twice per round (untimed, then timed: warm,
as in a deployment), rounds interleave (every other one in reverse order), so load from other processes
hits every variant alike. Reported: min and median over rounds, and speedups against the first variant
(PyTorch eager when timed), of the minima and as the median of per-round ratios; the JSON keeps every
round.

    python benchmarks/levers.py --preset paper --rounds 10 --json benchmarks/results/levers-paper.json

Variants: PyTorch eager (inference_mode vs no_grad, channels_last, traced + optimize_for_inference
i.e. Conv-BN folding and MKLDNN layouts), torch.compile and onnxruntime FP32/INT8 (graph
optimization level ALL = with the NCHWc layout transformer vs EXTENDED vs BASIC, denormals as zero,
no spinning, IO binding), and an INT8 graph in onnxruntime's preferred CPU form (U8 activations,
all op types) next to the TensorRT-oriented export (S8 symmetric, Conv/MatMul/Gemm only), and, at
batch 1, the single-batch export (``glfer-edge export --single-batch``: ODConv as one convolution with
its per-sample kernel instead of the shifted im2col) in FP32 and INT8-cpu, and the FP32 graph without
the artifact's CPU rewrite (grouped 7x7 convs kept, ``glfer_edge.export.fp32_cpu``).
Artifacts come from the bench cache (``glfer-edge bench`` exports them; the single-batch ones are
exported here, next to them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ratios import speedups  # benchmarks/ratios.py, beside this script


def torch_variants(weights: Path, config, audio: np.ndarray, threads: int) -> dict[str, Callable[[], None]]:
    import torch

    from glfer_edge.model.glfernet import GLFERNet
    from glfer_edge.weights import load_model

    torch.set_num_threads(threads)
    model = GLFERNet(config)
    model.load_state_dict(load_model(weights).state_dict())
    model.eval()
    x = torch.from_numpy(audio)
    cl = GLFERNet(config)
    cl.load_state_dict(model.state_dict())
    for m in cl.modules():  # 4-D conv weights only; NHWC then propagates from the first conv
        if isinstance(m, torch.nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    cl.eval()
    with torch.inference_mode():
        traced = torch.jit.optimize_for_inference(torch.jit.trace(model, (x,), check_trace=False))

    def run(m: Callable, mode: Callable = torch.inference_mode) -> Callable[[], None]:
        def call() -> None:
            with mode():
                m(x)
        return call

    compiled = torch.compile(model)
    return {
        "torch eager (inference_mode)": run(model),
        "torch.compile (inductor)": run(compiled),
        "torch eager (no_grad)": run(model, torch.no_grad),
        "torch channels_last": run(cl),
        "torch trace+optimize_for_inference": run(traced),
    }


DENORMALS_AS_ZERO = {"session.set_denormal_as_zero": "1"}
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}


def ort_session(path: Path, threads: int, level=None, **entries: str):
    """An onnxruntime CPU session; ``level`` defaults to ORT_ENABLE_ALL (the runtime's setting)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level is None else level
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    for k, v in entries.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(session, audio: np.ndarray) -> Callable[[], None]:
    return lambda: session.run(None, {"audio": audio})


def ort_variants(path: Path, audio: np.ndarray, threads: int, tag: str) -> dict[str, Callable[[], None]]:
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    base = ort_session(path, threads)
    binding = base.io_binding()
    binding.bind_cpu_input("audio", audio)
    for out in base.get_outputs():
        binding.bind_output(out.name, "cpu")
    return {
        f"ort-{tag} ALL": ort_run(base, audio),
        f"ort-{tag} EXTENDED (no NCHWc)": ort_run(ort_session(path, threads, levels.ORT_ENABLE_EXTENDED), audio),
        f"ort-{tag} BASIC": ort_run(ort_session(path, threads, levels.ORT_ENABLE_BASIC), audio),
        f"ort-{tag} ALL + denormals as zero": ort_run(ort_session(path, threads, **DENORMALS_AS_ZERO), audio),
        f"ort-{tag} ALL + no spinning": ort_run(ort_session(path, threads, **NO_SPINNING), audio),
        f"ort-{tag} ALL + IO binding": lambda: base.run_with_iobinding(binding),
    }


def single_batch_artifacts(source, cache: Path) -> dict[str, Path]:
    """FP32 and INT8-cpu exported with ``single_batch`` (fixed batch 1), cached beside the bench's exports."""
    from glfer_edge.bench import TIMING_CALIBRATION_SEGMENTS
    from glfer_edge.export import CalibrationConfig, ExportConfig, export_artifacts
    from glfer_edge.precision import artifact_name

    out = cache / f"{Path(source.artifacts['ort-fp32']).parent.name}-single-batch"
    wanted = ("fp32", "int8-cpu")
    if not all((out / artifact_name(p)).is_file() for p in wanted):
        export_artifacts(out, ExportConfig(
            precisions=wanted, weights=source.weights, segment_seconds=source.config.segment_seconds,
            calibration=CalibrationConfig(synth_segments=TIMING_CALIBRATION_SEGMENTS), report_scenes=0,
            single_batch=True,
        ))
    return {p: out / artifact_name(p) for p in wanted}


def fp32_without_cpu_rewrite(source, cache: Path) -> Path:
    """The FP32 graph before the artifact's CPU rewrite (``glfer_edge.export.fp32_cpu``: grouped 7x7 convs
    kept), cached beside the bench's exports: the A/B of that lever in the whole graph."""
    from glfer_edge.export.onnx_fp32 import export_fp32
    from glfer_edge.metadata import sha256_file
    from glfer_edge.weights import load_model

    out = cache / f"{Path(source.artifacts['ort-fp32']).parent.name}-no-cpu-rewrite" / "model.fp32.onnx"
    if not out.is_file():
        import onnx

        graph = export_fp32(load_model(source.weights), sha256_file(source.weights), source.config.segment_seconds)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(graph, str(out))
    return out


def main() -> None:
    from glfer_edge.bench import default_cache_dir, preset_weights, resolve_source

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--cache-dir", default=None, help="bench cache (default ~/.cache/glfer_edge/bench)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="time only these variants (exact names as printed), e.g. a two-graph A/B")
    p.add_argument("--extra", nargs="+", default=[], metavar="NAME=PATH",
                   help="also time these ONNX files at the runtime's setting, e.g. an older export for an A/B")
    args = p.parse_args()
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    source = resolve_source(preset_weights(args.preset, cache), ["ort-fp32", "ort-int8", "ort-int8-cpu"], [args.batch],
                            cache_dir=cache)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((args.batch, 4, source.config.segment_samples)) * 0.05).astype(np.float32)
    variants = torch_variants(Path(source.weights), source.config, audio, args.threads)
    for tag in ("fp32", "int8"):
        variants.update(ort_variants(Path(source.artifacts[f"ort-{tag}"]), audio, args.threads, tag))
    # onnxruntime's CPU INT8 form (glfer-edge export --precision int8-cpu), at the runtime's setting only
    variants["ort-int8-cpu ALL"] = ort_run(ort_session(Path(source.artifacts["ort-int8-cpu"]), args.threads), audio)
    variants["ort-fp32 ALL, grouped convs kept"] = ort_run(ort_session(fp32_without_cpu_rewrite(source, cache),
                                                                       args.threads), audio)
    if args.batch == 1:
        for tag, path in single_batch_artifacts(source, cache).items():
            variants[f"ort-{tag} single-batch ALL"] = ort_run(ort_session(path, args.threads), audio)
    for extra in args.extra:
        name, _, path = extra.partition("=")
        if not path:
            raise SystemExit(f"--extra {extra!r}: write NAME=PATH")
        variants[name] = ort_run(ort_session(Path(path), args.threads), audio)
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; choose from: {', '.join(variants)}")
        variants = {k: variants[k] for k in args.only}
    for fn in variants.values():  # warm-up
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants.items())
    for r in range(args.rounds):  # every other round backwards: no variant always runs after the same one
        for name, fn in order if r % 2 == 0 else order[::-1]:
            # Timed right after an untimed call of its own, as when one model runs back to back. Timed cold, the
            # last variant (run twice in a row at each turn of the order) came out fastest: one int8-cpu graph
            # measured 1.44x FP32 as the last of four and 1.28x in the middle of six (session 18).
            fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    eager = "torch eager (inference_mode)"
    ref_name = eager if eager in times else next(iter(times))
    # Two speedups against the reference: of the minima, and the median of the per-round ratios (each round
    # runs every variant within a second, so a slow spell of this shared VM divides out).
    rows = {}
    for k, v in times.items():
        by_min, per_round = speedups(times[ref_name], v)
        rows[k] = {"min_ms": 1e3 * float(np.min(v)), "median_ms": 1e3 * float(np.median(v)), "speedup_min": by_min,
                   "speedup_per_round_median": per_round, "rounds_ms": [round(1e3 * t, 2) for t in v]}
    base = "eager" if ref_name == eager else "first"
    print(f"{'variant':44s} {'min ms':>9s} {'median ms':>10s} {'x ' + base:>8s} {'x per round':>12s}")
    for k, r in rows.items():
        print(f"{k:44s} {r['min_ms']:9.1f} {r['median_ms']:10.1f} {r['speedup_min']:8.2f} "
              f"{r['speedup_per_round_median']:12.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"preset": args.preset, "threads": args.threads, "batch": args.batch,
                                               "rounds": args.rounds, "reference": ref_name, "variants": rows},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
