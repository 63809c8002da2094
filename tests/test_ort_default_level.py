"""Every exported artifact opens and runs in plain onnxruntime at its default optimization level.

The default (ORT_ENABLE_ALL) is what a user who passes no SessionOptions gets, and what Triton's
onnxruntime backend uses unless a config says otherwise. onnxruntime 1.23.2 and 1.32.0 on x86 used to
segfault creating a session for the FP16 artifact (``_matmuls_before_transposes`` in export/fp16.py),
which kills the process: so each artifact opens in a subprocess that imports only onnxruntime and numpy.
Random tiny weights: a crash at session creation depends on the graph's nodes, not on the weights.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")  # exporting needs the build-time extra

from glfer_edge.cli import main
from glfer_edge.precision import PRECISIONS, artifact_name

SEGMENT_S = 1.0  # tiny preset, 1-s segments: 5 output frames
ORT_FORMS = [p.name for p in PRECISIONS.values() if "onnxruntime" in p.backends]  # every form, today

# What a user's first call does: no SessionOptions, CPU provider, one batch of audio.
OPEN_AND_RUN = """
import sys
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
(inp,) = session.get_inputs()
audio = 0.1 * np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 2 for d in inp.shape])
outputs = session.run(None, {inp.name: audio.astype(np.float16 if inp.type == "tensor(float16)" else np.float32)})
assert all(np.isfinite(o).all() for o in outputs), "non-finite outputs"
print(*(o.shape for o in outputs))
"""


def open_at_default_level(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", OPEN_AND_RUN, str(path)], capture_output=True, text=True, timeout=300)


def crash_message(path, proc: subprocess.CompletedProcess) -> str:
    import onnxruntime as ort

    rc = proc.returncode
    how = f"crashed ({signal.Signals(-rc).name})" if rc < 0 else f"failed (exit {rc})"
    return (f"onnxruntime {ort.__version__} {how} opening or running {path.name} at its default optimization level "
            f"(no SessionOptions: ORT_ENABLE_ALL), as a user or Triton's onnxruntime backend would; stderr:\n"
            f"{proc.stderr[-3000:] or '(empty)'}")


@pytest.fixture(scope="module", params=[False, True], ids=["dynamic-batch", "single-batch"])
def exported(request, tmp_path_factory):
    """Every artifact form, written by ``glfer-edge export`` (dynamic batch and ``--single-batch``)."""
    out = tmp_path_factory.mktemp("ort_default") / "artifacts"
    args = ["export", "--preset", "tiny", "--out", str(out), "--precision", *ORT_FORMS, "--segment-seconds",
            str(SEGMENT_S), "--calib-synth", "8", "--report-scenes", "0", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, 8 calibration segments: only the graphs matter here
        assert main([*args, "--single-batch"] if request.param else args) == 0
    return {p: out / artifact_name(p) for p in ORT_FORMS}, 1 if request.param else 2  # paths, batch fed


@pytest.mark.parametrize("precision", ORT_FORMS)
def test_artifact_runs_at_onnxruntime_default_level(exported, precision):
    paths, batch = exported
    path = paths[precision]
    assert path.is_file(), f"glfer-edge export wrote no {path.name}"
    proc = open_at_default_level(path)
    assert proc.returncode == 0, crash_message(path, proc)
    assert proc.stdout.split() == f"({batch}, 5, 13) ({batch}, 5, 13, 3)".split()  # sed, doa


def test_matmul_moved_before_a_batch_transpose_is_exact_and_opens(tmp_path):
    """The minimal form of the crash (FP16 Transpose(1, 0, 2) -> MatMul with 2-D weights) after the export's
    rewrite: the same bits as before (onnxruntime with optimizations off, and onnx.reference in float16),
    no Transpose left in front of a MatMul, and it opens at the default level."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    from glfer_edge.export.fp16 import _matmuls_before_transposes

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float16), f"w{i}") for i in range(2)]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             *(helper.make_node("MatMul", ["t", f"w{i}"], [f"y{i}"]) for i in range(2))]
    graph = helper.make_graph(
        nodes, "transpose_matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [5, "batch", 64])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT16, None) for i in range(2)], weights)
    before = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    _matmuls_before_transposes(after)
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(after, strict_mode=True), full_check=True)

    producer = {o: n.op_type for n in after.graph.node for o in n.output}
    assert [producer.get(n.input[0]) for n in after.graph.node if n.op_type == "MatMul"] == [None, None]
    x = {"x": rng.standard_normal((5, 3, 64)).astype(np.float16)}
    off = ort.SessionOptions()
    off.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ort_outputs = [ort.InferenceSession(m.SerializeToString(), off, providers=["CPUExecutionProvider"]).run(None, x)
                   for m in (before, after)]
    reference = [ReferenceEvaluator(m).run(None, x) for m in (before, after)]
    for outputs in (ort_outputs, reference):
        assert all(np.array_equal(b, a) for b, a in zip(*outputs))

    path = tmp_path / "after.onnx"
    onnx.save(after, str(path))
    proc = open_at_default_level(path)
    assert proc.returncode == 0, crash_message(path, proc)
    assert proc.stdout.split() == "(2, 5, 32) (2, 5, 32)".split()
