"""The CPU INT8 form (``model.int8-cpu.onnx``): exact graph rewrites around onnxruntime's quantizer.

onnxruntime quantizes node by node and runs each quantized op with its own INT8 kernel, so the
graph's op choice decides the speed, and with 2 threads so does whether a kernel uses both: ORT
runs DequantizeLinear, QLinearConcat and a broadcasting QLinearMul on one thread. Each FP32
rewrite here is exact and puts an op where ORT's kernel is slow into a form where it is fast
(paper preset, 8-s segment, one thread unless said):

* ``fuse_gelu``: each erf-GELU (five nodes) -> one ``com.microsoft`` ``Gelu``, run in float between
  one DQ and one Q instead of seven INT8-rounded passes;
* ``densify_grouped_convs``: grouped Convs with fewer than ``MIN_GROUP_OUTPUTS`` output channels per
  group -> dense Convs with block-diagonal weights (QLinearConv runs a grouped convolution group by
  group with a GEMM that many rows tall; MSFE stage 1 7x7/g8: 71.6 -> 9.1 ms);
* ``pools_as_depthwise_convs``: 2x2/2 AveragePool -> depthwise Conv with weights 1/4
  (alone, U8, 64 x 320 x 100: QLinearAveragePool 7.1 ms, depthwise QLinearConv 0.4 ms;
  ``benchmarks/avgpool_int8.py``).
* ``batchnorms_as_depthwise_convs`` (``export/graph.py``, the FP32 artifact's too): BatchNormalization
  (no quantized kernel in ORT: DQ -> BN -> Q in float, on one thread) -> depthwise 1x1 Conv with the
  same per-channel scale and shift (paper preset, 2 threads, whole int8-cpu segment: 1.07x and 1.06x
  per round in two runs of 60 interleaved rounds).

* ``channel_means_first`` (``export/graph.py``, the FP32 artifact's too): FR's means over (C, F) and (C, T),
  which ORT has no INT8 kernel for and ran on a dequantized copy of the map, read its channel mean
  instead, computed by a 1x1 QLinearConv (paper preset, 2 threads, 40 interleaved rounds: 1.07x per round).

* ``expand_broadcast_muls``: a feature map times a smaller gate -> times the gate expanded to the
  map's shape (ORT parallelizes QLinearMul only for equal shapes; 2 threads, 64 x 320 x 100:
  1.7 -> 0.8 ms).

``prepare_cpu_graph`` applies all of them. Around the quantizer (``glfer_edge.export.int8``):

* ``narrow_input_convs`` names the convs that stay float: the stem's first (7 channels; quantized, OpenVINO's
  kernels lose the DOA) and the 1-channel gates on pooled vectors;
* ``differences_as_sums``: AFF's Sub as QLinearMul(-1) + QLinearAdd (exact, bit-identical INT8 outputs);
* ``share_concat_ranges`` gives Concat inputs the output's calibration range (QLinearConcat copies);
* ``movement_ops_on_uint8`` runs Pad and Expand on the quantized bytes;
* ``gelus_as_sigmoid_products``, the one rewrite that is not exact: a GELU on a quantized map as
  x sigmoid(1.702 x), which ORT runs as QLinearSigmoid and QLinearMul instead of DQ -> float Gelu -> Q;
* ``scalar_muls_in_scales``: AFF's factor-2 QLinearMul folded into the readers' scale.

With the LFE edge-term Adds quantized too, these made the int8-cpu form 1.05x faster per round near idle on
a 2-core AMD EPYC Zen 3 (``benchmarks/results/epyc-zen3-2core/int8-cpu-levers.md``). Measured and not kept
(``benchmarks/int8_cpu_variants.py``): ``gelu_bias_adds`` (the edge-term Adds float), ``float_gelus_as_quick_gelu``
(0.98x), MSFE's narrow 7x7 grouped convs as depthwise + sum (``fp32_cpu.depthwise_grouped_convs`` with
``group_outputs_below``; 1.02-1.06x alone, nothing on top of the rest). TensorRT gets none: its own kernels
choose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from glfer_edge.export.graph import (
    batchnorms_as_depthwise_convs, channel_counts, channel_means_first, constants, drop_unused_initializers,
    inferred_shapes, links, with_merged_groups,
)

if TYPE_CHECKING:
    from onnxruntime.quantization.calibrate import TensorsData

__all__ = [
    "prepare_cpu_graph", "fuse_gelu", "differences_as_sums", "scalar_muls_in_scales",
    "float_gelus_as_quick_gelu", "densify_grouped_convs", "pools_as_depthwise_convs", "expand_broadcast_muls",
    "narrow_input_convs", "gelu_bias_adds", "share_concat_ranges", "movement_ops_on_uint8",
    "gelus_as_sigmoid_products", "MIN_GROUP_OUTPUTS", "MIN_QUANTIZED_INPUT_CHANNELS",
    "GELU_SIGMOID_SLOPE",
]

# A grouped Conv with fewer output channels per group than this runs dense.
# `python benchmarks/grouped_conv.py --int8 --threads 1` (paper preset, one QLinearConv alone, ms at
# the own group count -> dense; benchmarks/results/cpu-2core-session7): below 8 rows per group dense
# wins every time, 2.7-7.8x (stage 1 5x5/g4 18.6 -> 6.7, 7x7/g8 71.6 -> 9.1; stage 2 7x7/g8 25.3 ->
# 7.7). At 8 rows it wins twice (stage 1 3x3/g2 5.2 -> 1.9, stage 2 5x5/g4 5.5 -> 4.0) and loses
# once (stage 3 7x7/g8 5.2 -> 7.4): about 2 % of a segment net, within this VM's noise; 16 rows lose.
MIN_GROUP_OUTPUTS = 8
# A Conv reading fewer channels than this stays float in the CPU form (see narrow_input_convs).
MIN_QUANTIZED_INPUT_CHANNELS = 8
# GELU(x) ~ x sigmoid(1.702 x) (Hendrycks & Gimpel 2016), on quantized maps (see gelus_as_sigmoid_products).
GELU_SIGMOID_SLOPE = 1.702


def prepare_cpu_graph(graph: onnx.ModelProto, float_scopes: Iterable[str] = ()) -> onnx.ModelProto:
    """All the rewrites, on a copy of ``graph``; nodes named with one of ``float_scopes`` stay float and keep
    their broadcasts. GELU fusion last, so that ONNX shape inference (which has no schema for ORT's
    contrib ops) sees the whole graph when the pools and Muls read their shapes."""
    graph = batchnorms_as_depthwise_convs(pools_as_depthwise_convs(densify_grouped_convs(graph)))
    graph = channel_means_first(graph)
    return fuse_gelu(expand_broadcast_muls(graph, float_scopes))


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
    producer, consumers = links(out)
    scalars = _scalar_constants(out)

    def only_consumer(node: onnx.NodeProto, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(node.output[0], [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def other_input(node: onnx.NodeProto, name: str) -> str | None:
        rest = [i for i in node.input if i != name]
        return rest[0] if len(node.input) == 2 and len(rest) == 1 else None

    def is_const(name: str | None, value: float) -> bool:
        return name in scalars and abs(scalars[name] - value) < 1e-3

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
        drop_unused_initializers(out)
        if not any(o.domain == "com.microsoft" for o in out.opset_import):
            out.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return out


def densify_grouped_convs(graph: onnx.ModelProto, min_group_outputs: int = MIN_GROUP_OUTPUTS) -> onnx.ModelProto:
    """Copy of ``graph`` with every grouped, not depthwise, Conv that has fewer than ``min_group_outputs`` output
    channels per group rewritten as a dense Conv (``group`` 1) with block-diagonal weights: exact, zeros
    between the blocks.

    Exact in INT8 too: per-channel weight scales are unchanged (zeros do not move a channel's max) and
    the zeros add nothing to the INT32 accumulators. Why, for the CPU form only: see MIN_GROUP_OUTPUTS.
    """
    # depthwise convolutions stay (ORT has a vectorized depthwise kernel), and so do wide groups
    return with_merged_groups(graph, lambda group, dims: 1 if dims[0] // group < min_group_outputs else group)


def pools_as_depthwise_convs(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` with every 2-D AveragePool whose windows tile its input (kernel = strides, no padding,
    floor mode, no dilation) replaced by a depthwise Conv with weights 1 / (kernel area): the same average.

    Exact in INT8 too: the weight quantizes to 127 with scale 1 / (127 * area); only the output's
    requantization may round one step differently (measured: at most one step).
    """
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    channels = channel_counts(out)
    for node in out.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        tiles = (
            len(kernel) == 2 and list(attrs.get("strides", [])) == kernel and not any(attrs.get("pads", [0]))
            and not attrs.get("ceil_mode", 0) and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and all(d == 1 for d in attrs.get("dilations", [1]))
        )
        if node.op_type != "AveragePool" or not tiles or node.input[0] not in channels:
            continue
        c = channels[node.input[0]]
        weight = f"{node.name}/depthwise_weight"
        out.graph.initializer.append(
            numpy_helper.from_array(np.full((c, 1, *kernel), 1.0 / math.prod(kernel), np.float32), weight)
        )
        conv = onnx.helper.make_node(
            "Conv", [node.input[0], weight], list(node.output), name=f"{node.name}_as_depthwise_conv", group=c,
            kernel_shape=kernel, strides=kernel,
        )
        node.CopyFrom(conv)
    return out


def differences_as_sums(graph: onnx.ModelProto, float_scopes: Iterable[str] = ()) -> onnx.ModelProto:
    """Copy of ``graph`` where each Sub of two computed tensors (AFF's x - y) is ``Add(x, Mul(y, -1))``: exact.

    Why, for the CPU form only: ORT has no quantized Sub, so the quantized form ran DQ(x) and DQ(y) (one
    thread each), a float Sub and a Q: four passes over the map; QLinearMul by a scalar and QLinearAdd run
    on all threads, two passes. Subs named with one of ``float_scopes``, or with a constant operand, stay.
    """
    scopes = tuple(float_scopes)
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    consts = constants(out)
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        if (node.op_type != "Sub" or any(s in node.name for s in scopes) or len(node.input) != 2
                or any(i in consts for i in node.input)):
            nodes.append(node)
            continue
        minus_one, negated = f"{node.name}/minus_one", f"{node.output[0]}_negated"
        out.graph.initializer.append(numpy_helper.from_array(np.array(-1.0, np.float32), minus_one))
        nodes.append(onnx.helper.make_node("Mul", [node.input[1], minus_one], [negated], name=f"{node.name}_negate"))
        nodes.append(onnx.helper.make_node("Add", [node.input[0], negated], list(node.output), name=node.name))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def scalar_muls_in_scales(quantized: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of a QDQ graph where each ``DQ(x) -> Mul by a positive constant c -> Q`` whose output only DQs read
    (AFF's factor 2) is gone: the readers take x's bytes with x's zero point and scale times c. Exact up to the
    Q's rounding (one step fewer); saves a QLinearMul pass over the map."""
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    nodes = out.graph.node
    producer, consumers = links(out)
    consts = constants(out)
    graph_outputs = {o.name for o in out.graph.output}

    def constant_value(name: str) -> float | None:
        node = producer.get(name)
        if name in consts and math.prod(consts[name].dims) == 1:
            return float(numpy_helper.to_array(consts[name]).reshape(-1)[0])
        if node is not None and node.op_type == "DequantizeLinear" and all(i in consts for i in node.input):
            q, scale, *zero = (numpy_helper.to_array(consts[i]).astype(np.float64) for i in node.input)
            if q.size == 1:
                return float((q.reshape(-1)[0] - (zero[0].reshape(-1)[0] if zero else 0)) * scale.reshape(-1)[0])
        return None

    dropped: set[int] = set()
    for node in nodes:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        values = [constant_value(i) for i in node.input]
        if sum(v is not None for v in values) != 1:
            continue
        c = next(v for v in values if v is not None)
        x = node.input[values.index(None)]
        dq, users = producer.get(x), consumers.get(node.output[0], [])
        if (c <= 0 or dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or dq.input[1] not in consts
                or len(users) != 1 or users[0].op_type != "QuantizeLinear"):
            continue
        q = users[0]
        readers = consumers.get(q.output[0], [])
        if not readers or q.output[0] in graph_outputs or any(r.op_type != "DequantizeLinear" for r in readers):
            continue
        scale = f"{node.name}/folded_scale"
        out.graph.initializer.append(numpy_helper.from_array(
            (numpy_helper.to_array(consts[dq.input[1]]) * np.float32(c)).astype(np.float32), scale))
        for reader in readers:
            reader.input[0], reader.input[1], reader.input[2] = dq.input[0], scale, dq.input[2]
        dropped |= {id(node), id(q)}
        if len(consumers[dq.output[0]]) == 1:
            dropped.add(id(dq))
    kept = [n for n in nodes if id(n) not in dropped]
    del nodes[:]
    nodes.extend(kept)
    drop_unused_initializers(out)
    return out


def float_gelus_as_quick_gelu(graph: onnx.ModelProto, slope: float = GELU_SIGMOID_SLOPE) -> onnx.ModelProto:
    """Copy of ``graph`` where each ``com.microsoft`` ``Gelu`` left in float (the stem's, and those after the LFE
    edge terms) is ORT's ``QuickGelu``, x sigmoid(``slope`` x) in one pass: the approximation
    ``gelus_as_sigmoid_products`` takes on quantized maps (off by at most 0.0203). Why: ORT's erf Gelu took
    34 ms on the stem's (1, 32, 640, 200) map where QuickGelu took 16 (2 threads, loaded machine)."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    for node in out.graph.node:
        if node.op_type == "Gelu" and node.domain == "com.microsoft":
            quick = onnx.helper.make_node("QuickGelu", list(node.input), list(node.output), name=node.name,
                                          domain="com.microsoft", alpha=slope)
            node.CopyFrom(quick)
    return out


def _scalar_constants(graph: onnx.ModelProto) -> dict[str, float]:
    """Single-element initializers and Constant outputs, by tensor name."""
    return {name: float(numpy_helper.to_array(t).reshape(-1)[0])
            for name, t in constants(graph).items() if math.prod(t.dims) == 1}


def expand_broadcast_muls(graph: onnx.ModelProto, float_scopes: Iterable[str] = ()) -> onnx.ModelProto:
    """Copy of ``graph`` where each Mul of a feature map by a smaller gate that broadcasts over it (FR's axis gates,
    PSA's scale weights, ODConv's filter attention) multiplies by the gate expanded to the map's shape.

    Exact. Why, for the CPU form only: ORT parallelizes ``QLinearMul`` only over inputs of one shape; a
    broadcast one runs on one thread (paper preset, 2 threads: 1.7 ms for a (1, 64, 320, 100) map times
    a (1, 64, 1, 1) gate; the U8 Expand and a same-shape QLinearMul 0.8 ms). Gates with one value per
    sample (ODConv's spatial attention) broadcast as a scalar, which ORT parallelizes: left alone, as
    are the Muls named with one of ``float_scopes`` (float Mul broadcasts on all threads) and those
    that feed a Pad (ODConv's input attention before its im2col): ORT's layout optimizer moves its
    NHWC transposes through a Mul but not through an Expand, and the transpose it then leaves on the
    im2col columns (4.4 ms in stage 1) costs more than the one-thread Mul (1.0 ms).
    """
    scopes = tuple(float_scopes)
    padded = {n.input[0] for n in graph.graph.node if n.op_type == "Pad"}
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    shapes = inferred_shapes(out)
    nodes = []
    for node in out.graph.node:
        quantized = node.op_type == "Mul" and not any(scope in node.name for scope in scopes)
        quantized = quantized and node.output[0] not in padded
        a, b = (shapes.get(i) for i in node.input[:2]) if quantized else (None, None)
        if a is None or b is None or len(a) != len(b) or a == b:
            nodes.append(node)
            continue
        if _broadcasts_into(b, a):
            big, gate = node.input[0], node.input[1]
        elif _broadcasts_into(a, b):
            big, gate = node.input[1], node.input[0]
        else:
            nodes.append(node)
            continue
        # Expand broadcasts both ways: a constant shape with 1 wherever the gate has its own size keeps the
        # batch dynamic and reads no tensor (a Shape of the quantized map would cost it a DQ pass).
        target = [m if g == 1 else 1 for g, m in zip(shapes[gate], shapes[big])]
        if all(d == 1 for d in shapes[gate][1:]) or not all(isinstance(d, int) for d in target):
            nodes.append(node)  # one value per sample (a scalar broadcast), or a size known only at run time
            continue
        shape, expanded = f"{node.name}/expand_shape", f"{node.name}/expanded_gate"
        out.graph.initializer.append(numpy_helper.from_array(np.array(target, np.int64), shape))
        nodes.append(onnx.helper.make_node("Expand", [gate, shape], [expanded], name=f"{node.name}_expand_gate"))
        node.input[list(node.input).index(gate)] = expanded
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _broadcasts_into(small: list, big: list) -> bool:
    """Whether a tensor of shape ``small`` broadcasts to ``big`` (same rank) and is smaller."""
    return all(s == 1 or s == b for s, b in zip(small, big)) and any(s == 1 and b != 1 for s, b in zip(small, big))


def narrow_input_convs(graph: onnx.ModelProto, min_channels: int = MIN_QUANTIZED_INPUT_CHANNELS) -> list[str]:
    """Names of the Convs that read fewer than ``min_channels`` channels, and of the GELU each one alone feeds:
    nodes the CPU form keeps float. In GLFER-Net: the stem's first conv (7 feature channels) with its
    GELU, and the 1-channel Conv1d gates of FR and SE on pooled vectors (tiny either way).

    Why (paper preset, 8-s segment, 2 threads, ORT profiles of the form without this rule, session 18):
    the stem's first conv took about 10 ms as QLinearConv and 4-6 ms as ORT's float NCHWc conv, and its
    GELU about 10 ms as DQ -> Gelu -> Q (on 640 x 200 x 32, the DQ on one thread) against 4-5 ms in float.
    """
    weights = {t.name: t for t in graph.graph.initializer}
    _, consumers = links(graph)
    names = []
    for n in graph.graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in weights:
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if weights[n.input[1]].dims[1] * group >= min_channels:
            continue
        names.append(n.name)
        users = consumers.get(n.output[0], [])
        if len(users) == 1 and users[0].op_type == "Gelu":
            names.append(users[0].name)
    return names


def gelu_bias_adds(graph: onnx.ModelProto) -> list[str]:
    """Names of the Adds of a constant that lead, alone or in a chain, into a GELU: nodes the CPU form keeps
    float (the fused LFE units' edge terms, ``glfer_edge.model.lfe.FusedLFE``).

    Why: quantized, each is a QLinearAdd with a Q and a DQ around it, three passes over the feature
    map where float needs one; the GELU runs in float between a DQ and a Q either way.
    """
    constant_names = {t.name for t in graph.graph.initializer}
    constant_names |= {o for n in graph.graph.node if n.op_type == "Constant" for o in n.output}
    producer, consumers = links(graph)
    names = []
    for gelu in (n for n in graph.graph.node if n.op_type == "Gelu"):
        node = producer.get(gelu.input[0])
        while (
            node is not None and node.op_type == "Add" and len(consumers[node.output[0]]) == 1
            and sum(i in constant_names for i in node.input) == 1
        ):
            names.append(node.name)
            node = producer.get(next(i for i in node.input if i not in constant_names))
    return names


def share_concat_ranges(graph: onnx.ModelProto, ranges: TensorsData) -> TensorsData:
    """Give each Concat input that feeds nothing else the Concat output's calibration range (in place;
    returns ``ranges``).

    ORT's ``QLinearConcat`` requantizes an input whose scale or zero point differs from the output's
    through a lookup table; with equal parameters it copies. The output's range quantizes the
    concatenated tensor anyway: an input without other consumers loses only a step that the Concat
    rounds away. (The quantizer gives an Unsqueeze or Reshape output its input's scale whatever the
    range says: PSA's stacked branches keep theirs.)
    """
    _, consumers = links(graph)
    for n in graph.graph.node:
        if n.op_type != "Concat" or n.output[0] not in ranges:
            continue
        for i in n.input:
            if i in ranges and len(consumers[i]) == list(n.input).count(i):
                ranges.data[i] = ranges[n.output[0]]
    return ranges


def movement_ops_on_uint8(quantized: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of a QDQ graph where each zero Pad and each Expand between a DequantizeLinear and a QuantizeLinear
    reads the quantized tensor and keeps its scale and zero point: ``DQ -> Pad -> Q`` becomes a Pad on
    U8 with the zero point as pad value. Exact: values only move, and 0.0 quantizes to the zero point.

    Why: ORT runs such a Pad (ODConv's im2col) in float, its DQ on one thread, and runs an Expand on
    U8 only when both sides share one scale, which the quantizer does not give a Softmax output.
    """
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    nodes = out.graph.node
    producer, consumers = links(out)
    scalars = _scalar_constants(out)
    dropped: set[int] = set()
    for node in nodes:
        if node.op_type not in ("Pad", "Expand"):
            continue
        dq, users = producer.get(node.input[0]), consumers.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        q, readers = users[0], consumers.get(users[0].output[0], [])
        if not readers or any(r.op_type != "DequantizeLinear" for r in readers) or len(dq.input) < 3:
            continue  # (a DQ without zero point input: not the quantizer's form)
        if node.op_type == "Pad":
            if len(node.input) > 3:
                continue  # an axes input (opset 18): not the exporter's form
            mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
            value = node.input[2] if len(node.input) > 2 else ""
            if mode != b"constant" or (value and scalars.get(value) != 0.0):
                continue
            del node.input[2:]
            node.input.append(dq.input[2])  # the zero point: 0.0 quantized
        node.input[0] = dq.input[0]
        node.output[0] = q.output[0]
        for reader in readers:
            reader.input[1], reader.input[2] = dq.input[1], dq.input[2]
        dropped.add(id(q))
        if len(consumers[dq.output[0]]) == 1:
            dropped.add(id(dq))
    kept = [n for n in nodes if id(n) not in dropped]
    del nodes[:]
    nodes.extend(kept)
    drop_unused_initializers(out)  # the dropped Qs' scales and zero points
    return out


def gelus_as_sigmoid_products(quantized: onnx.ModelProto, slope: float = GELU_SIGMOID_SLOPE) -> onnx.ModelProto:
    """Copy of a QDQ graph where each ``DQ -> Gelu`` on a quantized tensor becomes ``x * sigmoid(slope * x)``
    (Hendrycks & Gimpel's sigmoid form of GELU): the sigmoid reads the same U8 bytes through a
    DequantizeLinear of scale ``slope * s`` (the slope lives in the scale, no extra pass) and is quantized to
    1/255 steps, so ORT runs QLinearSigmoid (a 256-entry table) and QLinearMul, both on both threads.

    Not exact: the approximation is off by at most 0.0203 (at |x| = 2.27), under 0.6 of the finest GELU
    output step in the bundled model's int8-cpu graph (steps 0.036 to 0.23): of the order of the rounding
    the Q after it adds anyway. Why: ORT has no INT8 GELU, so the exact form runs DQ (one thread) ->
    float Gelu -> Q. Paper preset, 2 threads, 30 interleaved rounds: 1.06x per round for the segment;
    the bundled model's parity against FP32 on 16 held-out scenes moved from 0.9971 / 2.81 deg / +0.004
    (SED agreement, DOA, SELD delta) to 0.9968 / 2.87 deg / -0.001. GELUs whose input is float
    (``gelu_bias_adds``, the float stem) stay exact.
    """
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    producer, _ = links(out)
    consts = constants(out)
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        dq = producer.get(node.input[0]) if node.op_type == "Gelu" else None
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or dq.input[1] not in consts:
            nodes.append(node)
            continue
        x, scale, zero = dq.input
        p = f"{node.output[0]}_sigmoid"
        out.graph.initializer.extend([
            numpy_helper.from_array(np.float32(numpy_helper.to_array(consts[scale]) * slope), f"{p}_x_scale"),
            numpy_helper.from_array(np.float32(1 / 255), f"{p}_scale"),  # code 255 is 1.0: large x pass unchanged
            numpy_helper.from_array(np.uint8(0), f"{p}_zero"),
        ])
        nodes += [
            onnx.helper.make_node("DequantizeLinear", [x, f"{p}_x_scale", zero], [f"{p}_input"], name=f"{p}_dq_input"),
            onnx.helper.make_node("Sigmoid", [f"{p}_input"], [f"{p}_float"], name=p),
            onnx.helper.make_node("QuantizeLinear", [f"{p}_float", f"{p}_scale", f"{p}_zero"], [f"{p}_u8"],
                                  name=f"{p}_q"),
            onnx.helper.make_node("DequantizeLinear", [f"{p}_u8", f"{p}_scale", f"{p}_zero"], [p], name=f"{p}_dq"),
            onnx.helper.make_node("Mul", [node.input[0], p], list(node.output), name=node.name),
        ]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
