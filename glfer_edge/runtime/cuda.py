"""The few CUDA runtime calls the TensorRT backend needs, behind one small interface.

Two implementations:

* ``cuda-python`` (``cuda.bindings.runtime``, the default; what TensorRT's own samples use). The
  ``[trt]`` extra pins ``cuda-bindings>=12.8,<14``: 13.x needs a driver >= 580, and pip falls back
  to 12.9 only when told to (``pip install 'cuda-bindings<13'``), which runs on any CUDA 12 driver
  (R525+; JetPack 6's CUDA 12.6 through minor-version compatibility).
* ``pycuda``, used when it is installed and cuda-python is not (or when asked for). It works on the
  device's primary context (the one the CUDA runtime, TensorRT and torch use), pushed onto the calling
  thread for the length of an :meth:`CudaAPI.active` block and popped after it: pycuda aborts the
  process when a thread's context stack is not empty at exit. CUDA graphs are only offered on cuda-python.

Pinned host memory is exposed as numpy arrays; device memory and streams as integer handles, which
is what TensorRT's ``set_tensor_address`` and ``execute_async_v3`` take. Streams are created
non-blocking, so work other libraries put on the legacy default stream neither serializes with them
nor invalidates a graph capture on them.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from glfer_edge.errors import GlferError, MissingDependencyError

__all__ = [
    "CudaError", "DeviceInfo", "DriverStatus", "CudaAPI", "open_cuda", "parse_device", "diagnose_driver", "BINDINGS",
]

BINDINGS = ("cuda-python", "pycuda")
_STREAM_NON_BLOCKING = 1  # cudaStreamNonBlocking == CU_STREAM_NON_BLOCKING in every CUDA release


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


@dataclass(frozen=True)
class DriverStatus:
    """What the driver and a binding report: device count, versions, and why there is no device."""

    binding: str
    devices: int
    driver_version: int  # CUDA version the driver supports (12040 = 12.4); 0: no driver found
    bindings_version: int  # CUDA version the binding's runtime is built for (13000 = 13.0)
    driver_too_old: bool  # a GPU may be present but these bindings cannot use it
    problem: str | None  # one line (cause and fix) when devices == 0, else None


def cuda_version_text(version: int) -> str:
    """12040 -> '12.4' (the encoding of cudaDriverGetVersion / cudaRuntimeGetVersion)."""
    return f"{version // 1000}.{version % 1000 // 10}"


def diagnose_driver(
    binding: str, error: str | None, devices: int, driver_version: int, bindings_version: int
) -> DriverStatus:
    """Name the cause of ``devices == 0`` from the device-count error and the two CUDA versions.

    ``error`` is the CUDA error name of the device-count call (None on success). A missing driver
    and a too-old one return the same error (cudaErrorInsufficientDriver), so the driver version
    tells them apart: cudaDriverGetVersion reports 0 when no driver is installed.
    """
    if error is None and devices > 0:
        return DriverStatus(binding, devices, driver_version, bindings_version, False, None)
    needs = cuda_version_text(bindings_version)
    if driver_version == 0:
        problem = "no NVIDIA driver found (libcuda not loadable): install the NVIDIA driver, or run the .onnx model on CPU"
        return DriverStatus(binding, 0, 0, bindings_version, False, problem)
    has = cuda_version_text(driver_version)
    if error in ("cudaErrorInsufficientDriver", "cudaErrorCallRequiresNewerDriver") or (
        error is not None and driver_version // 1000 < bindings_version // 1000
    ):
        if binding == "pycuda":
            fix = ("upgrade the NVIDIA driver, or rebuild pycuda against this machine's CUDA "
                   "(pip install --no-binary pycuda pycuda)")
        elif bindings_version // 1000 >= 13 and driver_version // 1000 == 12:
            fix = "pip install 'cuda-bindings<13'"  # 12.9 runs on every CUDA 12 driver
        else:
            fix = f"upgrade the NVIDIA driver to one for CUDA {bindings_version // 1000}.x"
        problem = (
            f"CUDA driver too old for {binding} (driver version {has}, bindings need {needs}): {fix}"
        )
        return DriverStatus(binding, 0, driver_version, bindings_version, True, problem)
    if error == "cudaErrorSystemDriverMismatch":
        problem = f"the NVIDIA kernel module and driver library differ (driver {has}): reboot, or reinstall the driver"
    elif error in (None, "cudaErrorNoDevice"):
        problem = (
            f"no CUDA device visible (driver {has}): check CUDA_VISIBLE_DEVICES and nvidia-smi, "
            "or run the .onnx model on CPU"
        )
    else:
        problem = f"counting CUDA devices failed with {error} (driver {has}, bindings {needs}): check the driver"
    return DriverStatus(binding, 0, driver_version, bindings_version, False, problem)


def parse_device(device: str) -> int:
    """CUDA device index of 'cuda' or 'cuda:N'; InputError-style message for anything else."""
    from glfer_edge.errors import InputError

    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise InputError(f"device {device!r} is not a CUDA device; use 'cuda' or 'cuda:N'")


class CudaAPI(abc.ABC):
    """Device memory, pinned host memory, one stream's copies and (optionally) CUDA graphs.

    Every call that touches the device runs inside ``with api.active(index):`` on its thread.
    """

    name: str
    supports_graphs: bool = False

    @abc.abstractmethod
    def driver_status(self) -> DriverStatus:
        """Device count and, when it is 0, why (no driver, driver too old, no device)."""

    def device_count(self) -> int:
        """CUDA devices usable here; 0 without a driver or device. Raises CudaError for a driver too
        old for these bindings: the GPU is there, and "no GPU" would send the user the wrong way."""
        status = self.driver_status()
        if status.driver_too_old:
            raise CudaError(status.problem)
        return status.devices

    @abc.abstractmethod
    def device_info(self, index: int = 0) -> DeviceInfo: ...

    @contextlib.contextmanager
    def active(self, index: int) -> Iterator[None]:
        """Device ``index`` is current on the calling thread inside the block (any thread; nests)."""
        self._enter(index)
        try:
            yield
        finally:
            self._leave()

    @abc.abstractmethod
    def _enter(self, index: int) -> None: ...
    @abc.abstractmethod
    def _leave(self) -> None: ...
    @abc.abstractmethod
    def create_stream(self) -> int:
        """A non-blocking stream (no implicit synchronization with the legacy default stream)."""
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

    def _error_name(self, err: Any) -> str:
        name = self._rt.cudaGetErrorName(err)[1]
        return name.decode() if isinstance(name, bytes) else str(name)

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            raise CudaError(
                f"CUDA {what} failed: {self._error_name(err)}; check the GPU driver and that a CUDA device is visible"
            )
        return values[0] if len(values) == 1 else tuple(values)

    def driver_status(self) -> DriverStatus:
        err, count = self._rt.cudaGetDeviceCount()
        ok = err == self._rt.cudaError_t.cudaSuccess
        driver = self._rt.cudaDriverGetVersion()  # answers without a driver: (success, 0)
        runtime = self._rt.cudaRuntimeGetVersion()
        return diagnose_driver(
            self.name, None if ok else self._error_name(err), int(count or 0) if ok else 0,
            int(driver[1] or 0), int(runtime[1] or 0),
        )

    def device_info(self, index: int = 0) -> DeviceInfo:
        prop = self._check(self._rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return DeviceInfo(index, name, (int(prop.major), int(prop.minor)), int(prop.totalGlobalMem))

    def _enter(self, index: int) -> None:
        # the runtime API keeps no context stack: setting the device per thread is all there is
        self._check(self._rt.cudaSetDevice(index), f"cudaSetDevice({index})")

    def _leave(self) -> None:
        pass

    def create_stream(self) -> int:
        flags = getattr(self._rt, "cudaStreamNonBlocking", _STREAM_NON_BLOCKING)
        return int(self._check(self._rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags"))

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
            # WithFlags has one signature on cuda-bindings 11.8, 12.x and 13.x; plain cudaGraphInstantiate
            # takes (graph, logBuffer, bufferSize) on 11.8 and (graph, flags) from 12.0
            return self._check(self._rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        except (TypeError, AttributeError) as exc:
            raise CudaError(f"cudaGraphInstantiateWithFlags is not callable in these bindings ({exc}); "
                            "upgrade cuda-bindings") from None
        finally:
            self._rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs

    def launch_graph(self, graph: Any, stream: int) -> None:
        self._check(self._rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any) -> None:
        self._check(self._rt.cudaGraphExecDestroy(graph), "cudaGraphExecDestroy")


class _PyCuda(CudaAPI):
    """pycuda driver API on the device's primary context (shared with the CUDA runtime and TensorRT).

    The context is pushed when a thread enters :meth:`active` and popped when it leaves: pycuda
    keeps a context stack per thread and calls abort() when a thread (the main one at interpreter
    exit included) ends with a non-empty stack. pycuda objects (streams, buffers) are freed inside
    an active block, where their context is current.
    """

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self._drv = driver
        self._streams: dict[int, Any] = {}
        self._allocations: dict[int, Any] = {}
        self._contexts: dict[int, Any] = {}  # device index -> retained primary context
        self._lock = threading.Lock()
        self._threads = threading.local()  # per thread: [context pushed by us, nesting depth]

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._drv.Error as exc:
            raise CudaError(
                f"CUDA {what} failed: {exc}; check the GPU driver and that a CUDA device is visible"
            ) from None

    def driver_status(self) -> DriverStatus:
        major, minor, *_ = tuple(self._drv.get_version()) + (0,)  # the CUDA pycuda was compiled against
        built_for = int(major) * 1000 + int(minor) * 10
        driver = int(self._drv.get_driver_version())  # importing pycuda.driver already needed libcuda
        try:
            self._drv.init()
            count, error = int(self._drv.Device.count()), None
        except self._drv.Error as exc:
            count, error = 0, str(exc)
            if "no CUDA-capable device" in error:
                error = "cudaErrorNoDevice"
            elif "insufficient" in error.lower() or "newer driver" in error.lower():
                error = "cudaErrorInsufficientDriver"
        return diagnose_driver(self.name, error, count, driver, built_for)

    def device_info(self, index: int = 0) -> DeviceInfo:
        self._call("cuInit", self._drv.init)
        dev = self._call("cuDeviceGet", self._drv.Device, index)
        return DeviceInfo(index, dev.name(), dev.compute_capability(), int(dev.total_memory()))

    def _enter(self, index: int) -> None:
        state = getattr(self._threads, "state", None)
        if state is not None:
            state[1] += 1  # nested: the context is already current on this thread
            return
        with self._lock:
            context = self._contexts.get(index)
            if context is None:
                self._call("cuInit", self._drv.init)
                device = self._call("cuDeviceGet", self._drv.Device, index)
                context = self._call("cuDevicePrimaryCtxRetain", device.retain_primary_context)
                self._contexts[index] = context
        self._call("cuCtxPushCurrent", context.push)
        self._threads.state = [context, 1]

    def _leave(self) -> None:
        state = self._threads.state
        state[1] -= 1
        if state[1] == 0:
            self._threads.state = None
            self._call("cuCtxPopCurrent", self._drv.Context.pop)

    def create_stream(self) -> int:
        stream = self._call("cuStreamCreate", self._drv.Stream, _STREAM_NON_BLOCKING)
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
    errors = []
    for name in order:
        try:
            if name == "cuda-python":
                return _CudaPython(_import_cudart())
            return _PyCuda(importlib.import_module("pycuda.driver"))
        except ImportError as exc:  # a bare `cuda` namespace package (cuda-pathfinder, ...) lands here too
            errors.append(f"{name}: {exc}")
    raise MissingDependencyError(
        f"TensorRT inference needs {' or '.join(order)} ({'; '.join(errors)}); install it with: "
        "pip install 'glfer-edge[trt]'"
    )
