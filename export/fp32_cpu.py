"""Exact rewrite of the FP32 artifact (``model.fp32.onnx``) for ONNX Runtime's CPU kernels.

* ``depthwise_grouped_convs``: a grouped Conv with a large kernel (MSFE's 7x7 branch, groups 8 in the
  paper preset) -> Concat of its input's copies, one depthwise Conv with a kernel per (output, input)
  pair of a group, and a 1x1 Conv that adds each output's pairs. Same MACs plus the 1x1's. ORT runs a
  grouped Conv group by group, as an im2col of k^2 rows per input channel and a GEMM as many rows tall
  as the group has outputs (2 to 8 here); its depthwise Conv has a dedicated NCHWc kernel. Paper preset,
  each branch alone, 2 threads (min of 12 interleaved runs, ms): stage 1 7x7/g8 63.0 -> 15.9, stage 2
  29.1 -> 9.6, stage 3 24.5 -> 16.5; 5x5/g4 and 3x3/g2 became slower (k^2 MACs per element of the
  intermediate is too little work for its memory traffic), so they stay grouped.

The FP16 and INT8 artifacts derive from the graph before this rewrite: TensorRT chooses its own kernels,
and the CPU INT8 form densifies narrow groups instead (``int8_cpu.densify_grouped_convs``), where INT8
depthwise kernels are slow.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["prepare_fp32_cpu_graph", "depthwise_grouped_convs", "DEPTHWISE_MIN_KERNEL"]

# Grouped Convs whose kernel is at least this large in every dimension become depthwise + sum.
DEPTHWISE_MIN_KERNEL = 7


def prepare_fp32_cpu_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """All the FP32 CPU rewrites, on a copy of ``graph``."""
    return depthwise_grouped_convs(graph)


def depthwise_grouped_convs(graph: onnx.ModelProto, min_kernel: int = DEPTHWISE_MIN_KERNEL) -> onnx.ModelProto:
    """Copy of ``graph`` with every grouped (not depthwise), stride-1, undilated Conv whose kernel is at
    least ``min_kernel`` wide rewritten as depthwise + sum; exact up to summation order. Output o = g Og + s
    of group g is sum_j w[o, j] x[g Cg + j]; pair p = s Cin + i gets input channel i (so the depthwise
    input is Og copies of x, concatenated) and kernel w[(i // Cg) Og + s, i mod Cg]. The last Conv keeps
    the original output name, so per-layer comparisons still line up with the other artifacts."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    weights = {t.name: t for t in out.graph.initializer}
    users = Counter(i for n in out.graph.node for i in n.input)
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if not _rewritable(node, attrs, weights, users, min_kernel):
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


def _rewritable(node: onnx.NodeProto, attrs: dict, weights: dict, users: Counter, min_kernel: int) -> bool:
    """A grouped, not depthwise, stride-1, undilated 2-D Conv with its own constant weight and a large kernel."""
    if node.op_type != "Conv" or users[node.input[1]] != 1 or node.input[1] not in weights:
        return False
    dims = list(weights[node.input[1]].dims)
    return (attrs.get("group", 1) > 1 and len(dims) == 4 and dims[1] > 1 and min(dims[2:]) >= min_kernel
            and all(s == 1 for s in attrs.get("strides", [1])) and all(d == 1 for d in attrs.get("dilations", [1])))
