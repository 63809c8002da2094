"""``glfer-edge build``: a TensorRT engine (raw plan + sidecar JSON) from a typed ONNX artifact.

Works with TensorRT 10.x (JetPack), 11.x and TensorRT-RTX (``tensorrt_rtx``, which builds ahead of
time without a GPU). Set GLFER_EDGE_TENSORRT=tensorrt|tensorrt_rtx to choose when both are installed.
The builder itself is build-time code: :mod:`glfer_edge.export.trt_build`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glfer_edge._fileio import add_force_argument, check_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="ONNX artifact from 'glfer-edge export' (fp32, fp16 or int8)")
    parser.add_argument("--out", type=Path, help="engine path (default: the ONNX name with .engine)")
    parser.add_argument("--batch", default="1", metavar="MIN:OPT:MAX",
                        help="batch profile, e.g. 1:4:8, or one fixed N (default 1: streaming)")
    parser.add_argument("--timing-cache", type=Path,
                        help="timing cache file: loaded when present, saved after the build")
    parser.add_argument("--workspace-mb", type=int, help="builder workspace limit in MiB (default: TensorRT's)")
    parser.add_argument("--flavour", choices=("tensorrt", "tensorrt_rtx"), help="TensorRT package to use")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:
    from glfer_edge.errors import InputError
    from glfer_edge.export.trt_build import build_engine, parse_batch

    batch = parse_batch(args.batch)
    if args.workspace_mb is not None and args.workspace_mb < 1:
        raise InputError(f"--workspace-mb {args.workspace_mb} must be a positive number of MiB")
    out = args.out or args.onnx.with_suffix(".engine")
    if out.suffix not in (".engine", ".plan"):
        raise InputError(f"--out {out}: name the engine *.engine or *.plan so that glfer-edge run can open it")
    check_output(out, args.force)
    result = build_engine(
        args.onnx, out, batch=batch, timing_cache=args.timing_cache, workspace_mb=args.workspace_mb,
        flavour=args.flavour, progress=not args.quiet and sys.stderr.isatty(),
    )
    side = result.sidecar
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"built {result.engine_path} ({result.engine_path.stat().st_size / 2**20:.1f} MiB, {side['precision']}, "
        f"batch {':'.join(map(str, batch))}) with {side['tensorrt']['flavour']} {side['tensorrt']['version']} "
        f"for {side['gpu']['name']} in {result.seconds:.1f} s"
    )
    print(f"sidecar {result.sidecar_path}")
    return 0
