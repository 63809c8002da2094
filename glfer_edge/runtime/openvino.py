"""OpenVINO backend (CPU): the same ONNX artifacts as onnxruntime, compiled once by OpenVINO and cached.

``pip install 'glfer-edge[openvino]'``, then ``SELDRuntime.open("model.int8.onnx", backend="openvino")`` or
``glfer-edge run REC.wav --model model.int8.onnx --backend openvino``. Every form loads: FP32, FP16 (computed
in f32 on CPU), the TensorRT-form INT8 (S8 Q/DQ) and the int8-cpu form (QLinearConv).

Honest about precision: OpenVINO's CPU plugin computes FP32 graphs in bf16 by default on CPUs with bf16
arithmetic (AVX-512 BF16, AMX). Here every model is compiled with ``INFERENCE_PRECISION_HINT=f32`` unless
``RuntimeOptions(precision="bf16")`` asks for bf16; the compiled model's hint is read back and a mismatch
is an error (asked for bf16 on a CPU without it, OpenVINO would quietly run f32). A bf16 runtime reports
precision ``bf16``, checked against the ``openvino-bf16`` tolerance row.

Compiled blobs are cached in ``CACHE_DIR`` (``RuntimeOptions.cache_dir``; default
~/.cache/glfer_edge/openvino): the second open of the same file with the same settings skips compilation.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge import metadata as md
from glfer_edge.errors import ArtifactError, InputError, require
from glfer_edge.runtime.artifact import artifact_metadata, config_from_metadata, saturation_warning
from glfer_edge.runtime.base import FOA_CHANNELS, Backend, Outputs
from glfer_edge.runtime.options import RuntimeOptions, default_openvino_cache

__all__ = ["OpenVINOBackend", "bf16_supported"]

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_supported() -> bool:
    """True where OpenVINO's CPU plugin computes in bf16 (AVX-512 BF16 or AMX); elsewhere it runs f32."""
    from glfer_edge.machine import cpu_info

    flags = set(cpu_info()["flags"])
    return any(f in flags for f in _BF16_FLAGS)


def _precision_name(value: Any) -> str:
    """OpenVINO's element type ('<Type: 'float32'>', 'f32', 'bf16', ...) as 'f32' / 'bf16' / its own name."""
    text = str(getattr(value, "get_type_name", lambda: value)()).lower()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(
        self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
        options: RuntimeOptions | None = None,
    ) -> None:
        ov = require("openvino", "openvino", "the OpenVINO backend")
        options = options or RuntimeOptions()
        path = Path(path)
        if device != "cpu":
            raise InputError(f"the OpenVINO backend runs on the CPU only (device {device!r} asked for); "
                             "use device='cpu', or onnxruntime/TensorRT for a GPU")
        meta = artifact_metadata(path)
        self.config, artifact_precision = config_from_metadata(meta, path)
        if (warning := saturation_warning(meta, path.name, "openvino")) is not None:
            warnings.warn(warning, stacklevel=3)
        hint = options.precision or "f32"
        if hint == "bf16" and artifact_precision != "fp32":
            raise InputError(f"precision='bf16' applies to FP32 artifacts; {path.name} is {artifact_precision}: "
                             "open the FP32 artifact, or drop precision='bf16'")
        if hint == "bf16" and not bf16_supported():
            from glfer_edge.machine import cpu_label

            raise InputError(f"precision='bf16' needs a CPU with bf16 arithmetic (AVX-512 BF16 or AMX); {cpu_label()} "
                             "has none, and OpenVINO would run f32 there instead: drop precision='bf16'")
        self.precision = "bf16" if hint == "bf16" else artifact_precision
        self._ov: Any = ov
        self._core: Any = ov.Core()
        cache = Path(options.cache_dir) if options.cache_dir else default_openvino_cache()
        cache.mkdir(parents=True, exist_ok=True)
        self._core.set_property({"CACHE_DIR": str(cache)})
        self._properties: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": options.performance_hint or "LATENCY",
        }
        if threads is not None:
            self._properties["INFERENCE_NUM_THREADS"] = int(threads)
        if options.streams is not None:
            self._properties["NUM_STREAMS"] = int(options.streams)
        if options.profile:
            self._properties["PERF_COUNT"] = True
        self._path = path
        try:
            self._model: Any = self._core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise ArtifactError(f"{path} is not a model OpenVINO can read ({lines[0][:200]}); re-export it") from None
        self.batch_range = self._check_io(self._model, path)
        self._static = options.static_batch
        self._compiled: dict[int | None, tuple[Any, Any]] = {}  # batch (None: dynamic) -> (compiled, request)
        if not self._static:
            self._compile(None)
        self.description = (f"{path.name} ({self.precision}, openvino {ov.__version__.split('-')[0]} CPU, inference precision "
                            f"{hint}, {self._properties['PERFORMANCE_HINT']}"
                            f"{', static batch' if self._static else ''})")

    def _check_io(self, model: Any, path: Path) -> tuple[int, int | None]:
        inputs = model.inputs
        outputs = {name for o in model.outputs for name in o.get_names()}
        expected = md.output_names(self.config)
        if len(inputs) != 1 or md.INPUT_NAME not in inputs[0].get_names() or not set(expected) <= outputs:
            found = [sorted(i.get_names()) for i in inputs], sorted(outputs)
            raise ArtifactError(
                f"{path} has inputs/outputs {found}, expected {md.INPUT_NAME} -> {', '.join(expected)}; "
                "re-export it with 'glfer-edge export'"
            )
        shape = inputs[0].get_partial_shape()
        dims = [None if d.is_dynamic else d.get_length() for d in shape]
        batch, channels, samples = (dims + [None, None, None])[:3]
        if channels not in (FOA_CHANNELS, None) or (samples is not None and samples != self.config.segment_samples):
            raise ArtifactError(
                f"{path} takes audio of shape {shape}, but its config says (B, 4, {self.config.segment_samples}); "
                "the metadata does not belong to this graph: re-export it"
            )
        return (batch, batch) if batch else (1, None)

    def _compile(self, batch: int | None) -> tuple[Any, Any]:
        model = self._model
        if batch is not None:
            model = model.clone()
            model.reshape({md.INPUT_NAME: [batch, FOA_CHANNELS, self.config.segment_samples]})
        try:
            compiled = self._core.compile_model(model, "CPU", self._properties)
        except Exception as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise ArtifactError(f"OpenVINO could not compile {self._path} ({lines[0][:200]}); "
                                "check the OpenVINO version, or use the onnxruntime backend") from None
        got = _precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        asked = self._properties["INFERENCE_PRECISION_HINT"]
        if got != asked:  # no silent fallback: OpenVINO picks another precision rather than failing
            from glfer_edge.machine import cpu_label

            raise InputError(
                f"OpenVINO compiled {self._path.name} with inference precision {got}, not {asked} as asked, on "
                f"{cpu_label()}: drop precision='{asked}' on this CPU"
            )
        entry = (compiled, compiled.create_infer_request())
        self._compiled[batch] = entry
        return entry

    @property
    def compiled_properties(self) -> dict[str, str]:
        """What OpenVINO chose for the first compiled model: precision, hint, streams, threads."""
        compiled = next(iter(self._compiled.values()))[0] if self._compiled else self._compile(1)[0]
        keys = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")
        return {k: str(compiled.get_property(k)) for k in keys}

    def run(self, audio: np.ndarray) -> Outputs:
        key = audio.shape[0] if self._static else None
        _, request = self._compiled.get(key) or self._compile(key)
        request.infer({md.INPUT_NAME: audio})
        return Outputs(*(np.array(request.get_tensor(name).data, dtype=np.float32)
                         for name in md.output_names(self.config)))

    def time_shares(self) -> dict[str, float] | None:
        """Frontend and BiGRU shares of the node time of the last call (``RuntimeOptions(profile=True)``)."""
        from glfer_edge.runtime.ort import FRONTEND_SCOPE, GRU_SCOPE

        if not self._properties.get("PERF_COUNT") or not self._compiled:
            return None
        request = next(iter(self._compiled.values()))[1]
        spent = {"frontend": 0.0, "gru": 0.0, "total": 0.0}
        scope = ""
        for info in request.get_profiling_info():  # in execution order
            t = info.real_time.total_seconds()
            if info.node_name.startswith("/"):
                scope = info.node_name
            # nodes OpenVINO made (GRUSequence_123, reorders) carry no scope: charged to the one before, as for ORT
            spent["total"] += t
            if scope.startswith(FRONTEND_SCOPE):
                spent["frontend"] += t
            elif scope.startswith(GRU_SCOPE) or info.node_type == "GRUSequence":
                spent["gru"] += t
        total = spent["total"] or 1.0
        return {"frontend_share": spent["frontend"] / total, "gru_share": spent["gru"] / total}

    def close(self) -> None:
        self._compiled = {}
        self._model = None
