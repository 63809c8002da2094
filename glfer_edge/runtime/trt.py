"""TensorRT backend: a raw plan + its sidecar, run with the name-based tensor API and execute_async_v3.

Resources are acquired once at open time and freed in reverse order by :meth:`close`: pinned host
and device buffers sized for the profile's largest batch, one CUDA stream, one execution context
(TensorRT allocates its own activation memory). Per call: copy the batch into pinned memory,
H2D on the stream, enqueue (or replay the CUDA graph), D2H, synchronize. One context and one set
of buffers means calls must not overlap; :class:`SELDRuntime` serializes them with its lock.

Optional CUDA graph (``cuda_graph=True``, cuda-python only): the enqueue of one batch size is
captured after a normal warm-up run (TensorRT finishes shape-dependent setup in the first enqueue
after a shape change) and replayed while the batch size stays the same. If capture fails the
backend keeps running without a graph and says why in ``graph_status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge import metadata as md
from glfer_edge.errors import ArtifactError, InputError, MissingDependencyError
from glfer_edge.runtime.artifact import config_from_metadata
from glfer_edge.runtime.base import Backend
from glfer_edge.runtime.cuda import CudaAPI, CudaError, open_cuda, parse_device
from glfer_edge.runtime.trt_compat import TensorRT, check_sidecar, load_tensorrt, read_sidecar, rebuild_hint

__all__ = ["TensorRTBackend"]


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self, path: str | Path, *, device: str = "cuda", cuda_graph: bool = False, cuda: str | None = None
    ) -> None:
        path = Path(path)
        sidecar = read_sidecar(path)
        self.config, self.precision = config_from_metadata(sidecar.get("onnx_metadata", {}), path)
        self._trt = self._load_flavour(sidecar, path)
        check_sidecar(sidecar, path, self._trt, None)  # TensorRT version first: needs no GPU
        self._cuda: CudaAPI = open_cuda(cuda)
        index = 0 if device == "cpu" else parse_device(device)  # engines always run on a GPU
        if self._cuda.device_count() <= index:
            raise CudaError(f"no CUDA device {index} for engine {path}; run it on its GPU or use the .onnx on CPU")
        gpu = self._cuda.device_info(index)
        check_sidecar(sidecar, path, self._trt, gpu)
        self._device_index = index
        self._sidecar = sidecar
        self._cuda.activate(index)
        self._freed: list[tuple[str, Any]] = []  # (kind, handle) in acquisition order
        self._use_graph = cuda_graph
        self._graph: Any = None
        self._graph_batch: int | None = None
        try:
            self._open_engine(path)
            self._allocate()
        except BaseException:
            self.close()
            raise
        self.graph_status = "off" if not cuda_graph else "pending (captured on the first call)"
        self.description = (
            f"{path.name} ({self.precision}, {self._trt.flavour} {self._trt.version} on {gpu.name}, "
            f"{self._cuda.name})"
        )

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def _load_flavour(sidecar: dict[str, Any], path: Path) -> TensorRT:
        built = sidecar.get("tensorrt", {})
        try:
            return load_tensorrt(built.get("flavour"))
        except MissingDependencyError:
            raise ArtifactError(
                f"engine {path} was built with {built.get('flavour')} {built.get('version')}, which is not "
                f"installed here; install it, or {rebuild_hint(sidecar, path)}"
            ) from None

    def _open_engine(self, path: Path) -> None:
        trt = self._trt.module
        self._logger = self._trt.logger()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ArtifactError(
                f"{self._trt.flavour} {self._trt.version} could not load engine {path} (see its log above); "
                f"{rebuild_hint(self._sidecar, path)}"
            )
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if sorted(names) != sorted((md.INPUT_NAME, *md.OUTPUT_NAMES)):
            raise ArtifactError(f"engine {path} has tensors {names}, expected audio, sed, doa; rebuild it")
        lo, _, hi = self._engine.get_tensor_profile_shape(md.INPUT_NAME, 0)
        if tuple(lo[1:]) != (4, self.config.segment_samples):
            raise ArtifactError(
                f"engine {path} takes {tuple(lo)}, its metadata says (B, 4, {self.config.segment_samples}); rebuild it"
            )
        self.batch_range = (int(lo[0]), int(hi[0]))
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise CudaError(f"TensorRT could not create an execution context for {path} (GPU memory?)")

    def _allocate(self) -> None:
        """Pinned host + device buffers for the largest batch; tensor addresses are set once."""
        max_batch = self.batch_range[1]
        self._context.set_input_shape(md.INPUT_NAME, (max_batch, 4, self.config.segment_samples))
        self._stream = self._cuda.create_stream()
        self._freed.append(("stream", self._stream))
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for name in (md.INPUT_NAME, *md.OUTPUT_NAMES):
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            dtype = np.dtype(self._trt.module.nptype(self._engine.get_tensor_dtype(name)))
            if dtype != np.float32:
                raise ArtifactError(f"engine tensor {name} is {dtype}; glfer-edge engines keep float32 I/O")
            self._host[name] = self._cuda.alloc_pinned(shape, dtype)
            self._freed.append(("pinned", self._host[name]))
            self._device[name] = self._cuda.alloc_device(self._host[name].nbytes)
            self._freed.append(("device", self._device[name]))
            self._context.set_tensor_address(name, self._device[name])
        self._bound_batch = max_batch

    # -- inference -----------------------------------------------------------------------------
    def run(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._cuda.activate(self._device_index)  # infer_async and user threads call from other threads
        b = audio.shape[0]
        if b != self._bound_batch:
            if not self._context.set_input_shape(md.INPUT_NAME, audio.shape):
                raise InputError(f"engine rejected input shape {audio.shape}; its batch range is {self.batch_range}")
            self._bound_batch = b
        self._host[md.INPUT_NAME][:b] = audio
        self._cuda.copy_htod_async(self._device[md.INPUT_NAME], self._host[md.INPUT_NAME], audio.nbytes, self._stream)
        self._enqueue(b)
        for name in md.OUTPUT_NAMES:
            host = self._host[name]
            self._cuda.copy_dtoh_async(host, self._device[name], host[:b].nbytes, self._stream)
        self._cuda.synchronize(self._stream)
        return self._host["sed"][:b].copy(), self._host["doa"][:b].copy()

    def compute_time_s(self, audio: np.ndarray) -> float:
        """GPU time of one enqueue (CUDA events around it), copies excluded; for benchmarks."""
        self.run(audio)  # binds the shape and fills the input buffer
        start, end = self._cuda.create_event(), self._cuda.create_event()
        try:
            self._cuda.record_event(start, self._stream)
            self._enqueue(audio.shape[0])
            self._cuda.record_event(end, self._stream)
            self._cuda.synchronize(self._stream)
            return self._cuda.elapsed_ms(start, end) / 1000.0
        finally:
            self._cuda.destroy_event(start)
            self._cuda.destroy_event(end)

    def _enqueue(self, batch: int) -> None:
        if self._graph is not None and self._graph_batch == batch:
            self._cuda.launch_graph(self._graph, self._stream)
            return
        if not self._context.execute_async_v3(self._stream):
            raise CudaError("TensorRT execute_async_v3 failed; see the TensorRT log above")
        if self._use_graph and self._graph_batch != batch:
            self._capture(batch)

    def _capture(self, batch: int) -> None:
        """Capture the enqueue for this batch size; the warm-up run above already did the real work."""
        self._release_graph()
        self._graph_batch = batch
        self._cuda.synchronize(self._stream)  # capture starts on an idle stream
        capturable = getattr(self._context, "is_stream_capturable", None)
        if capturable is not None and not capturable(self._stream):
            self.graph_status = "off: this engine's stream is not capturable"
            return
        try:
            self._cuda.begin_capture(self._stream)
            try:
                enqueued = self._context.execute_async_v3(self._stream)
            finally:
                self._graph = self._cuda.end_capture(self._stream)
        except CudaError as exc:
            self._graph = None
            self.graph_status = f"off: capture failed ({exc})"
            return
        if not enqueued:
            self._release_graph()
            self.graph_status = "off: execute_async_v3 failed while capturing"
            return
        self.graph_status = f"on for batch {batch}"

    def _release_graph(self) -> None:
        if self._graph is not None:
            self._cuda.destroy_graph(self._graph)
            self._graph = None

    def close(self) -> None:
        """Free device memory in reverse order; never raises (cleanup errors are not the user's)."""
        for action in (self._release_graph, self._release_buffers):
            try:
                action()
            except Exception:
                pass
        for attr in ("_context", "_engine", "_runtime"):
            setattr(self, attr, None)  # TensorRT objects free their memory on destruction, context first

    def _release_buffers(self) -> None:
        freed = getattr(self, "_freed", [])
        while freed:
            kind, handle = freed.pop()
            try:
                if kind == "device":
                    self._cuda.free_device(handle)
                elif kind == "pinned":
                    self._cuda.free_pinned(handle)
                else:
                    self._cuda.destroy_stream(handle)
            except Exception:
                pass
