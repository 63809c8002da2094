"""TensorRT compatibility without a GPU: TensorRT-RTX parses every artifact and builds strongly typed engines.

TensorRT-RTX shares TensorRT's ONNX parser and compiles ahead of time on the CPU, so a parse or
build error here is a bug in our graph. The artifacts are 2-s exports of a random tiny model
(161 feature frames, 10 output frames), built with a dynamic-batch profile 1..8. The 2-s shape
check runs without TensorRT-RTX.
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest
torch = pytest.importorskip("torch")  # build-time tests: a deploy install has no torch
onnx = pytest.importorskip("onnx")

from glfer_edge import metadata as md
from glfer_edge.calibration.readers import SynthReader
from glfer_edge.config import get_preset
from glfer_edge.export.fp16 import convert_fp16
from glfer_edge.export.int8 import quantize_int8
from glfer_edge.export.onnx_fp32 import export_fp32, io_shapes
from glfer_edge.export.onnx_meta import graph_config
from glfer_edge.export.trt_check import check_with_tensorrt_rtx
from glfer_edge.model.glfernet import GLFERNet

needs_trt_rtx = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt_rtx") is None, reason="TensorRT-RTX not installed (pip install 'glfer-edge[trt-rtx]')"
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt_rtx")
    torch.manual_seed(0)
    fp32 = export_fp32(GLFERNet(get_preset("tiny")).eval(), "random-init:tiny", segment_seconds=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 calibration segments (< 32): graph structure only
        int8 = quantize_int8(fp32, SynthReader(graph_config(fp32), 8, seed=0))
    paths = {}
    for precision, graph in (("fp32", fp32), ("fp16", convert_fp16(fp32)), ("int8", int8)):
        paths[precision] = out / f"model.{precision}.onnx"
        onnx.save(graph, str(paths[precision]))
    return paths


def test_two_second_artifacts_have_ten_output_frames(artifacts):
    """161 feature frames cropped to 160 -> 10 output frames, at every precision (ONNX Runtime, batch 3)."""
    import numpy as np
    import onnxruntime as ort

    audio = np.random.default_rng(0).standard_normal((3, 4, 48000)).astype(np.float32) * 0.1
    for precision in ("fp32", "int8"):  # FP16 runs in test_export.py (ORT needs its optimizer off there)
        session = ort.InferenceSession(str(artifacts[precision]), providers=["CPUExecutionProvider"])
        sed, doa = session.run(None, {md.INPUT_NAME: audio})
        assert sed.shape == (3, 10, 13) and doa.shape == (3, 10, 13, 3)
    assert io_shapes(onnx.load(str(artifacts["fp16"])))["sed"] == ("batch", 10, 13)


@needs_trt_rtx
@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_artifact_parses_and_builds_a_dynamic_batch_engine(artifacts, precision):
    """INT8 too: RTX has no INT8 activation kernels and runs Q/DQ as scale layers, but it must import.

    Built with glfer-edge build's config, REQUIRE_USER_ALLOCATION included: RTX fails that build for
    graphs that allocate at run time (data-dependent shapes), which CUDA-graph capture cannot take.
    """
    result = check_with_tensorrt_rtx(artifacts[precision], max_batch=8)
    assert result["parsed"] and result["errors"] == [], result["errors"]
    assert result["built"] and result["engine_bytes"] > 100_000 and result["require_user_allocation"]
    assert result["inputs"] == {md.INPUT_NAME: {"shape": [-1, 4, 48000], "dtype": "FLOAT"}}
    assert result["outputs"] == {  # FP32 outputs at every precision (keep_io_types)
        "sed": {"shape": [-1, 10, 13], "dtype": "FLOAT"}, "doa": {"shape": [-1, 10, 13, 3], "dtype": "FLOAT"},
    }


@needs_trt_rtx
@pytest.mark.trt
def test_unsupported_graph_is_reported_not_built(tmp_path):
    """The check can fail: an op from an unknown domain is a parse error with a message."""
    graph = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Frobnicate", ["audio"], ["sed"], domain="example.custom")], "g",
        [onnx.helper.make_tensor_value_info("audio", onnx.TensorProto.FLOAT, ["batch", 4, 8])],
        [onnx.helper.make_tensor_value_info("sed", onnx.TensorProto.FLOAT, ["batch", 4, 8])],
    ), opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("example.custom", 1)])
    onnx.save(graph, str(tmp_path / "bad.onnx"))
    result = check_with_tensorrt_rtx(tmp_path / "bad.onnx")
    assert not result["parsed"] and not result["built"] and "Frobnicate" in " ".join(result["errors"])


@needs_trt_rtx
@pytest.mark.trt
def test_single_batch_artifact_builds_with_computed_odconv_kernels(tmp_path):
    """The --single-batch form feeds ODConv's per-sample kernel to Conv as a tensor: the parser must take it."""
    torch.manual_seed(0)
    graph = export_fp32(GLFERNet(get_preset("tiny")).eval(), "random-init:tiny", segment_seconds=2.0, single_batch=True)
    path = tmp_path / "model.fp32.onnx"
    onnx.save(graph, str(path))
    result = check_with_tensorrt_rtx(path, max_batch=1)
    assert result["parsed"] and result["errors"] == [] and result["built"], result["errors"]
    assert result["inputs"] == {md.INPUT_NAME: {"shape": [1, 4, 48000], "dtype": "FLOAT"}}
