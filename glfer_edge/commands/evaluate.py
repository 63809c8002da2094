"""``glfer-edge evaluate``: score DCASE prediction CSVs with the official SELD metrics."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from glfer_edge.channel_swap import tta_transforms
from glfer_edge.data.dcase import EDITIONS
from glfer_edge.errors import InputError
from glfer_edge.postprocess import check_odd_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", help="reference folder: metadata_dev (<split>/<name>.csv) or one split")
    parser.add_argument("--pred", help="flat folder of prediction CSVs named like the references")
    parser.add_argument("--model", help="instead of --ref/--pred: run this model (.onnx, .engine, .safetensors; "
                                        "'default' = bundled demo) over --data and score it")
    parser.add_argument("--data", help="DCASE-layout dataset folder for --model")
    parser.add_argument("--split", default=None, help="split of --data to score (default: all)")
    parser.add_argument("--layout", default="synth", help="dataset layout of --data: synth, dcase2021, starss23")
    parser.add_argument("--pred-out", help="with --model: keep the prediction CSVs in this folder")
    parser.add_argument("--threshold", type=float, default=None,
                        help="with --model: SED threshold (default: the model's, for --tta K its K-view one where "
                             "tuned); tune it on a validation split")
    parser.add_argument("--median", type=int, default=1, metavar="FRAMES",
                        help="with --model: median filter over output frames (odd; 1 = off)")
    parser.add_argument("--doa-smoothing", type=int, default=None, metavar="FRAMES",
                        help="with --model: average each class's DOA over FRAMES centred output frames, weighted by "
                             "its SED probability (odd; 1 = off; default: the model's)")
    parser.add_argument("--tta", type=int, default=1, metavar="K",
                        help="with --model: average over K FOA channel swaps (1, 2, 4, 8, 16; default 1 = off), "
                             "decided at the model's K-view threshold and DOA smoothing where tuned")
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


def predict_folder(
    model: str | None, data: str, split: str | None, layout: str, out_dir: Path,
    threshold: float | None = None, median_frames: int = 1, tta: int = 1, doa_smoothing: int | None = None,
) -> Path:
    """Write the model's DCASE prediction CSVs for every recording of a dataset split; returns the ref folder."""
    from tqdm import tqdm

    from glfer_edge.audio import load_audio
    from glfer_edge.data.layout import list_pairs
    from glfer_edge.postprocess import outputs_to_rows, write_dcase_csv
    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.segments import infer_long

    pairs = list_pairs(data, split, layout=layout)
    if not pairs:
        raise InputError(f"no recordings under {data} (split {split or 'all'}); check --data and --split")
    with SELDRuntime.open(None if model in (None, "default") else model) as rt:
        for wav, csv in tqdm(pairs, unit="file", desc="predict"):
            rec = load_audio(wav, rt.config.features.sample_rate)
            out = infer_long(rt, rec.audio, tta=tta)
            duration = rec.audio.shape[-1] / rt.config.features.sample_rate
            rows = outputs_to_rows(out.sed[0], out.doa[0], rt.config, threshold=threshold,
                                   median_frames=median_frames, doa_smoothing=doa_smoothing, duration=duration,
                                   views=out.views)
            write_dcase_csv(out_dir / f"{csv.stem}.csv", rows)
    return pairs[0][1].parent if split else pairs[0][1].parents[1]


def run(args: argparse.Namespace) -> int:
    if args.model is not None:
        if args.data is None:
            raise InputError("--model needs --data DIR (a DCASE-layout dataset); or pass --ref and --pred")
        tta_transforms(args.tta)  # refuse bad options before the model loads
        check_odd_frames(args.median, "--median")
        if args.doa_smoothing is not None:
            check_odd_frames(args.doa_smoothing, "--doa-smoothing")
        with tempfile.TemporaryDirectory() as tmp:
            pred = Path(args.pred_out or tmp)
            args.ref = str(predict_folder(args.model, args.data, args.split, args.layout, pred,
                                          args.threshold, args.median, args.tta, args.doa_smoothing))
            args.pred = str(pred)
            return _score(args)
    if args.threshold is not None or args.median != 1 or args.tta != 1 or args.doa_smoothing is not None:
        raise InputError("--threshold, --median, --doa-smoothing and --tta apply to --model runs; "
                         "--pred CSVs are scored as written")
    if args.ref is None or args.pred is None:
        raise InputError("pass --ref DIR and --pred DIR, or --model PATH and --data DIR")
    return _score(args)


def _score(args: argparse.Namespace) -> int:
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
