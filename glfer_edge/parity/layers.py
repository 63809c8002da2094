"""First divergent layer of two ONNX graphs (ONNX vs ONNX): which layer to keep at higher precision.

``locate_divergence`` is Polygraphy's ``--onnx-outputs mark all`` in one call: it marks every
intermediate tensor both graphs compute, runs both with onnxruntime, walks A in topological order
and names the first layer whose output leaves the row's :class:`~glfer_edge.tolerances.LayerTolerance`.
Quantized graphs are mapped onto A's names through their Q/DQ pairs and casts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge.errors import InputError
from glfer_edge.metadata import graph_metadata
from glfer_edge.tolerances import LayerTolerance, tolerances_for

__all__ = ["LayerStat", "LayerReport", "locate_divergence"]

_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Cast")


@dataclass(frozen=True)
class LayerStat:
    """B's error against A on one shared intermediate tensor."""

    index: int  # position of the producing node in A's topological order
    node: str
    op_type: str
    tensor: str  # the tensor's name in A
    max_abs: float
    rel_l2: float  # ||b - a|| / ||a||
    cosine: float
    diverged: bool


@dataclass(frozen=True)
class LayerReport:
    """Every shared tensor in A's topological order and the first one outside the layer tolerance."""

    tolerance: LayerTolerance
    layers: tuple[LayerStat, ...]  # every compared tensor, topological order
    first: LayerStat | None  # first divergent layer, None when all within tolerance
    unmatched: int  # node outputs of A with no counterpart in B

    def worst(self, n: int = 10) -> list[LayerStat]:
        return sorted(self.layers, key=lambda s: -s.rel_l2)[:n]


def _canonical_names(graph: Any) -> dict[str, str]:
    """Node output -> the FP32 tensor it stands for: ``DequantizeLinear(QuantizeLinear(x))`` and Casts map to x."""
    canon: dict[str, str] = {}
    for node in graph.node:  # topological order: a node's inputs are resolved before it
        src = node.input[0] if node.op_type in _PASS_THROUGH and node.input and node.input[0] in canon else None
        for o in node.output:
            canon[o] = canon[src] if src else o
    return canon


def _counterparts(graph: Any) -> dict[str, str]:
    """FP32 name -> the float tensor of ``graph`` holding it: itself when present, else a DQ or Cast output."""
    quantized = {o for n in graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    out: dict[str, str] = {}
    for tensor, name in _canonical_names(graph).items():
        if tensor not in quantized and (name not in out or tensor == name):
            out[name] = tensor
    return out


def _tensor_bytes(graph: Any) -> dict[str, int]:
    """Bytes per tensor at batch 1, from the shape-inferred value_info (float32)."""
    out = {}
    for v in graph.value_info:
        dims = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]  # batch 1
        out[v.name] = 4 * int(np.prod(dims)) if dims else 4
    return out


def _run_marked(model: Any, names: list[str], audio: np.ndarray) -> dict[str, np.ndarray]:
    """Values of the intermediate tensors ``names`` (graph optimizations off)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in present])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: audio})))


def _layer_stat(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if not np.isfinite(b64).all():
        return float("inf"), float("inf"), float("nan")
    diff = b64 - a64
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    rel = float(np.linalg.norm(diff) / na) if na > 0 else (0.0 if nb == 0 else float("inf"))
    cos = float(a64 @ b64 / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    return float(np.max(np.abs(diff))) if diff.size else 0.0, rel, cos


def locate_divergence(
    a: str | Path,
    b: str | Path,
    audio: np.ndarray,
    *,
    tolerance: LayerTolerance | None = None,
    precision: str | None = None,
    budget_mb: float = 512.0,
) -> LayerReport:
    """First layer of ONNX ``b`` whose output leaves ``tolerance`` against ONNX ``a`` on ``audio`` (B, 4, N).

    Both graphs run with every shared float tensor marked as an output (in passes that stay within
    ``budget_mb`` of marked tensors each) and onnxruntime's graph optimizations off, so Q/DQ pairs
    and casts run as written (the arithmetic TensorRT is asked for) and no marked tensor is fused
    away. ``tolerance`` defaults to ``tolerances_for(precision).layer``, ``precision`` to B's metadata.
    """
    import onnx

    from glfer_edge.runtime.artifact import config_from_metadata

    for path in (a, b):
        if Path(path).suffix != ".onnx" or not Path(path).is_file():
            raise InputError(f"per-layer comparison needs two ONNX files; {path} is not one")
    ma, mb = onnx.load(str(a)), onnx.load(str(b))
    if tolerance is None:
        if precision is None:
            meta = graph_metadata(mb)
            precision = config_from_metadata(meta, b)[1] if meta else "fp32"
        tolerance = tolerances_for(precision).layer
        if tolerance is None:
            raise InputError(f"the {precision} tolerances have no per-layer bound; pass a LayerTolerance")
    in_b = _counterparts(mb.graph)
    order = [(i, n, o) for i, n in enumerate(ma.graph.node) for o in n.output if o]
    shared = [(i, n, o) for i, n, o in order if o in in_b]
    sizes = _tensor_bytes(ma.graph)
    stats: list[LayerStat] = []
    for chunk in _chunks(shared, sizes, budget_mb * 2**20 / len(audio)):
        va = _run_marked(ma, [o for _, _, o in chunk], audio)
        vb = _run_marked(mb, [in_b[o] for _, _, o in chunk], audio)
        for i, node, o in chunk:
            x, y = va[o], vb[in_b[o]]
            if x.shape != y.shape or not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
                continue
            mx, rel, cos = _layer_stat(x, y)
            bad = not (rel <= tolerance.rel_max and cos >= tolerance.cosine_min)
            stats.append(LayerStat(i, node.name, node.op_type, o, mx, rel, cos, bad))
    first = next((s for s in stats if s.diverged), None)
    return LayerReport(tolerance, tuple(stats), first, len(order) - len(shared))


def _chunks(items: list, sizes: dict[str, int], budget: float) -> list[list]:
    chunks, current, used = [], [], 0
    for item in items:
        size = sizes.get(item[2], 16 * 2**20)
        if current and used + size > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    return chunks + ([current] if current else [])
