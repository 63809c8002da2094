"""Levers for the CPU targets, timed side by side: each variant runs twice per round (untimed, then timed: warm,
as in a deployment), rounds interleave (every other one in reverse order), so load from other processes
hits every variant alike. Reported: the per-round median in ms and the speedup against the reference
(PyTorch eager when timed, else the first variant) as the median of per-round ratios, with the CPU model;
the JSON keeps every round, the minima and the machine (CPU model, cores, ISA flags, library versions).
``--only`` picks variants before anything is built, so a two-graph A/B builds two graphs.

    python benchmarks/levers.py --preset paper --rounds 10 --json benchmarks/results/levers-paper.json

Variants: OpenVINO on the FP32 and both INT8 graphs (glfer_edge.runtime.openvino through SELDRuntime: the
runtime's LATENCY hint; THROUGHPUT hint; 1 stream; static batch; the int8-cpu graph), PyTorch eager (inference_mode vs no_grad, channels_last, traced + optimize_for_inference
i.e. Conv-BN folding and MKLDNN layouts), torch.compile and onnxruntime FP32/INT8 (graph
optimization level ALL = with the NCHWc layout transformer vs EXTENDED vs BASIC, denormals as zero,
no spinning, IO binding), and an INT8 graph in onnxruntime's preferred CPU form (U8 activations,
all op types) next to the TensorRT-oriented export (S8 symmetric, Conv/MatMul/Gemm only), and, at
batch 1, the single-batch export (``glfer-edge export --single-batch``: ODConv as one convolution with
its per-sample kernel instead of the shifted im2col) in FP32 and INT8-cpu, and the FP32 graph without
the artifact's CPU rewrite (grouped 7x7 convs kept, ``glfer_edge.export.fp32_cpu``).
ORT session-config levers: no spinning, spinning for 20 us only (``session.intra_op.spin_duration_us``),
dynamic work blocks (``session.dynamic_block_base``). ``--extras-only`` times only ``--extra`` files (at the
runtime's setting, ``--extra-no-spinning``, ``--extra-config NAME=PATH::KEY=VALUE,...``, ``--extra-openvino``)
without the bench cache: the A/B of graph variants (``benchmarks/int8_cpu_variants.py``), e.g.

    python benchmarks/levers.py --extras-only --rounds 20 --extra "HEAD=a.onnx" "variant=b.onnx" \
        --extra-no-spinning "variant, no spinning=b.onnx"

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


Factory = Callable[[], Callable[[], None]]  # builds a variant (loads, compiles) and returns its timed call


def torch_variants(weights: Path, config, audio: np.ndarray, threads: int) -> dict[str, Factory]:
    def model():
        import torch

        from glfer_edge.model.glfernet import GLFERNet
        from glfer_edge.weights import load_model

        torch.set_num_threads(threads)
        m = GLFERNet(config)
        m.load_state_dict(load_model(weights).state_dict())
        return torch, m.eval(), torch.from_numpy(audio)

    def run(make: Callable, no_grad: bool = False) -> Factory:
        def factory() -> Callable[[], None]:
            torch, m, x = model()
            m = make(torch, m, x)
            mode = torch.no_grad if no_grad else torch.inference_mode

            def call() -> None:
                with mode():
                    m(x)
            return call
        return factory

    def channels_last(torch, m, x):
        for mod in m.modules():  # 4-D conv weights only; NHWC then propagates from the first conv
            if isinstance(mod, torch.nn.Conv2d):
                mod.to(memory_format=torch.channels_last)
        return m

    def traced(torch, m, x):
        with torch.inference_mode():
            return torch.jit.optimize_for_inference(torch.jit.trace(m, (x,), check_trace=False))

    return {
        "torch eager (inference_mode)": run(lambda t, m, x: m),
        "torch.compile (inductor)": run(lambda t, m, x: t.compile(m)),
        "torch eager (no_grad)": run(lambda t, m, x: m, no_grad=True),
        "torch channels_last": run(channels_last),
        "torch trace+optimize_for_inference": run(traced),
    }


DENORMALS_AS_ZERO = {"session.set_denormal_as_zero": "1"}
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}
# ORT's intra-op loops hand out work in blocks whose size shrinks down to this base (default 0: static split);
# a dynamic schedule lets the thread that is not descheduled on a shared machine take over the other's share.
# Spinning, but for 20 us before a worker sleeps (onnxruntime's default spins much longer).
SHORT_SPIN = {"session.intra_op.spin_duration_us": "20"}
DYNAMIC_BLOCKS = {"session.dynamic_block_base": "4"}


def ort_session(path: Path, threads: int, level=None, parallel: bool = False, **entries: str):
    """An onnxruntime CPU session; ``level`` defaults to ORT_ENABLE_ALL (the runtime's setting); ``parallel``:
    independent branches run concurrently (ORT_PARALLEL, ``threads`` inter-op threads)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if parallel:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level is None else level
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    for k, v in entries.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(path: Path, audio: np.ndarray, threads: int, level=None, parallel: bool = False,
            **entries: str) -> Factory:
    def factory() -> Callable[[], None]:
        session = ort_session(path, threads, level, parallel, **entries)
        return lambda: session.run(None, {"audio": audio})
    return factory


def ort_variants(path: Path, audio: np.ndarray, threads: int, tag: str) -> dict[str, Factory]:
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel

    def io_binding() -> Callable[[], None]:
        base = ort_session(path, threads)
        binding = base.io_binding()
        binding.bind_cpu_input("audio", audio)
        for out in base.get_outputs():
            binding.bind_output(out.name, "cpu")
        return lambda: base.run_with_iobinding(binding)

    return {
        f"ort-{tag} ALL": ort_run(path, audio, threads),
        f"ort-{tag} EXTENDED (no NCHWc)": ort_run(path, audio, threads, levels.ORT_ENABLE_EXTENDED),
        f"ort-{tag} BASIC": ort_run(path, audio, threads, levels.ORT_ENABLE_BASIC),
        f"ort-{tag} ALL + denormals as zero": ort_run(path, audio, threads, **DENORMALS_AS_ZERO),
        f"ort-{tag} ALL + no spinning": ort_run(path, audio, threads, **NO_SPINNING),
        f"ort-{tag} ALL + spin 20 us": ort_run(path, audio, threads, **SHORT_SPIN),
        f"ort-{tag} ALL + dynamic block base 4": ort_run(path, audio, threads, **DYNAMIC_BLOCKS),
        f"ort-{tag} ALL + dynamic block base 4, no spinning": ort_run(path, audio, threads, **DYNAMIC_BLOCKS,
                                                                      **NO_SPINNING),
        f"ort-{tag} ALL + IO binding": io_binding,
        f"ort-{tag} ALL + parallel branches": ort_run(path, audio, threads, parallel=True),
        f"ort-{tag} ALL + parallel branches, no spinning": ort_run(path, audio, threads, parallel=True,
                                                                   **NO_SPINNING),
    }


def runtime_run(path: Path, audio: np.ndarray, threads: int, backend: str | None = None, **options) -> Factory:
    """A SELDRuntime (the product's path, input validation included) with RuntimeOptions."""
    def factory() -> Callable[[], None]:
        from glfer_edge.runtime import RuntimeOptions, SELDRuntime

        rt = SELDRuntime.open(path, backend=backend, threads=threads, options=RuntimeOptions(**options))
        return lambda: rt.infer(audio)
    return factory


def openvino_variants(artifacts: dict[str, Path], audio: np.ndarray, threads: int) -> dict[str, Factory]:
    """OpenVINO levers on this machine, each through SELDRuntime(backend='openvino')."""
    out = {}
    for form in ("fp32", "int8", "int8-cpu"):
        out[f"openvino-{form}"] = runtime_run(artifacts[form], audio, threads, "openvino")
    for form in ("fp32", "int8"):
        path = artifacts[form]
        out[f"openvino-{form} THROUGHPUT hint"] = runtime_run(path, audio, threads, "openvino",
                                                             performance_hint="THROUGHPUT")
        out[f"openvino-{form} 1 stream"] = runtime_run(path, audio, threads, "openvino", streams=1)
        out[f"openvino-{form} static batch"] = runtime_run(path, audio, threads, "openvino", static_batch=True)
    out["ort-int8-cpu runtime (SELDRuntime)"] = runtime_run(artifacts["int8-cpu"], audio, threads)
    return out


def single_batch_artifacts(source, cache: Path) -> dict[str, Path]:
    """FP32 and INT8-cpu exported with ``single_batch`` (fixed batch 1), cached beside the bench's exports."""
    from glfer_edge.bench import TIMING_CALIBRATION_SEGMENTS
    from glfer_edge.export import CalibrationConfig, ExportConfig, export_artifacts
    from glfer_edge.precision import artifact_name

    out = cache / f"{Path(source.artifacts['fp32']).parent.name}-single-batch"
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

    out = cache / f"{Path(source.artifacts['fp32']).parent.name}-no-cpu-rewrite" / "model.fp32.onnx"
    if not out.is_file():
        import onnx

        graph = export_fp32(load_model(source.weights), sha256_file(source.weights), source.config.segment_seconds)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(graph, str(out))
    return out


def main() -> None:
    from glfer_edge.bench import default_cache_dir, preset_weights, resolve_source
    from glfer_edge.machine import cpu_label, describe_machine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--cache-dir", default=None, help="bench cache (default ~/.cache/glfer_edge/bench)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="time only these variants (exact names as --list prints them); only these are built")
    p.add_argument("--list", action="store_true", help="print the variant names and exit")
    p.add_argument("--extra", nargs="+", default=[], metavar="NAME=PATH",
                   help="also time these ONNX files at the runtime's setting, e.g. an older export for an A/B")
    p.add_argument("--extra-no-spinning", nargs="+", default=[], metavar="NAME=PATH",
                   help="also time these ONNX files with intra-op spinning off")
    p.add_argument("--extra-config", nargs="+", default=[], metavar="NAME=PATH::KEY=VALUE,...",
                   help="also time these ONNX files with these session config entries, e.g. "
                        "'short spin=model.onnx::session.intra_op.spin_duration_us=20'")
    p.add_argument("--extra-openvino", nargs="+", default=[], metavar="NAME=PATH",
                   help="also time these ONNX files in OpenVINO (SELDRuntime, backend openvino)")
    p.add_argument("--extras-only", action="store_true",
                   help="time only the --extra files: no bench cache, nothing exported (the A/B of graph variants)")
    args = p.parse_args()
    if args.extras_only:
        run_variants(args, extra_variants(args, extras_audio(args)), cpu_label, describe_machine)
        return
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    source = resolve_source(preset_weights(args.preset, cache), ["ort-fp32", "ort-int8", "ort-int8-cpu"], [args.batch],
                            cache_dir=cache)
    artifacts = {form: Path(path) for form, path in source.artifacts.items()}
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((args.batch, 4, source.config.segment_samples)) * 0.05).astype(np.float32)
    # Factories only: nothing is loaded, compiled or exported until a variant is picked.
    variants: dict[str, Factory] = torch_variants(Path(source.weights), source.config, audio, args.threads)
    for tag in ("fp32", "int8", "int8-cpu"):  # int8-cpu: onnxruntime's CPU INT8 form (export --precision int8-cpu)
        variants.update(ort_variants(artifacts[tag], audio, args.threads, tag))
    variants["ort-fp32 ALL, grouped convs kept"] = lambda: ort_run(fp32_without_cpu_rewrite(source, cache), audio,
                                                                   args.threads)()
    if args.batch == 1:
        for tag in ("fp32", "int8-cpu"):
            variants[f"ort-{tag} single-batch ALL"] = (
                lambda tag=tag: ort_run(single_batch_artifacts(source, cache)[tag], audio, args.threads)())
    from importlib.util import find_spec

    if find_spec("openvino") is not None:
        variants.update(openvino_variants(artifacts, audio, args.threads))
    variants.update(extra_variants(args, audio))
    if args.list:
        print("\n".join(variants))
        return
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; choose from: {', '.join(variants)}")
        variants = {k: variants[k] for k in args.only}
    run_variants(args, variants, cpu_label, describe_machine)


def extras_audio(args) -> np.ndarray:
    """Test audio shaped for the first --extra file's input (batch ``--batch``)."""
    import onnx

    specs = args.extra + args.extra_no_spinning + args.extra_config + args.extra_openvino
    first = specs[0].partition("=")[2].partition("::")[0]
    dims = [d.dim_value for d in onnx.load(first, load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    return (rng.standard_normal((args.batch, *dims[1:])) * 0.05).astype(np.float32)


def extra_variants(args, audio: np.ndarray) -> dict[str, Factory]:
    out = {}
    configured = []
    for extra in args.extra_config:
        spec, _, config = extra.partition("::")
        configured.append((spec, dict(entry.split("=", 1) for entry in config.split(",") if entry)))
    for extra, entries in ([(e, {}) for e in args.extra] + [(e, NO_SPINNING) for e in args.extra_no_spinning]
                           + configured):
        name, _, path = extra.partition("=")
        if not path:
            raise SystemExit(f"--extra {extra!r}: write NAME=PATH")
        out[name] = ort_run(Path(path), audio, args.threads, **entries)
    for extra in args.extra_openvino:
        name, _, path = extra.partition("=")
        out[name] = runtime_run(Path(path), audio, args.threads, "openvino")
    return out


def run_variants(args, variants: dict[str, Factory], cpu_label, describe_machine) -> None:
    import os

    calls = {}
    for name, factory in variants.items():
        print(f"building {name}", flush=True)
        calls[name] = factory()
    for fn in calls.values():  # warm-up
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    load_start = os.getloadavg()
    order = list(calls.items())
    for r in range(args.rounds):  # every other round backwards: no variant always runs after the same one
        for name, fn in order if r % 2 == 0 else order[::-1]:
            # Timed right after an untimed call of its own, as when one model runs back to back. Timed cold, the
            # last variant (run twice in a row at each turn of the order) came out fastest.
            fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    eager = "torch eager (inference_mode)"
    ref_name = eager if eager in times else next(iter(times))
    # The speedup against the reference is the median of the per-round ratios: each round runs every variant
    # within a few seconds, so a slow spell of this shared machine divides out.
    rows = {}
    for k, v in times.items():
        by_min, per_round = speedups(times[ref_name], v)
        rows[k] = {"median_ms": 1e3 * float(np.median(v)), "min_ms": 1e3 * float(np.min(v)),
                   "speedup_per_round_median": per_round, "speedup_min": by_min,
                   "rounds_ms": [round(1e3 * t, 2) for t in v]}
    load = os.getloadavg()
    print(f"{cpu_label()}; {args.preset} preset, batch {args.batch}, {args.threads} threads, {args.rounds} rounds; "
          f"load average (1 min) {load_start[0]:.2f} at the start, {load[0]:.2f} at the end")
    print(f"{'variant':44s} {'median ms':>10s} {'x ' + ref_name[:20] + ' (per round)':>34s}")
    for k, r in rows.items():
        print(f"{k:44s} {r['median_ms']:10.1f} {r['speedup_per_round_median']:34.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"preset": args.preset, "threads": args.threads, "batch": args.batch,
                                               "rounds": args.rounds, "reference": ref_name,
                                               "load_average_start": [round(x, 2) for x in load_start],
                                               "load_average_end": [round(x, 2) for x in load],
                                               "machine": describe_machine(), "variants": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
