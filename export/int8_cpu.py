"""Exact FP32-graph rewrites that precede the CPU INT8 form (``model.int8-cpu.onnx``).

onnxruntime quantizes node by node and runs each quantized op with its own INT8 kernel, so the
graph's op choice decides the speed. Each rewrite here is exact in FP32 and puts an op where
ORT's kernel is slow into a form where it is fast (paper preset, 8-s segment, one thread):

* ``fuse_gelu``: each erf-GELU (five nodes) -> one ``com.microsoft`` ``Gelu``, run in float between
  one DQ and one Q instead of seven INT8-rounded passes;
* ``densify_grouped_convs``: grouped Convs with fewer than ``MIN_GROUP_OUTPUTS`` output channels per
  group -> dense Convs with block-diagonal weights (QLinearConv runs a grouped convolution group by
  group with a GEMM that many rows tall; MSFE stage 1 7x7/g8: 71.6 -> 9.1 ms);
* ``pools_as_depthwise_convs``: 2x2/2 AveragePool -> depthwise Conv with weights 1/4
  (alone, U8, 64 x 320 x 100: QLinearAveragePool 7.1 ms, depthwise QLinearConv 0.4 ms;
  ``benchmarks/avgpool_int8.py``).

``prepare_cpu_graph`` applies all of them. TensorRT gets none: its own kernels choose.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["prepare_cpu_graph", "fuse_gelu", "densify_grouped_convs", "pools_as_depthwise_convs", "MIN_GROUP_OUTPUTS"]

# A grouped Conv with fewer output channels per group than this runs dense.
# `python benchmarks/grouped_conv.py --int8 --threads 1` (paper preset, one QLinearConv alone, ms at
# the own group count -> dense; benchmarks/results/cpu-2core-session7): below 8 rows per group dense
# wins every time, 2.7-7.8x (stage 1 5x5/g4 18.6 -> 6.7, 7x7/g8 71.6 -> 9.1; stage 2 7x7/g8 25.3 ->
# 7.7). At 8 rows it wins twice (stage 1 3x3/g2 5.2 -> 1.9, stage 2 5x5/g4 5.5 -> 4.0) and loses
# once (stage 3 7x7/g8 5.2 -> 7.4): about 2 % of a segment net, within this VM's noise; 16 rows lose.
MIN_GROUP_OUTPUTS = 8


def prepare_cpu_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """All the rewrites, on a copy of ``graph``; GELU fusion last, so that ONNX shape inference (which has
    no schema for ORT's contrib ops) sees the whole graph when the pools read their channel counts."""
    return fuse_gelu(pools_as_depthwise_convs(densify_grouped_convs(graph)))


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


def densify_grouped_convs(graph: onnx.ModelProto, min_group_outputs: int = MIN_GROUP_OUTPUTS) -> onnx.ModelProto:
    """Copy of ``graph`` with every grouped, not depthwise, Conv that has fewer than ``min_group_outputs`` output
    channels per group rewritten as a dense Conv (``group`` 1) with block-diagonal weights: exact, zeros
    between the blocks.

    Exact in INT8 too: per-channel weight scales are unchanged (zeros do not move a channel's max) and
    the zeros add nothing to the INT32 accumulators. Why, for the CPU form only: see MIN_GROUP_OUTPUTS.
    """
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
        if tensor is None or tensor.dims[0] // group.i >= min_group_outputs or tensor.dims[1] == 1:
            continue  # wide groups, and depthwise convolutions (ORT has a vectorized depthwise kernel)
        w = numpy_helper.to_array(tensor)  # (O, I/g, k...)
        g, o, i = group.i, w.shape[0] // group.i, w.shape[1]
        dense = np.zeros((w.shape[0], i * g, *w.shape[2:]), w.dtype)
        for j in range(g):
            dense[j * o:(j + 1) * o, j * i:(j + 1) * i] = w[j * o:(j + 1) * o]
        tensor.CopyFrom(numpy_helper.from_array(dense, tensor.name))
        group.i = 1
    return out


def pools_as_depthwise_convs(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` with every 2-D AveragePool whose windows tile its input (kernel = strides, no padding,
    floor mode, no dilation) replaced by a depthwise Conv with weights 1 / (kernel area): the same average.

    Exact in INT8 too: the weight quantizes to 127 with scale 1 / (127 * area); only the output's
    requantization may round one step differently (measured: at most one step).
    """
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    inferred = onnx.shape_inference.infer_shapes(out)
    channels = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input):
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 0:
            channels[v.name] = dims[1].dim_value
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


def _scalar_constants(graph: onnx.ModelProto) -> dict[str, float]:
    """Single-element initializers and Constant outputs, by tensor name."""
    tensors = [(t.name, t) for t in graph.graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    values = {}
    for name, tensor in tensors:
        if math.prod(tensor.dims) == 1:
            values[name] = float(numpy_helper.to_array(tensor).reshape(-1)[0])
    return values


