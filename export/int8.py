"""INT8 artifact: explicit QuantizeLinear/DequantizeLinear (QDQ) calibrated on FOA audio.

TensorRT's rules for explicit quantization: symmetric INT8 with zero points 0, per-channel weight
scales, per-tensor activation scales, float biases (its DequantizeLinear takes no INT32). ONNX
Runtime's ``quantize_static`` writes that when restricted to Conv/MatMul/Gemm (its default op set
also scatters Q/DQ before Log, Div, Softmax, Tanh and the GRU, which doubles the error for no
speed). Conv/MatMul/Gemm nodes whose name holds one of ``FLOAT_SCOPES`` stay float:

* ``/frontend/``: the STFT conv and band matrices see raw audio and the power spectrum (> 100 dB
  of dynamic range); quantized, SED agreement fell to 0.918 and the DOA angle rose to 9.2 deg;
* ``/decoder/``: the BiGRU (no INT8 GRU in TensorRT or ORT's QDQ registry) and the SED/DOA heads;
  quantized heads tripled the error (agreement 0.9933, 0.75 deg, SED mean error 1.0e-3 vs 3e-4)
  for tiny MatMuls on (T', 256) inputs; a distance model's distance head is one more of them
  (float in both targets; its metres are checked by the ``int8`` row's ``distance_rel_mean_max``);
* attention gates on pooled (B, C, 1, 1) vectors (``/odconv/attention/``, ``/psa/se/``,
  ``/aff/global_att/``, ``/fr/``): no measurable accuracy change either way, but INT8 has nothing
  to gain there and keeping them float halves the Q/DQ nodes (191 -> 82 on the tiny preset).

Two targets share the calibration (``INT8_TARGETS``):

* ``tensorrt`` (``model.int8.onnx``): the rules above, for TensorRT 10/11 on Jetson and GPUs;
* ``cpu`` (``model.int8-cpu.onnx``): onnxruntime's preferred CPU form, U8 activations (asymmetric)
  with S8 weights, every op type ORT has a quantized kernel for, INT32 biases. ORT fuses
  DQ -> Conv -> Q chains into ``QLinearConv`` (VNNI) only when a Conv's output is quantized too,
  which the TensorRT form leaves out for most Convs, so the TensorRT form runs slower than FP32 on
  a CPU. ``CPU_FLOAT_SCOPES`` (frontend, decoder) stay float, every op in them: keeping the
  encoder's attention gates float as well put DQ -> float Mul -> Q around full-size feature maps
  and made this form slower than FP32 (paper preset: 297 vs 253 ms per 8-s segment). So do convs
  on fewer than 8 channels (the stem's first, with its GELU; the 1-channel gates on pooled vectors):
  quantized, the stem's first conv made OpenVINO's kernels 7.0 degrees off in mean DOA on the bundled
  model (onnxruntime 2.6) for 3 % of the time. The fused LFE units' edge-term Adds are quantized
  (their GELUs then run as sigmoid products on U8), AFF's Sub runs as QLinearMul(-1) + QLinearAdd and
  its factor 2 lives in the next scale. Before
  quantizing, ``prepare_cpu_graph`` rewrites the FP32 graph, exactly, into ops ORT's INT8 kernels
  run well and on all threads (one Gelu node per GELU, dense instead of narrow grouped
  convolutions, depthwise convolutions instead of average pooling and of BatchNormalization, gates
  expanded to the map's shape); Concat inputs share the output's range, and afterwards Pad and Expand move U8 bytes
  and a GELU on a quantized map becomes x sigmoid(1.702 x) (ORT has no INT8 GELU; the one approximate step).
  TensorRT rejects this form (INT32 biases, asymmetric U8, an ORT contrib op).

Measured (tiny preset, random weights with fitted statistics, SED head scaled so probabilities
spread around the 0.3 threshold, 2-s segments, 64 generated calibration segments at -50..-3 dBFS
peak, 24 held-out scenes): agreement 1.0000 and mean DOA angle 0.26 (MinMax), 0.24 (Entropy),
0.25 deg (Percentile); SED mean abs error 3e-4 for all three.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import math
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from glfer_edge.export.int8_cpu import (
    differences_as_sums, gelus_as_sigmoid_products, movement_ops_on_uint8, narrow_input_convs, prepare_cpu_graph,
    scalar_muls_in_scales, share_concat_ranges,
)
from glfer_edge.export.onnx_meta import set_precision

if TYPE_CHECKING:
    from onnxruntime.quantization.calibrate import TensorsData

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# Node-name fragments of Conv/MatMul/Gemm nodes kept in float (see the module docstring).
FLOAT_SCOPES: tuple[str, ...] = (
    "/frontend/", "/decoder/", "/odconv/attention/", "/psa/se/", "/aff/global_att/", "/fr/",
)
METHODS = ("minmax", "entropy", "percentile")
INT8_TARGETS = ("tensorrt", "cpu")
# The CPU form's weights use 7 of their 8 bits. Tiny test model, 8 held-out scenes, mean DOA error vs FP32
# on an AMD EPYC Zen 3 (AVX2, no VNNI): 8-bit weights 6.94 deg on ORT's kernels (saturated) and 0.65 deg
# computed exactly (Q/DQ in float); 7-bit weights 0.80 deg both ways (tests/test_calibration.py).
CPU_REDUCE_RANGE = True
MIN_SEGMENTS = 32  # fewer calibration segments than this gets a warning
SILENT_DBFS = -70.0  # a calibration set quieter than this (RMS) gets a warning


# The CPU form keeps only the wide-dynamic-range frontend and the decoder (BiGRU, heads) float.
CPU_FLOAT_SCOPES: tuple[str, ...] = ("/frontend/", "/decoder/")
# Op types the CPU form keeps float wherever they are. BatchNormalization: ORT has no quantized kernel
# (it runs DQ -> BN -> Q either way), and its quantizer would store gamma, beta, mean and variance
# as per-tensor 8-bit "weights" (bundled model: steps up to 1.5 % of a channel's scale). The CPU form's
# rewrite turns every BN on a map of known channel count into a depthwise conv first; this keeps the rest.
CPU_FLOAT_OPS: tuple[str, ...] = ("BatchNormalization",)
def int8_excluded_nodes(graph: onnx.ModelProto, float_scopes: Iterable[str] = FLOAT_SCOPES) -> list[str]:
    """Quantizable nodes (Conv/MatMul/Gemm) left in float because their name contains one of the scopes."""
    scopes = tuple(float_scopes)
    return [n.name for n in graph.graph.node if n.op_type in QUANTIZED_OPS and any(s in n.name for s in scopes)]


def quantize_int8(
    graph: onnx.ModelProto, reader, method: str = "minmax", float_scopes: Iterable[str] | None = None,
    target: str = "tensorrt",
) -> onnx.ModelProto:
    """FP32 artifact -> QDQ INT8 artifact for ``target`` (``tensorrt`` or ``cpu``); ``reader``: a calibration
    SegmentReader; ``float_scopes``: default ``FLOAT_SCOPES`` (tensorrt) or ``CPU_FLOAT_SCOPES`` (cpu).

    The calibration summary (method, source, segments, seed, levels, warnings) lands in the
    artifact metadata; warnings are also emitted when the set is small or silent.
    """
    from onnxruntime.quantization import QuantFormat, QuantType

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if target not in INT8_TARGETS:
        raise ValueError(f"unknown INT8 target {target!r}; choose one of {', '.join(INT8_TARGETS)}")
    float_scopes = tuple(float_scopes or (FLOAT_SCOPES if target == "tensorrt" else CPU_FLOAT_SCOPES))
    if target == "tensorrt":
        op_types = list(QUANTIZED_OPS)
        excluded = set(int8_excluded_nodes(graph, float_scopes))
        quantized_nodes = {n.name for n in graph.graph.node if n.op_type in QUANTIZED_OPS} - excluded
        options = dict(
            activation_type=QuantType.QInt8,
            extra_options={
                "ActivationSymmetric": True, "WeightSymmetric": True,
                "QuantizeBias": False,  # TensorRT's DequantizeLinear takes 8-bit inputs only, no INT32 bias
            },
        )
    else:
        graph = differences_as_sums(prepare_cpu_graph(graph, float_scopes), float_scopes)
        op_types = None  # every op type
        excluded = {n.name for n in graph.graph.node
                    if n.op_type in CPU_FLOAT_OPS or any(s in n.name for s in float_scopes)}
        # the stem's 7-channel conv and the 1-channel gates stay float; the LFE edge-term Adds are quantized
        # (with scalar_muls_in_scales and differences_as_sums: 1.06-1.09x per round on AMD EPYC Zen 3,
        # benchmarks/results/epyc-zen3-2core/int8-cpu-levers.md)
        excluded |= set(narrow_input_convs(graph))
        quantized_nodes = {n.name for n in graph.graph.node} - excluded
        # 7-bit weights: onnxruntime's U8S8 kernels saturate 8-bit weights on x86 CPUs without VNNI
        # (glfer_edge.machine.u8s8_saturates); one artifact must be exact on every CPU it is copied to.
        options = dict(activation_type=QuantType.QUInt8, reduce_range=CPU_REDUCE_RANGE,
                       extra_options={"WeightSymmetric": True})
    with tempfile.TemporaryDirectory(prefix="glfer-int8-") as tmp, _quiet_ort():
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(graph, str(src))  # quantize_static rewrites a ModelProto argument in place
        ranges = _calibrate(src, Path(tmp), reader, method, quantized_nodes, op_types)
        if target == "cpu":
            ranges = share_concat_ranges(graph, ranges)
        _quantize_with_ranges(
            src, out, ranges, reader, Path(tmp), quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types,
            per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=sorted(excluded),
            calibrate_method=_ort_method(method), **options,
        )
        quantized = onnx.load(str(out))
    if target == "cpu":
        quantized = scalar_muls_in_scales(gelus_as_sigmoid_products(movement_ops_on_uint8(quantized)))
    summary = {**calibration_summary(reader, method, float_scopes), "target": target,
               "weight_bits": 7 if target == "cpu" and CPU_REDUCE_RANGE else 8}
    for message in summary["warnings"]:
        warnings.warn(message, stacklevel=2)
    set_precision(quantized, "int8", summary)
    return quantized


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def _calibrate(
    model_path: Path, workdir: Path, reader, method: str, quantized_nodes: set[str], op_types: list[str] | None
) -> TensorsData:
    """Activation ranges of the tensors around the quantized nodes only, one reader batch at a time.

    ONNX Runtime's own calibration also measures every tensor of the excluded Conv/MatMul nodes:
    the raw audio, the STFT and the power spectrum, whose range follows the input level over
    > 100 dB. Its histogram methods then re-bin at the finest width across batches of different
    levels (tens of thousands of bins, minutes per tensor). Restricting the tensors keeps every
    method fast and the memory to one batch of activations.
    """
    from onnxruntime.quantization import calibrate as cal

    base = {"minmax": cal.MinMaxCalibrater, "entropy": cal.EntropyCalibrater,
            "percentile": cal.PercentileCalibrater}[method]

    class QuantizedTensorsOnly(base):
        def select_tensors_to_calibrate(self, model):
            tensors, value_infos = super().select_tensors_to_calibrate(model)
            around = {t for n in model.graph.node if n.name in quantized_nodes for t in (*n.input, *n.output)}
            return tensors & around, value_infos

    calibrator = QuantizedTensorsOnly(
        model_path, op_types, augmented_model_path=str(workdir / "augmented.onnx")
    )
    calibrator.augment_graph()
    calibrator.create_inference_session()
    for batch in range(len(reader)):
        reader.set_range(batch, batch + 1)
        calibrator.collect_data(reader)
    reader.rewind()
    return calibrator.compute_data()


def _ort_takes_ranges() -> bool:
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _quantize_with_ranges(src: Path, out: Path, ranges: TensorsData, reader, workdir: Path, **options: Any) -> None:
    """``quantize_static`` on precomputed activation ranges (``TensorsData``) instead of its own calibration.

    onnxruntime >= 1.32 takes them as ``calibration_cache_path`` (microsoft/onnxruntime#28221).
    Older releases (the newest for Python 3.10, JetPack 6's, is 1.23) calibrate inside
    ``quantize_static`` only, through the ``create_calibrator`` it imports; while they quantize,
    that name returns a calibrator holding the given ranges, so both paths write the same graph
    (a test checks it).
    """
    from onnxruntime.quantization import calibrate as cal

    # The module, not the function of the same name that onnxruntime.quantization exports.
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    if _ort_takes_ranges():
        path = workdir / "ranges.json"
        cal.save_tensors_data(ranges, path)
        ort_quantize.quantize_static(src, out, None, calibration_cache_path=path, **options)
        return

    class Precomputed:
        def collect_data(self, reader) -> None:
            pass

        def compute_data(self):
            return ranges

    original = ort_quantize.create_calibrator
    ort_quantize.create_calibrator = lambda *args, **kwargs: Precomputed()
    try:
        ort_quantize.quantize_static(src, out, reader, **options)  # the reader is not read again
    finally:
        ort_quantize.create_calibrator = original


def calibration_summary(reader, method: str, float_scopes: Iterable[str]) -> dict[str, Any]:
    """What the artifact metadata and the report record about the calibration."""
    levels = reader.level_stats()
    problems = []
    if reader.n_segments < MIN_SEGMENTS:
        problems.append(
            f"only {reader.n_segments} calibration segments (< {MIN_SEGMENTS}); INT8 ranges may not cover "
            "real input: calibrate on more audio"
        )
    if levels["rms_dbfs"] < SILENT_DBFS:
        problems.append(
            f"calibration audio is nearly silent (RMS {levels['rms_dbfs']:.1f} dBFS < {SILENT_DBFS:g}); "
            "calibrate on audio at the levels the device will hear"
        )
    return {
        "method": method, **reader.describe(), "segment_seconds": reader.config.segment_seconds,
        **{k: round(v, 2) if math.isfinite(v) else None for k, v in levels.items()},
        "float_scopes": list(float_scopes), "warnings": problems,
    }


@contextlib.contextmanager
def _quiet_ort():
    """ORT's quantizer logs a pre-processing hint (our graph is already simplified) and prints progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
