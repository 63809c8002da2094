"""Small ONNX graph helpers, and the rewrites shared by the CPU artifacts' rewrites (``fp32_cpu``, ``int8_cpu``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = [
    "batchnorms_as_depthwise_convs", "channel_counts", "channel_means_first", "constants", "drop_unused_initializers",
    "inferred_shapes", "links", "merged_groups", "with_merged_groups",
]


def inferred_shapes(graph: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Shape of every tensor ONNX shape inference knows: ints, or the symbolic name (``"?"`` if none)."""
    inferred = onnx.shape_inference.infer_shapes(graph)
    return {v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param or "?"
                     for d in v.type.tensor_type.shape.dim]
            for v in (*inferred.graph.value_info, *inferred.graph.input)}


def channel_counts(graph: onnx.ModelProto) -> dict[str, int]:
    """Channel count of every 4-D tensor whose channel dimension shape inference knows."""
    return {k: d[1] for k, d in inferred_shapes(graph).items() if len(d) == 4 and isinstance(d[1], int) and d[1] > 0}


def links(graph: onnx.ModelProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """(producer of each tensor, consumers of each tensor; a node that reads a tensor twice counts twice)."""
    producer = {o: n for n in graph.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producer, consumers


def constants(graph: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node outputs, by tensor name."""
    tensors = {t.name: t for t in graph.graph.initializer}
    tensors.update({n.output[0]: a.t for n in graph.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"})
    return tensors


def drop_unused_initializers(graph: onnx.ModelProto) -> None:
    """Remove (in place) the initializers that no node reads and no graph output names."""
    used = {i for n in graph.graph.node for i in n.input} | {o.name for o in graph.graph.output}
    for t in [t for t in graph.graph.initializer if t.name not in used]:
        graph.graph.initializer.remove(t)


def merged_groups(w: np.ndarray, group: int, new_group: int) -> np.ndarray:
    """Weights (O, I / group, k...) of a grouped Conv, as weights (O, I / new_group, k...) for ``new_group`` groups
    (a divisor of ``group``): each new group's kernel is block-diagonal over the old groups it merges, zeros
    between the blocks, so the Conv's output is unchanged."""
    o, i, r = w.shape[0] // group, w.shape[1], group // new_group  # r old groups per new one
    out = np.zeros((w.shape[0], i * r, *w.shape[2:]), w.dtype)
    for j in range(group):
        out[j * o:(j + 1) * o, (j % r) * i:(j % r + 1) * i] = w[j * o:(j + 1) * o]
    return out


def with_merged_groups(graph: onnx.ModelProto, new_group: Callable[[int, list[int]], int]) -> onnx.ModelProto:
    """Copy of ``graph`` where each grouped, not depthwise, Conv that owns its constant weight runs with
    ``new_group(group, weight dims)`` groups (a divisor of its group count; the same count leaves it as it
    is), the merged groups' kernels block-diagonal (``merged_groups``): exact. The CPU artifacts' regrouping
    rules (``fp32_cpu.regrouped_convs``, ``int8_cpu.densify_grouped_convs``) are choices of ``new_group``."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    weights = {t.name: t for t in out.graph.initializer}
    users = Counter(i for n in out.graph.node for i in n.input)
    for node in out.graph.node:
        group = next((a for a in node.attribute if a.name == "group"), None)
        tensor = weights.get(node.input[1]) if node.op_type == "Conv" else None
        if group is None or group.i == 1 or tensor is None or users[node.input[1]] != 1 or tensor.dims[1] == 1:
            continue
        new = new_group(group.i, list(tensor.dims))
        if new != group.i:
            merged = merged_groups(numpy_helper.to_array(tensor), group.i, new)
            tensor.CopyFrom(numpy_helper.from_array(merged, tensor.name))
            group.i = new
    return out


def batchnorms_as_depthwise_convs(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` with every BatchNormalization (inference form) on a map of known channel count replaced
    by a depthwise 1x1 Conv with weights gamma / sqrt(var + eps) and bias beta - mean * weight: the same
    per-channel affine map (computed in float64).

    Why, for both CPU artifacts: ORT runs BatchNormalization on one thread, and has no quantized one, so in
    the INT8 form each ran as DQ -> BN -> Q in float, the DQ and the BN on one thread (paper preset, 2
    threads: 4.97 ms for the six BNs, 2.6 % of the INT8 segment). A depthwise Conv runs on both threads, in
    NCHWc (FP32) or as an NHWC QLinearConv (INT8), whose per-channel S8 weights hold each channel's scale
    exactly (it quantizes to 127). The deploy model's remaining BNs follow per-sample attention products
    (ODConv's filter attention, PSA's scale weights), so no static weight can absorb them.
    """
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    tensors = constants(out)
    channels = channel_counts(out)
    for node in out.graph.node:
        params = node.input[1:5]
        if (node.op_type != "BatchNormalization" or len(node.output) != 1 or node.input[0] not in channels
                or not all(p in tensors for p in params)):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(tensors[p]).astype(np.float64) for p in params)
        eps = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        weight, bias = f"{node.name}/depthwise_weight", f"{node.name}/depthwise_bias"
        c = channels[node.input[0]]
        out.graph.initializer.extend([
            numpy_helper.from_array(scale.reshape(c, 1, 1, 1).astype(np.float32), weight),
            numpy_helper.from_array((beta - mean * scale).astype(np.float32), bias),
        ])
        node.CopyFrom(onnx.helper.make_node(
            "Conv", [node.input[0], weight, bias], list(node.output), name=f"{node.name}_as_depthwise_conv", group=c,
            kernel_shape=[1, 1],
        ))
    drop_unused_initializers(out)
    return out


def channel_means_first(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` where every ReduceMean over the channels and a spatial axis of a 4-D map (FR's time and
    frequency descriptors: means over (C, F) and (C, T)) reads the map's channel mean, (B, 1, T, F), instead of
    the map: the same axes, now over one channel. One 1x1 Conv with weights 1/C per map computes it, shared by
    its ReduceMeans. Exact up to summation order.

    Why, for both CPU artifacts: ORT reduces over non-adjacent axes slowly (FR's frequency descriptor,
    (1, 64, 320, 100): 1.6 ms for a 2-thread pass over 8 MB), and has no INT8 ReduceMean, so the INT8
    form ran each on a dequantized copy of the map (DequantizeLinear: one thread). The 1x1 Conv runs on
    both threads, as a QLinearConv in INT8, and the ReduceMeans shrink to 1/C of their input.
    """
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    channels = channel_counts(out)
    tensors = constants(out)
    means: dict[str, str] = {}  # map -> its channel mean
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        axes = _reduce_axes(node, tensors)
        x = node.input[0] if node.op_type == "ReduceMean" else None
        if x not in channels or axes is None or 1 not in axes or not {2, 3} & axes or axes - {1, 2, 3}:
            nodes.append(node)
            continue
        if x not in means:
            weight, means[x] = f"{x}_channel_mean_weight", f"{x}_channel_mean"
            c = channels[x]
            out.graph.initializer.append(numpy_helper.from_array(np.full((1, c, 1, 1), 1.0 / c, np.float32), weight))
            nodes.append(onnx.helper.make_node("Conv", [x, weight], [means[x]], name=f"{node.name}_channel_mean",
                                               kernel_shape=[1, 1]))
        node.input[0] = means[x]
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _reduce_axes(node: onnx.NodeProto, tensors: dict[str, onnx.TensorProto]) -> set[int] | None:
    """A 4-D ReduceMean's axes (non-negative), from its attribute (opset < 18) or constant input; None if unknown."""
    if node.op_type != "ReduceMean":
        return None
    attr = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axes"), None)
    if attr is None and len(node.input) > 1 and node.input[1] in tensors:
        attr = numpy_helper.to_array(tensors[node.input[1]]).tolist()
    return None if not attr else {a % 4 for a in attr}
