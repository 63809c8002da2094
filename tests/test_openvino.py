"""The OpenVINO backend behind SELDRuntime: same outputs as onnxruntime on the same file, f32 unless bf16 is
asked for (and refused where the CPU cannot do it), compiled once into CACHE_DIR, bad input refused by the
runtime's validation, options that belong to another backend refused, ``glfer-edge run --backend openvino``.

Runs on the bundled FP32 model (no torch needed). Parity on every artifact form against the torch reference:
tests/parity/test_openvino_parity.py. Skips with the reason when the ``openvino`` extra is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from glfer_edge.errors import InputError
from glfer_edge.runtime import RuntimeOptions, SELDRuntime
from glfer_edge.runtime.seld import DEFAULT_ONNX
from glfer_edge.tolerances import TOLERANCES

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'glfer-edge[openvino]')")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ov_cache"))


@pytest.fixture(scope="module")
def ov(cache):
    with SELDRuntime.open("default", backend="openvino", threads=2, options=RuntimeOptions(cache_dir=cache)) as rt:
        yield rt


def _audio(config, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal((batch, 4, config.segment_samples))).astype(np.float32)


def test_openvino_equals_onnxruntime_on_the_same_fp32_file(ov):
    audio = _audio(ov.config, 2)
    with SELDRuntime.open("default", threads=2) as ort_rt:
        ref = ort_rt.infer(audio)
    out = ov.infer(audio)
    assert (ov.backend, ov.precision, ov.batch_range) == ("openvino", "fp32", (1, None))
    assert "inference precision f32" in ov.description
    tol = TOLERANCES["fp32"]
    assert np.abs(out.sed - ref.sed).max() <= tol.sed_max_abs
    assert np.abs(out.doa - ref.doa).max() <= tol.doa_max_abs
    np.testing.assert_array_equal(out.frame_times, ref.frame_times)
    assert ov.backend_impl.compiled_properties["INFERENCE_PRECISION_HINT"] in ("f32", "<Type: 'float32'>")


def test_openvino_refuses_bad_input_like_the_other_backends(ov):
    n = ov.config.segment_samples
    bad = {
        "dtype int16": np.zeros((1, 4, n), np.int16),
        "channels": np.zeros((1, 2, n), np.float32),
        "samples": np.zeros((1, 4, n - 1), np.float32),
        "NaN/Inf": np.full((1, 4, n), np.nan, np.float32),
        "shape": np.zeros((4,), np.float32),
    }
    for what, audio in bad.items():
        with pytest.raises(InputError):
            ov.infer(audio)
    assert ov.infer(np.zeros((4, n), np.float64)).sed.shape[0] == 1  # float64 converted, as everywhere


def test_bf16_only_when_asked_and_never_silently_f32(cache):
    from glfer_edge.runtime.openvino import bf16_supported

    options = RuntimeOptions(precision="bf16", cache_dir=cache)
    if not bf16_supported():
        with pytest.raises(InputError, match="bf16"):
            SELDRuntime.open("default", backend="openvino", options=options)
        return
    with SELDRuntime.open("default", backend="openvino", options=options) as rt:
        assert rt.precision == "bf16" and "inference precision bf16" in rt.description


def test_static_batch_compiles_per_batch_size_with_the_same_outputs(ov, cache):
    audio = _audio(ov.config, 2, seed=1)
    with SELDRuntime.open("default", backend="openvino", threads=2,
                          options=RuntimeOptions(static_batch=True, cache_dir=cache)) as rt:
        out2, out1 = rt.infer(audio), rt.infer(audio[:1])
        assert sorted(rt.backend_impl._compiled) == [1, 2]
    ref = ov.infer(audio)
    assert np.abs(out2.sed - ref.sed).max() <= TOLERANCES["fp32"].sed_max_abs
    assert np.abs(out1.sed[0] - ref.sed[0]).max() <= TOLERANCES["fp32"].sed_max_abs


def test_compiled_model_is_cached(ov, cache):
    from pathlib import Path

    assert any(p.suffix == ".blob" for p in Path(cache).rglob("*")), "no compiled blob in CACHE_DIR"


def test_options_of_another_backend_are_refused():
    with pytest.raises(InputError, match="graph_optimization"):
        SELDRuntime.open("default", backend="openvino", options=RuntimeOptions(graph_optimization="basic"))
    with pytest.raises(InputError, match="precision"):
        SELDRuntime.open("default", options=RuntimeOptions(precision="bf16"))  # onnxruntime
    with pytest.raises(InputError, match="CPU only"):
        SELDRuntime.open("default", backend="openvino", device="cuda")
    with pytest.raises(InputError, match="cannot run"):
        SELDRuntime.open("default", backend="tensorrt")
    with pytest.raises(InputError, match="not one of"):
        RuntimeOptions(precision="fp8")


def test_profile_gives_frontend_and_gru_shares(cache):
    with SELDRuntime.open("default", backend="openvino", threads=2,
                          options=RuntimeOptions(profile=True, cache_dir=cache)) as rt:
        rt.infer(_audio(rt.config, 1))
        shares = rt.backend_impl.time_shares()
    assert 0 < shares["frontend_share"] < 1 and 0 < shares["gru_share"] < 1
    assert shares["frontend_share"] + shares["gru_share"] < 1


def test_cli_run_with_backend_openvino(tmp_path, capsys):
    from glfer_edge.cli import main

    out = tmp_path / "demo.csv"
    assert main(["run", "--demo", "--backend", "openvino", "--out", str(out)]) == 0
    assert "openvino" in capsys.readouterr().err
    assert out.read_text().strip()
    assert DEFAULT_ONNX.is_file()
