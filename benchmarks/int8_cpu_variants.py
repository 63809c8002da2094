"""Whole-graph levers for the int8-cpu form: build variants of ``model.int8-cpu.onnx`` and check their accuracy.

Each variant is the export's own path (``quantize_int8(target="cpu")`` on the plain FP32 graph) with one
rewrite switched on or off, calibrated on the same generated segments as the baseline; its INT8 accuracy
against FP32 (``calibration.report.held_out_accuracy`` on generated held-out scenes: SED max abs error,
SED agreement, mean DOA angle, SELD delta, the parity suite's ``int8`` row) lands in ``accuracy.json``
beside the files. Time them side by side with ``levers.py --extra NAME=PATH``.

    python benchmarks/int8_cpu_variants.py --preset paper --out /tmp/variants --variants base depthwise7
    python benchmarks/int8_cpu_variants.py --weights glfer_edge/assets/glfer_small_synth.safetensors \\
        --segments 64 --scenes 16 --out /tmp/variants-small

Variants (``--list``): ``base`` (the export as it is: AFF's Sub as an INT8 Mul and Add, scalar Muls folded
into scales, the LFE edge-term Adds quantized) and the levers not in the export's path: ``depthwise7``
(MSFE's narrow 7x7 grouped convs as depthwise + sum instead of dense), ``quick-gelu``, ``densify-3x3``,
``stem-int8`` (the stem's 7-channel conv quantized: 3 % faster, but OpenVINO's kernels then lose the DOA,
``export/int8.py``), and ``stem-int8+depthwise7``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx


@contextlib.contextmanager
def patched(module, name: str, value) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def variants() -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """name -> a context in which ``quantize_int8(target="cpu")`` builds that variant (``base``: the export as is)."""
    import glfer_edge.export.int8 as int8
    import glfer_edge.export.int8_cpu as int8_cpu
    from glfer_edge.export.fp32_cpu import depthwise_grouped_convs
    from glfer_edge.export.graph import with_merged_groups

    def depthwise7():  # before the narrow groups go dense
        original = int8_cpu.densify_grouped_convs
        return patched(int8_cpu, "densify_grouped_convs",
                       lambda graph, *a: original(depthwise_grouped_convs(
                           graph, group_outputs_below=int8_cpu.MIN_GROUP_OUTPUTS), *a))

    def densify_3x3():  # 3x3 grouped convs with fewer than 16 outputs per group dense too (stage 1's g2 branch)
        original = int8_cpu.densify_grouped_convs
        return patched(int8_cpu, "densify_grouped_convs", lambda graph, *a: with_merged_groups(
            original(graph, *a), lambda g, dims: 1 if dims[0] // g < 16 and max(dims[2:]) <= 3 else g))

    def stem_int8():  # the stem's first conv (7 channels) quantized; only the 1-channel gates stay float
        original = int8.narrow_input_convs
        return patched(int8, "narrow_input_convs", lambda graph, *a, **k: original(graph, min_channels=2))

    def quick_gelu():  # the float GELU left (the stem's) as ORT's QuickGelu
        original = int8.set_precision  # the last step, after the sigmoid products
        return patched(int8, "set_precision", lambda graph, *a: (
            graph.CopyFrom(int8_cpu.float_gelus_as_quick_gelu(graph)), original(graph, *a))[1])

    def combined(*levers):
        @contextlib.contextmanager
        def context():
            with contextlib.ExitStack() as stack:
                for lever in levers:
                    stack.enter_context(lever())
                yield
        return context

    return {
        "base": contextlib.nullcontext,
        "depthwise7": depthwise7,
        "densify-3x3": densify_3x3,
        "stem-int8": stem_int8,
        "quick-gelu": quick_gelu,
        "stem-int8+depthwise7": combined(stem_int8, depthwise7),
    }


def plain_fp32(weights: Path | None, preset: str | None, segment_seconds: float | None) -> onnx.ModelProto:
    """The FP32 graph the INT8 forms start from (before the FP32 artifact's CPU rewrite)."""
    from glfer_edge.export import _load
    from glfer_edge.export.onnx_fp32 import export_fp32

    model, sha, _ = _load(weights, preset, 0)
    return export_fp32(model, sha, segment_seconds, 17, False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--preset", default=None, help="with the bench's random weights (speed; accuracy only relative)")
    p.add_argument("--segments", type=int, default=8, help="calibration segments (the bench's timing exports use 8)")
    p.add_argument("--scenes", type=int, default=8, help="held-out generated scenes for the accuracy check")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--variants", nargs="+", default=["base"])
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    table = variants()
    if args.list:
        print("\n".join(table))
        return
    if args.out is None:
        p.error("--out is required")
    from glfer_edge.calibration.readers import DEFAULT_BATCH, SynthReader
    from glfer_edge.calibration.report import held_out_accuracy
    from glfer_edge.export.int8 import quantize_int8
    from glfer_edge.export.onnx_meta import graph_config

    weights = args.weights
    if args.preset:
        from glfer_edge.bench import default_cache_dir, preset_weights

        weights = preset_weights(args.preset, default_cache_dir())
    fp32 = plain_fp32(weights, None, None)
    config = graph_config(fp32)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "accuracy.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.variants:
        reader = SynthReader(config, args.segments, 0, batch_size=DEFAULT_BATCH)
        t0 = time.perf_counter()
        with table[name](), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            int8 = quantize_int8(fp32, reader, "minmax", target="cpu")
        path = args.out / f"{name}.int8-cpu.onnx"
        onnx.save(int8, str(path))
        acc = held_out_accuracy(fp32, int8, config, args.scenes, 0)
        results[name] = {"path": str(path), "build_s": round(time.perf_counter() - t0, 1), **acc}
        par = acc["parity"]
        print(f"{name}: SED agreement {par['sed_agreement']:.4f}, SED max abs {par['sed_max_abs']:.4g}, "
              f"DOA mean angle {par['doa_angle_mean_deg']:.3f} deg, SELD delta {acc['seld_delta']:+.4f}, "
              f"violations {acc['violations'] or 'none'} ({path})", flush=True)
        results_path.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
