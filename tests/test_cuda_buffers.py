"""The CUDA interface (runtime/cuda.py) on a real GPU: pinned/device round trips, events, graphs, freeing.

GPU tests run once per installed binding (cuda-python, pycuda) and skip with the reason when no
binding or no CUDA device is present. The CPU tests check the failure messages.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from glfer_edge.errors import InputError, MissingDependencyError
from glfer_edge.runtime.cuda import BINDINGS, open_cuda, parse_device


def _installed(binding: str) -> bool:
    module = "cuda" if binding == "cuda-python" else "pycuda"
    return importlib.util.find_spec(module) is not None


@pytest.fixture(params=BINDINGS)
def cuda(request):
    if not _installed(request.param):
        pytest.skip(f"{request.param} is not installed")
    api = open_cuda(request.param)
    if api.device_count() == 0:
        pytest.skip(f"no CUDA device visible to {request.param}")
    api.activate(0)
    return api


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


def test_missing_bindings_name_the_extra():
    with pytest.raises(MissingDependencyError, match="unknown CUDA binding"):
        open_cuda("cupy")
    if any(_installed(b) for b in BINDINGS):
        pytest.skip("a CUDA binding is installed; the missing-binding message cannot be shown")
    with pytest.raises(MissingDependencyError, match=r"glfer-edge\[trt\]"):
        open_cuda()


def test_parse_device():
    assert parse_device("cuda") == 0 and parse_device("cuda:3") == 3
    with pytest.raises(InputError, match="cuda:N"):
        parse_device("gpu0")
