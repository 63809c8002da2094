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
  for tiny MatMuls on (T', 256) inputs;
* attention gates on pooled (B, C, 1, 1) vectors (``/odconv/attention/``, ``/psa/se/``,
  ``/aff/global_att/``, ``/fr/``): no measurable accuracy change either way, but INT8 has nothing
  to gain there and keeping them float halves the Q/DQ nodes (191 -> 82 on the tiny preset).

Two targets share the calibration (``INT8_TARGETS``):

* ``tensorrt`` (``model.int8.onnx``): the rules above, for TensorRT 10/11 on Jetson and GPUs;
* ``cpu`` (``model.int8-cpu.onnx``): onnxruntime's preferred CPU form, U8 activations (asymmetric)
  with S8 weights, every op type ORT has a quantized kernel for, INT32 biases. ORT fuses
  DQ -> Conv -> Q chains into ``QLinearConv`` (VNNI) only when a Conv's output is quantized too,
  which the TensorRT form leaves out for most Convs, so the TensorRT form runs slower than FP32 on
  a CPU. Only ``CPU_FLOAT_SCOPES`` (frontend, decoder) stay float, every op in them: keeping the
  encoder's attention gates float as well put DQ -> float Mul -> Q around full-size feature maps
  and made this form slower than FP32 (paper preset: 297 vs 253 ms per 8-s segment). Each GELU
  is first fused into one ``com.microsoft`` ``Gelu`` node (``fuse_gelu``), which ORT runs in float
  between one DQ and one Q instead of seven INT8-rounded passes. Grouped convolutions with fewer
  than ``CPU_MIN_GROUP_OUTPUTS`` output channels per group are rewritten as dense ones with
  block-diagonal weights (``densify_grouped_convs``): ORT's QLinearConv runs a grouped convolution
  group by group with a GEMM only that many rows tall, so the dense form, up to 8x the MACs, is
  faster (paper preset, MSFE stage 1, 7x7 with 8 groups: 60.6 -> 8.5 ms, one thread).
  TensorRT rejects this form (INT32 biases, asymmetric U8, an ORT contrib op).

Measured (tiny preset, random weights with fitted statistics, SED head scaled so probabilities
spread around the 0.3 threshold, 2-s segments, 64 generated calibration segments at -50..-3 dBFS
peak, 24 held-out scenes): agreement 1.0000 and mean DOA angle 0.26 (MinMax), 0.24 (Entropy),
0.25 deg (Percentile); SED mean abs error 3e-4 for all three.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from glfer_edge.errors import MissingDependencyError
from glfer_edge.export.onnx_meta import set_precision

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# Node-name fragments of Conv/MatMul/Gemm nodes kept in float (see the module docstring).
FLOAT_SCOPES: tuple[str, ...] = (
    "/frontend/", "/decoder/", "/odconv/attention/", "/psa/se/", "/aff/global_att/", "/fr/",
)
METHODS = ("minmax", "entropy", "percentile")
INT8_TARGETS = ("tensorrt", "cpu")
MIN_SEGMENTS = 32  # fewer calibration segments than this gets a warning
SILENT_DBFS = -70.0  # a calibration set quieter than this (RMS) gets a warning


# The CPU form keeps only the wide-dynamic-range frontend and the decoder (BiGRU, heads) float.
CPU_FLOAT_SCOPES: tuple[str, ...] = ("/frontend/", "/decoder/")
# Op types the CPU form keeps float wherever they are. BatchNormalization: ORT has no quantized kernel
# (it runs DQ -> BN -> Q either way), and its quantizer would store gamma, beta, mean and variance
# as per-tensor 8-bit "weights" (bundled model: steps up to 1.5 % of a channel's scale).
CPU_FLOAT_OPS: tuple[str, ...] = ("BatchNormalization",)
# A grouped Conv with fewer output channels per group than this runs dense in the CPU form.
# `python benchmarks/grouped_conv.py --int8` (paper preset, one QLinearConv alone, 1 thread, ms at
# the own group count -> dense): MSFE stage 1 3x3/g2 (8 per group) 7.5 -> 2.5, 5x5/g4 (4) 17.5 -> 8.7,
# 7x7/g8 (2) 60.6 -> 8.5; stage 2 7x7/g8 (4) 27.3 -> 8.4, but 5x5/g4 (8) 5.2 -> 8.1 and stage 3
# 7x7/g8 (8) 7.2 -> 11.7 lose. Below 8 rows per group every case measured won.
CPU_MIN_GROUP_OUTPUTS = 8


def fuse_gelu(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` with every erf-form GELU, ``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)`` (torch's
    export below opset 20), replaced by one ``com.microsoft`` ``Gelu`` node (ONNX Runtime's contrib op).

    Why, for the CPU form only: quantized node by node, each GELU became DQ -> Div -> Erf -> Q ->
    QLinearAdd -> QLinearMul -> QLinearMul, seven passes over a full feature map with INT8 rounding
    between them. As one node it is DQ -> Gelu -> Q, and exact in float; ORT's own GeluFusion does
    not fire once Q/DQ nodes sit inside the pattern.
    """
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    nodes = out.graph.node
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    constants = _scalar_constants(out)

    def only_consumer(node: onnx.NodeProto, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(node.output[0], [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def other_input(node: onnx.NodeProto, name: str) -> str | None:
        rest = [i for i in node.input if i != name]
        return rest[0] if len(node.input) == 2 and len(rest) == 1 else None

    def is_const(name: str | None, value: float) -> bool:
        return name in constants and abs(constants[name] - value) < 1e-3

    replaced: dict[int, onnx.NodeProto] = {}  # id(last node of the pattern) -> Gelu
    dropped: set[int] = set()
    for erf in nodes:
        if erf.op_type != "Erf" or erf.input[0] not in producer:
            continue
        div = producer[erf.input[0]]
        x = div.input[0]
        add = only_consumer(erf, "Add")
        mul = add and only_consumer(add, "Mul")
        half = mul and only_consumer(mul, "Mul")
        if not (
            div.op_type == "Div" and is_const(div.input[1], math.sqrt(2.0)) and len(consumers[div.output[0]]) == 1
            and add and is_const(other_input(add, erf.output[0]), 1.0)
            and mul and other_input(mul, add.output[0]) == x
            and half and is_const(other_input(half, mul.output[0]), 0.5)
        ):
            continue
        dropped |= {id(div), id(erf), id(add), id(mul)}
        replaced[id(half)] = onnx.helper.make_node(
            "Gelu", [x], [half.output[0]], name=erf.name.replace("Erf", "Gelu"), domain="com.microsoft"
        )
    if replaced:
        kept = [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]
        used = {i for n in kept for i in n.input} | {o.name for o in out.graph.output}
        kept = [n for n in kept if n.op_type != "Constant" or n.output[0] in used]  # the patterns' sqrt 2, 1, 0.5
        del nodes[:]
        nodes.extend(kept)
        unused = [t for t in out.graph.initializer if t.name not in used]
        for t in unused:
            out.graph.initializer.remove(t)
        if not any(o.domain == "com.microsoft" for o in out.opset_import):
            out.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return out


def densify_grouped_convs(graph: onnx.ModelProto, min_group_outputs: int = CPU_MIN_GROUP_OUTPUTS) -> onnx.ModelProto:
    """Copy of ``graph`` with every grouped Conv that has fewer than ``min_group_outputs`` output channels per
    group rewritten as a dense Conv (``group`` 1) with block-diagonal weights: exact, zeros between the blocks.

    Exact in INT8 too: per-channel weight scales are unchanged (zeros do not move a channel's max) and
    the zeros add nothing to the INT32 accumulators. Why, for the CPU form only: see CPU_MIN_GROUP_OUTPUTS.
    """
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(graph)
    weights = {t.name: t for t in out.graph.initializer}
    users: dict[str, int] = {}
    for n in out.graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    for node in out.graph.node:
        group = next((a for a in node.attribute if a.name == "group"), None)
        if node.op_type != "Conv" or group is None or group.i == 1 or users.get(node.input[1]) != 1:
            continue
        tensor = weights.get(node.input[1])
        if tensor is None or tensor.dims[0] // group.i >= min_group_outputs:
            continue
        w = numpy_helper.to_array(tensor)  # (O, I/g, k...)
        g, o, i = group.i, w.shape[0] // group.i, w.shape[1]
        dense = np.zeros((w.shape[0], i * g, *w.shape[2:]), w.dtype)
        for j in range(g):
            dense[j * o:(j + 1) * o, j * i:(j + 1) * i] = w[j * o:(j + 1) * o]
        tensor.CopyFrom(numpy_helper.from_array(dense, tensor.name))
        group.i = 1
    return out


def _scalar_constants(graph: onnx.ModelProto) -> dict[str, float]:
    """Single-element initializers and Constant outputs, by tensor name."""
    from onnx import numpy_helper

    tensors = [(t.name, t) for t in graph.graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    values = {}
    for name, tensor in tensors:
        if math.prod(tensor.dims) == 1:
            values[name] = float(numpy_helper.to_array(tensor).reshape(-1)[0])
    return values


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
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise MissingDependencyError(
            f"INT8 export needs quantize_static(calibration_cache_path=...) (microsoft/onnxruntime#28221), "
            f"onnxruntime {onnxruntime.__version__} lacks it; upgrade with: pip install -U onnxruntime"
        )
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
        graph = densify_grouped_convs(fuse_gelu(graph))
        op_types = None  # every op type
        excluded = {n.name for n in graph.graph.node
                    if n.op_type in CPU_FLOAT_OPS or any(s in n.name for s in float_scopes)}
        quantized_nodes = {n.name for n in graph.graph.node} - excluded
        options = dict(activation_type=QuantType.QUInt8, extra_options={"WeightSymmetric": True})
    with tempfile.TemporaryDirectory(prefix="glfer-int8-") as tmp, _quiet_ort():
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(graph, str(src))  # quantize_static rewrites a ModelProto argument in place
        ranges = _calibrate(src, Path(tmp), reader, method, quantized_nodes, op_types)
        quantize_static(
            src, out, None, quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types, per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(excluded), calibrate_method=_ort_method(method), calibration_cache_path=ranges,
            **options,
        )
        quantized = onnx.load(str(out))
    summary = {**calibration_summary(reader, method, float_scopes), "target": target}
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
) -> Path:
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
    path = workdir / "ranges.json"
    cal.save_tensors_data(calibrator.compute_data(), path)
    return path


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
