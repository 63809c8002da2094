"""TensorRT compatibility of an artifact without a GPU: parse and build with TensorRT-RTX ahead of time.

TensorRT-RTX (PyPI ``tensorrt-rtx-cu13``) shares TensorRT's ONNX parser and builds strongly typed
engines on a machine without a GPU (CPU-only AOT is its default). A parse error here is a bug in
our graph, found before anyone holds a Jetson. RTX has no INT8 activation kernels: it still parses
and builds the Q/DQ artifact (Q/DQ become scale layers, i.e. fake quantization), so the INT8 check
proves the graph imports, not that it runs in INT8. The real engine builder is glfer_edge.export.trt_build.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from glfer_edge.errors import require


def check_with_tensorrt_rtx(onnx_path: str | Path, max_batch: int = 8) -> dict[str, Any]:
    """Parse ``onnx_path`` and build a strongly typed engine with a batch profile 1..max_batch.

    Returns ``parsed``, ``built``, ``errors`` (parser messages), ``engine_bytes``, ``build_seconds``,
    ``inputs`` / ``outputs`` (name -> {shape, dtype}), ``layers``, ``tensorrt_rtx`` (version) and
    ``require_user_allocation`` (built as ``glfer-edge build`` does: capturable in a CUDA graph).
    MissingDependencyError when tensorrt_rtx is not installed.
    """
    from glfer_edge.export.trt_build import create_builder_config, network_flags
    from glfer_edge.runtime.trt_compat import load_tensorrt

    require("tensorrt_rtx", "trt-rtx", "the TensorRT-RTX compatibility check")  # the pip hint when missing
    rtx = load_tensorrt("tensorrt_rtx")
    trt, logger = rtx.module, rtx.logger()  # the process-wide logger: TensorRT warns about a second one
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(rtx))
    parser = trt.OnnxParser(network, logger)
    parsed = bool(parser.parse_from_file(str(onnx_path)))
    result: dict[str, Any] = {
        "tensorrt_rtx": trt.__version__, "parsed": parsed, "built": False, "engine_bytes": 0, "build_seconds": 0.0,
        "errors": [str(parser.get_error(i)).splitlines()[0] for i in range(parser.num_errors)],
    }
    if not parsed:
        return result
    result["inputs"] = {t.name: _describe(t) for t in (network.get_input(i) for i in range(network.num_inputs))}
    result["outputs"] = {t.name: _describe(t) for t in (network.get_output(i) for i in range(network.num_outputs))}
    result["layers"] = network.num_layers
    # the builder config of glfer-edge build (REQUIRE_USER_ALLOCATION fails graphs that allocate at run time)
    config = create_builder_config(rtx, builder, _precision(onnx_path))
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    start = time.perf_counter()
    engine = builder.build_serialized_network(network, config)
    result["build_seconds"] = round(time.perf_counter() - start, 2)
    result["built"] = engine is not None
    result["require_user_allocation"] = bool(config.get_flag(trt.BuilderFlag.REQUIRE_USER_ALLOCATION))
    result["engine_bytes"] = engine.nbytes if engine is not None else 0
    return result


def _precision(onnx_path: str | Path) -> str:
    """The artifact's precision from its glfer-edge metadata; fp32 for a graph without it."""
    import onnx

    from glfer_edge import metadata as md

    return md.graph_metadata(onnx.load(str(onnx_path), load_external_data=False)).get(md.KEY_PRECISION, "fp32")


def _describe(tensor) -> dict[str, Any]:
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).rsplit(".", 1)[-1]}
