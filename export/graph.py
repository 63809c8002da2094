"""Small ONNX graph helpers shared by the export rewrites (``fp32_cpu``, ``int8_cpu``)."""

from __future__ import annotations

import onnx

__all__ = ["inferred_shapes", "links"]


def inferred_shapes(graph: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Shape of every tensor ONNX shape inference knows: ints, or the symbolic name (``"?"`` if none)."""
    inferred = onnx.shape_inference.infer_shapes(graph)
    return {v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param or "?"
                     for d in v.type.tensor_type.shape.dim]
            for v in (*inferred.graph.value_info, *inferred.graph.input)}


def links(graph: onnx.ModelProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """(producer of each tensor, consumers of each tensor; a node that reads a tensor twice counts twice)."""
    producer = {o: n for n in graph.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producer, consumers
