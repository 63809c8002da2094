"""``glfer-edge average``: average the weights of checkpoints of one model (SWA over fine-tuning rounds)."""

from __future__ import annotations

import argparse

from glfer_edge._fileio import add_force_argument, check_output
from glfer_edge.errors import InputError, require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", nargs="+",
                        help="two or more .safetensors checkpoints of one model, e.g. the last epochs of "
                             "fine-tuning rounds from one ancestor (their decisions: the first's)")
    parser.add_argument("--out", required=True, help="write the averaged weights here (.safetensors)")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:
    check_output(args.out, args.force)
    require("torch", "torch", "weight averaging")
    from glfer_edge.training.average import average_weights

    if not args.out.endswith(".safetensors"):
        raise InputError(f"--out {args.out}: the weights are written as .safetensors; name the file so")
    out = average_weights(args.weights, args.out)
    print(f"averaged {len(args.weights)} checkpoints -> {out}; choose its decisions on validation with "
          f"glfer-edge tune-threshold --weights {out} --data DIR --out ...")
    return 0
