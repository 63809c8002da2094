"""A distance model (``ModelConfig.distance``) through every export: FP32, FP16, INT8 and INT8-CPU artifacts
carry the third output ``distance`` (B, T', C) in metres, open on onnxruntime and OpenVINO, and agree with
torch within the rows of glfer_edge.tolerances; the INT8 calibration report, the parity API and
``glfer-edge parity`` / ``info`` report distance; TensorRT-RTX parses and builds the distance graphs; a model
without distance exports and reports exactly as before.

The model is a random tiny one (1-s segments, 5 output frames) with fitted feature statistics and its SED head
scaled so that most cells are active at the 0.3 threshold: the relative distance error is measured on active
cells, and real numbers, not mocks, are compared throughout.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # build-time tests: a deploy install has no torch
onnx = pytest.importorskip("onnx")

from glfer_edge import metadata as md  # noqa: E402
from glfer_edge.config import get_preset  # noqa: E402
from glfer_edge.parity import TOLERANCES, compare_outputs, violations  # noqa: E402
from glfer_edge.precision import PRECISIONS  # noqa: E402

SEGMENT_SECONDS = 1.0
FORMS = ("fp32", "fp16", "int8", "int8-cpu")
CALIBRATION_SEGMENTS = 32  # export.int8.MIN_SEGMENTS: no small-set warning


def _model(distance: bool):
    from glfer_edge.calibration.readers import SynthReader
    from glfer_edge.frontend.reference import extract_features, fit_standardization
    from glfer_edge.model.glfernet import GLFERNet

    config = get_preset("tiny").replace(segment_seconds=SEGMENT_SECONDS)
    config = config.replace(model=dataclasses.replace(config.model, distance=distance))
    torch.manual_seed(0)
    model = GLFERNet(config).eval()
    reader = SynthReader(config, 6, seed=5)
    model.frontend.set_statistics(*fit_standardization([extract_features(reader.segment(i), config.features)
                                                       for i in range(6)]))
    with torch.no_grad():  # SED probabilities around the threshold: many active cells
        model.decoder.sed_head[-1].weight.mul_(8.0)
        model.decoder.sed_head[-1].bias.fill_(-0.5)
        if distance:  # spread the distances (1.6-2.3 m on the test scenes)
            model.decoder.distance_head[-1].weight.mul_(4.0)
    return model


def _export(tmp_path_factory, distance: bool, precisions=FORMS, report_scenes: int = 0):
    from glfer_edge.export import CalibrationConfig, ExportConfig, export_artifacts
    from glfer_edge.weights import save_weights

    out = tmp_path_factory.mktemp("distance" if distance else "plain")
    weights = save_weights(_model(distance), out / "weights.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # converter notes on FP16 rounding
        result = export_artifacts(out, ExportConfig(
            precisions=precisions, weights=weights, report_scenes=report_scenes,
            calibration=CalibrationConfig(synth_segments=CALIBRATION_SEGMENTS)))
    return weights, result


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(weights, ExportResult) of the distance model, every form, INT8 reports on 4 held-out scenes."""
    return _export(tmp_path_factory, True, report_scenes=4)


@pytest.fixture(scope="module")
def audio():
    from glfer_edge.parity import synth_recordings

    config = get_preset("tiny").replace(segment_seconds=SEGMENT_SECONDS)
    return np.stack([r.audio for r in synth_recordings(config, 4, seed=1)]).astype(np.float32)


@pytest.fixture(scope="module")
def torch_outputs(exported, audio):
    from glfer_edge.weights import load_model

    with torch.no_grad():
        return tuple(t.numpy() for t in load_model(exported[0]).eval()(torch.from_numpy(audio)))


def _stats(reference, got, threshold=0.3):
    return compare_outputs(reference[0], reference[1], got[0], got[1], threshold,
                           distance_a=reference[2], distance_b=got[2])


def test_distance_statistics_and_checks_on_known_values():
    """Max/mean abs over all cells, relative error on the cells active in A only; no distance, no fields."""
    sed = np.array([[0.9, 0.1], [0.5, 0.0]], np.float32)  # active at 0.3: (0, 0) and (1, 0)
    doa = np.ones((2, 2, 3), np.float32)
    a = np.array([[2.0, 1.0], [4.0, 3.0]], np.float32)
    b = np.array([[2.2, 4.0], [3.6, 3.0]], np.float32)  # inactive (0, 1) is 3 m off: absolute only
    stats = compare_outputs(sed, doa, sed, doa, distance_a=a, distance_b=b)
    assert stats.distance_max_abs == pytest.approx(3.0) and stats.distance_mean_abs == pytest.approx(0.9, abs=1e-6)
    assert stats.distance_rel_mean == pytest.approx(0.1, abs=1e-6)
    assert stats.distance_rel_max == pytest.approx(0.1, abs=1e-6)
    assert violations(stats, TOLERANCES["fp16"]) == [
        "distance max abs error (m) 3 > 0.02 (fp16 tolerance)",
        "mean relative distance error 0.1 > 0.005 (fp16 tolerance)",
    ]
    assert violations(stats, TOLERANCES["fp32"]) == ["distance max abs error (m) 3 > 0.0001 (fp32 tolerance)"]
    plain = compare_outputs(sed, doa, sed, doa, distance_a=a)  # one side without distance: not compared
    assert not plain.has_distance and not any(k.startswith("distance") for k in plain.to_dict())
    assert violations(plain, TOLERANCES["fp32"]) == []
    b[0, 0] = np.nan
    assert compare_outputs(sed, doa, sed, doa, distance_a=a, distance_b=b).nonfinite == 1
    with pytest.raises(ValueError, match="distance shapes"):
        compare_outputs(sed, doa, sed, doa, distance_a=a, distance_b=b[:1])


def test_every_form_outputs_distance_in_float32(exported):
    """sed, doa, distance in that order, FP32 I/O at every precision; FP16 keeps the distance Softplus FP32."""
    for form in FORMS:
        graph = onnx.load(str(exported[1].artifacts[form]))
        outputs = {o.name: o.type.tensor_type for o in graph.graph.output}
        assert list(outputs) == ["sed", "doa", "distance"], form
        assert outputs["distance"].elem_type == onnx.TensorProto.FLOAT, form
        assert [d.dim_param or d.dim_value for d in outputs["distance"].shape.dim] == ["batch", 5, 13], form
    fp16 = onnx.load(str(exported[1].artifacts["fp16"]))
    softplus = next(n for n in fp16.graph.node if md.DISTANCE_NAME in n.output)
    assert softplus.op_type == "Softplus"  # in FP16, log(1 + exp(x)) overflows for x > 11
    assert any(n.op_type == "Cast" and softplus.input[0] in n.output for n in fp16.graph.node)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("form", FORMS)
def test_every_form_matches_torch_on_each_runtime(form, backend, exported, audio, torch_outputs, tmp_path):
    from glfer_edge.runtime import RuntimeOptions, SELDRuntime

    options = None
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install glfer-edge[openvino])")
        from glfer_edge.machine import cpu_label
        from glfer_edge.runtime.artifact import artifact_metadata, saturation_warning

        path = exported[1].artifacts[form]
        if saturation_warning(artifact_metadata(path), path.name, "openvino"):  # as tests/parity does
            pytest.skip(f"8-bit INT8 weights saturate OpenVINO's kernels on {cpu_label()} (no VNNI); the backend warns")
        options = RuntimeOptions(cache_dir=str(tmp_path / "ov_cache"))
    with SELDRuntime.open(exported[1].artifacts[form], backend=backend, options=options) as rt:
        assert rt.backend == backend
        out, threshold = rt.infer(audio), rt.config.sed_threshold
    assert out.distance is not None and out.distance.shape == out.sed.shape == (4, 5, 13)
    stats = _stats(torch_outputs, (out.sed, out.doa, out.distance), threshold)
    tol = TOLERANCES[PRECISIONS[form].tolerance]
    print(f"{backend} {form}: distance max {stats.distance_max_abs:.3g} m, relative mean {stats.distance_rel_mean:.3g} "
          f"on {stats.active_cells} active cells")
    assert stats.nonfinite == 0 and stats.active_cells > 50
    assert tol.distance_max_abs is not None or tol.distance_rel_mean_max is not None  # every row bounds distance
    assert violations(stats, tol) == []


def test_true_fp16_numerics_within_the_fp16_row(exported, audio, torch_outputs):
    """The FP16 artifact computed in numpy float16 (what TensorRT runs), not ORT's FP32-behind-casts."""
    from glfer_edge.export.fp16 import reference_fp16_run

    got = reference_fp16_run(str(exported[1].artifacts["fp16"]), audio[:2])
    assert len(got) == 3
    stats = _stats([t[:2] for t in torch_outputs], got)
    assert stats.distance_max_abs > 0 and violations(stats, TOLERANCES["fp16"]) == []


@pytest.mark.parametrize("form", ["int8", "int8-cpu"])
def test_int8_calibration_report_measures_distance(form, exported):
    accuracy = exported[1].accuracies[form]
    parity = accuracy["parity"]
    assert 0 < parity["distance_rel_mean"] <= TOLERANCES["int8"].distance_rel_mean_max
    assert parity["distance_max_abs"] >= parity["distance_mean_abs"] > 0
    assert accuracy["violations"] == []
    page = next(p for p in exported[1].reports if p.name == f"model.{form}.calibration.md").read_text()
    assert "| mean relative distance error on active frames |" in page
    saved = json.loads(next(p for p in exported[1].reports if p.name == f"model.{form}.calibration.json").read_text())
    assert saved["accuracy"]["parity"]["distance_rel_mean"] == pytest.approx(parity["distance_rel_mean"])


def test_parity_command_reports_distance(exported, tmp_path, capsys):
    """glfer-edge parity: the distance checks of the row, the distance statistics, and the JSON fields."""
    from glfer_edge.cli import main

    report = tmp_path / "parity.json"
    assert main(["parity", str(exported[0]), str(exported[1].artifacts["int8"]), "--synth", "2",
                 "--json", str(report)]) == 0
    page = capsys.readouterr().out
    assert "| mean relative distance error |" in page and "| distance (m) |" in page
    assert "Relative distance error |B − A| / A" in page
    data = json.loads(report.read_text())
    stats = data["stats"]
    assert data["passed"] and stats["distance_max_abs"] > 0
    bound = data["tolerances"]["distance_rel_mean_max"]
    assert bound == TOLERANCES["int8"].distance_rel_mean_max and stats["distance_rel_mean"] <= bound


def test_info_lists_the_distance_output(exported, capsys):
    from glfer_edge.cli import main

    assert main(["info", "--json", "-", "--model", str(exported[1].artifacts["fp16"])]) == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    assert list(outputs) == ["sed", "doa", "distance"]
    assert outputs["distance"]["shape"] == ["batch", 5, 13] and "metres" in outputs["distance"]["values"]
    assert main(["info", "--model", str(exported[0])]) == 0
    assert "distance (batch, 5, 13): source distance per class, metres" in capsys.readouterr().out


def test_model_without_distance_exports_and_reports_as_before(tmp_path_factory, tmp_path, capsys):
    from glfer_edge.cli import main

    weights, result = _export(tmp_path_factory, False, precisions=("fp32", "int8"), report_scenes=2)
    for form, path in result.artifacts.items():
        assert [o.name for o in onnx.load(str(path)).graph.output] == ["sed", "doa"], form
    assert not any(k.startswith("distance") for k in result.accuracies["int8"]["parity"])
    assert "distance" not in result.reports[1].read_text()
    report = tmp_path / "parity.json"
    assert main(["parity", str(weights), str(result.artifacts["fp32"]), "--synth", "1", "--json", str(report)]) == 0
    assert "distance" not in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert not [k for k in (*data["stats"], *data["tolerances"]) if k.startswith("distance")]


needs_trt_rtx = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt_rtx") is None,
    reason="TensorRT-RTX not installed (pip install 'glfer-edge[trt-rtx]')",
)


@needs_trt_rtx
@pytest.mark.trt
@pytest.mark.parametrize("form", ["fp32", "int8"])
def test_distance_graphs_build_strongly_typed_tensorrt_rtx_engines(form, exported):
    """Four I/O tensors, FP32 at every precision (FP16: the next test, through glfer-edge build's builder). INT8
    as in tests/test_trt_rtx.py: RTX has no INT8 activation kernels and runs Q/DQ as scale layers, so this
    proves the Q/DQ graph imports and builds, not INT8 speed."""
    from glfer_edge.export.trt_check import check_with_tensorrt_rtx

    result = check_with_tensorrt_rtx(exported[1].artifacts[form], max_batch=4)
    assert result["parsed"] and result["errors"] == [], result["errors"]
    assert result["built"] and result["engine_bytes"] > 100_000 and result["require_user_allocation"]
    assert result["inputs"] == {md.INPUT_NAME: {"shape": [-1, 4, 24000], "dtype": "FLOAT"}}
    assert result["outputs"] == {
        "sed": {"shape": [-1, 5, 13], "dtype": "FLOAT"}, "doa": {"shape": [-1, 5, 13, 3], "dtype": "FLOAT"},
        "distance": {"shape": [-1, 5, 13], "dtype": "FLOAT"},
    }


@needs_trt_rtx
@pytest.mark.trt
def test_build_writes_a_four_tensor_fp16_engine_and_refuses_outputs_the_metadata_does_not_promise(exported, tmp_path):
    """glfer-edge build's builder on the FP16 distance graph (strongly typed, TensorRT-RTX ahead of time): the
    sidecar lists audio, sed, doa, distance. The same graph labelled as a model without distance is refused."""
    from glfer_edge.errors import ArtifactError
    from glfer_edge.export.trt_build import build_engine
    from glfer_edge.weights import read_config
    from seld_artifacts import strip_metadata

    fp16 = exported[1].artifacts["fp16"]
    result = build_engine(fp16, tmp_path / "model.fp16.engine", batch=(1, 2, 4), flavour="tensorrt_rtx", progress=False)
    io = [(t["name"], t["mode"], t["shape"], t["dtype"]) for t in result.sidecar["io"]]
    assert io == [("audio", "input", [-1, 4, 24000], "float"), ("sed", "output", [-1, 5, 13], "float"),
                  ("doa", "output", [-1, 5, 13, 3], "float"), ("distance", "output", [-1, 5, 13], "float")]
    assert result.sidecar["precision"] == "fp16" and result.sidecar["strongly_typed"]
    config = read_config(exported[0])
    plain = config.replace(model=dataclasses.replace(config.model, distance=False))
    mislabelled = strip_metadata(fp16, tmp_path / "mislabelled.onnx", **{md.KEY_CONFIG: plain.to_json()})
    with pytest.raises(ArtifactError, match="outputs are sed, doa, distance, but its metadata promises sed, doa"):
        build_engine(mislabelled, tmp_path / "bad.engine", flavour="tensorrt_rtx", progress=False)
