"""FP32 ONNX export of GLFER-Net with the fused frontend: raw FOA audio in, ``sed`` and ``doa`` out.

The TorchScript exporter (``dynamo=False``) traces the model at a fixed segment length with a
dynamic batch axis, or, with ``single_batch``, at a fixed batch of one: a static-shape graph for
runtimes and compilers that want one, in which ODConv runs as one convolution with its per-sample
kernel (the 'folded' formulation, group 1) instead of the shifted im2col (9 shifted copies of the
input, a concatenation and a 1x1 conv). On the 2-core CPU its onnxruntime speed is within noise of
the dynamic graph (0.95-1.06x, benchmarks/RESULTS.md).

The graph is then simplified with onnxslim (constant folding, Identity and BatchNorm removal),
shape-inferred and checked; the traced model is the deploy reparameterization
(``glfer_edge.model.reparam``, exact). It must hold no STFT/DFT op and no complex tensor (TensorRT
10.3 on JetPack 6 has neither), and, with a dynamic batch, no Conv whose ``group`` is the batch size
(the 'folded' ODConv would bake the export batch in; the 'shifted' one is used).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch

from glfer_edge import metadata as md
from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.export.onnx_meta import write_onnx_metadata
from glfer_edge.model.glfernet import GLFERNet
from glfer_edge.model.odconv import ODConv2d
from glfer_edge.model.reparam import reparameterize

DEFAULT_OPSET = 17
FORBIDDEN_OPS = frozenset({"STFT", "DFT"})
_COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}


def export_config(model: GLFERNet, segment_seconds: float | None = None) -> SELDConfig:
    """The config an export describes: the model's, with the export's segment length."""
    if segment_seconds is None:
        return model.config
    if segment_seconds * model.config.features.frames_per_second < model.config.model.time_downsample:
        raise InputError(f"segment of {segment_seconds} s is shorter than one output frame; use at least 1 s")
    return model.config.replace(segment_seconds=float(segment_seconds))


def export_fp32(
    model: GLFERNet,
    weights_sha256: str,
    segment_seconds: float | None = None,
    opset: int = DEFAULT_OPSET,
    single_batch: bool = False,
) -> onnx.ModelProto:
    """Trace, simplify and check the FP32 graph; returns it with metadata (not yet saved).

    ``single_batch``: input and outputs fixed at batch 1 (the runtime then feeds one segment per call)."""
    import onnxslim

    config = export_config(model, segment_seconds)
    model = reparameterize(model)  # a deep copy: CSS fold, LFE as one 3x3 conv (glfer_edge.model.reparam)
    for m in model.modules():
        if isinstance(m, ODConv2d):  # same parameters and maths; per-sample kernels only at a fixed batch of 1
            m.formulation = "folded" if single_batch else "shifted"
    batch = 1 if single_batch else _dummy_batch(model)
    audio = torch.randn(batch, 4, config.segment_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    buf = io.BytesIO()
    outputs = list(md.output_names(config))
    dynamic = None if single_batch else {name: {0: "batch"} for name in (md.INPUT_NAME, *outputs)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on constant shapes and the GRU batch size
        torch.onnx.export(
            model, (audio,), buf, input_names=[md.INPUT_NAME], output_names=outputs,
            dynamic_axes=dynamic, opset_version=opset, dynamo=False,
        )
    graph = onnxslim.slim(onnx.load_from_string(buf.getvalue()))
    graph = onnx.shape_inference.infer_shapes(graph, strict_mode=True, data_prop=True)
    check_graph(graph, _static_groups(model), batch=1 if single_batch else None)
    write_onnx_metadata(graph, config, "fp32", weights_sha256)
    return graph


def _static_groups(model: torch.nn.Module) -> set[int]:
    return {m.groups for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))} | {1}


def _dummy_batch(model: torch.nn.Module) -> int:
    """A trace batch size no Conv uses as its group count, so a batch-valued group is detectable."""
    groups = _static_groups(model)
    return next(b for b in range(2, 1000) if b not in groups)


def check_graph(graph: onnx.ModelProto, static_groups: set[int], batch: int | None = None) -> None:
    """Checker (full), no STFT/DFT, no complex values; batch axis dynamic (``batch`` None) with no
    batch-valued Conv group, or fixed at ``batch``."""
    try:
        onnx.checker.check_model(graph, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"exported graph is invalid: {exc}") from None
    problems = [f"{n.name}: {n.op_type}" for n in graph.graph.node if n.op_type in FORBIDDEN_OPS]
    values = [*graph.graph.value_info, *graph.graph.input, *graph.graph.output]
    problems += [f"{v.name}: complex" for v in values if v.type.tensor_type.elem_type in _COMPLEX]
    for node in graph.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group not in static_groups:
            problems.append(f"{node.name}: Conv group {group} follows the batch size")
    for io_value in [*graph.graph.input, *graph.graph.output]:
        dim = io_value.type.tensor_type.shape.dim[0]
        if batch is None and dim.dim_param != "batch":
            problems.append(f"{io_value.name}: batch axis is not dynamic")
        elif batch is not None and dim.dim_value != batch:
            problems.append(f"{io_value.name}: batch axis is not fixed at {batch}")
    if problems:
        raise ArtifactError(f"exported graph is not deployable: {'; '.join(problems[:5])}")


def io_shapes(graph: onnx.ModelProto) -> dict[str, tuple]:
    """Name -> shape (symbolic dims as strings) of the graph inputs and outputs."""
    def dims(v):
        return tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)

    return {v.name: dims(v) for v in [*graph.graph.input, *graph.graph.output]}


def fp32_self_check(graph: onnx.ModelProto, model: GLFERNet, seed: int = 0) -> float:
    """Max abs difference ORT vs torch on one random segment; ArtifactError past the FP32 tolerance."""
    import onnxruntime as ort

    from glfer_edge.tolerances import TOLERANCES

    n = io_shapes(graph)[md.INPUT_NAME][2]
    audio = (np.random.default_rng(seed).standard_normal((1, 4, n)) * 0.1).astype(np.float32)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(list(md.output_names(model.config)), {md.INPUT_NAME: audio})
    with torch.no_grad():
        want = [t.numpy() for t in model.eval()(torch.from_numpy(audio))]
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(want, got))
    if err > TOLERANCES["fp32"].sed_max_abs:
        raise ArtifactError(f"FP32 ONNX differs from the torch model by {err:.3g}; report this as a bug")
    return err
