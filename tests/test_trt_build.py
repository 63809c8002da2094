"""Engine builder on the TensorRT flavour installed here (TensorRT-RTX builds ahead of time, no GPU).

Checks a real strongly typed build of the tiny FP32 ONNX, its sidecar, the builder flags (TF32 off for
FP32, REQUIRE_USER_ALLOCATION on RTX) read back from a real builder config, the timing-cache path,
the one logger per flavour, the errors of bad arguments, and the refusal to open an engine from
another TensorRT.
"""

from __future__ import annotations

import contextlib
import io
import json
import types

import pytest

from glfer_edge import metadata as md
from glfer_edge.cli import main
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.export.trt_build import build_engine, create_builder_config, parse_batch
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
        return open_cuda().driver_status().devices == 0
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


def test_an_existing_engine_is_kept_without_force(built, capsys):
    engine = built[0]
    before = engine.read_bytes()
    assert main(["build", str(session_artifacts().onnx), "--out", str(engine)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and engine.read_bytes() == before


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
    from glfer_edge.export.trt_build import network_flags

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
    from glfer_edge.runtime.trt import check_sidecar
    from glfer_edge.runtime.trt_compat import TensorRT

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


def test_fp32_engines_clear_tf32(built):
    """TF32 is on by default and strong typing keeps it: FP32 builds clear it, FP16/INT8 builds keep
    TensorRT's default. Read back from a real builder config, and recorded in the sidecar."""
    trt, side = built[3], built[1]
    builder = trt.module.Builder(trt.logger())
    tf32 = trt.module.BuilderFlag.TF32
    assert builder.create_builder_config().get_flag(tf32)  # the default the FP32 build must undo
    assert not create_builder_config(trt, builder, "fp32").get_flag(tf32)
    assert create_builder_config(trt, builder, "fp16").get_flag(tf32)
    assert create_builder_config(trt, builder, "int8").get_flag(tf32)
    assert side["precision"] == "fp32" and side["builder"]["tf32"] is False


def test_rtx_engines_are_built_for_graph_capture(built):
    """TensorRT-RTX captures an enqueue in a CUDA graph only for engines built with REQUIRE_USER_ALLOCATION;
    the runtime reads the sidecar record to report graph_status instead of failing silently."""
    trt, side = built[3], built[1]
    flag = getattr(trt.module.BuilderFlag, "REQUIRE_USER_ALLOCATION", None)
    config = create_builder_config(trt, trt.module.Builder(trt.logger()), "fp32")
    if trt.portable_engines:
        assert flag is not None and config.get_flag(flag) and side["builder"]["require_user_allocation"] is True
    else:  # standard TensorRT captures without it and is built as before
        assert flag is None or not config.get_flag(flag)


def test_one_logger_per_flavour(built, capfd):
    """TensorRT keeps the first logger and warns when a builder or runtime gets another while one is
    alive (two engines open in one process, a build next to an open engine): all share the flavour's one."""
    from glfer_edge.runtime.trt_compat import load_tensorrt

    trt = built[3]
    assert trt.logger() is load_tensorrt(trt.flavour).logger()
    first = trt.module.Runtime(trt.logger())
    capfd.readouterr()
    second = trt.module.Runtime(trt.logger())
    builder = trt.module.Builder(trt.logger())
    assert "differs" not in "".join(capfd.readouterr())  # TensorRT's default logger prints to stdout
    stray = trt.module.Runtime(trt.module.Logger(trt.module.Logger.WARNING))  # what a logger per object did
    assert "differs" in "".join(capfd.readouterr())  # the check above can fail
    del first, second, builder, stray


class _UnreadableCacheConfig:
    """Stands in for a TensorRT 10 builder config (not installable here) where ``create_timing_cache``
    returns None for a blob it cannot deserialize, and ``set_timing_cache(None, ...)`` raises
    TypeError as pybind11 does. The code under test is glfer-edge's guard, not TensorRT."""

    def create_timing_cache(self, blob: bytes):
        if not blob:
            return types.SimpleNamespace(serialize=lambda: b"")
        return None

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        if cache is None:
            raise TypeError("set_timing_cache(): incompatible function arguments")
        return True


def test_unreadable_timing_cache_is_one_line_error(tmp_path):
    from glfer_edge.export.trt_build import _attach_timing_cache
    from glfer_edge.runtime.trt_compat import TensorRT

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache" * 8)
    trt = TensorRT(types.ModuleType("tensorrt"), "tensorrt", "10.3.0.30")
    with pytest.raises(ArtifactError, match=r"^timing cache .*timing\.cache is corrupt or from another TensorRT/GPU.*"
                                          r"delete it and build again$"):
        _attach_timing_cache(trt, _UnreadableCacheConfig(), cache, [])


def test_corrupt_timing_cache_with_the_installed_tensorrt(built, tmp_path):
    """The real flavour here: a corrupt cache is refused in one line, or (RTX: no-op caches) ignored with a note."""
    trt = built[3]
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache" * 8)
    try:
        result = build_engine(session_artifacts().onnx, tmp_path / "c.engine", timing_cache=cache,
                              flavour=trt.flavour, progress=False)
    except ArtifactError as exc:
        assert "\n" not in str(exc) and "delete it and build again" in str(exc)
        return
    assert result.engine_path.is_file()
    record = result.sidecar["timing_cache"]
    if record["used"]:  # read as an empty cache (TensorRT warns) and replaced by a fresh one
        assert cache.read_bytes() != b"not a timing cache" * 8
    else:
        assert "no-op" in record["reason"]


def test_opening_an_engine_without_a_usable_gpu_names_the_cause(built):
    """The runtime reports the bindings' diagnosis (no driver / driver too old / no device) in one line,
    not a bare "no GPU"; on this CPU-only machine that is the real cuda-bindings answer."""
    from glfer_edge.runtime import SELDRuntime
    from glfer_edge.runtime.cuda import CudaError, open_cuda

    try:
        status = open_cuda().driver_status()
    except ImportError as exc:
        pytest.skip(f"no CUDA binding installed: {exc}")
    if status.devices:
        pytest.skip("a CUDA device is visible; the GPU tests open the engine")
    with pytest.raises(CudaError) as caught:
        SELDRuntime.open(built[0], device="cuda")
    message = str(caught.value)
    assert message == f"engine {built[0]} needs CUDA device 0: {status.problem}" and "\n" not in message


def test_builder_imports_on_a_deploy_install():
    """Engines are built on the device (standard TensorRT builds for its own GPU): the builder must
    import with the deploy dependencies, i.e. without torch and without onnx."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
            "import glfer_edge.export.trt_build, glfer_edge.commands.build\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]
