"""Serving on NVIDIA Triton: the bundled ``tritonserver`` of nvidia-pytriton, a real server on free loopback ports.

Small random-weight models (tests/seld_artifacts.py: tiny preset, 4-kHz frontend, 1-s segments) keep every
request fast; the server, the Python backend, tritonclient and the sequence batcher are the real ones.
The fault tests (restart, vanished client, bad payloads) are bounded: each stops by itself in < 30 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="serving tests need the serve extra: pip install -e '.[serve]'")
pytest.importorskip("tritonclient.grpc", reason="serving tests need the serve extra: pip install -e '.[serve]'")
from glfer_edge.errors import GlferError  # noqa: E402

try:
    from glfer_edge.serve.distribution import check_libpython, find_distribution

    find_distribution()
    check_libpython()
except (ImportError, GlferError) as exc:  # the wheel needs Linux x86_64/aarch64 with glibc >= 2.35
    pytest.skip(f"no usable tritonserver from nvidia-pytriton here ({exc})", allow_module_level=True)

from glfer_edge import postprocess as pp
from glfer_edge.cli import main
from glfer_edge.runtime import SELDRuntime, StreamingSELD
from glfer_edge.runtime.segments import infer_long
from glfer_edge.serve.client import SELDClient
from glfer_edge.serve.repository import ServeOptions, parse_config, write_repository
from glfer_edge.serve.server import TritonServer
from seld_artifacts import foa_noise, session_artifacts

HOP_S = 0.4  # glfer_stream's window hop in these tests (2 output frames of 0.2 s; segment 1 s)
IDLE_S = 2.0  # sequence idle timeout


def _options(**changes) -> ServeOptions:
    base = dict(max_batch_size=8, max_queue_delay_us=500, threads=1, stream_hop_seconds=HOP_S,
                sequence_idle_s=IDLE_S, max_sequences=3, max_chunk_seconds=10.0)
    base.update(changes)
    return ServeOptions(**base)


@pytest.fixture(scope="module")
def model():
    return session_artifacts().onnx


@pytest.fixture(scope="module")
def rt(model):
    with SELDRuntime.open(model, threads=1) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """The Python-backend repository of ``export-triton``, in the bundled tritonserver started directly."""
    yield from _served(model, tmp_path_factory.mktemp("triton") / "repo")


def _served(model, repo):
    """Start the Python-backend repository of ``model`` (written to ``repo``); yield the ready server, then stop it."""
    code = main(["export-triton", "--model", str(model), "--out", str(repo), "--forms", "python", "--threads", "1",
                 "--max-batch-size", "8", "--max-queue-delay-us", "500", "--stream-hop", str(HOP_S),
                 "--sequence-idle-s", str(IDLE_S), "--max-sequences", "3"])
    assert code == 0
    srv = TritonServer(repo, log=repo.parent / "triton.log", exit_timeout_s=3)
    srv.start()
    try:
        srv.wait_ready(90)
        yield srv
    finally:
        srv.cleanup()


def _stream_in_process(rt, audio, chunks):
    stream = StreamingSELD(rt, HOP_S)
    outs = [stream.push(audio[:, a:b]) for a, b in chunks] + [stream.flush()]
    return outs


def _chunks(n, rng, max_len):
    bounds, pos = [], 0
    while pos < n:
        step = int(rng.integers(1, max_len))
        bounds.append((pos, min(n, pos + step)))
        pos += step
    return bounds


def _cat(outs, name):
    return np.concatenate([getattr(o, name)[0] for o in outs])


def _events(outs, config):
    sed, doa = _cat(outs, "sed"), _cat(outs, "doa")
    times = np.concatenate([o.frame_times for o in outs])
    threshold, smoothing = config.decision(1)
    doa = pp.smooth_doa(sed, doa, smoothing)
    active = pp.activity(sed, threshold, class_names=config.class_names)
    return [e.to_dict() for e in pp.events_from_frames(active, sed, doa, times, config.output_hop_seconds,
                                                       config.class_names)]


# -- the repository -----------------------------------------------------------------------------------
def test_every_config_parses_with_tritons_model_config(model, tmp_path):
    written = write_repository(tmp_path / "repo", model, options=_options(instances=2))
    assert set(written) == {"glfer", "glfer_stream", "glfer_onnx"}
    configs = {name: parse_config((folder / "config.pbtxt").read_text()) for name, folder in written.items()}
    glfer, stream, onnx_cfg = configs["glfer"], configs["glfer_stream"], configs["glfer_onnx"]
    cfg = SELDRuntime.open(model).config
    assert glfer.backend == "python" and glfer.max_batch_size == 8
    assert glfer.HasField("dynamic_batching") and glfer.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(glfer.input[0].dims) == [4, cfg.segment_samples]
    assert list(glfer.output[1].dims) == [cfg.output_frames, cfg.model.num_classes, 3]
    assert glfer.instance_group[0].count == 2
    seq = stream.sequence_batching
    assert seq.max_sequence_idle_microseconds == int(IDLE_S * 1e6)
    assert seq.HasField("direct") and stream.max_batch_size == 3  # one slot per stream
    assert {c.name for c in seq.control_input} == {"START", "END", "CORRID"}
    assert stream.input[0].allow_ragged_batch
    assert onnx_cfg.platform == "onnxruntime_onnx" and onnx_cfg.max_batch_size == 8
    assert not onnx_cfg.HasField("optimization")  # FP32: our sessions use onnxruntime's default level too
    from glfer_edge.serve.repository import TRITON_ORT_LEVELS

    with SELDRuntime.open(model) as opened:  # what OrtBackend picked for this artifact is what the config says
        assert TRITON_ORT_LEVELS[opened.backend_impl.graph_optimization] is None
    assert json.loads(glfer.parameters["glfer_edge.config"].string_value)["segment_seconds"] == cfg.segment_seconds
    assert "import TritonPythonModel" in (written["glfer"] / "1" / "model.py").read_text()
    assert (written["glfer_onnx"] / "1" / "model.onnx").stat().st_size == model.stat().st_size


def test_fp16_and_engine_configs_set_what_our_sessions_set(model):
    from glfer_edge.serve.repository import onnx_config, ort_graph_level, tensorrt_config

    cfg = SELDRuntime.open(model).config
    fp16 = parse_config(onnx_config(cfg, "fp16", None, _options()))
    assert ort_graph_level("fp16") == 2 and fp16.optimization.graph.level == 2  # 2: ORT_DISABLE_ALL in Triton
    assert ort_graph_level("int8") is None and ort_graph_level("fp16", "basic") == -1
    sidecar = {"tensorrt": {"flavour": "tensorrt", "version": "10.13.3.9"},
               "profile": {"audio": {"min": [1, 4, cfg.segment_samples], "opt": [4, 4, cfg.segment_samples],
                                     "max": [8, 4, cfg.segment_samples]}},
               "io": [{"name": "audio", "dtype": "float"}, {"name": "sed", "dtype": "float"},
                      {"name": "doa", "dtype": "float"}]}
    text = tensorrt_config(cfg, "fp16", sidecar, _options(max_batch_size=16))
    plan = parse_config(text)
    assert plan.platform == "tensorrt_plan" and plan.max_batch_size == 8  # the engine's profile caps it
    assert plan.parameters["glfer_edge.tensorrt_version"].string_value == "10.13.3.9"
    assert "built with TensorRT 10.13.3.9" in text
    assert plan.instance_group[0].kind == plan.instance_group[0].KIND_GPU


def test_engine_form_from_a_sidecar(model, tmp_path):
    """--engine adds glfer_trt: the plan is copied with its sidecar, the config names its TensorRT version."""
    from glfer_edge.runtime.artifact import read_onnx_metadata
    from glfer_edge.runtime.trt_compat import SIDECAR_FORMAT

    cfg = SELDRuntime.open(model).config
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real plan: Triton's TensorRT backend reads it, this test only the repository")
    n = cfg.segment_samples
    (tmp_path / "model.engine.json").write_text(json.dumps({
        "format": SIDECAR_FORMAT, "tensorrt": {"flavour": "tensorrt", "version": "10.3.0"},
        "profile": {"audio": {"min": [1, 4, n], "opt": [4, 4, n], "max": [16, 4, n]}},
        "io": [{"name": "audio", "dtype": "float"}, {"name": "sed", "dtype": "float"}, {"name": "doa", "dtype": "float"}],
        "onnx_metadata": read_onnx_metadata(model),
    }))
    written = write_repository(tmp_path / "repo", model, engine=engine, forms=("tensorrt",), options=_options())
    plan = parse_config((written["glfer_trt"] / "config.pbtxt").read_text())
    assert plan.platform == "tensorrt_plan" and plan.max_batch_size == 8
    assert plan.parameters["glfer_edge.tensorrt_version"].string_value == "10.3.0"
    assert (written["glfer_trt"] / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert (written["glfer_trt"] / "1" / "model.plan.json").is_file()
    with pytest.raises(Exception, match="needs an .onnx --model|forms here"):
        write_repository(tmp_path / "repo2", engine, forms=("onnx",), options=_options())


# -- the served models ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_glfer_equals_in_process_file_inference(server, rt, scheme):
    audio = foa_noise(rt.config, seconds=5.3, seed=3)
    url = server.http_url if scheme == "http" else server.grpc_url
    with SELDClient(url) as client:
        assert client.config == rt.config and client.batch_range == (1, 8)
        remote = client.infer_long(audio, batch_size=4)
        single = client.infer(audio[:, : rt.config.segment_samples])
    local = infer_long(rt, audio, batch_size=4)
    np.testing.assert_allclose(remote.sed, local.sed, atol=1e-6)
    np.testing.assert_allclose(remote.doa, local.doa, atol=1e-6)
    np.testing.assert_array_equal(remote.frame_times, local.frame_times)
    np.testing.assert_allclose(single.sed[0], local.sed[0, : rt.config.output_frames], atol=1e-6)


def test_run_with_server_writes_the_same_files(server, rt, tmp_path):
    import soundfile as sf

    wav = tmp_path / "scene.wav"
    sf.write(wav, foa_noise(rt.config, seconds=4.5, seed=5).T, rt.config.features.sample_rate, subtype="FLOAT")
    local_args = ["run", str(wav), "--model", str(rt.path), "--threshold", "0.12", "--no-gate", "--quiet"]
    assert main([*local_args, "--out", str(tmp_path / "local.csv"), "--json", str(tmp_path / "local.json")]) == 0
    remote_args = ["run", str(wav), "--server", server.grpc_url, "--threshold", "0.12", "--no-gate", "--quiet"]
    assert main([*remote_args, "--out", str(tmp_path / "remote.csv"), "--json", str(tmp_path / "remote.json")]) == 0
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "local.csv").read_text()
    local, remote = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "remote"))
    assert remote == local and local["events"]  # the same events, and there are some at this threshold


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_stream_equals_streaming_seld_in_process(server, rt, scheme):
    cfg = rt.config
    audio = foa_noise(cfg, seconds=4.7, seed=6)
    chunks = _chunks(audio.shape[1], np.random.default_rng(1), cfg.segment_samples // 2)
    local = _stream_in_process(rt, audio, chunks)
    url = server.http_url if scheme == "http" else server.grpc_url
    with SELDClient(url) as client, client.stream() as stream:
        remote = [stream.push(audio[:, a:b]) for a, b in chunks]
        remote.append(stream.close())
        assert stream.hops_sent == len(chunks) + 1 and not stream.gaps
    assert [o.num_frames for o in remote] == [o.num_frames for o in local]  # each hop returns its own frames
    np.testing.assert_allclose(_cat(remote, "doa"), _cat(local, "doa"), atol=1e-4)
    np.testing.assert_allclose(_cat(remote, "sed"), _cat(local, "sed"), atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([o.frame_times for o in remote]),
                                  np.concatenate([o.frame_times for o in local]))
    if local[0].diffuseness is not None:
        np.testing.assert_allclose(_cat(remote, "diffuseness"), _cat(local, "diffuseness"), atol=1e-6)
    assert _events(remote, cfg) == _events(local, cfg)
    assert len(np.concatenate([o.frame_times for o in remote])) == 24  # frames starting before 4.7 s


def test_concurrent_streams_share_batches_and_each_equals_its_own_streaming_seld(server, rt):
    cfg = rt.config
    audios = [foa_noise(cfg, seconds=3.0, seed=20 + i) for i in range(3)]  # 3 streams: every slot of the server
    hop = int(0.2 * cfg.features.sample_rate)
    results: dict[int, list] = {}

    def worker(i):
        with SELDClient(server.grpc_url) as client, client.stream() as stream:
            outs = [stream.push(audios[i][:, p : p + hop]) for p in range(0, audios[i].shape[1], hop)]
            results[i] = outs + [stream.close()]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(audios))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, audio in enumerate(audios):
        chunks = [(p, p + hop) for p in range(0, audio.shape[1], hop)]
        local = _stream_in_process(rt, audio, chunks)
        np.testing.assert_allclose(_cat(results[i], "doa"), _cat(local, "doa"), atol=1e-4)
        np.testing.assert_allclose(_cat(results[i], "sed"), _cat(local, "sed"), atol=1e-5)
        assert _events(results[i], cfg) == _events(local, cfg)


def _raw(server, model, array, dtype="FP32", **kwargs):
    import tritonclient.http as th

    client = th.InferenceServerClient(server.http_url.split("//")[1])
    try:
        tensor = th.InferInput("audio", list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        return client.infer(model, [tensor], **kwargs)
    finally:
        client.close()


def test_bad_payloads_get_a_one_line_triton_error_and_the_server_keeps_serving(server, rt):
    from tritonclient.utils import InferenceServerException

    n = rt.config.segment_samples
    good = foa_noise(rt.config, seconds=1.0, seed=7)[None]
    nan = good.copy()
    nan[0, 1, 5] = np.nan
    cases = {
        "wrong rank": ("glfer", good[0, 0], "FP32", {}),
        "2 channels": ("glfer", good[:, :2], "FP32", {}),
        "float64": ("glfer", good.astype(np.float64), "FP64", {}),
        "NaN": ("glfer", nan, "FP32", {}),
        "empty": ("glfer", np.zeros((1, 4, 0), np.float32), "FP32", {}),
        "oversized batch": ("glfer", np.zeros((9, 4, n), np.float32), "FP32", {}),
        "oversized hop": ("glfer_stream", np.zeros((1, 4, 61 * rt.config.features.sample_rate), np.float32),
                          "FP32", {"sequence_id": 91, "sequence_start": True}),
        "empty hop": ("glfer_stream", np.zeros((1, 4, 0), np.float32), "FP32",
                      {"sequence_id": 92, "sequence_start": True}),
        "unknown correlation ID": ("glfer_stream", good[:, :, :100], "FP32", {"sequence_id": 123456789}),
    }
    reasons = {}
    for name, (model, array, dtype, kwargs) in cases.items():
        with pytest.raises(InferenceServerException) as info:
            _raw(server, model, array, dtype, **kwargs)
        reasons[name] = info.value.message()
        assert reasons[name] and "\n" not in reasons[name], name
    assert "NaN" in reasons["NaN"] and "nan_to_num" in reasons["NaN"]
    assert "exceeds" in reasons["oversized hop"] and "empty hop" in reasons["empty hop"]
    assert "START" in reasons["unknown correlation ID"] or "start" in reasons["unknown correlation ID"]
    assert "batch" in reasons["oversized batch"]
    out = _raw(server, "glfer", good)  # still serving
    np.testing.assert_allclose(out.as_numpy("sed"), rt.infer(good).sed, atol=1e-6)


def test_vanished_client_frees_its_slot_after_the_idle_timeout(server, rt):
    """3 sequence slots: A and B hold two, A vanishes; C and D queue behind until A's slot idles out."""
    cfg = rt.config
    hop = foa_noise(cfg, seconds=0.4, seed=8)
    time.sleep(IDLE_S + 0.5)  # sequences other tests left open (bad payloads) idle out first
    with SELDClient(server.http_url) as client:
        vanished = client.stream()
        vanished.push(hop)  # never closed: the client is gone
        b, c = client.stream(), client.stream()
        b.push(hop)
        c.push(hop)  # all three slots held now
        late = client.stream()
        times: dict[str, float] = {}

        def start_late():
            t0 = time.monotonic()
            late.push(hop)
            times["late"] = time.monotonic() - t0

        thread = threading.Thread(target=start_late)
        thread.start()
        b_latency = []
        for _ in range(5):  # B keeps streaming while `late` waits for a slot
            t0 = time.monotonic()
            b.push(hop)
            b_latency.append(time.monotonic() - t0)
            time.sleep(0.1)
        thread.join(IDLE_S + 15)
        assert not thread.is_alive()
        c.push(hop)
        assert IDLE_S * 0.5 < times["late"] < IDLE_S + 10  # it got the vanished stream's slot after the timeout
        assert max(b_latency) < 1.0  # the other streams were not held up
        for s in (b, c, late):
            s.close()
    deadline = time.monotonic() + 5
    while "stream state is freed" not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"sequence {vanished.sequence_id} idle" in server.logs()  # and its StreamingSELD was dropped


def test_health_ready_and_metrics_are_tritons_own(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/glfer/ready", "/v2/models/glfer_stream/ready"):
        with urllib.request.urlopen(server.http_url + path, timeout=5) as r:
            assert r.status == 200, path
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        text = r.read().decode()
    assert 'nv_inference_request_success{model="glfer"' in text


def test_readme_serving_examples_run_against_a_server(server, rt, tmp_path, monkeypatch, capsys):
    """The `sh` and `py` blocks of the README's "Serving a fleet", on this server's ports (serve and docker
    lines are the fixture's job: a server that blocks; tests/test_readme.py skips serve lines too)."""
    import re
    import shlex
    import shutil

    import soundfile as sf

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Serving a fleet", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
    assert [lang for lang, _ in blocks] == ["sh", "py", "sh"]

    def here(text: str) -> str:
        return (text.replace("127.0.0.1:8001", f"127.0.0.1:{server.grpc_port}")
                .replace("localhost:8000", f"127.0.0.1:{server.http_port}")
                .replace("localhost:8002", f"127.0.0.1:{server.metrics_port}"))

    cfg = rt.config
    sf.write(tmp_path / "scene.wav", foa_noise(cfg, seconds=3.0, seed=11).T, cfg.features.sample_rate, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    ran = []
    for lang, body in blocks:
        if lang == "py":
            names = {"__name__": "readme", "segments": foa_noise(cfg, batch=2, seed=12),
                     "recording": foa_noise(cfg, seconds=3.3, seed=14),
                     "sensor_hops": np.array_split(foa_noise(cfg, seconds=2.5, seed=15), 7, axis=1)}
            exec(compile(here(body), "README.md serving py block", "exec"), names)
            assert capsys.readouterr().out.strip() == "17 frames of the recording, 13 streamed"
            ran.append("py")
            continue
        for line in body.splitlines():
            if line.startswith(("glfer-edge serve", "docker ")) or not line.strip():
                continue
            if line.startswith("curl"):
                if shutil.which("curl"):
                    out = subprocess.run(here(line), shell=True, capture_output=True, text=True, timeout=30)
                    assert out.returncode == 0 and int(out.stdout.split()[-1]) > 0, out
                    ran.append("curl")
                continue
            argv = shlex.split(here(line))
            assert argv[0] == "glfer-edge", line
            out = subprocess.run([sys.executable, "-m", "glfer_edge", *argv[1:]], capture_output=True, text=True,
                                 timeout=120)
            assert out.returncode == 0, out.stderr
            ran.append(argv[1])
    assert "py" in ran and "run" in ran and (tmp_path / "events.csv").is_file()


# -- faults that need their own server -----------------------------------------------------------------
def test_server_killed_and_restarted_mid_stream(model, rt, tmp_path):
    cfg = rt.config
    repo = tmp_path / "repo"
    write_repository(repo, model, forms=("python",), options=_options())
    srv = TritonServer(repo, log=tmp_path / "triton.log", exit_timeout_s=2)
    audio = foa_noise(cfg, seconds=4.0, seed=9)
    chunks = [(a, min(a + 1000, audio.shape[1])) for a in range(0, audio.shape[1], 1000)]  # 0.25-s hops
    local = _stream_in_process(rt, audio, chunks)
    gaps: list[str] = []
    try:
        srv.start().wait_ready(90)
        with SELDClient(srv.grpc_url) as client:
            stream = client.stream(on_gap=gaps.append, reconnect_timeout_s=60)
            remote = []
            for i, (a, b) in enumerate(chunks):
                if i == 7:  # mid-window: the server's window holds audio the client must replay
                    srv.kill()
                    srv.start()  # same ports; the client sees refused connections until it is ready
                remote.append(stream.push(audio[:, a:b]))
            remote.append(stream.close())
    finally:
        srv.cleanup()
    assert len(gaps) == 1 and len(stream.gaps) == 1 and stream.gaps[0].replayed_samples > 0
    assert stream.hops_sent == len(chunks) + 1
    times = np.concatenate([o.frame_times for o in remote])
    assert len(times) == len(set(times.round(6))) == 20  # 4 s: every frame once, none lost, none repeated
    np.testing.assert_array_equal(times, np.concatenate([o.frame_times for o in local]))
    np.testing.assert_allclose(_cat(remote, "doa"), _cat(local, "doa"), atol=1e-4)
    assert _events(remote, cfg) == _events(local, cfg)


def test_serve_command_listens_and_stops_on_sigterm(model, tmp_path):
    from glfer_edge.serve.server import free_ports

    ports = free_ports(3)
    cmd = [sys.executable, "-m", "glfer_edge", "serve", "--model", str(model), "--http-port", str(ports[0]),
           "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--threads", "1",
           "--log", str(tmp_path / "triton.log")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "listening:" in line or not line:
                break
        assert any(f"HTTP 127.0.0.1:{ports[0]}" in line for line in lines), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "SIGTERM: stopping tritonserver" in rest and "tritonserver stopped" in rest


def test_server_env_puts_this_pythons_libpython_first():
    import sysconfig

    from glfer_edge.serve.distribution import server_env

    env = server_env(find_distribution(), {"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu", "PATH": "/usr/bin"})
    paths = env["LD_LIBRARY_PATH"].split(":")
    assert paths[0] == sysconfig.get_config_var("LIBDIR") and paths[-1] == "/usr/lib/x86_64-linux-gnu"
    assert check_libpython().name.startswith("libpython")
