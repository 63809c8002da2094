"""``glfer-edge tune-threshold``: choose a model's SED threshold and DOA smoothing on a validation split, save them
with the weights."""

from __future__ import annotations

import argparse

from glfer_edge._fileio import STDOUT, add_force_argument, add_json_argument, check_output, write_json
from glfer_edge.errors import InputError, require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="model weights (.safetensors), e.g. runs/train/best.safetensors; without --out, "
                             "any artifact the runtime opens (.onnx, .engine)")
    parser.add_argument("--data", required=True, help="DCASE-layout dataset folder holding the validation split")
    parser.add_argument("--split", default="val", help="split to choose on (default val; never the test split)")
    parser.add_argument("--layout", default="synth", choices=("synth", "dcase2021", "starss23"),
                        help="dataset layout of --data (default synth)")
    parser.add_argument("--average", choices=("macro", "micro"), default=None,
                        help="class averaging of the SELD error (default: the layout's edition's, macro for 2022+)")
    parser.add_argument("--candidates", default=None,
                        help="comma-separated thresholds to try (default 0.10, 0.15, ..., 0.90)")
    parser.add_argument("--doa-smoothing", default=None, metavar="FRAMES",
                        help="comma-separated DOA smoothing lengths to try with every threshold (odd output frames; "
                             "default 1, 3, 5, 7, 9; 1 = off)")
    parser.add_argument("--tta", type=int, default=1, metavar="K",
                        help="choose for runs with --tta K (1, 2, 4, 8, 16; default 1 = off): averaged views are "
                             "less confident, so the best threshold moves; --out saves the pair for K views beside "
                             "the single-view one, and --tta K runs then decide with it")
    parser.add_argument("--out", default=None,
                        help="write the weights with the chosen threshold and DOA smoothing here (.safetensors); "
                             "without it, only report")
    add_json_argument(parser, "the sweep")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:
    require("torch", "torch", "threshold tuning")
    from glfer_edge.training.threshold import (
        DEFAULT_CANDIDATES, DEFAULT_DOA_SMOOTHING, save_with_threshold, sweep_thresholds,
    )

    check_output(args.out, args.force)
    check_output(args.json, args.force, "--json")
    if args.out is not None and not args.out.endswith(".safetensors"):
        raise InputError(f"--out {args.out}: the weights are written as .safetensors; name the file so")
    if args.out is not None and not args.weights.endswith(".safetensors"):
        raise InputError(f"--out saves the threshold into reference weights; {args.weights} is not a .safetensors file "
                         "(sweep it without --out, or pass the weights it was exported from)")
    candidates = _comma_list("--candidates", args.candidates, float, DEFAULT_CANDIDATES, "numbers", "0.3,0.4,0.5")
    smoothing = _comma_list("--doa-smoothing", args.doa_smoothing, int, DEFAULT_DOA_SMOOTHING, "odd frame counts",
                            "1,3,5")
    sweep = sweep_thresholds(args.weights, args.data, args.split, args.layout, candidates, args.average, args.tta,
                             smoothing)
    threshold, frames = sweep.best
    if args.out is not None:
        save_with_threshold(args.weights, args.out, sweep, args.data)
    if args.json is not None:
        write_json(args.json, {"best": {"threshold": threshold, "doa_smoothing": frames}, "split": sweep.split,
                               "average": sweep.average, "tta": sweep.tta, "sweep": sweep.table()})
        if args.json == STDOUT:
            return 0
    views = f", test-time augmentation over {sweep.tta} views" if sweep.tta > 1 else ""
    print(f"SED threshold x DOA smoothing sweep on split {sweep.split!r} ({sweep.average} averaging{views})")
    print(f"{'threshold':>9} {'DOA smoothing':>13} {'ER20':>7} {'F20':>7} {'LE_CD':>7} {'LR_CD':>7} {'SELD':>7}")
    for row in sweep.table():
        mark = "  <- best" if (row["threshold"], row["doa_smoothing"]) == sweep.best else ""
        print(f"{row['threshold']:9.2f} {row['doa_smoothing']:13d} {row['ER20']:7.3f} {100 * row['F20']:6.1f}% "
              f"{row['LE_CD']:6.1f}° {100 * row['LR_CD']:6.1f}% {row['SELD']:7.3f}{mark}")
    print(f"chosen: threshold {threshold:.2f}, DOA smoothing {frames} frame(s)"
          + (f"; saved in {args.out}" if args.out else " (pass --out to save them)"))
    return 0


def _comma_list(flag: str, text: str | None, convert: type, default: tuple, what: str, example: str) -> tuple:
    """A comma-separated option as a tuple of ``convert``ed values; ``default`` when the option is absent."""
    if text is None:
        return default
    try:
        return tuple(convert(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"{flag} {text!r}: give {what} separated by commas, e.g. {example}") from None
