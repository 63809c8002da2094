"""``SELDRuntime``: one model file -> validated segment-level inference, whatever the backend.

::

    with SELDRuntime.open("glfer_tiny.fp32.onnx") as rt:      # .safetensors | .onnx | .engine/.plan
        out = rt.infer(audio)                                   # (4, N) or (B, 4, N) float32, N = segment
        out.sed, out.doa, out.frame_times

Thread safety: ``infer`` may be called from any thread. Calls on one runtime are serialized by a
per-runtime lock, because a TensorRT runtime owns one execution context and one set of buffers
(onnxruntime and torch already parallelize inside one call). For parallel throughput, batch the
segments or open one runtime per thread. ``infer_async`` submits to a single worker thread owned
by the runtime, so futures complete in submission order; TensorRT's stream work happens on that
thread too (the enqueue itself is asynchronous, the future waits for the stream).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.runtime.artifact import artifact_kind
from glfer_edge.runtime.base import Backend, SELDOutput, output_frame_times, validate_audio
from glfer_edge.runtime.options import RuntimeOptions, check_options
from glfer_edge import weights as _weights

__all__ = ["SELDRuntime", "default_model", "DEFAULT_NAME", "DEFAULT_ONNX", "ONNX_BACKENDS"]

ONNX_BACKENDS = ("onnxruntime", "openvino")  # what SELDRuntime.open(backend=...) accepts for an .onnx file

DEFAULT_NAME = "default"  # what open(), --model and info accept for the bundled demo model
DEFAULT_ONNX = _weights.DEFAULT_WEIGHTS.with_suffix(".fp32.onnx")  # exported from the bundled weights


def default_model() -> tuple[Path, str | None]:
    """The bundled demo model and a note when it is not the ONNX FP32 default.

    Without the bundled ONNX file, the reference weights run on torch.
    """
    if DEFAULT_ONNX.is_file():
        return DEFAULT_ONNX, None
    weights = _weights.DEFAULT_WEIGHTS  # looked up at call time, like DEFAULT_ONNX
    if weights.is_file():
        return weights, (
            f"bundled ONNX demo model {DEFAULT_ONNX.name} not found; running the reference weights "
            f"{weights.name} on torch instead"
        )
    raise ArtifactError(
        f"no bundled demo model in {weights.parent} ({DEFAULT_ONNX.name} or {weights.name}); "
        "reinstall glfer-edge or pass --model"
    )


class SELDRuntime:
    """A loaded model; open it with :meth:`open`."""

    def __init__(self, backend: Backend, path: Path) -> None:
        self._backend: Backend | None = backend
        self.path = path
        self._lock = threading.Lock()
        self._executor_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._frame_times = output_frame_times(backend.config)

    @classmethod
    def open(
        cls, path: str | Path | None = None, device: str = "cpu", providers: Any = None, *,
        threads: int | None = None, cuda_graph: bool = False, backend: str | None = None,
        options: RuntimeOptions | None = None,
    ) -> "SELDRuntime":
        """Load ``path`` (None or ``"default"``: the bundled demo model) on ``device`` ('cpu', 'cuda', 'cuda:N').

        The suffix picks the backend: .safetensors -> torch, .onnx -> onnxruntime (``providers``
        overrides the execution providers), .engine/.plan -> TensorRT (always on a GPU: device 'cpu'
        means CUDA device 0; ``cuda_graph`` replays a captured CUDA graph per batch size).
        ``backend="openvino"`` runs an .onnx file with OpenVINO on the CPU instead (extra ``openvino``).
        ``threads`` sets the intra-op threads of torch, onnxruntime and OpenVINO. ``options``
        (:class:`~glfer_edge.runtime.options.RuntimeOptions`) holds the per-backend settings: graph
        optimization level and profiling (onnxruntime), torch.compile and FP16 autocast (torch), compute
        precision, hints, streams, static batch and cache folder (OpenVINO); a setting the chosen backend
        does not have is refused.
        """
        path = default_model()[0] if path is None or str(path) == DEFAULT_NAME else Path(path)
        kind = artifact_kind(path)
        if backend is not None and backend != kind:
            if not (kind == "onnxruntime" and backend in ONNX_BACKENDS):
                allowed = ONNX_BACKENDS if kind == "onnxruntime" else (kind,)
                raise InputError(f"backend {backend!r} cannot run {path.name} ({path.suffix} files run on "
                                 f"{' or '.join(allowed)}); drop backend= or pass a model it runs")
            kind = backend
        options = options or RuntimeOptions()
        check_options(options, kind)
        impl: Backend
        if kind == "torch":
            from glfer_edge.runtime.reference import TorchBackend

            impl = TorchBackend(path, device=device, threads=threads, options=options)
        elif kind == "onnxruntime":
            from glfer_edge.runtime.ort import OrtBackend

            impl = OrtBackend(path, device=device, providers=providers, threads=threads, options=options)
        elif kind == "openvino":
            from glfer_edge.runtime.openvino import OpenVINOBackend

            if providers is not None:
                raise InputError("providers= are onnxruntime's; drop them with backend='openvino'")
            impl = OpenVINOBackend(path, device=device, threads=threads, options=options)
        else:
            from glfer_edge.runtime.trt import TensorRTBackend

            impl = TensorRTBackend(path, device=device, cuda_graph=cuda_graph)
        return cls(impl, path)

    # -- the model's contract ------------------------------------------------------------------
    @property
    def _live(self) -> Backend:
        if self._backend is None:
            raise RuntimeError(f"SELDRuntime for {self.path} is closed")
        return self._backend

    @property
    def config(self) -> SELDConfig:
        return self._live.config

    @property
    def backend(self) -> str:
        return self._live.name

    @property
    def precision(self) -> str:
        return self._live.precision

    @property
    def batch_range(self) -> tuple[int, int | None]:
        """(min, max) batch size; max None means unbounded."""
        return self._live.batch_range

    @property
    def description(self) -> str:
        return self._live.description

    @property
    def backend_impl(self) -> Backend:
        """The backend object (benchmarks read extras such as TensorRT's ``compute_time_s``)."""
        return self._live

    # -- inference -----------------------------------------------------------------------------
    def infer(self, audio: np.ndarray) -> SELDOutput:
        """One segment batch: float32 (4, N) or (B, 4, N) with N == config.segment_samples."""
        backend = self._live
        batch = validate_audio(audio, backend.config, backend.batch_range)
        with self._lock:
            sed, doa, distance = self._live.run(batch)
        return SELDOutput(sed, doa, self._frame_times.copy(), backend.config.class_names, backend.config,
                          distance=distance)

    def infer_async(self, audio: np.ndarray) -> "Future[SELDOutput]":
        """:meth:`infer` on the runtime's worker thread; input errors surface from ``result()``."""
        if self._backend is None:
            raise RuntimeError(f"SELDRuntime for {self.path} is closed")
        with self._executor_lock:  # not the inference lock: submitting must not wait for a running call
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glfer-edge-infer")
        return self._executor.submit(self.infer, audio)

    def close(self) -> None:
        """Wait for pending async calls, then free the backend (device memory for TensorRT)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    def __enter__(self) -> "SELDRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._backend.description if self._backend is not None else "closed"
        return f"SELDRuntime({state})"
