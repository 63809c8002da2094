"""SELDRuntime: the contract on every available backend, agreement between them, threads, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from glfer_edge import metadata as md
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.postprocess import detect_events
from glfer_edge.runtime import SELDOutput, SELDRuntime
from glfer_edge.runtime.segments import infer_long
from glfer_edge.tolerances import TOLERANCES
from seld_artifacts import foa_noise, session_artifacts, strip_metadata

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def _gpu_engine(directory: Path) -> Path:
    """An engine of the session ONNX, built here when TensorRT, cuda-python and a GPU are present."""
    from glfer_edge.runtime.cuda import open_cuda
    from glfer_edge.export.trt_build import build_engine
    from glfer_edge.runtime.trt_compat import load_tensorrt

    try:
        trt = load_tensorrt()
        if open_cuda().device_count() == 0:
            raise ImportError("no CUDA device")
    except ImportError as exc:
        pytest.skip(f"TensorRT backend needs TensorRT, cuda-python and a GPU: {exc}")
    engine = directory / "tiny.engine"
    build_engine(session_artifacts().onnx, engine, batch=(1, 2, 4), flavour=trt.flavour, progress=False)
    return engine


@pytest.fixture(scope="module")
def artifacts():
    return session_artifacts()


@pytest.fixture(params=BACKENDS)
def runtime(request, artifacts, tmp_path_factory):
    kind = request.param
    if kind == "tensorrt":
        path = _gpu_engine(tmp_path_factory.mktemp("engine"))
    else:
        path = artifacts.weights if kind == "torch" else artifacts.onnx
    with SELDRuntime.open(path) as rt:
        yield rt


def test_contract(runtime, artifacts):
    cfg = artifacts.config
    out = runtime.infer(foa_noise(cfg))
    assert isinstance(out, SELDOutput)
    assert runtime.config == cfg and runtime.precision == "fp32"
    assert runtime.backend in BACKENDS and runtime.batch_range[0] == 1
    assert out.sed.shape == (1, cfg.output_frames, 13) and out.doa.shape == (1, cfg.output_frames, 13, 3)
    assert out.sed.dtype == np.float32 and out.doa.dtype == np.float32
    assert 0.0 <= out.sed.min() and out.sed.max() <= 1.0 and np.abs(out.doa).max() <= 1.0
    np.testing.assert_allclose(out.frame_times, np.arange(cfg.output_frames) * 0.2)
    assert out.class_names == cfg.class_names


def test_batch_equals_single_calls(runtime, artifacts):
    audio = foa_noise(artifacts.config, batch=2, seed=5)
    batched = runtime.infer(audio)
    for i in range(2):
        single = runtime.infer(audio[i])
        np.testing.assert_allclose(batched.sed[i], single.sed[0], atol=1e-5)
        np.testing.assert_allclose(batched.doa[i], single.doa[0], atol=1e-5)


def _threshold_in_a_gap(sed: np.ndarray) -> float:
    """A threshold near the median probability with no probability within 5e-5 of it."""
    values = np.unique(sed)
    gaps = np.flatnonzero(np.diff(values) > 1e-4)
    middle = gaps[np.argmin(np.abs(gaps - len(values) // 2))]
    return float(values[middle] + values[middle + 1]) / 2


def test_torch_and_onnx_fp32_agree_on_outputs_and_events(artifacts):
    """Same audio -> outputs within the FP32 tolerance and exactly the same events (threshold in a gap)."""
    audio = foa_noise(artifacts.config, seconds=6.5, seed=11)
    with SELDRuntime.open(artifacts.weights) as ref, SELDRuntime.open(artifacts.onnx) as ort:
        a, b = infer_long(ref, audio), infer_long(ort, audio)
    assert np.abs(a.sed - b.sed).max() < TOLERANCES["fp32"].sed_max_abs
    assert np.abs(a.doa - b.doa).max() < TOLERANCES["fp32"].doa_max_abs
    threshold = _threshold_in_a_gap(a.sed)
    # gate=False: white noise is what the noise gate removes; this compares the backends' decisions
    ev_a, ev_b = detect_events(a, threshold=threshold, gate=False), detect_events(b, threshold=threshold, gate=False)
    assert 0 < len(ev_a) and 0 < a.sed.size - (a.sed >= threshold).sum()
    assert [(e.class_idx, e.onset, e.offset) for e in ev_a] == [(e.class_idx, e.onset, e.offset) for e in ev_b]
    for x, y in zip(ev_a, ev_b):
        assert abs(x.azimuth - y.azimuth) < 0.01 and abs(x.elevation - y.elevation) < 0.01


def test_concurrent_threads_match_serial(artifacts):
    inputs = [foa_noise(artifacts.config, batch=2, seed=s) for s in range(12)]
    with SELDRuntime.open(artifacts.onnx, threads=1) as rt:
        serial = [rt.infer(x).sed for x in inputs]
        results: dict[int, np.ndarray] = {}

        def worker(indices):
            for i in indices:
                results[i] = rt.infer(inputs[i]).sed

        threads = [threading.Thread(target=worker, args=(range(k, 12, 4),)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        futures = [rt.infer_async(x) for x in inputs]
        async_results = [f.result(timeout=60) for f in futures]
    for i in range(12):
        np.testing.assert_allclose(results[i], serial[i], atol=1e-6)
        np.testing.assert_allclose(async_results[i].sed, serial[i], atol=1e-6)


def test_infer_async_reports_input_errors_from_the_future(artifacts):
    with SELDRuntime.open(artifacts.onnx) as rt:
        future = rt.infer_async(np.zeros((4, 10), np.float32))
        with pytest.raises(InputError, match="segments of exactly"):
            future.result(timeout=30)


def test_close_frees_and_context_manager(artifacts):
    with SELDRuntime.open(artifacts.onnx) as rt:
        rt.infer(foa_noise(artifacts.config))
    with pytest.raises(RuntimeError, match="closed"):
        rt.infer(foa_noise(artifacts.config))
    rt.close()  # a second close is harmless
    assert "closed" in repr(rt)


@pytest.mark.parametrize(
    "make, error, fix",
    [
        (lambda a: a[:, :-1], InputError, "segments of exactly"),
        (lambda a: a[:3], InputError, "4-channel FOA"),
        (lambda a: a.T.copy(), InputError, "time first"),
        (lambda a: (a * 32767).astype(np.int16), InputError, "integer PCM"),
        (lambda a: np.where(np.arange(a.shape[1]) == 7, np.nan, a).astype(np.float32), InputError, "NaN"),
        (lambda a: a[None, None], InputError, "expected"),
        (lambda a: a.tolist(), InputError, "numpy array"),
    ],
)
def test_infer_rejects_bad_audio_with_the_fix(artifacts, make, error, fix):
    with SELDRuntime.open(artifacts.onnx) as rt:
        with pytest.raises(error, match=fix):
            rt.infer(make(foa_noise(artifacts.config)))


def test_every_entry_point_takes_float64_as_float32(artifacts):
    """One dtype rule: infer, infer_long and StreamingSELD.push convert any float width, refuse integers."""
    from glfer_edge import StreamingSELD, infer_long

    audio = foa_noise(artifacts.config)
    with SELDRuntime.open(artifacts.onnx) as rt:
        ref = rt.infer(audio)
        np.testing.assert_array_equal(rt.infer(audio.astype(np.float64)).sed, ref.sed)
        np.testing.assert_array_equal(infer_long(rt, audio.astype(np.float64)).sed, infer_long(rt, audio).sed)
        stream = StreamingSELD(rt)
        stream.push(audio.astype(np.float64))
        for call in (lambda: rt.infer(audio.astype(np.int32)), lambda: infer_long(rt, audio.astype(np.int16)),
                     lambda: StreamingSELD(rt).push(audio.astype(np.int16))):
            with pytest.raises(InputError, match="integer PCM"):
                call()


def test_open_rejects_foreign_or_broken_artifacts(artifacts, tmp_path):
    with pytest.raises(InputError, match="unknown suffix"):
        SELDRuntime.open(tmp_path / "model.pt")
    with pytest.raises(InputError, match="not found"):
        SELDRuntime.open(tmp_path / "missing.onnx")
    with pytest.raises(ArtifactError, match="no glfer-edge metadata"):
        SELDRuntime.open(strip_metadata(artifacts.onnx, tmp_path / "bare.onnx"))
    with pytest.raises(ArtifactError, match="re-export it with this SDK"):
        SELDRuntime.open(strip_metadata(artifacts.onnx, tmp_path / "future.onnx", **{md.KEY_FORMAT: "99"}))
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07not a protobuf" * 10)
    with pytest.raises(ArtifactError, match="not a loadable ONNX"):
        SELDRuntime.open(tmp_path / "corrupt.onnx")


def test_precision_comes_from_the_metadata(artifacts, tmp_path):
    relabelled = strip_metadata(artifacts.onnx, tmp_path / "int8.onnx", **{md.KEY_PRECISION: "int8"})
    with SELDRuntime.open(relabelled) as rt:
        assert rt.precision == "int8"


def test_fp16_artifact_runs_on_onnxruntime(artifacts, tmp_path):
    """FP16 graphs open with graph optimizations off (onnxruntime's optimizer crashes on them)."""
    import onnx

    fp16 = pytest.importorskip("glfer_edge.export.fp16")
    path = tmp_path / "tiny.fp16.onnx"
    onnx.save(fp16.convert_fp16(onnx.load(str(artifacts.onnx))), str(path))
    audio = foa_noise(artifacts.config, batch=2, seed=3)
    with SELDRuntime.open(path) as half, SELDRuntime.open(artifacts.onnx) as full:
        assert half.precision == "fp16"
        assert np.abs(half.infer(audio).sed - full.infer(audio).sed).max() < TOLERANCES["fp16"].sed_max_abs


def test_unavailable_providers_fail_loudly(artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the failure path cannot be shown")
    with pytest.raises(InputError, match="onnxruntime-gpu"):
        SELDRuntime.open(artifacts.onnx, device="cuda")
    with pytest.raises(InputError, match="not in this build"):
        SELDRuntime.open(artifacts.onnx, providers=["TensorrtExecutionProvider"])


def test_default_model_prefers_the_bundled_onnx(artifacts, tmp_path, monkeypatch):
    from glfer_edge import weights
    from glfer_edge.runtime import seld

    monkeypatch.setattr(seld, "DEFAULT_ONNX", artifacts.onnx)
    with SELDRuntime.open(None) as rt:
        assert rt.backend == "onnxruntime"
    monkeypatch.setattr(seld, "DEFAULT_ONNX", tmp_path / "absent.onnx")
    monkeypatch.setattr(weights, "DEFAULT_WEIGHTS", artifacts.weights)
    path, note = seld.default_model()
    assert path == artifacts.weights and "torch" in note
    monkeypatch.setattr(weights, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(ArtifactError, match="--model"):
        SELDRuntime.open(None)


def test_onnx_backend_runs_without_torch(artifacts):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from glfer_edge.runtime import SELDRuntime, StreamingSELD\n"
        "import glfer_edge.runtime.trt, glfer_edge.export.trt_build, glfer_edge.postprocess, glfer_edge.audio\n"
        f"rt = SELDRuntime.open({str(artifacts.onnx)!r})\n"
        "out = rt.infer(np.zeros((4, rt.config.segment_samples), np.float32))\n"
        "print(out.sed.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(1, {artifacts.config.output_frames}, 13)"


# -- the main job: glfer-edge run ---------------------------------------------------------------


def test_cli_run_writes_what_the_api_computes(artifacts, tmp_path, capsys):
    import soundfile as sf

    from glfer_edge.cli import main
    from glfer_edge.data.dcase import read_metadata_csv
    from glfer_edge.postprocess import outputs_to_rows

    sr = artifacts.config.features.sample_rate
    audio = foa_noise(artifacts.config, seconds=3.3, seed=8)
    sf.write(str(tmp_path / "in.wav"), audio.T, sr, subtype="FLOAT")
    with SELDRuntime.open(artifacts.onnx) as rt:
        out = infer_long(rt, audio)
    threshold = _threshold_in_a_gap(out.sed)  # random weights: about half the cells active
    common = ["run", str(tmp_path / "in.wav"), "--model", str(artifacts.onnx), "--threshold", repr(threshold),
              "--no-gate"]  # white noise: the gate would (rightly) hold no event
    assert main([*common, "--out", str(tmp_path / "pred.csv"), "--plot", str(tmp_path / "fig.png")]) == 0
    want = outputs_to_rows(out.sed[0], out.doa[0], artifacts.config, threshold=threshold, duration=3.3)
    got = read_metadata_csv(tmp_path / "pred.csv")
    assert [(r.frame, r.class_idx) for r in got] == [(r.frame, r.class_idx) for r in want] and got
    assert max(r.frame for r in got) == 32  # label frame 33 starts at the end of the 3.3-s audio
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*common, "--json", str(tmp_path / "events.json")]) == 0
    events = json.loads((tmp_path / "events.json").read_text())["events"]
    assert events and {"class_name", "onset", "offset", "azimuth", "elevation", "track_azimuth"} <= set(events[0])
    capsys.readouterr()
    assert main([*common, "--json", "-"]) == 0  # '-': the JSON instead of the table, on stdout
    assert json.loads(capsys.readouterr().out)["events"] == events
    assert main([*common, "--ref", str(tmp_path / "pred.csv"), "--average", "micro"]) == 0  # against itself: perfect
    out = capsys.readouterr().out.split("DCASE 2023 metrics")[-1]
    assert "macro" not in out and "micro averaging:\n    ER20 0.000  F20 100.0%  LE_CD 0.0°  LR_CD 100.0%  SELD 0.000" in out
    assert main([*common, "--ref", str(tmp_path / "pred.csv")]) == 0  # the edition's default first, as in evaluate
    macro, micro = capsys.readouterr().out.split("DCASE 2023 metrics")[-1].split("micro averaging")
    assert "macro averaging (the edition's default" in macro
    assert "ER20 0.000" in macro and "F20 100.0%" not in macro  # macro counts the classes absent from the clip
    assert "F20 100.0%" in micro  # and the recording's own events, pooled, beside it


def test_cli_demo_runs_on_a_synthetic_scene(artifacts, capsys):
    from glfer_edge.cli import main

    assert main(["run", "--demo", "--model", str(artifacts.onnx), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "demo: synthetic scene" in cap.err and "reference:" in cap.out and "SELD" in cap.out
