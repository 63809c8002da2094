"""The precision table: every artifact form, once, imported by export, runtime, parity and bench.

A form names its file (``model.<name>.onnx``), the precision its metadata records, the tolerance row
of :mod:`glfer_edge.tolerances` it is checked against and the runtime backends that run it. The two
INT8 forms share the metadata precision ``int8`` and differ in their calibration target: ``int8`` is
TensorRT's form (S8 activations, Q/DQ around Conv/MatMul), ``int8-cpu`` onnxruntime's CPU form (U8
activations, 7-bit weights, ``QLinearConv``; see ``glfer_edge.export.int8``).
"""

from __future__ import annotations

from dataclasses import dataclass

from glfer_edge.errors import InputError

__all__ = ["Precision", "PRECISIONS", "METADATA_PRECISIONS", "DEFAULT_EXPORT", "get_precision", "artifact_name"]


@dataclass(frozen=True)
class Precision:
    """One artifact form."""

    name: str  # the CLI's and the file's name
    metadata: str  # what the artifact's metadata records (glfer_edge.metadata.KEY_PRECISION)
    tolerance: str  # row of glfer_edge.tolerances.TOLERANCES
    backends: tuple[str, ...]  # runtime backends that run the ONNX form (TensorRT: after `glfer-edge build`)
    description: str
    int8_target: str | None = None  # calibration target of the INT8 forms

    @property
    def filename(self) -> str:
        return artifact_name(self.name)


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "fp32", "fp32", ("onnxruntime", "tensorrt"),
                  "FP32 with onnxruntime-CPU forms of some ops (exact rewrites)"),
        Precision("fp16", "fp16", "fp16", ("onnxruntime", "tensorrt"),
                  "strongly typed FP16, frontend pinned to FP32 (TensorRT, GPUs)"),
        Precision("int8", "int8", "int8", ("tensorrt", "onnxruntime"),
                  "TensorRT's INT8 form: S8 Q/DQ around Conv/MatMul (Jetson, GPUs)", int8_target="tensorrt"),
        Precision("int8-cpu", "int8", "int8", ("onnxruntime",),
                  "onnxruntime's CPU INT8 form: U8 activations, 7-bit weights, QLinearConv", int8_target="cpu"),
    )
}
METADATA_PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(p.metadata for p in PRECISIONS.values()))
DEFAULT_EXPORT: tuple[str, ...] = ("fp32", "fp16", "int8")


def artifact_name(precision: str) -> str:
    """``model.<precision>.onnx``: the file ``glfer-edge export`` writes for a form."""
    return f"model.{precision}.onnx"


def get_precision(name: str) -> Precision:
    """The form called ``name``; InputError listing the forms otherwise."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise InputError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}") from None
