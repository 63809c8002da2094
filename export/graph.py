"""Small ONNX graph helpers shared by the export rewrites (``fp32_cpu``, ``int8_cpu``)."""

from __future__ import annotations

import onnx

__all__ = ["constants", "drop_unused_initializers", "inferred_shapes", "links"]


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
