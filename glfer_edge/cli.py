"""The ``glfer-edge`` command line.

Each subcommand lives in ``glfer_edge/commands/<name>.py`` (``-`` as ``_``) with ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, onnx, tensorrt) happen inside ``run`` so that
``glfer-edge run`` works on a deploy-only install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from glfer_edge._version import __version__
from glfer_edge.errors import GlferError, missing_extra_message

# name -> one-line help; order is the order of `glfer-edge --help`
COMMANDS: dict[str, str] = {
    "run": "detect and localize sound events in a FOA recording (the main job)",
    "info": "print presets with parameter counts and MACs per segment",
    "synth": "generate synthetic FOA scenes in DCASE layout",
    "train": "train GLFER-Net on a DCASE-layout dataset",
    "average": "average the weights of checkpoints of one model (SWA over fine-tuning rounds)",
    "tune-threshold": "choose a model's SED threshold on a validation split and save it with the weights",
    "evaluate": "score predictions against references with the official DCASE SELD metrics",
    "export": "export ONNX artifacts (fp32, fp16, int8) with the fused frontend",
    "build": "build a TensorRT engine from a typed ONNX artifact",
    "parity": "compare two artifacts (weights, ONNX, engines) against tolerances",
    "bench": "benchmark latency and throughput across backends",
    "serve": "serve a model on NVIDIA Triton (HTTP/gRPC, dynamic batching, streams as sequences)",
    "export-triton": "write a Triton model repository (python, onnx and tensorrt forms) for a model",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glfer-edge", description="GLFER-Net SELD on the edge.")
    parser.add_argument("--version", action="version", version=f"glfer-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module_name = f"glfer_edge.commands.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except GlferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a verb's optional extra is not installed
        message = missing_extra_message(exc, f"glfer-edge {args.command}")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `glfer-edge evaluate --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
