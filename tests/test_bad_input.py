"""``glfer-edge run`` on bad input: one ``error:`` line, exit status 2, no traceback, no output file.

Also the inputs that must be accepted: int16/int32/float WAV and (with a note) another sample rate.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from glfer_edge import metadata as md
from glfer_edge.audio import load_audio
from glfer_edge.cli import main
from seld_artifacts import foa_noise, session_artifacts, strip_metadata


@pytest.fixture(scope="module")
def art():
    return session_artifacts()


def _run(capsys, tmp_path, inp, *extra, model=None):
    """Run the CLI with --out/--plot in tmp_path/out; returns (rc, stdout, stderr, files in out/)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    argv = ["run", *([str(inp)] if inp is not None else []), "--model", str(model or session_artifacts().onnx),
            "--out", str(out / "events.csv"), "--plot", str(out / "plot.png"), *extra]
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err, sorted(p.name for p in out.iterdir())


def _wav(path, audio, sr, subtype="FLOAT"):
    sf.write(str(path), audio.T, sr, subtype=subtype)
    return path


def _assert_refused(result, *words):
    rc, _, err, files = result
    lines = [line for line in err.splitlines() if not line.startswith("note:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and files == []
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_file(capsys, tmp_path):
    _assert_refused(_run(capsys, tmp_path, tmp_path / "nope.wav"), "not found")


def test_corrupt_file(capsys, tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    _assert_refused(_run(capsys, tmp_path, bad), "cannot decode")


def test_not_four_channels(capsys, tmp_path, art):
    stereo = _wav(tmp_path / "stereo.wav", foa_noise(art.config, seconds=2.0)[:2], art.config.features.sample_rate)
    _assert_refused(_run(capsys, tmp_path, stereo), "2 channel", "4-channel")


def test_other_sample_rate_is_resampled_or_refused(capsys, tmp_path, art):
    sr = art.config.features.sample_rate
    audio = foa_noise(art.config, seconds=2.0)
    wav = _wav(tmp_path / "fast.wav", np.repeat(audio, 3, axis=1), 3 * sr)
    _assert_refused(_run(capsys, tmp_path, wav, "--no-resample"), f"{3 * sr} Hz", "--no-resample")
    rc, _, err, files = _run(capsys, tmp_path, wav)
    assert rc == 0 and f"resampled fast.wav from {3 * sr} Hz to {sr} Hz" in err
    assert files == ["events.csv", "plot.png"]
    loaded = load_audio(wav, sr)
    assert loaded.audio.shape == audio.shape and loaded.resampled


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_samples(capsys, tmp_path, art, value):
    audio = foa_noise(art.config, seconds=2.0)
    audio[1, 1234] = value
    wav = _wav(tmp_path / "nan.wav", audio, art.config.features.sample_rate)
    _assert_refused(_run(capsys, tmp_path, wav), "NaN/Inf", "first at")


@pytest.mark.parametrize("seconds, word", [(0.0, "is empty"), (0.05, "50 ms long")])
def test_empty_or_too_short(capsys, tmp_path, art, seconds, word):
    sr = art.config.features.sample_rate
    wav = _wav(tmp_path / "short.wav", np.zeros((4, int(seconds * sr)), np.float32), sr)
    _assert_refused(_run(capsys, tmp_path, wav), word, "100 ms")


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_32", "FLOAT"])
def test_int_and_float_wavs_are_accepted(capsys, tmp_path, art, subtype):
    sr = art.config.features.sample_rate
    audio = foa_noise(art.config, seconds=2.4)
    wav = _wav(tmp_path / f"{subtype}.wav", audio, sr, subtype)
    loaded = load_audio(wav, sr)
    assert loaded.audio.dtype == np.float32
    np.testing.assert_allclose(loaded.audio, audio, atol=2 ** -15 if subtype == "PCM_16" else 1e-7)
    rc, out, _, files = _run(capsys, tmp_path, wav)
    assert rc == 0 and files == ["events.csv", "plot.png"] and "onset" in out


def test_onnx_without_our_metadata(capsys, tmp_path, art):
    wav = _wav(tmp_path / "ok.wav", foa_noise(art.config, seconds=2.0), art.config.features.sample_rate)
    bare = strip_metadata(art.onnx, tmp_path / "bare.onnx")
    _assert_refused(_run(capsys, tmp_path, wav, model=bare), "no glfer-edge metadata", "glfer-edge export")


def test_onnx_from_another_sdk_format(capsys, tmp_path, art):
    wav = _wav(tmp_path / "ok.wav", foa_noise(art.config, seconds=2.0), art.config.features.sample_rate)
    future = strip_metadata(art.onnx, tmp_path / "future.onnx", **{md.KEY_FORMAT: "2", md.KEY_VERSION: "9.0"})
    _assert_refused(_run(capsys, tmp_path, wav, model=future), "artifact format 2", "9.0", "re-export")


def test_engine_from_another_tensorrt(capsys, tmp_path, art):
    wav = _wav(tmp_path / "ok.wav", foa_noise(art.config, seconds=2.0), art.config.features.sample_rate)
    engine = tmp_path / "old.engine"
    engine.write_bytes(b"\x00" * 64)  # refused from the sidecar, before the plan is read
    sidecar = {"format": "glfer-edge engine sidecar 1", "tensorrt": {"flavour": "tensorrt", "version": "8.6.1"},
               "onnx": {"path": "tiny.onnx"}, "onnx_metadata": {md.KEY_CONFIG: art.config.to_json()}}
    (tmp_path / "old.engine.json").write_text(json.dumps(sidecar))
    _assert_refused(_run(capsys, tmp_path, wav, model=engine), "8.6.1", "glfer-edge build tiny.onnx --out")


@pytest.mark.parametrize("extra, word", [
    (("--threshold", "1.5"), "threshold"),
    (("--median", "2"), "odd"),
    (("--doa-smoothing", "0"), "--doa-smoothing 0 must be an odd number"),
    (("--tta", "3"), "1, 2, 4, 8, 16"),
    (("--edition", "2021", "--average", "macro"), "micro-averaged only"),
    (("--demo",), "not both"),
])
def test_bad_options(capsys, tmp_path, art, extra, word):
    wav = _wav(tmp_path / "ok.wav", foa_noise(art.config, seconds=2.0), art.config.features.sample_rate)
    _assert_refused(_run(capsys, tmp_path, wav, *extra), word)
