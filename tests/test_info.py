"""``glfer-edge info --model``: an artifact's contract (classes, input, decisions, provenance) from its metadata."""

from __future__ import annotations

import json

import pytest

from glfer_edge import metadata as md
from glfer_edge.cli import main
from glfer_edge.runtime.artifact import read_onnx_metadata
from glfer_edge.runtime.seld import DEFAULT_ONNX
from glfer_edge.runtime.trt_compat import SIDECAR_FORMAT, sidecar_path
from glfer_edge.weights import DEFAULT_WEIGHTS, read_config


def _info(capsys, *argv: str) -> dict:
    assert main(["info", "--json", "-", "--model", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_bundled_onnx_names_the_weights_it_came_from_and_their_decisions(capsys) -> None:
    info = _info(capsys, "default")  # the deploy path: no torch needed
    config = read_config(DEFAULT_WEIGHTS)
    assert (info["backend"], info["precision"], info["preset"]) == ("onnxruntime", "fp32", config.name)
    assert info["weights_sha256"] == md.sha256_file(DEFAULT_WEIGHTS)
    assert info["classes"] == list(config.class_names) and info["sample_rate"] == 24000
    one_view = info["decisions"]["1"]
    assert (one_view["threshold"], one_view["doa_smoothing"]) == config.decision(1)
    assert set(info["decisions"]) == {"1", *(str(v) for v, _, _ in config.tta_decisions)}


def test_weights_report_each_tta_pair_with_its_validation_score(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    from glfer_edge.weights import load_model, save_weights

    model = load_model(DEFAULT_WEIGHTS)
    model.config = model.config.with_decision(8, 0.4, 3)
    sweep = [{"threshold": 0.4, "doa_smoothing": 3, "SELD": 0.214}, {"threshold": 0.4, "doa_smoothing": 1, "SELD": 0.217}]
    path = save_weights(model, tmp_path / "w.safetensors", extra_metadata={
        md.KEY_TRAINING: {"epoch": 7, "init_weights": {"sha256": "ab" * 32}, "threshold_tta8": {"sweep": sweep}}})
    info = _info(capsys, str(path))
    assert info["decisions"]["8"] == {"threshold": 0.4, "doa_smoothing": 3, "validation_seld": 0.214}
    assert info["decisions"]["1"]["validation_seld"] is None  # no single-view sweep recorded
    assert info["training"] == {"epoch": 7, "init_weights": "ab" * 32}
    assert info["weights_sha256"] == md.sha256_file(path)
    assert main(["info", "--model", str(path)]) == 0
    text = capsys.readouterr().out
    assert "--tta 8: threshold 0.4, DOA smoothing 3 frame(s) (validation SELD 0.214)" in text
    assert "fine-tuned from weights abababababab" in text


def test_an_engine_is_described_from_its_sidecar(tmp_path, capsys) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")  # info reads the sidecar only; it never deserializes the plan
    sidecar = {"format": SIDECAR_FORMAT, "tensorrt": {"flavour": "tensorrt", "version": "10.3.0"},
               "built_at": "2026-11-26T00:00:00+00:00", "onnx_metadata": read_onnx_metadata(DEFAULT_ONNX)}
    sidecar_path(engine).write_text(json.dumps(sidecar))
    info = _info(capsys, str(engine))
    assert info["backend"] == "tensorrt" and info["tensorrt"]["version"] == "10.3.0"
    assert info["weights_sha256"] == md.sha256_file(DEFAULT_WEIGHTS)
    sidecar_path(engine).unlink()
    assert main(["info", "--model", str(engine)]) == 2
    assert "has no sidecar" in capsys.readouterr().err


def test_missing_and_unknown_files_fail_in_one_line(tmp_path, capsys) -> None:
    assert main(["info", "--model", str(tmp_path / "none.onnx")]) == 2
    assert main(["info", "--model", str(tmp_path / "model.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not found" in err[0] and "unknown suffix" in err[1]
