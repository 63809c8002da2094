"""The CUDA interface (runtime/cuda.py): the driver/bindings diagnosis on any machine, and on a real GPU
pinned/device round trips, events, graphs, non-blocking streams and a clean process exit.

GPU tests run once per installed binding (cuda-python, pycuda) and skip with the reason when the
binding is missing or sees no usable device (the reason is the binding's own diagnosis). The
diagnosis test runs wherever cuda-bindings is installed: its runtime answers without a GPU or driver.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from glfer_edge.errors import InputError, MissingDependencyError
from glfer_edge.runtime.cuda import BINDINGS, CudaError, diagnose_driver, open_cuda, parse_device


def _binding_missing(binding: str) -> str | None:
    """Why ``binding`` cannot be opened here, or None. Importing it is the test: a bare ``cuda``
    namespace package (cuda-pathfinder, nvidia-* wheels) has a spec but no bindings."""
    try:
        open_cuda(binding)
    except ImportError as exc:
        return f"{binding} is not installed ({exc})"
    return None


@pytest.fixture(params=BINDINGS)
def cuda(request):
    reason = _binding_missing(request.param)
    if reason:
        pytest.skip(reason)
    api = open_cuda(request.param)
    status = api.driver_status()
    if status.devices == 0:
        pytest.skip(f"{request.param}: {status.problem}")
    with api.active(0):
        yield api


# -- the driver/bindings diagnosis (no GPU needed) -----------------------------------------------


def test_diagnosis_from_the_real_bindings():
    """cuda-bindings' runtime answers on a machine without a GPU or driver; what it says is mapped right.

    Without a driver, cudaGetDeviceCount fails with cudaErrorInsufficientDriver, the same error as a
    driver too old for the bindings: only cudaDriverGetVersion (0: no driver) tells them apart.
    """
    reason = _binding_missing("cuda-python")
    if reason:
        pytest.skip(f"{reason}; pip install 'glfer-edge[trt]' to run the diagnosis with the real bindings")
    from glfer_edge.runtime.cuda import _import_cudart

    rt = _import_cudart()
    err, _ = rt.cudaGetDeviceCount()
    driver = int(rt.cudaDriverGetVersion()[1])
    api = open_cuda("cuda-python")
    status = api.driver_status()
    assert status.binding == "cuda-python" and status.bindings_version == int(rt.cudaRuntimeGetVersion()[1]) > 0
    assert status.driver_version == driver
    if err == rt.cudaError_t.cudaSuccess and status.devices > 0:
        assert status.problem is None and api.device_count() == status.devices
    elif driver == 0:
        assert err == rt.cudaError_t.cudaErrorInsufficientDriver  # what makes the driver version necessary
        assert status.devices == 0 and not status.driver_too_old and api.device_count() == 0
        assert status.problem.startswith("no NVIDIA driver found") and "run the .onnx model on CPU" in status.problem
    else:  # a driver without a usable device, or one too old for these bindings
        assert status.devices == 0 and status.problem
        if status.driver_too_old:
            with pytest.raises(CudaError, match="driver too old"):
                api.device_count()


def test_diagnosis_names_the_cause_and_the_fix():
    ok = diagnose_driver("cuda-python", None, 2, 12040, 12090)
    assert ok.devices == 2 and ok.problem is None and not ok.driver_too_old
    # x86 server on R550 (CUDA 12.4) with cuda-bindings 13: a GPU is there, the bindings cannot use it
    old = diagnose_driver("cuda-python", "cudaErrorInsufficientDriver", 0, 12040, 13050)
    assert old.driver_too_old and old.devices == 0
    assert old.problem == (
        "CUDA driver too old for cuda-python (driver version 12.4, bindings need 13.5): pip install 'cuda-bindings<13'"
    )
    # cuda-bindings 12.9 on a CUDA 11 driver: only a newer driver helps
    older = diagnose_driver("cuda-python", "cudaErrorInsufficientDriver", 0, 11040, 12090)
    assert older.driver_too_old and "upgrade the NVIDIA driver to one for CUDA 12.x" in older.problem
    none = diagnose_driver("cuda-python", "cudaErrorInsufficientDriver", 0, 0, 13050)
    assert not none.driver_too_old and none.problem.startswith("no NVIDIA driver found")
    empty = diagnose_driver("cuda-python", "cudaErrorNoDevice", 0, 12060, 12090)
    assert not empty.driver_too_old and empty.problem.startswith("no CUDA device visible (driver 12.6)")
    assert "CUDA_VISIBLE_DEVICES" in empty.problem
    mismatch = diagnose_driver("cuda-python", "cudaErrorSystemDriverMismatch", 0, 12080, 12090)
    assert "reboot" in mismatch.problem
    pycuda = diagnose_driver("pycuda", "cudaErrorInsufficientDriver", 0, 11080, 12060)
    assert pycuda.driver_too_old and "rebuild pycuda" in pycuda.problem
    for status in (old, older, none, empty, mismatch, pycuda):
        assert "\n" not in status.problem


def test_bare_cuda_namespace_package_reads_as_not_installed(tmp_path):
    """A ``cuda`` folder without bindings (namespace package) must skip/raise 'not installed', not crash."""
    (tmp_path / "cuda").mkdir()
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        for name in ("cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
            sys.modules[name] = None  # hide real bindings, if any: only the bare namespace is left
        import importlib.util
        assert importlib.util.find_spec("cuda") is not None
        from glfer_edge.errors import MissingDependencyError
        from glfer_edge.runtime.cuda import open_cuda
        try:
            open_cuda("cuda-python")
        except MissingDependencyError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "needs cuda-python" in result.stdout and "glfer-edge[trt]" in result.stdout


def test_missing_bindings_name_the_extra():
    with pytest.raises(MissingDependencyError, match="unknown CUDA binding"):
        open_cuda("cupy")
    if not all(_binding_missing(b) for b in BINDINGS):
        pytest.skip("a CUDA binding is installed; the missing-binding message cannot be shown")
    with pytest.raises(MissingDependencyError, match=r"glfer-edge\[trt\]"):
        open_cuda()


def test_parse_device():
    assert parse_device("cuda") == 0 and parse_device("cuda:3") == 3
    with pytest.raises(InputError, match="cuda:N"):
        parse_device("gpu0")


# -- on a GPU -----------------------------------------------------------------------------------


def test_device_info(cuda):
    info = cuda.device_info(0)
    assert info.name and info.compute_capability[0] >= 5 and info.total_memory > 2**28
    assert info.sm == f"{info.compute_capability[0]}.{info.compute_capability[1]}"


def test_pinned_device_round_trip_on_a_stream(cuda):
    shape = (3, 4, 4000)
    host_in = cuda.alloc_pinned(shape, np.float32)
    host_out = cuda.alloc_pinned(shape, np.float32)
    device = cuda.alloc_device(host_in.nbytes)
    stream = cuda.create_stream()
    try:
        host_in[:] = np.random.default_rng(0).standard_normal(shape)
        host_out[:] = 0
        half = host_in[:2].nbytes  # partial copies, as for a smaller batch
        cuda.copy_htod_async(device, host_in, half, stream)
        cuda.copy_dtoh_async(host_out, device, half, stream)
        cuda.synchronize(stream)
        np.testing.assert_array_equal(host_out[:2], host_in[:2])
        assert not host_out[2].any()
    finally:
        cuda.free_device(device)
        cuda.free_pinned(host_in)
        cuda.free_pinned(host_out)
        cuda.destroy_stream(stream)


def test_streams_are_non_blocking(cuda):
    """Legacy-default-stream work elsewhere must neither serialize with ours nor break a capture on it."""
    if cuda.name != "cuda-python":
        pytest.skip("stream flags are read through cuda-python; pycuda passes the same flag to cuStreamCreate")
    from glfer_edge.runtime.cuda import _import_cudart

    rt = _import_cudart()
    stream = cuda.create_stream()
    try:
        err, flags = rt.cudaStreamGetFlags(stream)
        assert err == rt.cudaError_t.cudaSuccess and int(flags) & int(rt.cudaStreamNonBlocking)
    finally:
        cuda.destroy_stream(stream)


def test_events_time_stream_work(cuda):
    stream = cuda.create_stream()
    host = cuda.alloc_pinned((1 << 22,), np.float32)
    device = cuda.alloc_device(host.nbytes)
    start, end = cuda.create_event(), cuda.create_event()
    try:
        cuda.record_event(start, stream)
        cuda.copy_htod_async(device, host, host.nbytes, stream)
        cuda.record_event(end, stream)
        cuda.synchronize(stream)
        assert cuda.elapsed_ms(start, end) > 0.0
    finally:
        cuda.destroy_event(start)
        cuda.destroy_event(end)
        cuda.free_device(device)
        cuda.free_pinned(host)
        cuda.destroy_stream(stream)


def test_graph_capture_replays_copies(cuda):
    if not cuda.supports_graphs:
        pytest.skip(f"{cuda.name} offers no CUDA graphs here")
    stream = cuda.create_stream()
    src = cuda.alloc_pinned((1024,), np.float32)
    dst = cuda.alloc_pinned((1024,), np.float32)
    device = cuda.alloc_device(src.nbytes)
    try:
        cuda.begin_capture(stream)
        cuda.copy_htod_async(device, src, src.nbytes, stream)
        cuda.copy_dtoh_async(dst, device, dst.nbytes, stream)
        graph = cuda.end_capture(stream)
        for value in (1.0, 2.5):  # the graph reads the pinned buffer at replay time
            src[:] = value
            cuda.launch_graph(graph, stream)
            cuda.synchronize(stream)
            assert np.all(dst == value)
        cuda.destroy_graph(graph)
    finally:
        cuda.free_device(device)
        cuda.free_pinned(src)
        cuda.free_pinned(dst)
        cuda.destroy_stream(stream)


# What a server does: work on the main thread and on short-lived worker threads, then exit. pycuda
# used to leave its context pushed on each thread and abort() at exit (status 134).
_EXIT_SCRIPT = """
import sys, threading
import numpy as np
from glfer_edge.runtime.cuda import open_cuda

api = open_cuda(sys.argv[1])

def work():
    with api.active(0):
        host = api.alloc_pinned((256,), np.float32)
        device = api.alloc_device(host.nbytes)
        stream = api.create_stream()
        host[:] = 3.0
        api.copy_htod_async(device, host, host.nbytes, stream)
        api.copy_dtoh_async(host, device, host.nbytes, stream)
        api.synchronize(stream)
        assert (host == 3.0).all()
        api.destroy_stream(stream)
        api.free_device(device)
        api.free_pinned(host)

work()
threads = [threading.Thread(target=work) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with api.active(0):
    with api.active(0):  # nested blocks push once
        work()
print("done")
"""


def test_process_exits_cleanly_after_work_on_several_threads(cuda):
    result = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, cuda.name], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.strip() == "done" and "context stack was not empty" not in result.stderr
