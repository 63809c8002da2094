"""Levers for the CPU targets, timed side by side: each variant runs once per round, rounds interleave,
so load from other processes hits every variant alike (min and median over rounds are reported).

    python benchmarks/levers.py --preset paper --rounds 10 --json benchmarks/results/levers-paper.json

Variants: PyTorch eager (inference_mode vs no_grad, channels_last, traced + optimize_for_inference
i.e. Conv-BN folding and MKLDNN layouts), torch.compile and onnxruntime FP32/INT8 (graph
optimization level ALL = with the NCHWc layout transformer vs EXTENDED vs BASIC, denormals as zero,
no spinning, IO binding), and an INT8 graph in onnxruntime's preferred CPU form (U8 activations,
all op types) next to the TensorRT-oriented export (S8 symmetric, Conv/MatMul/Gemm only).
Artifacts come from the bench cache (``glfer-edge bench`` exports them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


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


def ort_variants(path: Path, audio: np.ndarray, threads: int, tag: str) -> dict[str, Callable[[], None]]:
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel

    def session(level=levels.ORT_ENABLE_ALL, **entries: str):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        for k, v in entries.items():
            so.add_session_config_entry(k, v)
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(s) -> Callable[[], None]:
        return lambda: s.run(None, {"audio": audio})

    base = session()
    binding = base.io_binding()
    binding.bind_cpu_input("audio", audio)
    for out in base.get_outputs():
        binding.bind_output(out.name, "cpu")
    return {
        f"ort-{tag} ALL": run(base),
        f"ort-{tag} EXTENDED (no NCHWc)": run(session(levels.ORT_ENABLE_EXTENDED)),
        f"ort-{tag} BASIC": run(session(levels.ORT_ENABLE_BASIC)),
        f"ort-{tag} ALL + denormals as zero": run(session(**{"session.set_denormal_as_zero": "1"})),
        f"ort-{tag} ALL + no spinning": run(session(**{"session.intra_op.allow_spinning": "0"})),
        f"ort-{tag} ALL + IO binding": lambda: base.run_with_iobinding(binding),
    }


def main() -> None:
    from glfer_edge.bench import default_cache_dir, preset_weights, resolve_source

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--cache-dir", default=None, help="bench cache (default ~/.cache/glfer_edge/bench)")
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
    variants.update({k: v for k, v in ort_variants(Path(source.artifacts["ort-int8-cpu"]), audio, args.threads,
                                                   "int8-cpu").items() if k.endswith(" ALL")})
    for fn in variants.values():  # warm-up
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ref = float(np.min(times["torch eager (inference_mode)"]))
    rows = {k: {"min_ms": 1e3 * float(np.min(v)), "median_ms": 1e3 * float(np.median(v))} for k, v in times.items()}
    print(f"{'variant':44s} {'min ms':>9s} {'median ms':>10s} {'x eager':>8s}")
    for k, r in rows.items():
        print(f"{k:44s} {r['min_ms']:9.1f} {r['median_ms']:10.1f} {ref * 1e3 / r['min_ms']:8.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"preset": args.preset, "threads": args.threads, "batch": args.batch,
                                               "rounds": args.rounds, "variants": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
