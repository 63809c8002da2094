"""``glfer-edge run``: detect and localize sound events in FOA recordings (the main job).

Recordings of any length are cut into model segments (the last one zero-padded; output frames
that start after the end of the audio are dropped) and run in batches with a progress bar. Events
are printed as a table; ``--out`` writes DCASE CSV (100-ms frames, or JSON events for a ``.json``
name), ``--json PATH`` JSON events (``-``: printed instead of the table), ``--plot`` a figure like
the paper's Fig. 8. A folder as input runs every audio file in it: ``--out`` (and ``--json``) then
name folders that get ``<name>.csv`` (``<name>.json``) per recording. ``--demo`` synthesizes a scene,
runs on it and scores the result. Existing outputs are refused unless ``--force``; every failure is
one ``error: ...`` line (exit 2) and leaves no output file behind.

Distance (DCASE 2024, 3D SELD): a model with the distance head writes DCASE 2024 CSV rows
(``frame,class,source,azimuth,elevation,distance``, distance in metres as 2024 predictions are) and
scores ``--ref`` with the 2024 metrics by default; events get a ``distance_m`` (JSON, table column).
``--edition 2021/2022/2023`` writes that edition's rows without distance; ``--edition 2024`` with a
model without distance is refused before any inference.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from glfer_edge._fileio import STDOUT, add_force_argument, add_json_argument, check_output
from glfer_edge.errors import GlferError, InputError

DEMO_SECONDS = 20.0
DEMO_SEED = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", type=Path,
                        help="4-channel FOA recording (WAV, FLAC, ...), or a folder: every audio file in it")
    parser.add_argument("--model", type=Path,
                        help=".onnx, .engine/.plan or .safetensors (default, or 'default': the bundled demo model)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--backend", choices=("onnxruntime", "openvino"), default=None,
                        help="runtime for an .onnx model (default onnxruntime; openvino: pip install 'glfer-edge[openvino]')")
    parser.add_argument("--server", metavar="URL",
                        help="infer on a glfer-edge Triton server instead (http://host:8000 or grpc://host:8001; "
                             "glfer-edge serve): same events as in-process")
    parser.add_argument("--out", type=Path,
                        help="write predictions: DCASE CSV (JSON events for a .json name); a folder for a folder input")
    add_json_argument(parser, "the events")
    parser.add_argument("--plot", type=Path, help="save a figure of activity, azimuth and elevation (png, pdf, svg)")
    parser.add_argument("--ref", type=Path, help="reference DCASE CSV: drawn on the plot and scored")
    parser.add_argument("--edition", default=None, choices=("2021", "2022", "2023", "2024"),
                        help="DCASE CSV format and metrics (default: 2024 for a model with distance, its rows "
                             "frame,class,source,azimuth,elevation,distance in metres; else 2023). 2024 needs a "
                             "model with distance")
    parser.add_argument("--average", default=None, choices=("micro", "macro"),
                        help="class averaging of the score against --ref/--demo (default: the edition's, as in "
                             "evaluate: micro for 2021, macro for 2022+; macro scores each class without a correct "
                             "detection in the recording at F20 0, LE_CD 180 deg, LR_CD 0)")
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
    parser.add_argument("--no-gate", action="store_true",
                        help="decide without the noise gate (FOA diffuseness and level per frame; README, Decisions)")
    parser.add_argument("--no-resample", action="store_true", help="refuse recordings at another sample rate")
    parser.add_argument("--demo", action="store_true", help="run on a synthetic scene and compare with its labels")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:

    if args.demo == (args.input is not None):
        raise InputError("pass one input recording or folder, or --demo for a synthetic scene (not both)")
    jobs = _check_args(args)
    if args.server is not None:
        if args.model is not None:
            raise InputError("--server runs the server's model; drop --model (or run without --server)")
        from glfer_edge.serve.client import SELDClient

        opened = SELDClient(args.server)
    else:
        from glfer_edge.runtime import SELDRuntime

        path, note = _model_path(args.model)
        if note:
            _note(note)
        opened = SELDRuntime.open(path, device=args.device, backend=args.backend)
    failed = 0
    with opened as rt:
        _note(f"model {rt.description}")
        args.edition = resolve_edition(args.edition, rt.config)
        if args.demo:
            recording, reference = _demo(rt.config)
            _report(_infer(rt, recording, args), reference, recording.duration, args, args.out, args.json, args.plot)
            return 0
        for source, out, json_out in jobs:
            if len(jobs) > 1:
                print(f"\n{source}:")
            try:
                recording, reference = _load(source, args, rt.config), _reference(args)  # refused before inference
                _report(_infer(rt, recording, args), reference, recording.duration, args, out, json_out, args.plot)
            except GlferError as exc:
                if len(jobs) == 1:
                    raise
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
    if failed:
        raise InputError(f"{failed} of {len(jobs)} recordings failed (errors above); the others were written")
    return 0


def _check_args(args: argparse.Namespace) -> list[tuple[Path, Path | None, str | None]]:
    """Refuse bad options, missing inputs and unusable output paths before any work (no model load);
    returns the (recording, --out file, --json target) of each job."""
    from glfer_edge.audio import audio_files
    from glfer_edge.channel_swap import tta_transforms
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
    # the edition may wait for the model (2024 for a distance model, else 2023): both average alike
    args.averages = (check_average(args.edition or "2023", args.average),)
    if args.average is None and args.averages[0] == "macro":  # one recording: its own classes' score beside it
        args.averages += ("micro",)
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg"):
        raise InputError(f"--plot {args.plot}: use a .png, .pdf, .svg or .jpg file name")
    if args.ref is not None and not args.ref.is_file():
        raise InputError(f"reference {args.ref} not found; pass a DCASE metadata CSV")
    if args.input is not None and args.input.is_dir():
        return _folder_jobs(args, audio_files(args.input))
    if args.input is not None and not args.input.exists():
        raise InputError(f"input file {args.input} not found; check the path")
    for flag, path in (("--out", args.out), ("--json", args.json), ("--plot", args.plot)):
        check_output(path, args.force, flag)
    return [(args.input, args.out, args.json)]


def _folder_jobs(args: argparse.Namespace, files: list[Path]) -> list[tuple[Path, Path | None, str | None]]:
    if not files:
        raise InputError(f"{args.input} is a folder without audio files (.wav, .flac, ...); pass a recording or "
                         "a folder of them")
    if args.out is None and args.json is None:
        raise InputError(f"{args.input} is a folder: pass --out DIR (and/or --json DIR) for one result per recording")
    if args.plot is not None or args.ref is not None:
        raise InputError("--plot and --ref take one recording; run them on a file, not a folder")
    for flag, folder in (("--out", args.out), ("--json", args.json)):
        if folder is not None and str(folder) == STDOUT:
            raise InputError(f"{flag} - prints one recording's events; give a folder for a folder input")
        check_output(folder, args.force, flag, folder=True)
    jobs = []
    for path in files:
        stem = path.relative_to(args.input).with_suffix("")
        out = None if args.out is None else args.out / stem.with_suffix(".csv")
        json_out = None if args.json is None else str(Path(args.json) / stem.with_suffix(".json"))
        check_output(out, args.force, "--out")
        check_output(json_out, args.force, "--json")
        jobs.append((path, out, json_out))
    return jobs


def resolve_edition(edition: str | None, config) -> str:
    """The DCASE edition of a run of a model with ``config``: the one asked for, else 2024 for a model
    with the distance head and 2023 otherwise; 2024 for a model without distance is refused."""
    distance = bool(config.model.distance)
    if edition is None:
        return "2024" if distance else "2023"
    if edition == "2024" and not distance:
        raise InputError(f"--edition 2024 needs source distances, and model '{config.name}' has no distance head; "
                         "use --edition 2023 (or a model trained with distance)")
    return edition


def _model_path(model: Path | None) -> tuple[Path, str | None]:
    from glfer_edge.runtime.seld import DEFAULT_NAME, default_model

    return (model, None) if model is not None and str(model) != DEFAULT_NAME else default_model()


def _load(path: Path, args: argparse.Namespace, config):
    from glfer_edge.audio import load_audio

    rec = load_audio(path, config.features.sample_rate, allow_resample=not args.no_resample)
    if rec.resampled:
        _note(f"resampled {path.name} from {rec.source_rate} Hz to {rec.sample_rate} Hz (scipy resample_poly)")
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


def _report(output, reference, duration: float, args: argparse.Namespace, out: Path | None, json_out: str | None,
            plot: Path | None) -> None:
    from glfer_edge import postprocess as pp

    cfg = output.config
    if args.edition == "2024" and output.distance is None:  # e.g. a server that returns no distance
        raise InputError(f"--edition 2024 needs source distances, and the outputs of model '{cfg.name}' have none; "
                         "use --edition 2023")
    d = pp.decide(output, threshold=args.threshold, median_frames=args.median, doa_smoothing=args.doa_smoothing,
                  duration=duration, gate=False if args.no_gate else None)
    events, rows = d.events, d.rows
    views = f" ({output.views} TTA views)" if output.views > 1 else ""
    gate = "off" if args.no_gate or not cfg.gate.enabled else (
        f"diffuseness <= {cfg.gate.max_diffuseness:g}, level >= {cfg.gate.min_level_dbfs:g} dBFS")
    _note(f"deciding at SED threshold {d.threshold:g} with {d.doa_smoothing}-frame DOA smoothing{views}; "
          f"noise gate {gate}")
    settings = {"threshold": d.threshold, "doa_smoothing": d.doa_smoothing, "tta": output.views, "model": cfg.name,
                "gate": None if args.no_gate else dataclasses.asdict(cfg.gate)}
    if json_out == STDOUT:
        from glfer_edge._fileio import write_json

        write_json(STDOUT, {"events": [e.to_dict() for e in events], **settings})
    else:
        print(pp.format_events(events, distance=d.distance is not None))
    if reference is not None:
        _score(reference, rows, cfg, args)
    if out is not None:
        if out.suffix.lower() == ".json":
            pp.write_events_json(out, events, settings)
        else:
            pp.write_dcase_csv(out, rows, edition=args.edition)  # 2024: with distance (m); else without
        _note(f"wrote {out}" + (" (DCASE 2024 rows, distance in metres)" if args.edition == "2024"
                                and out.suffix.lower() != ".json" else ""))
    if json_out not in (None, STDOUT):
        pp.write_events_json(json_out, events, settings)
        _note(f"wrote {json_out}")
    if plot is not None:
        from glfer_edge.plot import save_figure, seld_figure

        if reference is not None and args.edition != "2024":  # 2023 distance columns are the file's (cm)
            reference = [dataclasses.replace(r, distance=None) for r in reference]
        save_figure(seld_figure(d.active, d.doa, output.frame_times, cfg.output_hop_seconds, cfg.class_names,
                                reference=reference, distance=d.distance), plot)
        _note(f"wrote {plot}")


def _score(reference, rows, cfg, args: argparse.Namespace) -> None:
    """Print the reference as events (same table as the predictions) and the DCASE SELD metrics."""
    import numpy as np

    from glfer_edge import postprocess as pp
    from glfer_edge.config import LABEL_HOP_SECONDS
    from glfer_edge.data.dcase import labels_to_distance, labels_to_targets
    from glfer_edge.metrics import SELDMetrics

    n = max((r.frame for r in reference), default=-1) + 1
    sed, doa = labels_to_targets(reference, n, cfg.model.num_classes)
    times = np.arange(n) * LABEL_HOP_SECONDS
    # 2024 references carry a distance in every row (the reader refuses others), in metres
    distance = labels_to_distance(reference, n, cfg.model.num_classes) if args.edition == "2024" else None
    print("\nreference:")
    print(pp.format_events(pp.events_from_frames(sed > 0, sed, doa, times, LABEL_HOP_SECONDS, cfg.class_names,
                                                 distance=distance), distance=distance is not None))
    print(f"\nagainst the reference ({len(reference)} label rows, DCASE {args.edition} metrics):")
    for average in args.averages:
        metrics = SELDMetrics(cfg.model.num_classes, edition=args.edition, average=average)
        metrics.update(reference, rows)
        r = metrics.compute()
        why = {"macro": "the edition's default: every class, absent ones as misses",
               "micro": "this recording's events pooled"}[average] if len(args.averages) > 1 else ""
        print(f"  {average} averaging{f' ({why})' if why else ''}:")
        if args.edition == "2024":
            print(f"    F20 {100 * r.f:.1f}%  AE_CD {_num(r.le, '.1f')}°  RDE_CD {_num(r.rde, '.3f')}  "
                  f"DE_CD {_num(r.de, '.2f')} m  SELD {r.seld:.3f}")
            print(f"    (frame-level; F20 needs DOA error <= {r.doa_threshold:g} deg and relative distance error "
                  f"<= {r.rel_distance_threshold:g})")
        else:
            print(f"    ER20 {r.er:.3f}  F20 {100 * r.f:.1f}%  LE_CD {r.le:.1f}°  LR_CD {100 * r.lr:.1f}%  "
                  f"SELD {r.seld:.3f}")


def _num(value: float | None, spec: str) -> str:
    """A metric for the printed score; '-' where there is no estimate (nothing matched)."""
    import math

    return "-" if value is None or math.isnan(value) else format(value, spec)


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)
