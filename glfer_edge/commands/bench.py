"""``glfer-edge bench``: latency, throughput, RTF, cold start and memory per backend x batch, over the real
runtime (each row is ``SELDRuntime.open(...)`` + ``infer``), and interleaved rounds for ratios.

Examples::

    glfer-edge bench --preset paper --backends torch,ort-fp32,ort-int8-cpu,openvino-fp32,openvino-int8 \\
        --threads 2 --rounds 20
    glfer-edge bench --model model.safetensors model.int8.onnx --batch 1,4,16 --json bench.json --plot bench.png
"""

from __future__ import annotations

import argparse
import shlex
import sys

DEFAULT_BACKENDS = ("torch", "torch-compile", "torch-fp16", "torch-compile-fp16", "ort-fp32", "ort-fp16", "ort-int8",
                    "ort-int8-cpu", "openvino-fp32", "openvino-int8", "openvino-int8-cpu", "trt-fp16", "trt-int8")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive integers (e.g. 1,4,16)")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    from glfer_edge._fileio import add_force_argument, add_json_argument
    from glfer_edge.bench.backends import BACKEND_NAMES
    from glfer_edge.runtime.options import GRAPH_OPTIMIZATION_LEVELS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", nargs="+", metavar="PATH",
                     help="weights (.safetensors; ONNX artifacts are exported on the fly), .onnx or .engine files")
    src.add_argument("--preset", help="random weights of a preset (tiny, paper, ...): speed only")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help=f"comma-separated, from {', '.join(BACKEND_NAMES)} (default: {', '.join(DEFAULT_BACKENDS)})")
    p.add_argument("--batch", type=_int_list, default=[1], help="comma-separated batch sizes (default 1)")
    p.add_argument("--segment-seconds", type=float, default=None, help="segment length (default: the model's)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--duration", type=float, default=5.0, help="seconds of timed calls per case (default 5)")
    timing.add_argument("--iterations", type=int, default=None, help="exactly N timed calls per case")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after the first one (default 3)")
    p.add_argument("--rounds", type=int, default=0,
                   help="also time all backends side by side in N interleaved rounds per batch size (per-round "
                        "medians, ratios, share of the SGEMM peak); 0: off (default)")
    p.add_argument("--no-cases", action="store_true",
                   help="skip the one-subprocess-per-case pass (cold start, RSS); with --rounds only")
    p.add_argument("--reference", default=None, help="backend the rounds' ratios divide by (default: the first)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for torch, onnxruntime and OpenVINO")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch / onnxruntime device")
    p.add_argument("--ort-opt-level", default=None, choices=GRAPH_OPTIMIZATION_LEVELS,
                   help="onnxruntime graph optimization level (default: the runtime's, all; FP16 runs with disable)")
    p.add_argument("--no-profile", action="store_true", help="skip the frontend / GRU time-share pass")
    p.add_argument("--cache-dir", default=None, help="where exported artifacts and engines are kept")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is abandoned")
    add_json_argument(p, "results, rounds and the machine (CPU model, cores, library versions)")
    p.add_argument("--markdown", metavar="PATH", help="write the markdown tables")
    p.add_argument("--plot", metavar="PATH", help="write latency/throughput vs batch (PNG, SVG, PDF)")
    add_force_argument(p)


def _command_line(args: argparse.Namespace) -> str:
    """The settings of this run as a command that reproduces it."""
    parts = ["glfer-edge", "bench"]
    parts += ["--model", *args.model] if args.model else ["--preset", args.preset]
    parts += ["--backends", args.backends, "--batch", ",".join(map(str, args.batch))]
    if args.iterations is not None:
        parts += ["--iterations", str(args.iterations)]
    else:
        parts += ["--duration", f"{args.duration:g}"]
    parts += ["--warmup", str(args.warmup)]
    for flag, value in (("--segment-seconds", args.segment_seconds), ("--threads", args.threads),
                        ("--rounds", args.rounds or None)):
        parts += [flag, f"{value:g}"] if value is not None else []
    for flag, value in (("--ort-opt-level", args.ort_opt_level), ("--reference", args.reference)):
        parts += [flag, value] if value is not None else []
    parts += ["--device", args.device] if args.device != "cpu" else []
    parts += [flag for flag, on in (("--no-profile", args.no_profile), ("--no-cases", args.no_cases)) if on]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from glfer_edge import bench
    from glfer_edge._fileio import STDOUT, check_output, write_json, write_text_atomic
    from glfer_edge.errors import InputError

    for flag, path in (("--json", args.json), ("--markdown", args.markdown), ("--plot", args.plot)):
        check_output(path, args.force, flag)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in bench.BACKENDS]
    if unknown or not backends:
        raise InputError(f"unknown backends {unknown}; choose from {', '.join(bench.BACKENDS)}")
    if (args.iterations is not None and args.iterations < 1) or args.warmup < 0 or args.duration <= 0:
        raise InputError("--iterations must be >= 1, --warmup >= 0 and --duration > 0")
    if args.rounds < 0 or (args.no_cases and not args.rounds):
        raise InputError("--rounds must be >= 0, and --no-cases needs --rounds N")
    if args.reference is not None and args.reference not in backends:
        raise InputError(f"--reference {args.reference} is not one of --backends {','.join(backends)}")

    def progress(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    cache = Path(args.cache_dir) if args.cache_dir else bench.default_cache_dir()
    models = args.model or [str(bench.preset_weights(args.preset, cache))]
    labels = [None] * len(models) if args.model else [f"{args.preset} (random weights)"]
    sources = [
        bench.resolve_source(m, backends, args.batch, segment_seconds=args.segment_seconds, cache_dir=cache,
                             label=label, progress=progress)
        for m, label in zip(models, labels)
    ]
    options = bench.BenchOptions(
        warmup=args.warmup, iterations=args.iterations, duration_s=args.duration, threads=args.threads,
        device=args.device, ort_opt_level=args.ort_opt_level, profile=not args.no_profile,
    )
    machine = bench.describe_machine()
    results = [] if args.no_cases else bench.run_matrix(sources, backends, args.batch, options,
                                                        timeout_s=args.timeout, progress=progress)
    rounds = [bench.run_rounds(s, backends, b, options, args.rounds, reference=args.reference, progress=progress)
              for s in sources for b in args.batch] if args.rounds else []
    report = bench.make_report(_command_line(args), dataclasses.asdict(options), results, rounds, machine)
    markdown = bench.render_markdown(report)
    print(markdown, end="", file=sys.stderr if args.json == STDOUT else sys.stdout)
    if args.markdown:
        write_text_atomic(args.markdown, markdown)
    if args.json is not None:
        write_json(args.json, report)
    if args.plot:
        bench.plot_results(results, args.plot)
    return 1 if any("error" in r for r in results) else 0
