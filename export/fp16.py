"""Strongly typed mixed-precision FP16 artifact, and true-FP16 numerics checks.

Precision lives in the graph (TensorRT 11 is strongly typed only): FP16 nodes and tensors, Casts
at the precision borders, FP32 graph I/O. What stays FP32 and why:

* the whole fused frontend (every ``/frontend/`` node): the STFT-as-conv output, ``|X|^2`` (a
  full-scale tone reaches ~6.5e4, the FP16 maximum), the power floor (1e-10 is below the FP16
  subnormal minimum 6e-8, so quiet input gives log(0) = -inf), the log, the intensity-vector
  normalisation (a ratio of two such quantities) and the standardisation;
* the output Sigmoid (producer of ``sed``): FP16 probabilities near 0.5..1 are spaced 4.9e-4;
* the output Softplus (producer of ``distance``, models with ``ModelConfig.distance``): in FP16,
  ``log(1 + exp(x))`` overflows to +inf for x > 11.1 (``onnx.reference`` computes it that way), and
  its metres would be spaced 3.9e-3 at 4..8 m. FP32 I/O as for ``sed`` and ``doa``.

Measured (tiny preset, random weights with fitted feature statistics, 2-s segments; quiet -60 dBFS
and loud 0 dBFS-peak generated scenes and a full-scale 1-kHz plane wave; the artifact evaluated in
numpy float16 by ``onnx.reference`` against ORT FP32; max |SED| error, mean DOA angle):

=====================================  ==================  =================
FP32 nodes                             SED max abs error   DOA angle (deg)
=====================================  ==================  =================
whole graph FP16 (frontend included)   0.25 - 0.27         fails tolerance
frontend only                          3.7e-4 - 4.1e-4     0.04 - 0.06
frontend + output Sigmoid (default)    2.7e-4              0.04 - 0.06
+ GRU                                  2.5e-4 - 2.7e-4     0.035 - 0.047
+ ReduceMean/GlobalAveragePool,        no change (< 3e-5)  no change
  Softmax or BatchNormalization
=====================================  ==================  =================

The largest trunk activation was 5.9 (quiet), 7.9 (loud), 4.1 (tone): far from 65504. So the
trunk, the BiGRU (the latency hot spot), the attention gates and the heads run in FP16;
``keep_fp32_ops`` pins op types back if a trained model needs it.

ONNX Runtime on CPU computes FP16 nodes in FP32 behind inserted casts, so it only proves the graph
loads and runs (``ort_session_fp16``). Its default optimization level crashed on this graph
(``_matmuls_before_transposes`` says why and how the export avoids it). True FP16 numerics come from
``reference_fp16_run`` (the artifact itself in numpy float16) and ``half_precision_reference``
(the torch model with its trunk in ``.half()``, the same split as the artifact).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto

from glfer_edge.errors import ArtifactError
from glfer_edge.export.onnx_meta import set_precision

FRONTEND_SCOPE = "/frontend/"
FP32_OP_TYPES: tuple[str, ...] = ()
FP16_MAX = 65504.0


def fp32_node_names(graph: onnx.ModelProto, keep_fp32_ops: Iterable[str] = FP32_OP_TYPES) -> list[str]:
    """Nodes pinned to FP32: the frontend scope, the output activations (the Sigmoid of ``sed``, the Softplus
    of ``distance``) and every node of ``keep_fp32_ops``."""
    from glfer_edge import metadata as md

    ops = set(keep_fp32_ops)
    activations = {("Sigmoid", md.OUTPUT_NAMES[0]), ("Softplus", md.DISTANCE_NAME)}
    return [
        n.name for n in graph.graph.node
        if n.name.startswith(FRONTEND_SCOPE) or n.op_type in ops or any((n.op_type, o) in activations for o in n.output)
    ]


def convert_fp16(graph: onnx.ModelProto, keep_fp32_ops: Iterable[str] = FP32_OP_TYPES) -> onnx.ModelProto:
    """FP32 graph -> mixed-precision graph (frontend and ``keep_fp32_ops`` FP32, FP32 I/O), checked.

    onnxconverter-common does the conversion; three of its defects on our graph are repaired here:
    duplicate value_info entries (it re-types only the first, leaving Casts whose declared and
    inferred types differ); FP32 -> FP16 -> FP32 round trips it leaves between two pinned nodes
    when a tensor has several consumers (its cast clean-up compares the wrong enum values), which
    would push the power spectrum through FP16 and overflow; and a pinned node that produces a graph
    output gets a Cast to FP16 and an FP16 output despite ``keep_io_types``.
    """
    from onnxconverter_common import float16

    graph = copy.deepcopy(graph)
    pinned = fp32_node_names(graph, keep_fp32_ops)
    del graph.graph.value_info[:]  # occ re-infers them; stale or duplicated entries break its re-typing
    converted = float16.convert_float_to_float16(
        graph, keep_io_types=True, node_block_list=pinned, op_block_list=float16.DEFAULT_OP_BLOCK_LIST,
        max_finite_val=FP16_MAX,
    )
    _remove_cast_round_trips(converted.graph)
    _restore_fp32_outputs(converted.graph)
    _matmuls_before_transposes(converted)
    del converted.graph.value_info[:]
    try:
        converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
        onnx.checker.check_model(converted, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ArtifactError(f"FP16 conversion produced an invalid graph: {exc}") from None
    set_precision(converted, "fp16")
    return converted


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _remove_cast_round_trips(graph: onnx.GraphProto) -> None:
    """Rewire Cast(to FP16) -> Cast(to FP32) chains to the FP32 source and drop unused Casts."""
    producer = {o: n for n in graph.node for o in n.output}
    source = {}
    for node in graph.node:
        up = producer.get(node.input[0]) if node.input else None
        if _cast_to(node) == TensorProto.FLOAT and up is not None and _cast_to(up) == TensorProto.FLOAT16:
            source[node.output[0]] = up.input[0]  # occ only adds a Cast to FP16 after FP32 outputs
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
    while True:  # drop Casts nobody reads any more (the round trips, then their now-orphan first halves)
        used = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _restore_fp32_outputs(graph: onnx.GraphProto) -> None:
    """Graph outputs typed FP16 by a trailing Cast: drop the Cast and output its FP32 input."""
    producer = {o: n for n in graph.node for o in n.output}
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        cast = producer[out.name]
        if _cast_to(cast) != TensorProto.FLOAT16:
            raise ArtifactError(f"FP16 conversion left output {out.name} in FP16 behind {cast.op_type}; report this bug")
        graph.node.remove(cast)
        for node in graph.node:
            for field in (node.input, node.output):
                for i, name in enumerate(field):
                    if name == cast.input[0]:
                        field[i] = out.name
        out.type.tensor_type.elem_type = TensorProto.FLOAT


def _matmuls_before_transposes(graph: onnx.ModelProto) -> None:
    """Rewrite ``Transpose(X, perm) -> MatMul(., W)`` as ``MatMul(X, W) -> Transpose(., perm)`` where ``perm``
    keeps the last axis and ``W`` is a 2-D constant: the same dot products, so the same bits (the BiGRU
    output's (T, B, C) -> (B, T, C) before the four head MatMuls; batch-1 exports have a Reshape there).

    Why: onnxruntime on x86 (1.23.2 and 1.32.0 here; 1.24-1.25 upstream) segfaults creating a session
    for an FP16 ``Transpose -> MatMul`` at its default level. Its CPU EP has no FP16 MatMul, so it inserts
    ``Transpose -> Cast -> MatMul``; MatmulTransposeFusion swaps that Cast and Transpose into new nodes,
    then gives up the fusion (a transposed batch axis needs both inputs of equal rank, W is 2-D) and
    reports no change, so the graph is not re-resolved; NchwcTransformer (ORT_ENABLE_ALL, x86 only)
    then reads the new nodes' missing schema (microsoft/onnxruntime#28392). With the Transpose after
    the MatMul nothing is left for that fusion to match.
    """
    from glfer_edge.export.graph import constants, links

    producer, _ = links(graph)
    weights = constants(graph)
    nodes, moved = [], set()
    for node in graph.graph.node:
        nodes.append(node)
        transpose = producer.get(node.input[0]) if node.op_type == "MatMul" else None
        w = weights.get(node.input[1]) if transpose is not None and transpose.op_type == "Transpose" else None
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None) if w is not None else None
        # FP16 only (an FP32 MatMul gets no Cast); the contracted last axis must stay last
        if perm is None or w.data_type != TensorProto.FLOAT16 or len(w.dims) != 2 or perm[-1] != len(perm) - 1:
            continue
        result = node.output[0]
        node.input[0], node.output[0] = transpose.input[0], f"{result}_before_transpose"
        name = f"{node.name or result}_transpose"
        nodes.append(onnx.helper.make_node("Transpose", [node.output[0]], [result], name, perm=perm))
        moved.add(transpose.output[0])
    read = {name for n in nodes for name in n.input} | {o.name for o in graph.graph.output}
    del graph.graph.node[:]
    graph.graph.node.extend(n for n in nodes if n.output[0] not in moved or n.output[0] in read)  # drop dead moved ones


# -- numerics checks ---------------------------------------------------------------------------
def ort_session_fp16(model: onnx.ModelProto | str):
    """ONNX Runtime CPU session for an FP16 graph, graph optimizations off: FP16 artifacts exported before
    ``_matmuls_before_transposes`` segfault onnxruntime's default level, and off is enough to check outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def reference_fp16_run(model: onnx.ModelProto | str, audio: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run an ONNX artifact with onnx.reference: FP16 nodes compute in numpy float16 (true FP16).

    Returns its outputs in graph order: ``sed``, ``doa`` and, for a distance model, ``distance``."""
    from onnx.reference import ReferenceEvaluator

    from glfer_edge import metadata as md

    evaluator = ReferenceEvaluator(model)
    names = [n for n in (*md.OUTPUT_NAMES, md.DISTANCE_NAME) if n in evaluator.output_names]
    return tuple(evaluator.run(names, {md.INPUT_NAME: audio.astype(np.float32)}))


def half_precision_reference(
    model, audio: np.ndarray, fp32_modules: Sequence[str] = ()
) -> tuple[np.ndarray, ...]:
    """The torch model with its frontend in FP32 and the trunk in ``.half()`` (CPU), as the artifact splits it.

    ``fp32_modules``: dotted names of submodules (e.g. ``decoder.gru``) kept FP32 inside the trunk.
    Returns FP32 numpy ``sed`` (B, T', C), ``doa`` (B, T', C, 3) and, for a distance model,
    ``distance`` (B, T', C) (its softplus computed in FP16 here; the artifact keeps that one node FP32).
    """
    import torch

    half = copy.deepcopy(model).eval()
    half.encoder.half()  # only the trunk: a .half().float() round trip would quantize the DFT basis
    half.decoder.half()
    for name in fp32_modules:
        _keep_fp32(half.get_submodule(name))
    with torch.no_grad():
        features = half.frontend(torch.as_tensor(audio, dtype=torch.float32))
        outputs = half.forward_features(features.half())
    return tuple(t.float().numpy() for t in outputs)


def _keep_fp32(module) -> None:
    """Run ``module`` in FP32 inside a half model: cast its inputs up and its outputs back down."""
    import torch

    module.float()

    def to(dtype, value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        if isinstance(value, tuple):
            return tuple(to(dtype, v) for v in value)
        return value

    module.register_forward_pre_hook(lambda _m, args: to(torch.float32, args))
    module.register_forward_hook(lambda _m, _args, out: to(torch.float16, out))
