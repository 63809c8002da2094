"""Smoke tests of the benchmark harness (glfer_edge.bench): records, statistics, profile attribution, the
interleaved rounds, the backend table (every row a SELDRuntime), CLI.

Only 1-3 timed calls per case and no timing assertions: the machine is shared.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from glfer_edge import bench
from glfer_edge.cli import main
from glfer_edge.config import get_preset
from glfer_edge.errors import InputError
from glfer_edge.runtime.seld import DEFAULT_ONNX

torch = pytest.importorskip("torch")


def test_every_bench_backend_is_a_runtime_a_user_opens():
    from glfer_edge.precision import PRECISIONS
    from glfer_edge.runtime.options import check_options

    for b in bench.BACKENDS.values():
        assert b.form is None or b.form in PRECISIONS
        check_options(b.options, b.runtime)  # no setting the runtime would refuse
    assert bench.get_backend("openvino-bf16").form == "fp32"
    assert bench.get_backend("openvino-bf16").options.precision == "bf16"
    assert bench.get_backend("ort-int8-cpu").runtime == "onnxruntime"
    assert {b.form for b in bench.BACKENDS.values() if b.runtime == "tensorrt"} == {
        p.name for p in PRECISIONS.values() if "tensorrt" in p.backends}


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


@pytest.fixture(scope="module")
def tiny_source(tiny_weights, tmp_path_factory):
    """Tiny weights re-saved for 1-s segments (the torch runtime takes the weights' segment length)."""
    return bench.resolve_source(tiny_weights, ["torch"], [2], segment_seconds=1.0,
                                cache_dir=tmp_path_factory.mktemp("bench_cache"))


def test_run_case_torch_record(tiny_source):
    options = bench.BenchOptions(warmup=0, iterations=2, threads=1)
    r = bench.run_case(bench.Case("torch", 2, tiny_source, options))
    assert r["iterations"] == 2 and r["threads"] == 1
    assert "torch" in r["runtime"] and "fp32" in r["runtime"]  # the SELDRuntime's description
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
def test_run_case_torch_on_cuda_times_gpu_compute(tiny_source, backend):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU visible to torch")
    r = bench.run_case(bench.Case(backend, 2, tiny_source, bench.BenchOptions(warmup=2, iterations=5, device="cuda")))
    compute, latency = r["gpu_compute_ms"], r["latency_ms"]
    assert r["iterations"] == 5 and compute is not None
    # end-to-end adds H2D + D2H to the compute time; launch-bound (tiny, batch 2) the two are close
    assert 0 < compute["median"] <= 1.2 * latency["median"]
    assert r["gpu_peak_mb"] > 0


def test_run_case_times_the_runtime_of_an_onnx_file():
    source = bench.resolve_source(DEFAULT_ONNX, ["ort-fp32"], [1])
    assert source.artifacts == {"fp32": str(DEFAULT_ONNX)} and source.weights is None
    r = bench.run_case(bench.Case("ort-fp32", 1, source, bench.BenchOptions(warmup=0, iterations=2, threads=2)))
    assert "onnxruntime" in r["runtime"] and "graph optimization all" in r["runtime"]
    assert r["iterations"] == 2 and 0 < r["latency_ms"]["min"] <= r["latency_ms"]["max"]
    assert 0 < r["frontend_share"] < 1 and 0 < r["gru_share"] < 1  # from the runtime's own profiling option
    level = bench.run_case(bench.Case("ort-fp32", 1, source, bench.BenchOptions(
        warmup=0, iterations=1, threads=2, ort_opt_level="basic", profile=False)))
    assert "graph optimization basic" in level["runtime"] and level["frontend_share"] is None


def test_rounds_interleave_backends_with_per_round_ratios_and_sgemm_share():
    backends = ["ort-fp32", "openvino-fp32", "openvino-bf16", "torch"]
    source = bench.resolve_source(DEFAULT_ONNX, backends, [1])
    options = bench.BenchOptions(warmup=0, threads=2)
    block = bench.run_rounds(source, backends, 1, options, 3, reference="ort-fp32")
    rows = block["backends"]
    assert block["reference"] == "ort-fp32" and block["rounds"] == 3
    assert rows["ort-fp32"]["x_reference"] == 1.0
    assert "torch" in block["skipped"] and "weights" in block["skipped"]["torch"]  # an .onnx has no weights
    for name, row in rows.items():
        ms = np.array(row["rounds_ms"])
        assert len(ms) == 3 and row["median_ms"] == pytest.approx(np.median(ms), rel=1e-3)
        assert row["audio_s_per_s"] == pytest.approx(np.median(source.config.segment_seconds / (ms / 1e3)), rel=1e-2)
        assert row["achieved_gflops"] > 0 and 0 < row["share_of_sgemm"]
    assert block["sgemm_gflops_median"] > 0
    if "openvino-fp32" in rows:
        assert "openvino" in rows["openvino-fp32"]["runtime"] and "f32" in rows["openvino-fp32"]["runtime"]


def test_cli_bench_refuses_existing_outputs_without_force(tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    args = ["bench", "--model", str(DEFAULT_ONNX), "--backends", "ort-fp32", "--iterations", "1", "--warmup", "0",
            "--no-profile", "--json", str(out)]
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "{}"
    assert main([*args, "--force"]) == 0
    report = json.loads(out.read_text())
    assert report["results"][0]["backend"] == "ort-fp32"
    assert report["machine"]["cpu"]["model"] and report["machine"]["versions"]["onnxruntime"]


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
    assert ran[1]["achieved_gflops"] == pytest.approx(gflop * 2 / (ran[1]["latency_ms"]["median"] / 1e3))
    from glfer_edge.model.complexity import segment_macs

    tiny_1s = get_preset("tiny").replace(segment_seconds=1.0)
    assert gflop == pytest.approx(2 * segment_macs(tiny_1s).executed_macs / 1e9)  # the one count
    assert all("CUDA only" in r["skipped"] for r in report["results"] if r["backend"] == "torch-fp16")
    skipped = [r for r in report["results"] if r["backend"] == "trt-fp16"]
    if not any("latency_ms" in r for r in skipped):  # no TensorRT runtime / GPU here
        assert all(r["skipped"] for r in skipped)
    assert report["machine"]["cpu"]["logical_cores"] >= 1
    assert report["command"].startswith("glfer-edge bench --preset tiny")
    md = (tmp_path / "bench.md").read_text()
    assert "| tiny (random weights) | torch | 2 |" in md
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_runtime_options_the_bench_sets_are_real_runtime_settings(tiny_source):
    """What the old private runners did is now an option of SELDRuntime.open, refused where it cannot apply."""
    from glfer_edge.runtime import RuntimeOptions, SELDRuntime
    from glfer_edge.tolerances import TOLERANCES

    audio = bench.timing.bench_audio(tiny_source.config, 1)
    with SELDRuntime.open(tiny_source.weights, threads=1, options=RuntimeOptions(profile=True)) as rt:
        rt.infer(audio)
        shares = rt.backend_impl.time_shares()
        assert 0 < shares["frontend_share"] < 1 and 0 < shares["gru_share"] < 1
    with pytest.raises(InputError, match="CUDA only"):
        SELDRuntime.open(tiny_source.weights, options=RuntimeOptions(fp16_autocast=True))
    with pytest.raises(InputError, match="compile"):
        SELDRuntime.open(tiny_source.weights, options=RuntimeOptions(compile=True, profile=True))
    with pytest.raises(InputError, match="graph_optimization"):
        SELDRuntime.open(tiny_source.weights, options=RuntimeOptions(graph_optimization="basic"))
    audio8 = bench.timing.bench_audio(SELDRuntime.open(DEFAULT_ONNX).config, 1)
    outs = {}
    for level in ("disable", "extended", "all"):
        with SELDRuntime.open(DEFAULT_ONNX, threads=2, options=RuntimeOptions(graph_optimization=level)) as rt:
            assert f"graph optimization {level}" in rt.description
            outs[level] = rt.infer(audio8).sed
    with SELDRuntime.open(DEFAULT_ONNX, threads=2, options=RuntimeOptions(spinning=False)) as rt:
        assert "spinning off" in rt.description
        outs["no spinning"] = rt.infer(audio8).sed
    assert max(np.abs(outs[k] - outs["all"]).max() for k in outs) <= TOLERANCES["fp32"].sed_max_abs
