"""``glfer-edge export-triton``: a Triton model repository for a glfer-edge artifact.

Forms (``--forms``; default every form the inputs allow): ``python`` (``glfer`` and ``glfer_stream``,
Python-backend models running the artifact through SELDRuntime, fused frontend and event decoding
included; Triton's Python needs ``pip install glfer-edge``), ``onnx`` (``glfer_onnx`` on Triton's
onnxruntime backend, at the graph optimization level glfer-edge's sessions use) and ``tensorrt``
(``glfer_trt``, for an engine; the config names the TensorRT version it was built with). Every
``config.pbtxt`` is checked against Triton's ModelConfig schema before it is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glfer_edge._fileio import add_force_argument, check_output
from glfer_edge.commands.serve import add_model_arguments, serve_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help=".onnx, .engine/.plan or .safetensors (default: the bundled demo model)")
    parser.add_argument("--engine", type=Path, help="a TensorRT engine built from --model: adds the tensorrt form")
    parser.add_argument("--out", type=Path, required=True, help="repository folder to write")
    parser.add_argument("--forms", nargs="+", choices=("python", "onnx", "tensorrt"),
                        help="forms to write (default: every form --model/--engine allow)")
    add_model_arguments(parser)
    parser.add_argument("--graph-optimization", choices=("disable", "basic", "extended", "all"),
                        help="onnxruntime graph optimization of the onnx form (default: what glfer-edge's sessions "
                             "use: disable for FP16, all otherwise)")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:
    from glfer_edge.serve.repository import BATCH_MODEL, ONNX_MODEL, STREAM_MODEL, TRT_MODEL
    from glfer_edge.serve.repository import write_repository

    import tritonclient.grpc.model_config_pb2  # noqa: F401  (the serve extra; every config is checked against it)

    check_output(args.out, args.force, "--out", folder=True)
    names = {"python": (BATCH_MODEL, STREAM_MODEL), "onnx": (ONNX_MODEL,), "tensorrt": (TRT_MODEL,)}
    for form in args.forms or names:
        for name in names[form]:
            check_output(args.out / name / "config.pbtxt", args.force, "--out")
    options = serve_options(args)
    if args.model is None:
        from glfer_edge.runtime.seld import default_model

        args.model = default_model()[0]
    written = write_repository(args.out, args.model, engine=args.engine,
                               forms=None if args.forms is None else tuple(args.forms), options=options)
    for name, folder in written.items():
        print(f"{name}: {folder / 'config.pbtxt'}")
    print(f"serve it: tritonserver --model-repository {args.out.resolve()}  (or glfer-edge serve --repository "
          f"{args.out}); the python form needs 'pip install glfer-edge' in Triton's Python", file=sys.stderr)
    return 0
