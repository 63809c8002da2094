"""``glfer-edge evaluate``: score DCASE prediction CSVs with the official SELD metrics.

``--model`` runs a model over a dataset first and scores its CSVs. ``--edition 2024`` scores source
distance, so it needs a model with the distance head (its CSVs are 2024 rows, distance in metres; the
references 2024 metadata, distance in centimetres); a model without distance is refused before any
inference (the official 2024 code has no score without distance). Editions 2021-2023 score a
distance model's directions and activity only: its CSVs are written without distance.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from glfer_edge._fileio import STDOUT, add_force_argument, add_json_argument, check_output, write_json
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
    parser.add_argument("--no-gate", action="store_true",
                        help="with --model: decide without the noise gate, as run --no-gate does")
    parser.add_argument("--edition", choices=EDITIONS, default="2023",
                        help="DCASE edition whose metric code and CSV format to follow (default 2023): 2021 micro, "
                             "12 classes, 1-s segments; 2022/2023 macro, 13 classes, 1-s segments; 2024 macro, 13 "
                             "classes, frame-level with distance (references in cm, predictions in m)")
    parser.add_argument("--average", choices=("macro", "micro"), default=None,
                        help="class averaging: the edition's default (2021 micro, the only mode; 2022+ macro)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="number of classes C (default 12 for 2021, 13 for 2022+); a file with a class >= C is "
                             "refused (e.g. STARSS23 labels scored as --edition 2021 need --num-classes 13)")
    parser.add_argument("--nb-frames-2021", type=int, default=600,
                        help="2021 only: label frames scored per file (600 = official, 60-s clips)")
    parser.add_argument("--ci", action="store_true",
                        help="2022+: jackknife 95%% confidence intervals over files, as the official code offers")
    parser.add_argument("--strict", action="store_true",
                        help="NOT the official metric: score references without prediction as misses, "
                             "score empty references, and score every frame of 2022+ files")
    add_json_argument(parser)
    add_force_argument(parser)


def predict_folder(
    model: str | None, data: str, split: str | None, layout: str, out_dir: Path,
    threshold: float | None = None, median_frames: int = 1, tta: int = 1, doa_smoothing: int | None = None,
    gate: bool = True, force: bool = True, edition: str = "2023",
) -> Path:
    """Write the model's DCASE prediction CSVs (``edition``'s format; 2024 with distance in metres, which
    needs a model with distance) for every recording of a dataset split; returns the ref folder."""
    from tqdm import tqdm

    from glfer_edge.audio import load_audio
    from glfer_edge.data.dcase import load_metadata
    from glfer_edge.data.layout import list_pairs
    from glfer_edge.postprocess import decide, write_dcase_csv
    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.segments import infer_long

    pairs = list_pairs(data, split, layout=layout)
    if not pairs:
        raise InputError(f"no recordings under {data} (split {split or 'all'}); check --data and --split")
    for _, csv in pairs:  # before the model loads: the output policy, file by file
        check_output(out_dir / f"{csv.stem}.csv", force, "--pred-out")
        if edition == "2024":  # and references without distance in centimetres, before any inference
            load_metadata(csv, edition)
    with SELDRuntime.open(None if model in (None, "default") else model) as rt:
        if edition == "2024" and not rt.config.model.distance:
            raise InputError(f"--edition 2024 scores source distance, and model '{rt.config.name}' has no distance "
                             "head; use --edition 2023, or a model trained with distance")
        for wav, csv in tqdm(pairs, unit="file", desc="predict"):
            rec = load_audio(wav, rt.config.features.sample_rate)
            out = infer_long(rt, rec.audio, tta=tta)
            duration = rec.audio.shape[-1] / rt.config.features.sample_rate
            rows = decide(out, threshold=threshold, median_frames=median_frames, doa_smoothing=doa_smoothing,
                          duration=duration, gate=None if gate else False).rows  # run's decisions
            write_dcase_csv(out_dir / f"{csv.stem}.csv", rows, edition=edition)  # distance only for 2024
    return pairs[0][1].parent if split else pairs[0][1].parents[1]


def run(args: argparse.Namespace) -> int:
    check_output(args.json, args.force, "--json")
    check_output(args.pred_out, args.force, "--pred-out", folder=True)
    if args.ci and args.edition == "2021":
        raise InputError("the official 2021 code has no confidence intervals; drop --ci or use --edition 2022 or later")
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
                                          args.threshold, args.median, args.tta, args.doa_smoothing,
                                          gate=not args.no_gate, force=args.force or args.pred_out is None,
                                          edition=args.edition))
            args.pred = str(pred)
            return _score(args)
    if args.threshold is not None or args.median != 1 or args.tta != 1 or args.doa_smoothing is not None or args.no_gate:
        raise InputError("--threshold, --median, --doa-smoothing, --tta and --no-gate apply to --model runs; "
                         "--pred CSVs are scored as written")
    if args.ref is None or args.pred is None:
        raise InputError("pass --ref DIR and --pred DIR, or --model PATH and --data DIR")
    return _score(args)


def _score(args: argparse.Namespace) -> int:
    from glfer_edge.metrics import evaluate_folders

    result = evaluate_folders(
        args.ref, args.pred, edition=args.edition, average=args.average, num_classes=args.num_classes,
        strict=args.strict, nb_frames_2021=args.nb_frames_2021, ci=args.ci,
    )
    if args.json is not None:
        write_json(args.json, result.to_dict())
        if args.json == STDOUT:
            return 0
    print(format_result(result))
    return 0


def _cell(name: str, value: float | None) -> str:
    """One table cell: percentages for F/LR, degrees for angles, metres for DE, '-' for no estimate."""
    if value is None or math.isnan(value):
        return f"{'-':>8}"
    if name in ("F", "LR"):
        return f"{100 * value:7.1f}%"
    if name in ("LE", "AE"):
        return f"{value:7.1f}°"
    if name == "DE":
        return f"{value:6.2f} m"
    return f"{value:8.3f}"


def format_result(result) -> str:
    """The printed report: the edition's rules, the headline table, intervals, class-wise rows, notes."""
    from glfer_edge.metrics import DCASE_NAMES, headline_order

    values = result.values()
    order = headline_order(result.edition)
    lines = [result.describe(), " ".join(f"{DCASE_NAMES[k]:>8}" for k in order),
             " ".join(_cell(k, values[k]) for k in order)]
    if result.ci is not None:
        lines.append("95% jackknife intervals over files (official method):")
        for k in order:
            lo, hi = result.ci[k]
            lines.append(f"  {DCASE_NAMES[k]:>8} [{_cell(k, lo).strip()}, {_cell(k, hi).strip()}]")
    rows = result.classwise_values()
    if rows is not None:
        cols = [k for k in order if k != "ER"]
        lines += ["", f"{'class':>5} " + " ".join(f"{DCASE_NAMES[k]:>8}" for k in cols)]
        for c in range(result.num_classes):
            lines.append(f"{c:>5} " + " ".join(_cell(k, rows[k][c]) for k in cols))
        if result.edition == "2024":
            lines.append("('-': no matched source of that class, so no error estimate; class means skip it)")
    if result.unscored:
        lines.append(f"\nnote: {len(result.unscored)} reference file(s) without prediction were not scored "
                     f"(official behaviour; --strict counts them as misses), e.g. {result.unscored[0]}")
    return "\n".join(lines)
