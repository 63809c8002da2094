"""Smoke tests of the benchmark harness (glfer_edge.bench): records, statistics, profile attribution, CLI.

Only 1-2 timed calls per case and no timing assertions: the machine is shared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from glfer_edge import bench
from glfer_edge.cli import main
from glfer_edge.config import get_preset

torch = pytest.importorskip("torch")


def test_latency_stats_are_trtexec_percentiles_in_ms():
    samples = [0.010, 0.020, 0.030, 0.040, 0.100]
    s = bench.latency_stats(samples)
    assert s["min"] == pytest.approx(10.0) and s["max"] == pytest.approx(100.0)
    assert s["mean"] == pytest.approx(40.0)
    assert s["median"] == pytest.approx(30.0)
    assert s["p99"] == pytest.approx(np.percentile(np.array(samples) * 1e3, 99))
    assert s["min"] <= s["median"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]


def _node(name: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {}}


def test_scope_shares_charge_fused_nodes_to_the_preceding_scope():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        _node("/frontend/Conv", 1, 50),  # first run: skipped
        {"cat": "Session", "name": "model_run", "ts": 1000, "dur": 100},
        _node("/frontend/Conv", 1001, 30),
        _node("ReorderInput_token_1", 1031, 10),  # fused/inserted: no scope -> frontend
        _node("/encoder/stem/Conv", 1041, 40),
        _node("Gelu_token_2", 1081, 10),  # -> encoder
        _node("/decoder/gru/GRU", 1091, 8),
        _node("/decoder/gru/GRU_1", 1099, 2),
    ]
    shares = bench.scope_shares(events, skip_first_run=True)
    assert shares["frontend_share"] == pytest.approx(40 / 100)
    assert shares["gru_share"] == pytest.approx(10 / 100)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return bench.preset_weights("tiny", tmp_path_factory.mktemp("bench_cache"))


def test_run_case_torch_record(tiny_weights):
    config = get_preset("tiny").replace(segment_seconds=1.0)
    source = bench.ModelSource("tiny", config, str(tiny_weights))
    options = bench.BenchOptions(warmup=0, iterations=2, threads=1)
    r = bench.run_case(bench.Case("torch", 2, source, options))
    assert r["iterations"] == 2 and r["threads"] == 1
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["max"]
    assert r["throughput_segments_per_s"] == pytest.approx(2 * 2 / r["total_host_walltime_s"])
    assert r["throughput_audio_s_per_s"] == pytest.approx(r["throughput_segments_per_s"] * 1.0)
    assert r["rtf"] == pytest.approx(lat["mean"] / 1e3 / (2 * 1.0))
    assert r["cold_start_s"] == pytest.approx(r["load_s"] + r["first_inference_s"])
    assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
    assert 0 < r["frontend_share"] < 1 and 0 < r["gru_share"] < 1
    assert r["frontend_share"] + r["gru_share"] < 1
    assert r["gpu_compute_ms"] is None  # CPU: only end-to-end Latency


@pytest.mark.parametrize("backend", ["torch-fp16", "torch-compile"])
def test_run_case_torch_on_cuda_times_gpu_compute(tiny_weights, backend):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU visible to torch")
    config = get_preset("tiny").replace(segment_seconds=1.0)
    source = bench.ModelSource("tiny", config, str(tiny_weights))
    r = bench.run_case(bench.Case(backend, 2, source, bench.BenchOptions(warmup=2, iterations=5, device="cuda")))
    compute, latency = r["gpu_compute_ms"], r["latency_ms"]
    assert r["iterations"] == 5 and compute is not None
    # end-to-end adds H2D + D2H to the compute time; launch-bound (tiny, batch 2) the two are close
    assert 0 < compute["median"] <= 1.2 * latency["median"]
    assert r["gpu_peak_mb"] > 0


def test_cli_bench_writes_json_markdown_plot_and_skips_with_reasons(tmp_path):
    out = tmp_path / "bench.json"
    code = main([
        "bench", "--preset", "tiny", "--segment-seconds", "1", "--backends", "torch,torch-fp16,trt-fp16",
        "--batch", "1,2",
        "--iterations", "1", "--warmup", "0", "--threads", "1", "--no-profile", "--cache-dir", str(tmp_path / "cache"),
        "--json", str(out), "--markdown", str(tmp_path / "bench.md"), "--plot", str(tmp_path / "bench.png"),
    ])
    assert code == 0
    report = json.loads(out.read_text())
    ran = [r for r in report["results"] if "latency_ms" in r]
    assert [(r["backend"], r["batch"]) for r in ran] == [("torch", 1), ("torch", 2)]
    assert all(r["iterations"] == 1 and r["frontend_share"] is None for r in ran)
    gflop = ran[0]["gflop_per_segment"]
    assert ran[1]["achieved_gflops"] == pytest.approx(gflop * 2 / (ran[1]["latency_ms"]["mean"] / 1e3))
    assert all("CUDA only" in r["skipped"] for r in report["results"] if r["backend"] == "torch-fp16")
    skipped = [r for r in report["results"] if r["backend"] == "trt-fp16"]
    if not any("latency_ms" in r for r in skipped):  # no TensorRT runtime / GPU here
        assert all(r["skipped"] for r in skipped)
    assert report["machine"]["cpu"]["logical_cores"] >= 1
    assert report["command"].startswith("glfer-edge bench --preset tiny")
    md = (tmp_path / "bench.md").read_text()
    assert "| tiny (random weights) | torch | 2 |" in md
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
