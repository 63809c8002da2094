"""``glfer-edge parity A B``: does B match reference A within tolerance? Exit 1 when it does not.

Examples::

    glfer-edge parity model.safetensors model.fp32.onnx --synth 8
    glfer-edge parity model.fp32.onnx model.int8.onnx --data dataset/ --per-layer --report parity.md
    glfer-edge parity model.safetensors model.fp16.onnx --json -   # the JSON report alone on stdout

Output files follow the project's policy: parents are created, an existing file is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys

from glfer_edge._fileio import STDOUT, add_force_argument, add_json_argument, check_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="reference artifact (.safetensors, .onnx, .engine)")
    p.add_argument("b", help="artifact to check against A")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--synth", type=int, metavar="N", help="compare on N generated scenes (default 8)")
    src.add_argument("--data", metavar="DIR", help="compare on a DCASE-layout folder (foa_dev/, metadata_dev/)")
    p.add_argument("--layout", default=None, choices=("synth", "starss23", "dcase2021"),
                   help="--data layout (default: the one whose classes match the model, else synth)")
    p.add_argument("--select", nargs="+", default=None, help="--data splits, folders or folds (default all)")
    p.add_argument("--max-files", type=int, default=None, help="use at most this many --data recordings")
    p.add_argument("--tolerances", default=None, metavar="ROW|FILE",
                   help="row of glfer_edge.tolerances.TOLERANCES (fp32, fp16, int8, ...) or a JSON file of "
                        "Tolerances fields (default: the row of B's precision)")
    p.add_argument("--per-layer", action="store_true",
                   help="ONNX vs ONNX: mark every shared intermediate tensor and name the first divergent layer")
    p.add_argument("--worst", type=int, default=10, help="layers listed in the per-layer table (default 10)")
    p.add_argument("--seed", type=int, default=0, help="scene generator seed (default 0)")
    p.add_argument("--batch", type=int, default=4, help="segments per inference call (default 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--backend", choices=("onnxruntime", "openvino"), default=None,
                   help="runtime of B when it is an .onnx file (default onnxruntime)")
    p.add_argument("--bf16", action="store_true",
                   help="with --backend openvino: compute B's FP32 graph in bf16 (checked against openvino-bf16)")
    add_json_argument(p, "the full report")
    p.add_argument("--report", metavar="PATH",
                   help="write the markdown report to PATH (printed as well, unless --json -)")
    add_force_argument(p)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from glfer_edge import parity
    from glfer_edge._fileio import write_json, write_text_atomic
    from glfer_edge.errors import InputError
    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.options import RuntimeOptions
    from glfer_edge.tolerances import get_tolerances

    if args.report == STDOUT:
        raise InputError("--report takes a file name; the markdown report is printed to standard output anyway")
    check_output(args.json, args.force, "--json")
    check_output(args.report, args.force, "--report")
    try:
        tolerances = get_tolerances(args.tolerances) if args.tolerances else None
    except (ValueError, TypeError) as exc:
        raise InputError(f"--tolerances: {exc}") from None
    if args.per_layer and not (args.a.endswith(".onnx") and args.b.endswith(".onnx")):
        raise InputError("--per-layer compares two ONNX graphs; pass A and B as .onnx files")
    with SELDRuntime.open(args.a) as rt:  # the reference's contract picks scenes and layout
        config = rt.config
    if args.data:
        layout = args.layout or _layout_for(config.class_names)
        recordings = parity.dcase_recordings(
            args.data, config.features.sample_rate, layout=layout, select=args.select, max_files=args.max_files
        )
        data = f"{args.data} ({layout} layout)"
    else:
        n = args.synth or 8
        recordings = parity.synth_recordings(config, n, seed=args.seed)
        data = f"{n} generated scenes (seed {args.seed}, {config.segment_seconds:g} s)"
    if args.bf16 and args.backend != "openvino":
        raise InputError("--bf16 is OpenVINO's inference precision; add --backend openvino")
    options_b = RuntimeOptions(precision="bf16") if args.bf16 else None
    report = parity.compare_artifacts(
        args.a, args.b, recordings, tolerances=tolerances, data=data, batch=args.batch, device=args.device,
        backend_b=args.backend, options_b=options_b,
    )
    if args.per_layer:
        first = recordings[0].audio[:, : config.segment_samples]
        audio = np.zeros((1, 4, config.segment_samples), np.float32)
        audio[0, :, : first.shape[1]] = first
        layers = parity.locate_divergence(args.a, args.b, audio, precision=report.b.precision)
        report = replace(report, layers=layers)
    markdown = parity.render_markdown(report, worst=args.worst)
    if args.json != STDOUT:  # with --json -, standard output carries the JSON alone
        print(markdown, end="")
    if args.report:
        write_text_atomic(args.report, markdown)
    if args.json:
        write_json(args.json, report.to_dict())
    if not report.passed:
        print("parity FAILED: " + "; ".join(report.violations), file=sys.stderr)
        return 1
    return 0


def _layout_for(class_names: tuple[str, ...]) -> str:
    from glfer_edge.data.layout import LAYOUTS

    return next((name for name, lay in LAYOUTS.items() if lay.class_names == class_names), "synth")
