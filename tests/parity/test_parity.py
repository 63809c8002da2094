"""Parity suite: every backend x precision available here against the torch FP32 reference, the
per-layer divergence locator on a real perturbation, and the exit codes of ``glfer-edge parity``.

Tolerances come from glfer_edge.tolerances (never inline). TensorRT cases need TensorRT and a CUDA
GPU and skip with the reason otherwise.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from glfer_edge import parity
from glfer_edge.cli import main
from glfer_edge.errors import InputError
from glfer_edge.precision import PRECISIONS
from glfer_edge.tolerances import TOLERANCES, LayerTolerance, Tolerances, get_tolerances, tolerances_for

# Every backend a form of the precision table runs (TensorRT from the ONNX form via glfer-edge build).
BACKENDS = [(b, p.name) for b in ("onnxruntime", "tensorrt") for p in PRECISIONS.values() if b in p.backends]


def _artifact(backend: str, precision: str, artifacts: dict[str, Path], tmp_path: Path, tensorrt_missing) -> Path:
    if backend == "onnxruntime":
        return artifacts[precision]
    reason = tensorrt_missing
    if reason:
        pytest.skip(reason)
    from glfer_edge.export.trt_build import build_engine

    engine = tmp_path / f"model.{precision}.engine"
    build_engine(artifacts[precision], engine, batch=(1, 4, 4), progress=False)
    return engine


def test_every_precision_names_one_tolerance_row_with_layer_bounds(tmp_path):
    from glfer_edge.precision import PRECISIONS

    for form in PRECISIONS.values():
        row = TOLERANCES[form.tolerance]
        assert tolerances_for(form.name) is row and tolerances_for(form.metadata) is row
        assert row.layer is not None  # --per-layer works for every form
    with pytest.raises(InputError, match="--tolerances"):
        tolerances_for("int4")
    custom = tmp_path / "loose.json"
    custom.write_text(json.dumps({"sed_max_abs": 0.5, "layer": {"rel_max": 0.2, "cosine_min": 0.9}}))
    assert get_tolerances(str(custom)) == Tolerances(
        "loose", sed_max_abs=0.5, layer=LayerTolerance(rel_max=0.2, cosine_min=0.9))


@pytest.mark.parametrize(("backend", "precision"), BACKENDS, ids=[f"{b}-{p}" for b, p in BACKENDS])
def test_backend_matches_torch_reference(backend, precision, reference, artifacts, recordings, tmp_path,
                                        tensorrt_missing):
    path = _artifact(backend, precision, artifacts, tmp_path, tensorrt_missing)
    report = parity.compare_artifacts(reference[0], path, recordings, data=reference[1])
    kind = precision.removesuffix("-cpu")
    assert report.a.backend == "torch" and report.b.backend == backend and report.b.precision == kind
    assert report.tolerances == TOLERANCES[kind]
    assert report.stats.nonfinite == 0
    assert report.n_frames == len(recordings) * 10  # 2-s scenes at 5 output frames/s
    assert set(report.seld_a) == set(report.seld_b) == {"ER20", "F20", "LE_CD", "LR_CD", "SELD"}
    assert report.passed, f"{reference[1]}: " + "; ".join(report.violations)


def test_identical_artifacts_agree_exactly(artifacts, recordings):
    report = parity.compare_artifacts(artifacts["fp32"], artifacts["fp32"], recordings[:1], with_seld=False)
    assert report.stats.sed_max_abs == 0.0 and report.stats.doa_max_abs == 0.0
    assert report.stats.sed_agreement == 1.0 and report.passed


@pytest.fixture(scope="module")
def perturbed(artifacts, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the FP32 graph with one encoder Conv's weight scaled by 1.5; (path, that node's name)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(artifacts["fp32"]))
    weights = {i.name: i for i in model.graph.initializer}
    uses = Counter(i for n in model.graph.node for i in n.input)
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/encoder/stages.1/")
             and uses[n.input[1]] == 1]  # not the SE convs, whose one weight serves all four scales
    target = convs[len(convs) // 2]
    w = weights[target.input[1]]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(1.5), w.name))
    path = tmp_path_factory.mktemp("perturbed") / "model.perturbed.onnx"
    onnx.save(model, str(path))
    return path, target.name


def _segment(recordings) -> np.ndarray:
    return recordings[0].audio[None]


def test_per_layer_names_the_perturbed_layer(artifacts, perturbed, recordings):
    path, target = perturbed
    report = parity.locate_divergence(artifacts["fp32"], path, _segment(recordings), precision="fp32")
    assert report.first is not None and report.first.node == target
    assert report.unmatched == 0
    before = [s for s in report.layers if s.index < report.first.index]
    assert before and all(s.rel_l2 == 0.0 for s in before)  # same graph, same kernels upstream
    assert report.first.rel_l2 > 0.1


def test_per_layer_maps_int8_graph_onto_fp32_names(artifacts, recordings):
    import onnx

    report = parity.locate_divergence(artifacts["fp32"], artifacts["int8"], _segment(recordings))
    assert report.tolerance == TOLERANCES["int8"].layer  # from the artifact's metadata
    # the FP32 artifact's CPU rewrite (export/fp32_cpu.py) adds tensors that the INT8 form never had
    fp32_tensors = [o for n in onnx.load(str(artifacts["fp32"])).graph.node for o in n.output]
    suffixes = ("_copies", "_pairs", "_cols", "_columns", "_scales", "_tiled", "_rows", "_kernels", "_product",
                "_gates", "_channel_mean")
    rewrite = [o for o in fp32_tensors if o.endswith(suffixes)]
    assert rewrite and report.unmatched == len(rewrite) and len(report.layers) > 80
    frontend = [s for s in report.layers if s.node.startswith("/frontend/")]
    assert frontend and max(s.rel_l2 for s in frontend) < 1e-6  # the frontend stays float in INT8 artifacts
    assert report.first is None or not report.first.node.startswith("/frontend/")


def test_cli_exit_codes_and_reports(artifacts, perturbed, tmp_path, capsys):
    path, target = perturbed
    md, js = tmp_path / "reports" / "parity.md", tmp_path / "reports" / "parity.json"  # parents are created
    args = ["parity", str(artifacts["fp32"]), str(path), "--synth", "1", "--seed", "1"]
    assert main([*args, "--per-layer", "--report", str(md), "--json", str(js)]) == 1
    assert "max abs error" in capsys.readouterr().err
    assert f"First divergent layer: **{target}**" in md.read_text()
    saved = json.loads(js.read_text())
    assert saved["passed"] is False and saved["layers"]["first"]["node"] == target
    same = ["parity", str(artifacts["fp32"]), str(artifacts["fp32"]), "--synth", "1"]
    assert main([*same, "--report", str(md)]) == 2  # an existing output is kept without --force
    assert "--report" in capsys.readouterr().err and md.read_text().startswith("# Parity: FAIL")
    assert main([*same, "--report", str(md), "--force"]) == 0
    assert md.read_text().startswith("# Parity: PASS (fp32 tolerances)")


def test_cli_json_to_stdout(artifacts, tmp_path, capsys):
    js = tmp_path / "parity.json"
    js.write_text("{}")
    same = ["parity", str(artifacts["fp32"]), str(artifacts["fp32"]), "--synth", "1"]
    assert main([*same, "--json", str(js)]) == 2 and js.read_text() == "{}"
    assert "--json" in capsys.readouterr().err
    assert main([*same, "--json", "-"]) == 0
    out = capsys.readouterr().out
    saved = json.loads(out)  # the JSON alone: no markdown around it
    assert saved["passed"] is True and saved["tolerances"]["name"] == "fp32"


def test_cli_on_dcase_folder_scores_whole_recordings(artifacts, tmp_path):
    from glfer_edge.data.synth import SceneConfig, write_dataset

    write_dataset(tmp_path / "data", 1, SceneConfig(duration_s=3.0), seed=2, split="test", progress=False)
    js = tmp_path / "parity.json"
    code = main(["parity", str(artifacts["fp32"]), str(artifacts["fp32"]), "--data", str(tmp_path / "data"),
                 "--json", str(js)])
    saved = json.loads(js.read_text())
    assert code == 0 and saved["passed"] is True
    assert saved["n_recordings"] == 1 and saved["n_frames"] == 15  # 3 s = two 2-s segments, tail frames dropped
    assert saved["seld_a"] == saved["seld_b"] and 0 <= saved["seld_a"]["F20"] <= 1
