"""``glfer-edge evaluate``: score DCASE prediction CSVs with the official SELD metrics."""

from __future__ import annotations

import argparse
import json

from glfer_edge.data.dcase import EDITIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", required=True, help="reference folder: metadata_dev (<split>/<name>.csv) or one split")
    parser.add_argument("--pred", required=True, help="flat folder of prediction CSVs named like the references")
    parser.add_argument("--edition", choices=EDITIONS, default="2023",
                        help="DCASE edition whose metric code and CSV format to follow (default 2023)")
    parser.add_argument("--average", choices=("macro", "micro"), default=None,
                        help="class averaging of F20/LE/LR: 2022/2023 default macro; 2021 is micro only")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="number of classes C (default 12 for 2021, 13 for 2022/2023); classes >= C are ignored")
    parser.add_argument("--nb-frames-2021", type=int, default=600,
                        help="2021 only: label frames scored per file (600 = official, 60-s clips)")
    parser.add_argument("--strict", action="store_true",
                        help="NOT the official metric: score references without prediction as misses, "
                             "score empty references, and score every frame of 2022/2023 files")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from glfer_edge.metrics import evaluate_folders

    result = evaluate_folders(
        args.ref, args.pred, edition=args.edition, average=args.average, num_classes=args.num_classes,
        strict=args.strict, nb_frames_2021=args.nb_frames_2021,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    mode = "STRICT (not the official metric)" if result.strict else "official"
    print(f"DCASE {result.edition} SELD metrics, {result.average} averaging, {result.num_classes} classes, "
          f"{result.num_files} file(s), {mode}")
    print(f"{'ER20':>8} {'F20':>8} {'LE_CD':>8} {'LR_CD':>8} {'SELD':>8}")
    print(f"{result.er:8.3f} {100 * result.f:7.1f}% {result.le:7.1f}° {100 * result.lr:7.1f}% {result.seld:8.3f}")
    if result.classwise is not None:
        cw = result.classwise
        print(f"\n{'class':>5} {'F20':>8} {'LE_CD':>8} {'LR_CD':>8} {'SELD':>8}")
        for c in range(result.num_classes):
            print(f"{c:>5} {100 * cw.f[c]:7.1f}% {cw.le[c]:7.1f}° {100 * cw.lr[c]:7.1f}% {cw.seld[c]:8.3f}")
    if result.ignored_lines:
        print(f"\nnote: {result.ignored_lines} CSV line(s) have a column count the {result.edition} format ignores "
              "(files written for another edition?); they were not scored")
    if result.unscored:
        print(f"\nnote: {len(result.unscored)} reference file(s) without prediction were not scored "
              f"(official behaviour; --strict counts them as misses), e.g. {result.unscored[0]}")
    return 0
