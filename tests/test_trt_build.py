"""Engine builder on the TensorRT flavour installed here (TensorRT-RTX builds ahead of time, no GPU).

Checks a real strongly typed build of the tiny FP32 ONNX, its sidecar, the timing-cache path, the
errors of bad arguments, and the refusal to open an engine from another TensorRT.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from glfer_edge import metadata as md
from glfer_edge.cli import main
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.runtime.trt_build import build_engine, parse_batch
from seld_artifacts import session_artifacts, strip_metadata


def _tensorrt():
    from glfer_edge.runtime.trt_compat import load_tensorrt

    try:
        return load_tensorrt()
    except ImportError as exc:
        pytest.skip(f"no TensorRT or TensorRT-RTX importable: {exc}")


def _no_gpu() -> bool:
    from glfer_edge.runtime.cuda import open_cuda

    try:
        return open_cuda().device_count() == 0
    except ImportError:
        return True


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One CLI build with a batch profile and a timing cache: (engine path, sidecar, stdout)."""
    trt = _tensorrt()
    out = tmp_path_factory.mktemp("engine") / "tiny.engine"
    cache = out.parent / "timing.cache"
    onnx = session_artifacts().onnx
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["build", str(onnx), "--out", str(out), "--batch", "1:2:4", "--timing-cache", str(cache),
                   "--workspace-mb", "256", "--flavour", trt.flavour])
    assert rc == 0
    return out, json.loads(out.with_name("tiny.engine.json").read_text()), stdout.getvalue(), trt


def test_build_writes_a_raw_plan_and_a_complete_sidecar(built):
    engine, side, stdout, trt = built
    art = session_artifacts()
    n = art.config.segment_samples
    assert engine.stat().st_size > 10_000 and engine.read_bytes()[:1] != b"{"  # no JSON header in the plan
    assert side["tensorrt"]["flavour"] == trt.flavour and side["tensorrt"]["version"] == trt.version
    assert side["precision"] == "fp32" and side["strongly_typed"] is True and side["workspace_mb"] == 256
    assert side["onnx"]["sha256"] == md.sha256_file(art.onnx)
    assert [(t["name"], t["mode"], t["shape"], t["dtype"]) for t in side["io"]] == [
        ("audio", "input", [-1, 4, n], "float"),
        ("sed", "output", [-1, art.config.output_frames, 13], "float"),
        ("doa", "output", [-1, art.config.output_frames, 13, 3], "float"),
    ]
    assert side["profile"]["audio"] == {"min": [1, 4, n], "opt": [2, 4, n], "max": [4, 4, n]}
    assert side["onnx_metadata"][md.KEY_CONFIG] == art.config.to_json()
    assert side["build_seconds"] > 0 and side["built_at"].endswith("+00:00")
    if trt.portable_engines and _no_gpu():
        assert side["gpu"]["name"] == side["gpu"]["compute_capability"] == "ahead-of-time, no GPU"
        assert side["gpu"]["target_compute_capabilities"] == f"{trt.flavour} default set"
    assert f"built {engine}" in stdout and f"{trt.flavour} {trt.version}" in stdout


def test_second_build_with_the_timing_cache(built):
    """Reuse: supported flavours load the saved cache; TensorRT-RTX (no-op caches) says so and builds."""
    engine, first, _, trt = built
    cache = engine.parent / "timing.cache"
    again = build_engine(session_artifacts().onnx, engine.parent / "again.engine", batch=(1, 2, 4),
                         timing_cache=cache, flavour=trt.flavour, progress=True)
    assert again.engine_path.stat().st_size > 10_000
    record = again.sidecar["timing_cache"]
    if first["timing_cache"]["used"]:
        assert cache.stat().st_size > 0 and record["used"] and record["loaded_bytes"] == cache.stat().st_size
    else:
        assert not record["used"] and "no-op" in record["reason"] and not cache.exists()
        assert any("timing cache not used" in note for note in again.notes)


@pytest.mark.parametrize("text", ["0:1:2", "4:2:1", "a:b:c", "1:2", "", "2:x"])
def test_bad_batch_strings(text):
    with pytest.raises(InputError, match="MIN:OPT:MAX"):
        parse_batch(text)


def test_batch_forms():
    assert parse_batch("4") == (4, 4, 4) and parse_batch("1:4:8") == (1, 4, 8)


def test_cli_bad_batch_is_one_line_and_builds_nothing(tmp_path, capsys):
    out = tmp_path / "x.engine"
    assert main(["build", str(session_artifacts().onnx), "--out", str(out), "--batch", "8:1:2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --batch '8:1:2'") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_metadata_is_refused_before_building(tmp_path):
    bare = strip_metadata(session_artifacts().onnx, tmp_path / "bare.onnx")
    with pytest.raises(ArtifactError, match="no glfer-edge metadata"):
        build_engine(bare, tmp_path / "bare.engine")
    assert not (tmp_path / "bare.engine").exists()


def test_engine_from_another_tensorrt_is_refused_with_the_rebuild_command(built, tmp_path):
    from glfer_edge.runtime import SELDRuntime

    engine, side, _, _ = built
    copy = tmp_path / "old.engine"
    copy.write_bytes(engine.read_bytes())
    side = {**side, "tensorrt": {**side["tensorrt"], "version": "10.3.0.30"}}
    (tmp_path / "old.engine.json").write_text(json.dumps(side))
    with pytest.raises(ArtifactError, match=r"built with .* 10\.3\.0\.30.*glfer-edge build .* --out .*old\.engine"):
        SELDRuntime.open(copy)
    (tmp_path / "old.engine.json").unlink()
    with pytest.raises(ArtifactError, match="no sidecar"):
        SELDRuntime.open(copy)


def test_strongly_typed_flag_is_requested(built):
    from glfer_edge.runtime.trt_compat import network_flags

    trt = built[3]
    flags = trt.module.NetworkDefinitionCreationFlag
    strongly_typed = getattr(flags, "STRONGLY_TYPED", None)
    assert network_flags(trt) == (0 if strongly_typed is None else 1 << int(strongly_typed))
    if hasattr(flags, "EXPLICIT_BATCH"):
        assert not network_flags(trt) & (1 << int(flags.EXPLICIT_BATCH))


def test_engine_for_another_gpu_is_refused(tmp_path):
    """Standard TensorRT plans are tied to the GPU's compute capability; RTX plans are portable."""
    import types

    from glfer_edge.runtime.cuda import DeviceInfo
    from glfer_edge.runtime.trt_compat import TensorRT, check_sidecar

    sidecar = {"tensorrt": {"flavour": "tensorrt", "version": "10.3.0.30"}, "onnx": {"path": "m.onnx"},
               "gpu": {"name": "Orin", "compute_capability": "8.7"}}
    here = DeviceInfo(0, "NVIDIA H100", (9, 0), 80 * 2**30)
    standard = TensorRT(types.ModuleType("tensorrt"), "tensorrt", "10.3.0.30")
    check_sidecar(sidecar, tmp_path / "m.engine", standard, DeviceInfo(0, "Orin", (8, 7), 2**34))
    refusal = r"built for Orin \(compute capability 8\.7\).*H100 \(9\.0\).*glfer-edge build m\.onnx"
    with pytest.raises(ArtifactError, match=refusal):
        check_sidecar(sidecar, tmp_path / "m.engine", standard, here)
    rtx = TensorRT(types.ModuleType("tensorrt_rtx"), "tensorrt_rtx", "1.7.1.116")
    portable = {**sidecar, "tensorrt": {"flavour": "tensorrt_rtx", "version": "1.7.1.116"}}
    check_sidecar(portable, tmp_path / "m.engine", rtx, here)  # specialized at load time: no refusal
