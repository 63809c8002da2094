"""TensorRT backend: opens a raw plan + its sidecar and runs it with the name-based tensor API.

Opening an engine happens here, top to bottom in ``TensorRTBackend.__init__``: sidecar (how the plan
was built) -> installed TensorRT flavour and version -> GPU and driver -> runtime with the flavour's
logger -> deserialized engine -> I/O check -> execution context -> buffers. Only the flavour import
and the sidecar format live in :mod:`glfer_edge.runtime.trt_compat`, which the builder shares.

Resources are acquired once at open time and freed in reverse order by :meth:`close`: pinned host
and device buffers sized for the profile's largest batch, one CUDA stream, one execution context
(TensorRT allocates its own activation memory). Per call: copy the batch into pinned memory,
H2D on the stream, enqueue (or replay the CUDA graph), D2H, synchronize. One context and one set
of buffers means calls must not overlap; :class:`SELDRuntime` serializes them with its lock. Every
call runs inside ``cuda.active(device)``, so any thread may call (pycuda pushes and pops its context).

Optional CUDA graph (``cuda_graph=True``, cuda-python only): the enqueue of one batch size is
captured after a normal warm-up run (TensorRT finishes shape-dependent setup in the first enqueue
after a shape change) and replayed while the batch size stays the same. ``graph_status`` says
whether capture is on and, when it is off, why (pycuda, a TensorRT-RTX engine built without
REQUIRE_USER_ALLOCATION, a stream that is not capturable, a failed capture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge import metadata as md
from glfer_edge.errors import ArtifactError, InputError, MissingDependencyError
from glfer_edge.runtime.artifact import config_from_metadata
from glfer_edge.runtime.base import Backend, Outputs
from glfer_edge.runtime.cuda import CudaAPI, CudaError, DeviceInfo, open_cuda, parse_device
from glfer_edge.runtime.trt_compat import AHEAD_OF_TIME, TensorRT, load_tensorrt, read_sidecar

__all__ = ["TensorRTBackend", "check_sidecar", "rebuild_hint"]


def rebuild_hint(sidecar: dict[str, Any], engine_path: str | Path) -> str:
    onnx = sidecar.get("onnx", {}).get("path", "MODEL.onnx")
    return f"rebuild it here with: glfer-edge build {onnx} --out {engine_path}"


def check_sidecar(sidecar: dict[str, Any], engine_path: str | Path, trt: TensorRT, gpu: DeviceInfo | None) -> None:
    """Refuse an engine built by another TensorRT flavour/version, or (non-portable) for another GPU."""
    built = sidecar.get("tensorrt", {})
    rebuild = rebuild_hint(sidecar, engine_path)
    if (built.get("flavour"), built.get("version")) != (trt.flavour, trt.version):
        raise ArtifactError(
            f"engine {engine_path} was built with {built.get('flavour')} {built.get('version')}, but this machine "
            f"has {trt.flavour} {trt.version} (plans are tied to the exact TensorRT version); {rebuild}"
        )
    target = sidecar.get("gpu", {})
    if trt.portable_engines or gpu is None or target.get("compute_capability") in (None, AHEAD_OF_TIME):
        return
    if target["compute_capability"] != gpu.sm:
        raise ArtifactError(
            f"engine {engine_path} was built for {target.get('name')} (compute capability "
            f"{target['compute_capability']}), this GPU is {gpu.name} ({gpu.sm}); {rebuild}"
        )


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self, path: str | Path, *, device: str = "cuda", cuda_graph: bool = False, cuda: str | None = None
    ) -> None:
        path = Path(path)
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._freed: list[tuple[str, Any]] = []  # (kind, handle) in acquisition order
        self._graph: Any = None
        self._graph_batch: int | None = None

        # 1. How the plan was built: a foreign TensorRT is refused before anything touches the GPU.
        sidecar = read_sidecar(path)
        self.config, self.precision = config_from_metadata(sidecar.get("onnx_metadata", {}), path)
        built = sidecar.get("tensorrt", {})
        try:
            self._trt = load_tensorrt(built.get("flavour"))
        except MissingDependencyError:
            raise ArtifactError(
                f"engine {path} was built with {built.get('flavour')} {built.get('version')}, which is not "
                f"installed here; install it, or {rebuild_hint(sidecar, path)}"
            ) from None
        check_sidecar(sidecar, path, self._trt, None)

        # 2. The GPU that runs it (engines always run on a GPU: device 'cpu' means CUDA device 0).
        self._cuda: CudaAPI = open_cuda(cuda)
        self._device_index = index = 0 if device == "cpu" else parse_device(device)
        status = self._cuda.driver_status()
        if status.devices <= index:
            why = status.problem or (
                f"only {status.devices} CUDA device(s) visible; pass --device cuda:N with N < {status.devices}"
            )
            raise CudaError(f"engine {path} needs CUDA device {index}: {why}")
        gpu = self._cuda.device_info(index)
        check_sidecar(sidecar, path, self._trt, gpu)

        # 3. Plan -> engine -> execution context -> buffers, with that device current.
        self.graph_status = self._graph_plan(cuda_graph, sidecar, path)
        self._use_graph = self.graph_status.startswith("pending")
        try:
            with self._cuda.active(index):
                self._runtime = self._trt.module.Runtime(self._trt.logger())
                self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
                if self._engine is None:
                    raise ArtifactError(
                        f"{self._trt.flavour} {self._trt.version} could not load engine {path} (see its log "
                        f"above); {rebuild_hint(sidecar, path)}"
                    )
                self.batch_range = self._check_io(path)
                self._context = self._engine.create_execution_context()
                if self._context is None:
                    raise CudaError(f"TensorRT could not create an execution context for {path} (GPU memory?)")
                self._allocate()
        except BaseException:
            self.close()
            raise
        self._summary = (
            f"{path.name} ({self.precision}, {self._trt.flavour} {self._trt.version} on {gpu.name}, {self._cuda.name}"
        )
        self._graph_requested = cuda_graph

    @property
    def description(self) -> str:  # type: ignore[override]
        graph = f", CUDA graph {self.graph_status}" if self._graph_requested else ""
        return f"{self._summary}{graph})"

    # -- opening -------------------------------------------------------------------------------
    def _graph_plan(self, requested: bool, sidecar: dict[str, Any], path: Path) -> str:
        """'pending ...' when capture will be tried on the first call, else 'off: <why>'."""
        if not requested:
            return "off"
        if not self._cuda.supports_graphs:
            return f"off: CUDA graphs need cuda-python (pip install 'glfer-edge[trt]'); {self._cuda.name} is in use"
        if self._trt.portable_engines and not sidecar.get("builder", {}).get("require_user_allocation"):
            return (
                "off: TensorRT-RTX captures only engines built with REQUIRE_USER_ALLOCATION; "
                f"{rebuild_hint(sidecar, path)}"
            )
        return "pending (captured on the first call)"

    def _check_io(self, path: Path) -> tuple[int, int]:
        """The engine's tensors are audio -> sed, doa[, distance] at this model's segment length; its batch range."""
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = (md.INPUT_NAME, *md.output_names(self.config))
        if sorted(names) != sorted(expected):
            raise ArtifactError(f"engine {path} has tensors {names}, expected {', '.join(expected)}; rebuild it")
        lo, _, hi = self._engine.get_tensor_profile_shape(md.INPUT_NAME, 0)
        if tuple(lo[1:]) != (4, self.config.segment_samples):
            raise ArtifactError(
                f"engine {path} takes {tuple(lo)}, its metadata says (B, 4, {self.config.segment_samples}); rebuild it"
            )
        return int(lo[0]), int(hi[0])

    def _allocate(self) -> None:
        """Pinned host + device buffers for the largest batch; tensor addresses are set once."""
        max_batch = self.batch_range[1]
        self._context.set_input_shape(md.INPUT_NAME, (max_batch, 4, self.config.segment_samples))
        self._stream = self._cuda.create_stream()
        self._freed.append(("stream", self._stream))
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for name in (md.INPUT_NAME, *md.output_names(self.config)):
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
    def run(self, audio: np.ndarray) -> Outputs:
        with self._cuda.active(self._device_index):  # infer_async and server threads call from other threads
            b = audio.shape[0]
            if b != self._bound_batch:
                if not self._context.set_input_shape(md.INPUT_NAME, audio.shape):
                    raise InputError(f"engine rejected input shape {audio.shape}; its batch range is {self.batch_range}")
                self._bound_batch = b
            self._host[md.INPUT_NAME][:b] = audio
            self._cuda.copy_htod_async(self._device[md.INPUT_NAME], self._host[md.INPUT_NAME], audio.nbytes, self._stream)
            self._enqueue(b)
            names = md.output_names(self.config)
            for name in names:
                host = self._host[name]
                self._cuda.copy_dtoh_async(host, self._device[name], host[:b].nbytes, self._stream)
            self._cuda.synchronize(self._stream)
            return Outputs(*(self._host[name][:b].copy() for name in names))

    def compute_time_s(self, audio: np.ndarray) -> float:
        """GPU time of one enqueue (CUDA events around it), copies excluded; for benchmarks."""
        with self._cuda.active(self._device_index):
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
            self.graph_status = f"off: {self._trt.flavour} reports this engine's stream as not capturable"
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
        cuda = getattr(self, "_cuda", None)
        if cuda is None:  # failed before a CUDA binding was opened: nothing on the device
            return
        try:
            with cuda.active(self._device_index):  # pycuda frees its objects with their context current
                self._release()
        except Exception:
            self._release()  # the device is gone: drop the handles anyway

    def _release(self) -> None:
        for action in (self._release_graph, self._release_buffers):
            try:
                action()
            except Exception:
                pass
        for attr in ("_context", "_engine", "_runtime"):
            setattr(self, attr, None)  # TensorRT objects free their memory on destruction, context first

    def _release_buffers(self) -> None:
        freed = self._freed
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
