"""``glfer-edge run``: detect and localize sound events in a FOA recording (the main job).

Recordings of any length are cut into model segments (the last one zero-padded; output frames
that start after the end of the audio are dropped) and run in batches with a progress bar. Events
are printed as a table; ``--out`` writes DCASE CSV (100-ms frames) or JSON events, ``--plot`` a
figure like the paper's Fig. 8. ``--demo`` synthesizes a scene, runs on it and scores the result.
Every failure is one ``error: ...`` line (exit 2) and leaves no output file behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEMO_SECONDS = 20.0
DEMO_SEED = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", type=Path, help="4-channel FOA recording (WAV, FLAC, ...)")
    parser.add_argument("--model", type=Path, help=".onnx, .engine/.plan or .safetensors (default: bundled demo model)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--out", type=Path,
                        help="write predictions: DCASE CSV, or JSON events with --json or a .json name")
    parser.add_argument("--json", action="store_true", help="JSON events (to --out, else printed instead of the table)")
    parser.add_argument("--plot", type=Path, help="save a figure of activity, azimuth and elevation (png, pdf, svg)")
    parser.add_argument("--ref", type=Path, help="reference DCASE CSV: drawn on the plot and scored")
    parser.add_argument("--edition", default="2023", choices=("2021", "2022", "2023"),
                        help="DCASE CSV format and metrics (default 2023)")
    parser.add_argument("--average", default="micro", choices=("micro", "macro"),
                        help="class averaging of the score against --ref/--demo (default micro: one recording rarely "
                             "holds every class, and macro scores each class without a correct detection in it at "
                             "F20 0, LE_CD 180 deg, LR_CD 0)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="SED threshold (default: the model's; for --tta K its K-view one where tuned)")
    parser.add_argument("--median", type=int, default=1, metavar="FRAMES",
                        help="median filter over output frames (odd; 1 = off)")
    parser.add_argument("--doa-smoothing", type=int, default=None, metavar="FRAMES",
                        help="average each class's DOA over FRAMES centred output frames, weighted by its SED "
                             "probability (odd; 1 = off; default: the model's)")
    parser.add_argument("--batch", type=int, default=None,
                        help="segments per inference call (default 8, within the model's batch range)")
    parser.add_argument("--tta", type=int, default=1, metavar="K",
                        help="test-time augmentation: average over K FOA channel swaps (1, 2, 4, 8, 16; "
                             "K times the inference; default 1 = off); decides at the threshold and DOA smoothing "
                             "tuned for K views where the model holds them")
    parser.add_argument("--no-resample", action="store_true", help="refuse recordings at another sample rate")
    parser.add_argument("--demo", action="store_true", help="run on a synthetic scene and compare with its labels")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from glfer_edge.errors import InputError

    if args.demo == (args.input is not None):
        raise InputError("pass one input recording, or --demo for a synthetic scene (not both)")
    _check_args(args)
    from glfer_edge.runtime import SELDRuntime

    path, note = _model_path(args.model)
    if note:
        _note(note)
    with SELDRuntime.open(path, device=args.device) as rt:
        _note(f"model {rt.description}")
        recording, reference = _demo(rt.config) if args.demo else (_load(args, rt.config), _reference(args))
        output = _infer(rt, recording, args)
    _report(output, reference, recording.duration, args)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    """Refuse bad options, missing inputs and unusable output paths before any work (no model load)."""
    from glfer_edge.channel_swap import tta_transforms
    from glfer_edge.errors import InputError
    from glfer_edge.metrics import check_average
    from glfer_edge.postprocess import check_odd_frames

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold {args.threshold} must be between 0 and 1 (default: the model's)")
    check_odd_frames(args.median, "--median")
    if args.doa_smoothing is not None:
        check_odd_frames(args.doa_smoothing, "--doa-smoothing")
    if args.batch is not None and args.batch < 1:
        raise InputError(f"--batch {args.batch} must be at least 1")
    tta_transforms(args.tta)  # refuses a --tta other than 1, 2, 4, 8, 16
    check_average(args.edition, args.average)
    if args.input is not None and not args.input.is_file():
        raise InputError(f"input file {args.input} not found; check the path")
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path is not None and path.is_dir():
            raise InputError(f"{flag} {path} is a folder; give a file name")
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg"):
        raise InputError(f"--plot {args.plot}: use a .png, .pdf, .svg or .jpg file name")
    if args.ref is not None and not args.ref.is_file():
        raise InputError(f"reference {args.ref} not found; pass a DCASE metadata CSV")


def _model_path(model: Path | None) -> tuple[Path, str | None]:
    from glfer_edge.runtime.seld import default_model

    return (model, None) if model is not None else default_model()


def _load(args: argparse.Namespace, config):
    from glfer_edge.audio import load_audio

    rec = load_audio(args.input, config.features.sample_rate, allow_resample=not args.no_resample)
    if rec.resampled:
        _note(f"resampled {args.input.name} from {rec.source_rate} Hz to {rec.sample_rate} Hz (scipy resample_poly)")
    return rec


def _reference(args: argparse.Namespace):
    if args.ref is None:
        return None
    from glfer_edge.data.dcase import read_metadata_csv

    return read_metadata_csv(args.ref, args.edition)


def _demo(config):
    """A synthetic scene at the model's rate with the model's classes, and its label rows."""
    from glfer_edge.audio import Recording
    from glfer_edge.data.synth import SceneConfig, generate_scene
    from glfer_edge.errors import InputError

    try:
        scene_config = SceneConfig(
            duration_s=DEMO_SECONDS, sample_rate=config.features.sample_rate, class_names=config.class_names,
        )
    except InputError:
        raise InputError(
            f"--demo synthesizes the bundled synthetic classes; model '{config.name}' has other classes: "
            "run it on a recording instead"
        ) from None
    scene = generate_scene(scene_config, DEMO_SEED, 0)
    _note(f"demo: synthetic scene of {DEMO_SECONDS:g} s, seed {DEMO_SEED}, {len(scene.events)} events")
    return Recording(scene.audio, scene.sample_rate, scene.sample_rate), list(scene.rows)


def _infer(rt, recording, args: argparse.Namespace):
    from glfer_edge.runtime.segments import infer_long

    progress = not args.quiet and sys.stderr.isatty()
    return infer_long(rt, recording.audio, batch_size=args.batch, progress=progress, tta=args.tta)


def _report(output, reference, duration: float, args: argparse.Namespace) -> None:
    from glfer_edge import postprocess as pp

    cfg = output.config
    threshold, smoothing = cfg.decision(output.views, args.threshold, args.doa_smoothing)
    sed = output.sed[0]
    views = f" ({output.views} TTA views)" if output.views > 1 else ""
    _note(f"deciding at SED threshold {threshold:g} with {smoothing}-frame DOA smoothing{views}")
    doa = pp.smooth_doa(sed, output.doa[0], smoothing)
    active = pp.activity(sed, threshold, class_names=cfg.class_names, median_frames=args.median)
    events = pp.events_from_frames(active, sed, doa, output.frame_times, cfg.output_hop_seconds, cfg.class_names)
    rows = pp.outputs_to_rows(sed, doa, cfg, threshold=threshold, median_frames=args.median, doa_smoothing=1,
                              duration=duration)  # doa is smoothed already
    as_json = args.json or (args.out is not None and args.out.suffix.lower() == ".json")
    if as_json and args.out is None:
        print(json.dumps({"events": [e.to_dict() for e in events]}, indent=2))
    else:
        print(pp.format_events(events))
    if reference is not None:
        _score(reference, rows, cfg, args)
    if args.out is not None:
        if as_json:
            pp.write_events_json(args.out, events, {"threshold": threshold, "doa_smoothing": smoothing,
                                                    "tta": output.views, "model": cfg.name})
        else:
            pp.write_dcase_csv(args.out, rows, edition=args.edition)
        _note(f"wrote {args.out}")
    if args.plot is not None:
        from glfer_edge.plot import plot_seld

        plot_seld(args.plot, active, doa, output.frame_times, cfg.output_hop_seconds, cfg.class_names,
                  reference=reference)
        _note(f"wrote {args.plot}")


def _score(reference, rows, cfg, args: argparse.Namespace) -> None:
    """Print the reference as events (same table as the predictions) and the DCASE SELD metrics."""
    import numpy as np

    from glfer_edge import postprocess as pp
    from glfer_edge.config import LABEL_HOP_SECONDS
    from glfer_edge.data.dcase import labels_to_targets
    from glfer_edge.metrics import SELDMetrics

    n = max((r.frame for r in reference), default=-1) + 1
    sed, doa = labels_to_targets(reference, n, cfg.model.num_classes)
    times = np.arange(n) * LABEL_HOP_SECONDS
    print("\nreference:")
    print(pp.format_events(pp.events_from_frames(sed > 0, sed, doa, times, LABEL_HOP_SECONDS, cfg.class_names)))
    metrics = SELDMetrics(cfg.model.num_classes, edition=args.edition, average=args.average)
    metrics.update(reference, rows)
    r = metrics.compute()
    print(f"\nagainst the reference ({len(reference)} label rows, DCASE {r.edition} metrics, {r.average} averaging):")
    print(f"  ER20 {r.er:.3f}  F20 {100 * r.f:.1f}%  LE_CD {r.le:.1f}°  LR_CD {100 * r.lr:.1f}%  SELD {r.seld:.3f}")


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)
