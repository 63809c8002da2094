"""The few CUDA runtime calls the TensorRT backend needs, behind one small interface.

Two implementations:

* ``cuda-python`` (``cuda.bindings.runtime``, the default; what TensorRT's own samples use). JetPack 6
  (CUDA 12.6) needs ``cuda-bindings<13``: 13.x requires a driver >= 580.
* ``pycuda``, used when it is installed and cuda-python is not (or when asked for). It works on
  the primary context (``pycuda.autoprimaryctx``), so it shares memory with TensorRT and torch.
  CUDA graphs are only offered on cuda-python.

Pinned host memory is exposed as numpy arrays; device memory and streams as integer handles, which
is what TensorRT's ``set_tensor_address`` and ``execute_async_v3`` take.
"""

from __future__ import annotations

import abc
import ctypes
import importlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from glfer_edge.errors import GlferError, MissingDependencyError

__all__ = ["CudaError", "DeviceInfo", "CudaAPI", "open_cuda", "parse_device", "BINDINGS"]

BINDINGS = ("cuda-python", "pycuda")


class CudaError(GlferError):
    """A failed CUDA call (no device, driver too old, out of memory); the message names the call."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int  # bytes

    @property
    def sm(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def parse_device(device: str) -> int:
    """CUDA device index of 'cuda' or 'cuda:N'; InputError-style message for anything else."""
    from glfer_edge.errors import InputError

    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise InputError(f"device {device!r} is not a CUDA device; use 'cuda' or 'cuda:N'")


class CudaAPI(abc.ABC):
    """Device memory, pinned host memory, one stream's copies and (optionally) CUDA graphs."""

    name: str
    supports_graphs: bool = False

    @abc.abstractmethod
    def device_count(self) -> int: ...
    @abc.abstractmethod
    def device_info(self, index: int = 0) -> DeviceInfo: ...
    @abc.abstractmethod
    def activate(self, index: int) -> None:
        """Make device ``index`` current on the calling thread (cheap; call before work on any thread)."""
    @abc.abstractmethod
    def create_stream(self) -> int: ...
    @abc.abstractmethod
    def destroy_stream(self, stream: int) -> None: ...
    @abc.abstractmethod
    def synchronize(self, stream: int) -> None: ...
    @abc.abstractmethod
    def alloc_device(self, nbytes: int) -> int: ...
    @abc.abstractmethod
    def free_device(self, ptr: int) -> None: ...
    @abc.abstractmethod
    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
    @abc.abstractmethod
    def free_pinned(self, array: np.ndarray) -> None: ...
    @abc.abstractmethod
    def copy_htod_async(self, dst: int, src: np.ndarray, nbytes: int, stream: int) -> None: ...
    @abc.abstractmethod
    def copy_dtoh_async(self, dst: np.ndarray, src: int, nbytes: int, stream: int) -> None: ...

    @abc.abstractmethod
    def create_event(self) -> Any: ...
    @abc.abstractmethod
    def record_event(self, event: Any, stream: int) -> None: ...
    @abc.abstractmethod
    def elapsed_ms(self, start: Any, end: Any) -> float: ...
    @abc.abstractmethod
    def destroy_event(self, event: Any) -> None: ...

    # CUDA graphs: capture whatever is enqueued on ``stream`` between begin and end.
    def begin_capture(self, stream: int) -> None:
        raise CudaError(f"CUDA graphs are not available with {self.name}; install cuda-python (cuda-bindings)")

    def end_capture(self, stream: int) -> Any:
        raise CudaError(f"CUDA graphs are not available with {self.name}")

    def launch_graph(self, graph: Any, stream: int) -> None:
        raise CudaError(f"CUDA graphs are not available with {self.name}")

    def destroy_graph(self, graph: Any) -> None:
        raise CudaError(f"CUDA graphs are not available with {self.name}")


class _CudaPython(CudaAPI):
    """cuda-python runtime API: every call returns (cudaError_t, *results)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, cudart: Any) -> None:
        self._rt = cudart

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            name = self._rt.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            raise CudaError(f"CUDA {what} failed: {name}; check the GPU driver and that a CUDA device is visible")
        return values[0] if len(values) == 1 else tuple(values)

    def device_count(self) -> int:
        err, count = self._rt.cudaGetDeviceCount()
        return int(count) if err == self._rt.cudaError_t.cudaSuccess else 0

    def device_info(self, index: int = 0) -> DeviceInfo:
        prop = self._check(self._rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return DeviceInfo(index, name, (int(prop.major), int(prop.minor)), int(prop.totalGlobalMem))

    def activate(self, index: int) -> None:
        self._check(self._rt.cudaSetDevice(index), f"cudaSetDevice({index})")

    def create_stream(self) -> int:
        return int(self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate"))

    def destroy_stream(self, stream: int) -> None:
        self._check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def synchronize(self, stream: int) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def alloc_device(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes} bytes)"))

    def free_device(self, ptr: int) -> None:
        self._check(self._rt.cudaFree(ptr), "cudaFree")

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        ptr = int(self._check(self._rt.cudaMallocHost(count * dtype.itemsize), "cudaMallocHost"))
        c_array = (ctypes.c_byte * (count * dtype.itemsize)).from_address(ptr)
        return np.frombuffer(c_array, dtype=dtype, count=count).reshape(shape)

    def free_pinned(self, array: np.ndarray) -> None:
        self._check(self._rt.cudaFreeHost(array.ctypes.data), "cudaFreeHost")

    def copy_htod_async(self, dst: int, src: np.ndarray, nbytes: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def copy_dtoh_async(self, dst: np.ndarray, src: int, nbytes: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def create_event(self) -> Any:
        return self._check(self._rt.cudaEventCreate(), "cudaEventCreate")

    def record_event(self, event: Any, stream: int) -> None:
        self._check(self._rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self._rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def destroy_event(self, event: Any) -> None:
        self._check(self._rt.cudaEventDestroy(event), "cudaEventDestroy")

    def begin_capture(self, stream: int) -> None:
        # thread-local mode: other threads' CUDA calls (torch, logging) cannot invalidate the capture
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self._rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: int) -> Any:
        graph = self._check(self._rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            return self._check(self._rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            self._rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs

    def launch_graph(self, graph: Any, stream: int) -> None:
        self._check(self._rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any) -> None:
        self._check(self._rt.cudaGraphExecDestroy(graph), "cudaGraphExecDestroy")


class _PyCuda(CudaAPI):
    """pycuda driver API on the device's primary context (shared with the CUDA runtime and TensorRT)."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self._drv = driver
        self._streams: dict[int, Any] = {}
        self._allocations: dict[int, Any] = {}
        self._context: Any = None
        self._threads = threading.local()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._drv.Error as exc:
            raise CudaError(
                f"CUDA {what} failed: {exc}; check the GPU driver and that a CUDA device is visible"
            ) from None

    def device_count(self) -> int:
        try:
            self._drv.init()
            return self._drv.Device.count()
        except self._drv.Error:
            return 0

    def device_info(self, index: int = 0) -> DeviceInfo:
        self._call("cuInit", self._drv.init)
        dev = self._call("cuDeviceGet", self._drv.Device, index)
        return DeviceInfo(index, dev.name(), dev.compute_capability(), int(dev.total_memory()))

    def activate(self, index: int) -> None:
        self._call("cuInit", self._drv.init)
        if self._context is None:
            self._context = self._call("retain_primary_context", self._drv.Device(index).retain_primary_context)
        if not getattr(self._threads, "pushed", False):  # a context is current per thread
            self._context.push()
            self._threads.pushed = True

    def create_stream(self) -> int:
        stream = self._call("cuStreamCreate", self._drv.Stream)
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)  # pycuda frees it with the object

    def synchronize(self, stream: int) -> None:
        self._call("cuStreamSynchronize", self._streams[stream].synchronize)

    def alloc_device(self, nbytes: int) -> int:
        allocation = self._call(f"cuMemAlloc({nbytes} bytes)", self._drv.mem_alloc, nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free_device(self, ptr: int) -> None:
        self._call("cuMemFree", self._allocations.pop(ptr).free)

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._call("cuMemHostAlloc", self._drv.pagelocked_empty, shape, np.dtype(dtype))

    def free_pinned(self, array: np.ndarray) -> None:
        base = array.base if array.base is not None else array
        if hasattr(base, "free"):
            base.free()

    def copy_htod_async(self, dst: int, src: np.ndarray, nbytes: int, stream: int) -> None:
        view = src.reshape(-1).view(np.uint8)[:nbytes]
        self._call("cuMemcpyHtoDAsync", self._drv.memcpy_htod_async, dst, view, self._streams[stream])

    def copy_dtoh_async(self, dst: np.ndarray, src: int, nbytes: int, stream: int) -> None:
        view = dst.reshape(-1).view(np.uint8)[:nbytes]
        self._call("cuMemcpyDtoHAsync", self._drv.memcpy_dtoh_async, view, src, self._streams[stream])

    def create_event(self) -> Any:
        return self._call("cuEventCreate", self._drv.Event)

    def record_event(self, event: Any, stream: int) -> None:
        self._call("cuEventRecord", event.record, self._streams[stream])

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cuEventElapsedTime", end.time_since, start))

    def destroy_event(self, event: Any) -> None:
        pass  # pycuda frees events with the object


def _import_cudart() -> Any:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")  # cuda-python < 12.6 layout


def open_cuda(prefer: str | None = None) -> CudaAPI:
    """The CUDA interface: cuda-python when installed, else pycuda (or the one named by ``prefer``)."""
    order = BINDINGS if prefer is None else (prefer,)
    if prefer is not None and prefer not in BINDINGS:
        raise MissingDependencyError(f"unknown CUDA binding {prefer!r}; choose one of {', '.join(BINDINGS)}")
    for name in order:
        try:
            if name == "cuda-python":
                return _CudaPython(_import_cudart())
            return _PyCuda(importlib.import_module("pycuda.driver"))
        except ImportError:
            continue
    raise MissingDependencyError(
        f"TensorRT inference needs {' or '.join(order)}; install it with: pip install 'glfer-edge[trt]' "
        "(JetPack 6: cuda-bindings<13)"
    )
