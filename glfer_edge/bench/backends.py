"""The bench's backend names: each one is a ``SELDRuntime`` a user can open (file form, runtime backend,
runtime options), so a bench row is the product's number.

=====================  ==================  =================================================================
bench name             file                ``SELDRuntime.open(...)``
=====================  ==================  =================================================================
torch                  weights             ``backend="torch"``
torch-compile          weights             ``options=RuntimeOptions(compile=True)``
torch-fp16             weights             ``options=RuntimeOptions(fp16_autocast=True)`` (CUDA)
torch-compile-fp16     weights             both (CUDA)
ort-<form>             model.<form>.onnx   onnxruntime (``graph_optimization`` from ``--ort-opt-level``)
ort-<form>-nospin      model.<form>.onnx   ``options=RuntimeOptions(spinning=False)``
openvino-<form>        model.<form>.onnx   ``backend="openvino"`` (f32 inference precision)
openvino-bf16          model.fp32.onnx     ``backend="openvino", options=RuntimeOptions(precision="bf16")``
trt-<form>             model.<form>.engine TensorRT, engine built from the ONNX form
=====================  ==================  =================================================================

``<form>`` is a name of :data:`glfer_edge.precision.PRECISIONS` (fp32, fp16, int8, int8-cpu).
"""

from __future__ import annotations

from dataclasses import dataclass

from glfer_edge.precision import PRECISIONS
from glfer_edge.runtime.options import RuntimeOptions

__all__ = ["BenchBackend", "BACKENDS", "BACKEND_NAMES", "get_backend"]


@dataclass(frozen=True)
class BenchBackend:
    name: str
    runtime: str  # SELDRuntime.open's backend: torch | onnxruntime | openvino | tensorrt
    form: str | None  # precision form of the artifact it opens (None: the weights)
    options: RuntimeOptions = RuntimeOptions()
    cuda_only: bool = False

    @property
    def needs_artifact(self) -> bool:
        return self.form is not None


def _table() -> dict[str, BenchBackend]:
    rows = [
        BenchBackend("torch", "torch", None),
        BenchBackend("torch-compile", "torch", None, RuntimeOptions(compile=True)),
        BenchBackend("torch-fp16", "torch", None, RuntimeOptions(fp16_autocast=True), cuda_only=True),
        BenchBackend("torch-compile-fp16", "torch", None, RuntimeOptions(compile=True, fp16_autocast=True),
                     cuda_only=True),
    ]
    for prefix, runtime in (("ort", "onnxruntime"), ("openvino", "openvino"), ("trt", "tensorrt")):
        for form in PRECISIONS.values():
            if runtime in ("onnxruntime", "openvino") or runtime in form.backends:
                rows.append(BenchBackend(f"{prefix}-{form.name}", runtime, form.name))
        if runtime == "onnxruntime":
            rows += [BenchBackend(f"ort-{f}-nospin", runtime, f, RuntimeOptions(spinning=False)) for f in PRECISIONS]
        if runtime == "openvino":
            rows.append(BenchBackend("openvino-bf16", "openvino", "fp32", RuntimeOptions(precision="bf16")))
    return {r.name: r for r in rows}


BACKENDS: dict[str, BenchBackend] = _table()
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


def get_backend(name: str) -> BenchBackend:
    from glfer_edge.errors import InputError

    try:
        return BACKENDS[name]
    except KeyError:
        raise InputError(f"unknown bench backend {name!r}; choose from {', '.join(BACKENDS)}") from None
