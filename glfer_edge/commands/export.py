"""``glfer-edge export``: ONNX artifacts with the fused frontend (FP32, strongly typed FP16, calibrated INT8 Q/DQ)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from glfer_edge._fileio import add_force_argument, check_output
from glfer_edge.precision import DEFAULT_EXPORT, PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, help="weights (.safetensors); default: the bundled demo model")
    parser.add_argument("--preset", help="preset; without --weights: a RANDOMLY INITIALISED model (speed tests only)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for model.<precision>.onnx")
    parser.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=list(DEFAULT_EXPORT),
                        help=f"artifacts to write (default: {' '.join(DEFAULT_EXPORT)}); "
                             + "; ".join(f"{p.name}: {p.description}" for p in PRECISIONS.values()))
    calib = parser.add_mutually_exclusive_group()
    calib.add_argument("--calib", type=Path, metavar="DIR",
                       help="INT8 calibration on FOA recordings (4-channel WAV/FLAC at 24 kHz, any length; "
                            "up to 512 segments)")
    calib.add_argument("--calib-synth", type=int, default=128, metavar="N",
                       help="INT8 calibration on N generated scenes at -50..-3 dBFS peak (default 128)")
    parser.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                        help="activation range estimator (default minmax)")
    parser.add_argument("--segment-seconds", type=float,
                        help="segment length baked into the graph (default: the model's, 8 s for the presets)")
    parser.add_argument("--single-batch", action="store_true",
                        help="fix the graphs at batch 1 (static shapes; ODConv as one convolution over its "
                             "per-sample kernel); the runtime feeds them one segment per call")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--seed", type=int, default=0, help="seed of calibration scenes and random init")
    parser.add_argument("--report-scenes", type=int, default=16,
                        help="held-out generated scenes for the INT8 accuracy report (0: skip)")
    parser.add_argument("--quiet", action="store_true", help="print only the result")
    add_force_argument(parser)


def run(args: argparse.Namespace) -> int:
    check_output(args.out, args.force, folder=True)
    for name in args.precision:
        check_output(args.out / PRECISIONS[name].filename, args.force)
    from glfer_edge.export import CalibrationConfig, ExportConfig, export_artifacts

    def log(message: str) -> None:
        if not args.quiet or message.startswith(("WARNING", "warning")):
            print(message, file=sys.stderr)

    config = ExportConfig(
        precisions=tuple(args.precision), weights=args.weights, preset=args.preset,
        segment_seconds=args.segment_seconds, opset=args.opset, single_batch=args.single_batch,
        calibration=CalibrationConfig(folder=args.calib, synth_segments=args.calib_synth, method=args.calib_method),
        report_scenes=args.report_scenes, seed=args.seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = export_artifacts(args.out, config, log=log)
    for w in caught:
        print(f"WARNING: {w.message}", file=sys.stderr)
    print(f"FP32 graph vs torch: max abs error {result.fp32_max_error:.2g}")
    for precision, path in result.artifacts.items():
        print(f"{precision}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    for path in result.reports:
        print(f"report: {path}")
    for name, acc in result.accuracies.items():
        if acc is None:
            continue
        p = acc["parity"]
        angle = "n/a (no active reference cell)" if p["active_cells"] == 0 else f"{p['doa_angle_mean_deg']:.2f} deg"
        distance = ""
        if p.get("distance_max_abs") is not None:  # distance models
            rel = p["distance_rel_mean"]
            rel = "n/a" if rel is None or rel != rel else f"{100 * rel:.2f} %"
            distance = f", distance max abs {p['distance_max_abs']:.3g} m, mean relative {rel}"
        print(
            f"{name} vs FP32 on {acc['scenes']} held-out scenes: SED agreement {p['sed_agreement']:.4f}, "
            f"mean DOA angle {angle}, SELD delta {acc['seld_delta']:+.4f}{distance}"
        )
        for violation in acc["violations"]:
            print(f"WARNING: {name} misses a tolerance: {violation}", file=sys.stderr)
    return 0
