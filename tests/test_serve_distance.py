"""Serving a model with the distance head (``ModelConfig.distance``): the repository declares ``distance``
exactly for such models, and a real Triton server returns what the model computes in-process.

One server (the bundled ``tritonserver`` on the Python-backend repository of ``export-triton``) for a
random-init tiny distance model with the small test frontend (tests/seld_artifacts.py).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# test_serve skips this module too where the serve extra or a usable tritonserver is missing
from test_serve import IDLE_S, _cat, _chunks, _options, _served, _stream_in_process  # noqa: E402

from glfer_edge.cli import main
from glfer_edge.runtime import SELDRuntime
from glfer_edge.runtime.segments import infer_long
from glfer_edge.serve.client import SELDClient
from glfer_edge.serve.repository import onnx_config, parse_config, tensorrt_config, write_repository
from seld_artifacts import foa_noise, make_artifacts, small_config

TOL = 1e-4
PLAIN = Path(__file__).resolve().parents[1] / "glfer_edge/assets/glfer_small_synth.fp32.onnx"  # no distance head
FP32 = pytest.importorskip("tritonclient.grpc.model_config_pb2").TYPE_FP32


@pytest.fixture(scope="module")
def dist_model(tmp_path_factory):
    pytest.importorskip("torch", reason="exporting the test model needs the build-time extra glfer-edge[torch]")
    cfg = small_config()
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, distance=True))
    return make_artifacts(tmp_path_factory.mktemp("dist_model"), cfg, seed=3).onnx


@pytest.fixture(scope="module")
def dist_rt(dist_model):
    with SELDRuntime.open(dist_model, threads=1) as runtime:
        assert runtime.config.model.distance
        yield runtime


@pytest.fixture(scope="module")
def dist_server(dist_model, tmp_path_factory):
    yield from _served(dist_model, tmp_path_factory.mktemp("triton_dist") / "repo")


def _config(path):
    from glfer_edge.runtime.artifact import artifact_metadata, config_from_metadata

    return config_from_metadata(artifact_metadata(path), path)[0]


def _outputs(config) -> dict:
    return {o.name: o for o in config.output}


# -- the repository (no server) -----------------------------------------------------------------------
def test_distance_output_is_declared_for_distance_models_only(dist_model, tmp_path):
    plain = PLAIN
    for model, has in ((dist_model, True), (plain, False)):
        written = write_repository(tmp_path / f"repo_{has}", model, options=_options())
        assert set(written) == {"glfer", "glfer_stream", "glfer_onnx"}
        cfg = _config(model)
        assert cfg.model.distance == has
        t, c = cfg.output_frames, cfg.model.num_classes
        for name, folder in written.items():
            outputs = _outputs(parse_config((folder / "config.pbtxt").read_text()))  # Triton's schema
            assert ("distance" in outputs) == has, name
            if has:  # FP32, shaped like sed
                assert outputs["distance"].data_type == outputs["sed"].data_type == FP32
                assert list(outputs["distance"].dims) == list(outputs["sed"].dims), name
                assert list(outputs["distance"].dims) == ([-1, c] if name == "glfer_stream" else [t, c])

    cfg = _config(dist_model)
    t, c, n = cfg.output_frames, cfg.model.num_classes, cfg.segment_samples
    single = _outputs(parse_config(onnx_config(cfg, "fp16", 1, _options())))  # a --single-batch graph
    assert list(single["distance"].dims) == [1, t, c]
    sidecar = {"tensorrt": {"flavour": "tensorrt", "version": "10.13.3.9"},
               "profile": {"audio": {"min": [1, 4, n], "opt": [4, 4, n], "max": [8, 4, n]}},
               "io": [{"name": "audio", "dtype": "float"}, {"name": "sed", "dtype": "float"},
                      {"name": "doa", "dtype": "float"}, {"name": "distance", "dtype": "float"}]}
    plan = _outputs(parse_config(tensorrt_config(cfg, "fp16", sidecar, _options())))
    assert list(plan["distance"].dims) == [t, c] and plan["distance"].data_type == FP32
    plain_cfg = _config(plain)
    assert "distance" not in _outputs(parse_config(tensorrt_config(plain_cfg, "fp16", sidecar, _options())))


# -- the served distance model -------------------------------------------------------------------------
def test_served_batch_model_returns_the_in_process_distance(dist_server, dist_rt):
    cfg = dist_rt.config
    audio = foa_noise(cfg, seconds=5.3, seed=31)
    local = infer_long(dist_rt, audio, batch_size=4)
    assert local.distance is not None and local.distance.shape == local.sed.shape
    with SELDClient(dist_server.grpc_url) as client:
        assert client.distance and client.config == cfg
        remote = client.infer_long(audio, batch_size=4)
    with SELDClient(dist_server.http_url) as client:
        single = client.infer(audio[:, : cfg.segment_samples])
    assert remote.distance is not None and remote.distance.dtype == np.float32
    np.testing.assert_allclose(remote.distance, local.distance, atol=TOL)
    np.testing.assert_allclose(remote.sed, local.sed, atol=1e-6)
    np.testing.assert_allclose(remote.doa, local.doa, atol=1e-6)
    np.testing.assert_allclose(single.distance[0], local.distance[0, : cfg.output_frames], atol=TOL)
    assert float(local.distance.min()) > 0  # metres (softplus), not an all-zero placeholder


def test_served_stream_model_returns_the_in_process_distance(dist_server, dist_rt):
    """Two concurrent streams (their windows share the server's inference calls) and, for one of them,
    a sequence the server loses (idle timeout) mid-stream: the client's replay keeps distance too."""
    cfg = dist_rt.config
    audios = [foa_noise(cfg, seconds=4.7, seed=32), foa_noise(cfg, seconds=3.0, seed=33)]
    plans = [_chunks(audios[0].shape[1], np.random.default_rng(2), cfg.segment_samples // 2),
             [(p, p + 800) for p in range(0, audios[1].shape[1], 800)]]
    results: dict[int, list] = {}
    gaps: list[str] = []
    errors: list[BaseException] = []

    def worker(i):
        try:
            with SELDClient(dist_server.grpc_url if i == 0 else dist_server.http_url) as client:
                with client.stream(on_gap=gaps.append, reconnect_timeout_s=30) as stream:
                    outs = []
                    for k, (a, b) in enumerate(plans[i]):
                        if i == 1 and k == 5:  # past the first window, mid-hop: the server forgets the sequence
                            time.sleep(IDLE_S + 1.0)
                        outs.append(stream.push(audios[i][:, a:b]))
                    outs.append(stream.close())
                    results[i] = (outs, len(stream.gaps))
        except BaseException as exc:  # surfaced below with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    if errors:
        raise errors[0]
    assert results[1][1] == 1 and len(gaps) == 1 and results[0][1] == 0  # the idled-out stream, once
    for i, audio in enumerate(audios):
        local = _stream_in_process(dist_rt, audio, plans[i])
        remote = results[i][0]
        assert all(o.distance is not None for o in local + remote)
        assert [o.num_frames for o in remote] == [o.num_frames for o in local]
        np.testing.assert_allclose(_cat(remote, "distance"), _cat(local, "distance"), atol=TOL)
        np.testing.assert_allclose(_cat(remote, "doa"), _cat(local, "doa"), atol=TOL)
        np.testing.assert_array_equal(np.concatenate([o.frame_times for o in remote]),
                                      np.concatenate([o.frame_times for o in local]))
        assert _cat(remote, "distance").shape == _cat(remote, "sed").shape


def test_run_with_server_writes_what_run_in_process_writes(dist_server, dist_rt, tmp_path):
    """Events of a served distance model are those of the in-process one (whatever columns they carry)."""
    import soundfile as sf

    wav = tmp_path / "scene.wav"
    sf.write(wav, foa_noise(dist_rt.config, seconds=4.5, seed=34).T, dist_rt.config.features.sample_rate,
             subtype="FLOAT")
    common = ["run", str(wav), "--threshold", "0.12", "--no-gate", "--quiet"]
    assert main([*common, "--model", str(dist_rt.path), "--out", str(tmp_path / "local.csv"),
                 "--json", str(tmp_path / "local.json")]) == 0
    assert main([*common, "--server", dist_server.grpc_url, "--out", str(tmp_path / "remote.csv"),
                 "--json", str(tmp_path / "remote.json")]) == 0
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "local.csv").read_text()
    local, remote = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "remote"))
    assert remote == local and local["events"]
