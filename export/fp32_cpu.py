"""Exact rewrite of the FP32 artifact (``model.fp32.onnx``) for ONNX Runtime's CPU kernels.

* ``depthwise_grouped_convs``: a grouped Conv with a large kernel (MSFE's 7x7 branch, groups 8 in the
  paper preset) -> Concat of its input's copies, one depthwise Conv with a kernel per (output, input)
  pair of a group, and a 1x1 Conv that adds each output's pairs. Same MACs plus the 1x1's. ORT runs a
  grouped Conv group by group, as an im2col of k^2 rows per input channel and a GEMM as many rows tall
  as the group has outputs (2 to 8 here); its depthwise Conv has a dedicated NCHWc kernel. Paper preset,
  each branch alone, 2 threads (min of 12 interleaved runs, ms): stage 1 7x7/g8 63.0 -> 15.9, stage 2
  29.1 -> 9.6, stage 3 24.5 -> 16.5; 5x5/g4 and 3x3/g2 became slower (k^2 MACs per element of the
  intermediate is too little work for its memory traffic), so they stay grouped.
* ``regrouped_convs``: a grouped Conv of a mid-size kernel (MSFE's 5x5 branch, groups 4) with fewer outputs
  per group than one NCHWc block (16 channels with AVX-512, 8 with AVX2) -> fewer groups, the largest count
  whose groups fill whole blocks, down to dense (block-diagonal weights, zeros between the blocks). More
  MACs, but ORT's NCHWc kernel instead of its group-by-group im2col. Paper preset, each branch alone, 2
  threads (median of 10 runs, ms; ``python benchmarks/grouped_conv.py``): stage 1 5x5/g4 15.9 -> 9.1 (dense),
  stage 2 8.6 -> 5.1 (groups 2); the 3x3/g2 branches lose (stage 1 7.9 -> 9.0 dense: k^2 = 9 rows of
  im2col is cheap), so the rewrite takes kernels from ``REGROUP_MIN_KERNEL`` up to the depthwise ones.
  Whole segment, 40 interleaved rounds: 1.03x per round.
* ``im2col_convs``: ODConv's shifted formulation gathers the k^2 views of its padded input with a Pad and
  k^2 Slices (ORT runs Slice on one thread), scales each by its spatial attention and concatenates them
  for a 1x1 Conv. The rewrite gathers them with one grouped Conv of one-hot kernels (group = C, k^2
  outputs per channel: channel-major columns) and permutes the 1x1 kernel's columns to match. Paper
  preset, the gather alone, 2 threads (min of 30 interleaved runs): stage 1 9.4 -> 4.2 ms, stage 2 4.8 ->
  2.2, stage 3 2.6 -> 1.4. Since session 21 the attentions scale the kernel, not the columns: each
  sample's (Cout, C k^2) kernel times its k^2 attentions tiled over the channels (a Mul on a few
  thousand values), then one batched MatMul over the columns. This drops a Mul over the (C k^2)-channel
  map and the NCHWc reorder before the 1x1 Conv (stage 1 profile: 24 -> 13 ms for the ODConv), at a
  MatMul somewhat slower per MAC than the NCHWc Conv; whole segment, 60 interleaved rounds: 1.05x per
  round.
* ``factored_gates``: FR's x g_t + x g_c + x g_f (three gates that broadcast over x) -> x ((g_t + g_c) + g_f):
  the gates add on (1, C, T, 1) and one full-size write, and the map is multiplied once; 2 writes of the
  map instead of 5 (whole segment, 40 interleaved rounds: 1.04x per round). Not in the INT8 form, where
  the full-size gate sum runs as a broadcasting QLinearAdd on one thread (session 20: 0.97-0.99x there).
* ``channel_means_first`` (``graph.py``, shared with the INT8 CPU form): FR's means over (C, F) and (C, T)
  read one 1x1 Conv's channel mean instead of the map (1.01x per round here, 1.07x in the INT8 form).
* ``batchnorms_as_depthwise_convs`` (``graph.py``, shared with the INT8 CPU form): the BatchNormalizations
  ORT runs on one thread -> depthwise 1x1 Convs (paper preset, whole segment, 2 threads: 1.04x per round,
  60 interleaved rounds).

The FP16 and INT8 artifacts derive from the graph before this rewrite: TensorRT chooses its own kernels,
and the CPU INT8 form densifies narrow groups instead (``int8_cpu.densify_grouped_convs``), where INT8
depthwise kernels are slow.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from glfer_edge.export.graph import (
    batchnorms_as_depthwise_convs, channel_means_first, constants, drop_unused_initializers, inferred_shapes, links,
    with_merged_groups,
)

__all__ = [
    "prepare_fp32_cpu_graph", "depthwise_grouped_convs", "regrouped_convs", "im2col_convs", "factored_gates",
    "DEPTHWISE_MIN_KERNEL", "REGROUP_MIN_KERNEL", "NCHWC_BLOCK",
]

# Grouped Convs whose kernel is at least this large in every dimension become depthwise + sum.
DEPTHWISE_MIN_KERNEL = 7
# Smaller grouped Convs whose kernel is at least this large get fewer groups, each filling whole NCHWc blocks.
REGROUP_MIN_KERNEL = 5
# Channels per block of ORT's NCHWc kernels: 16 with AVX-512; a multiple of 16 also fills AVX2's blocks of 8.
NCHWC_BLOCK = 16


def prepare_fp32_cpu_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """All the FP32 CPU rewrites, on a copy of ``graph``."""
    graph = im2col_convs(regrouped_convs(depthwise_grouped_convs(graph)))
    return channel_means_first(batchnorms_as_depthwise_convs(factored_gates(graph)))


def depthwise_grouped_convs(graph: onnx.ModelProto, min_kernel: int = DEPTHWISE_MIN_KERNEL,
                            group_outputs_below: int | None = None) -> onnx.ModelProto:
    """Copy of ``graph`` with every grouped (not depthwise), stride-1, undilated Conv whose kernel is at
    least ``min_kernel`` wide rewritten as depthwise + sum; exact up to summation order. Output o = g Og + s
    of group g is sum_j w[o, j] x[g Cg + j]; pair p = s Cin + i gets input channel i (so the depthwise
    input is Og copies of x, concatenated) and kernel w[(i // Cg) Og + s, i mod Cg]. The last Conv keeps
    the original output name, so per-layer comparisons still line up with the other artifacts.
    ``group_outputs_below``: only Convs whose groups have fewer outputs than this (the int8-cpu lever
    ``benchmarks/int8_cpu_variants.py`` measures)."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    weights = {t.name: t for t in out.graph.initializer}
    users = Counter(i for n in out.graph.node for i in n.input)
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if not _rewritable(node, attrs, weights, users, min_kernel, group_outputs_below):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        group, (cout, cg), x, y = attrs["group"], w.shape[:2], node.input[0], node.output[0]
        cin, og = cg * group, cout // group
        i = np.tile(np.arange(cin), og)
        o = (i // cg) * og + np.repeat(np.arange(og), cin)
        dw_name, sum_name = f"{node.input[1]}_depthwise", f"{node.input[1]}_sum"
        out.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[o, i % cg][:, None]), dw_name))
        out.graph.initializer.append(numpy_helper.from_array(
            (o[None] == np.arange(cout)[:, None]).astype(w.dtype)[:, :, None, None], sum_name))
        keep = {k: v for k, v in attrs.items() if k in ("pads", "kernel_shape", "auto_pad")}
        if og > 1:
            nodes.append(helper.make_node("Concat", [x] * og, [f"{y}_copies"], name=f"{node.name}_copies", axis=1))
            x = f"{y}_copies"
        nodes.append(helper.make_node("Conv", [x, dw_name], [f"{y}_pairs"], name=f"{node.name}_depthwise",
                                      group=og * cin, **keep))
        nodes.append(helper.make_node("Conv", [f"{y}_pairs", sum_name, *node.input[2:]], [y], name=f"{node.name}_sum"))
        out.graph.initializer.remove(weights[node.input[1]])
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _rewritable(node: onnx.NodeProto, attrs: dict, weights: dict, users: Counter, min_kernel: int,
                group_outputs_below: int | None = None) -> bool:
    """A grouped, not depthwise, stride-1, undilated 2-D Conv with its own constant weight and a large kernel
    (and narrow groups, with ``group_outputs_below``)."""
    if node.op_type != "Conv" or users[node.input[1]] != 1 or node.input[1] not in weights:
        return False
    dims = list(weights[node.input[1]].dims)
    group = attrs.get("group", 1)
    if group_outputs_below is not None and len(dims) == 4 and dims[0] // group >= group_outputs_below:
        return False
    return (group > 1 and len(dims) == 4 and dims[1] > 1 and min(dims[2:]) >= min_kernel
            and all(s == 1 for s in attrs.get("strides", [1])) and all(d == 1 for d in attrs.get("dilations", [1])))


def regrouped_convs(graph: onnx.ModelProto, min_kernel: int = REGROUP_MIN_KERNEL,
                    max_kernel: int = DEPTHWISE_MIN_KERNEL - 1, block: int = NCHWC_BLOCK) -> onnx.ModelProto:
    """Copy of ``graph`` with every grouped, not depthwise, Conv whose kernel lies between ``min_kernel`` and
    ``max_kernel`` and whose groups have fewer than ``block`` outputs rewritten with fewer groups: the largest
    divisor of its group count whose groups have a multiple of ``block`` outputs, else 1 (dense). Exact: the
    merged groups' kernels are block-diagonal (``graph.with_merged_groups``)."""
    def new_group(group: int, dims: list[int]) -> int:
        cout, kernel = dims[0], dims[2:]
        if len(kernel) != 2 or min(kernel) < min_kernel or max(kernel) > max_kernel or (cout // group) % block == 0:
            return group  # another kernel size, or groups that already fill whole blocks
        return max(g for g in range(1, group + 1) if group % g == 0 and ((cout // g) % block == 0 or g == 1))

    return with_merged_groups(graph, new_group)


def factored_gates(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` with every Add of two products by one shared tensor, x a + x b, where a and b are gates
    that broadcast over x (smaller in some dimension, never larger), rewritten as x (a + b); repeated until none
    is left, so sums of more products nest. Exact up to rounding. The Mul keeps the Add's output name."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    while True:
        producer, readers = links(out)
        for o in out.graph.output:  # a graph output is read too
            readers.setdefault(o.name, []).append(o)
        shapes = inferred_shapes(out)
        position = {n.output[0]: i for i, n in enumerate(out.graph.node)}
        rewrites = {}  # a node's first output -> nodes in its place ([] drops it)
        for add in out.graph.node:
            muls = [producer.get(i) for i in add.input]
            if add.op_type != "Add" or len(muls) != 2 or not all(_single_product(m, readers) for m in muls):
                continue
            shared = [i for i in muls[0].input if i in muls[1].input]
            if len(set(shared)) != 1 or muls[0] is muls[1]:
                continue
            x = shared[0]
            gates = [next(i for i in m.input if i != x) if len(set(m.input)) == 2 else None for m in muls]
            if None in gates or not all(_broadcasts_over(shapes.get(g), shapes.get(x)) for g in gates):
                continue
            y = add.output[0]
            first, last = sorted(muls, key=lambda m: position[m.output[0]])
            rewrites[first.output[0]] = []
            rewrites[last.output[0]] = [helper.make_node("Add", gates, [f"{y}_gates"], name=f"{add.name}_gates")]
            rewrites[y] = [helper.make_node("Mul", [x, f"{y}_gates"], [y], name=add.name)]
        if not rewrites:
            return out
        nodes = [new for n in out.graph.node for new in rewrites.get(n.output[0], [n])]
        del out.graph.node[:]
        out.graph.node.extend(nodes)


def _single_product(node: onnx.NodeProto | None, readers: dict) -> bool:
    return node is not None and node.op_type == "Mul" and len(readers.get(node.output[0], [])) == 1


def _broadcasts_over(gate: list | None, x: list | None) -> bool:
    """``gate``'s shape broadcasts over ``x``'s without growing it, and is smaller in some dimension."""
    if not gate or not x or len(gate) != len(x) or "?" in gate or "?" in x:
        return False
    return all(g in (d, 1) for g, d in zip(gate, x)) and any(g == 1 and d != 1 for g, d in zip(gate, x))


def im2col_convs(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``graph`` with every Pad -> k^2 Slices -> Muls by per-sample scalars -> Concat -> 1x1 Conv
    (an im2col with attention, ODConv's shifted formulation) gathered by a one-hot grouped Conv instead,
    and the scales applied to per-sample copies of the 1x1 kernel, (B, Cout, C k^2), which a batched
    MatMul applies to the (B, C k^2, H W) columns; exact up to summation order. Column c k^2 + t of the
    new gather is view t of channel c, so the scales are tiled C times and the 1x1 kernel's column t C + c
    moves to c k^2 + t. The last node keeps the 1x1 Conv's output name; the Concat's output, in the other
    column order, is gone."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    consts = constants(out)
    producer, readers = links(out)
    shapes = inferred_shapes(out)
    dropped, added = set(), {}  # node names out; the 1x1 Conv's name -> its replacement nodes
    for concat in out.graph.node:
        match = _im2col(concat, producer, readers, consts, shapes)
        if match is None:
            continue
        pad, slices, muls, scales, conv, k, p = match
        x, y = pad.input[0], conv.output[0]
        w = numpy_helper.to_array(consts[conv.input[1]])
        c = w.shape[1] // (k * k)
        onehot = np.zeros((c * k * k, 1, k, k), w.dtype)
        onehot[np.arange(c * k * k), 0, np.tile(np.arange(k * k) // k, c), np.tile(np.arange(k * k) % k, c)] = 1
        permuted = w.reshape(w.shape[0], k * k, c).transpose(0, 2, 1).reshape(w.shape)  # (t, c) -> (c, t) columns
        cout, (h, w_) = w.shape[0], shapes[x][2:]
        names = {n: f"{y}_{n}" for n in ("onehot", "cols", "scales", "tiled", "reps", "weight", "rows", "columns",
                                         "kernels", "product", "cols_shape", "rows_shape", "y_shape")}
        out.graph.initializer.extend([
            numpy_helper.from_array(onehot, names["onehot"]),
            numpy_helper.from_array(np.array([1, c, 1, 1], np.int64), names["reps"]),
            numpy_helper.from_array(np.ascontiguousarray(permuted.reshape(cout, c * k * k)), names["weight"]),
            numpy_helper.from_array(np.array([0, c * k * k, h * w_], np.int64), names["cols_shape"]),
            numpy_helper.from_array(np.array([0, 1, c * k * k], np.int64), names["rows_shape"]),
            numpy_helper.from_array(np.array([0, cout, h, w_], np.int64), names["y_shape"]),
        ])
        product = names["product"]
        bias = []
        if len(conv.input) > 2 and conv.input[2]:
            b = numpy_helper.to_array(consts[conv.input[2]]).reshape(cout, 1)
            out.graph.initializer.append(numpy_helper.from_array(b, f"{y}_bias"))
            bias = [helper.make_node("Add", [product, f"{y}_bias"], [f"{y}_biased"], name=f"{conv.name}_bias")]
            product = f"{y}_biased"
        added[conv.name] = [
            helper.make_node("Conv", [x, names["onehot"]], [names["cols"]], name=f"{conv.name}_im2col", group=c,
                             kernel_shape=[k, k], pads=[p] * 4),
            helper.make_node("Reshape", [names["cols"], names["cols_shape"]], [names["columns"]],
                             name=f"{conv.name}_columns"),
            helper.make_node("Concat", scales, [names["scales"]], name=f"{conv.name}_scales", axis=1),
            helper.make_node("Tile", [names["scales"], names["reps"]], [names["tiled"]], name=f"{conv.name}_tile"),
            helper.make_node("Reshape", [names["tiled"], names["rows_shape"]], [names["rows"]],
                             name=f"{conv.name}_rows"),
            helper.make_node("Mul", [names["weight"], names["rows"]], [names["kernels"]], name=f"{conv.name}_kernels"),
            helper.make_node("MatMul", [names["kernels"], names["columns"]], [names["product"]], name=conv.name),
            *bias,
            helper.make_node("Reshape", [product, names["y_shape"]], [y], name=f"{conv.name}_map"),
        ]
        dropped |= {n.name for n in (pad, concat, conv, *slices, *muls)}
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        if node.name in added:
            nodes.extend(added[node.name])
        elif node.name not in dropped:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    drop_unused_initializers(out)  # the replaced 1x1 kernels and the Pads' and Slices' arguments
    return out


def _im2col(concat, producer, readers, consts, shapes):
    """The pattern's nodes, kernel size and padding if ``concat`` ends an im2col with per-sample scales."""
    if concat.op_type != "Concat" or helper.get_attribute_value(concat.attribute[0]) != 1:
        return None
    convs = readers.get(concat.output[0], [])
    k = int(round(len(concat.input) ** 0.5))
    if k < 2 or k * k != len(concat.input) or len(convs) != 1 or convs[0].op_type != "Conv":
        return None
    conv = convs[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    if conv.input[1] not in consts or attrs.get("group", 1) != 1 or list(consts[conv.input[1]].dims[2:]) != [1, 1]:
        return None
    muls = [producer.get(i) for i in concat.input]
    if any(m is None or m.op_type != "Mul" or len(readers[m.output[0]]) != 1 for m in muls):
        return None
    slices = [producer.get(m.input[0]) for m in muls]
    if any(s is None or s.op_type != "Slice" or len(readers[s.output[0]]) != 1 for s in slices):
        return None
    pad = producer.get(slices[0].input[0])
    if pad is None or pad.op_type != "Pad" or any(s.input[0] != pad.output[0] for s in slices):
        return None
    if len(readers[pad.output[0]]) != k * k or len(pad.input) < 2 or pad.input[1] not in consts:
        return None
    if (len(pad.input) > 2 and pad.input[2]) or any(a.name == "mode" and a.s != b"constant" for a in pad.attribute):
        return None  # a pad value other than zero, or reflect/edge padding
    p = (k - 1) // 2
    if list(numpy_helper.to_array(consts[pad.input[1]])) != [0, 0, p, p, 0, 0, p, p]:
        return None
    size = shapes.get(pad.input[0], [])[2:]
    if len(size) != 2 or not all(isinstance(d, int) and d > 0 for d in size):
        return None  # the views must be "same" convolutions' windows: H x W of the unpadded input
    for t, s in enumerate(slices):
        args = [numpy_helper.to_array(consts[i]).tolist() if i in consts else None for i in s.input[1:5]]
        starts, _, axes, steps = args + [None] * (4 - len(args))
        if starts != [t // k, t % k] or axes != [2, 3] or steps not in (None, [1, 1]):
            return None
        if shapes.get(s.output[0], [])[2:] != size:
            return None
    scales = [m.input[1] for m in muls]
    if any(shapes.get(name, [])[1:] != [1, 1, 1] for name in scales):
        return None  # one scale per sample and view, or the tiling would misplace them
    return pad, slices, muls, scales, conv, k, p
