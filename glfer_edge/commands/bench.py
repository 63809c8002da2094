"""``glfer-edge bench``: latency, throughput, RTF, cold start and memory per backend x batch.

Examples::

    glfer-edge bench --preset paper --backends torch,ort-fp32,ort-int8 --batch 1 --threads 2
    glfer-edge bench --model model.safetensors model.int8.onnx --batch 1,4,16 --json bench.json --plot bench.png
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive integers (e.g. 1,4,16)")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    from glfer_edge.bench import BACKENDS, ORT_OPT_LEVELS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", nargs="+", metavar="PATH",
                     help="weights (.safetensors; ONNX artifacts are exported on the fly), .onnx or .engine files")
    src.add_argument("--preset", help="random weights of a preset (tiny, paper, ...): speed only")
    p.add_argument("--backends", default=",".join(b for b in BACKENDS if b != "trt-fp32"),
                   help=f"comma-separated, from {', '.join(BACKENDS)} (default all but trt-fp32)")
    p.add_argument("--batch", type=_int_list, default=[1], help="comma-separated batch sizes (default 1)")
    p.add_argument("--segment-seconds", type=float, default=None, help="segment length (default: the model's)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--duration", type=float, default=5.0, help="seconds of timed calls per case (default 5)")
    timing.add_argument("--iterations", type=int, default=None, help="exactly N timed calls per case")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after the first one (default 3)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for torch and onnxruntime")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch / onnxruntime device")
    p.add_argument("--ort-opt-level", default="all", choices=ORT_OPT_LEVELS,
                   help="onnxruntime graph optimization level (default all; FP16 always runs with none)")
    p.add_argument("--no-profile", action="store_true", help="skip the frontend / GRU time-share pass")
    p.add_argument("--cache-dir", default=None, help="where exported artifacts and engines are kept")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is abandoned")
    p.add_argument("--json", metavar="OUT", help="write results and machine description as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the markdown table")
    p.add_argument("--plot", metavar="OUT", help="write latency/throughput vs batch (PNG, SVG, PDF)")


def _command_line(args: argparse.Namespace) -> str:
    """The settings of this run as a command that reproduces it."""
    parts = ["glfer-edge", "bench"]
    parts += ["--model", *args.model] if args.model else ["--preset", args.preset]
    parts += ["--backends", args.backends, "--batch", ",".join(map(str, args.batch))]
    if args.iterations is not None:
        parts += ["--iterations", str(args.iterations)]
    else:
        parts += ["--duration", f"{args.duration:g}"]
    parts += ["--warmup", str(args.warmup), "--ort-opt-level", args.ort_opt_level]
    for flag, value in (("--segment-seconds", args.segment_seconds), ("--threads", args.threads)):
        parts += [flag, f"{value:g}"] if value is not None else []
    parts += ["--device", args.device] if args.device != "cpu" else []
    parts += ["--no-profile"] if args.no_profile else []
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    from pathlib import Path

    from glfer_edge import bench
    from glfer_edge._fileio import write_text_atomic
    from glfer_edge.errors import InputError

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in bench.BACKENDS]
    if unknown or not backends:
        raise InputError(f"unknown backends {unknown}; choose from {', '.join(bench.BACKENDS)}")
    if (args.iterations is not None and args.iterations < 1) or args.warmup < 0 or args.duration <= 0:
        raise InputError("--iterations must be >= 1, --warmup >= 0 and --duration > 0")

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
    results = bench.run_matrix(sources, backends, args.batch, options, timeout_s=args.timeout, progress=progress)
    report = {
        "command": _command_line(args),
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "options": dataclasses.asdict(options),
        "results": results,
    }
    markdown = bench.render_markdown(report)
    print(markdown, end="")
    if args.markdown:
        write_text_atomic(args.markdown, markdown)
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    if args.plot:
        bench.plot_results(results, args.plot)
    return 1 if any("error" in r for r in results) else 0
