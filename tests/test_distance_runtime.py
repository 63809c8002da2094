"""Distance (DCASE 2024, 3D SELD) from the runtime to the user: streaming and file inference agree, TTA
averages distance without mapping it, torch and ONNX agree, events carry ``distance_m``, ``run`` writes
2024 rows and ``evaluate --edition 2024`` scores them; models without distance are refused for 2024.

One random-init tiny distance model (the small 4-kHz test frontend), exported to FP32 ONNX once per module.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from glfer_edge.cli import main
from glfer_edge.data.dcase import LabelRow, read_metadata_csv, write_metadata_csv
from seld_artifacts import foa_noise, session_artifacts, small_config

# The random-init model's SED probabilities sit near 0.12 on noise: deciding there makes some frames active.
THRESHOLD = 0.12
DECIDE = ["--quiet", "--threshold", str(THRESHOLD), "--no-gate"]  # the gate finds noise diffuse: off


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(config, .safetensors, .onnx) of a random-init distance model."""
    pytest.importorskip("torch", reason="exporting the test model needs glfer-edge[torch]")
    import torch

    from glfer_edge.export import export_onnx
    from glfer_edge.model.glfernet import GLFERNet
    from glfer_edge.weights import save_weights

    cfg = small_config()
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, distance=True))
    torch.manual_seed(0)
    net = GLFERNet(cfg).eval()
    root = tmp_path_factory.mktemp("distance_model")
    weights = save_weights(net, root / "tiny_dist.safetensors")
    onnx = export_onnx(net, root / "tiny_dist.fp32.onnx")
    return cfg, weights, onnx


@pytest.fixture(scope="module")
def rt(model):
    from glfer_edge.runtime import SELDRuntime

    with SELDRuntime.open(model[2], threads=1) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def dataset(model, tmp_path_factory):
    """A synth-layout dataset of two 3-s noise recordings with DCASE 2024 references (integer cm)."""
    cfg = model[0]
    root = tmp_path_factory.mktemp("dist_data")
    for i in range(2):
        name = f"scene{i}"
        audio = foa_noise(cfg, seed=10 + i, seconds=3.0)
        (root / "foa_dev" / "s").mkdir(parents=True, exist_ok=True)
        sf.write(root / "foa_dev" / "s" / f"{name}.wav", audio.T, cfg.features.sample_rate, subtype="FLOAT")
        rows = [LabelRow(t, c, 0, 30.0 * c - 90.0, 10.0, 1.0 + 0.5 * c) for t in range(30) for c in (0, 3, 7)]
        write_metadata_csv(root / "metadata_dev" / "s" / f"{name}.csv", rows, edition="2024")
    return root


def test_runtime_gives_distance_of_the_right_shape_and_torch_equals_onnx(model, rt):
    from glfer_edge.runtime import SELDRuntime

    cfg, weights, _ = model
    audio = foa_noise(cfg, batch=2, seed=1)
    out = rt.infer(audio)
    assert out.distance.shape == out.sed.shape and out.distance.dtype == np.float32
    assert np.all(out.distance >= 0)  # softplus: metres are never negative
    with SELDRuntime.open(weights) as ref:
        torch_out = ref.infer(audio)
    np.testing.assert_allclose(out.distance, torch_out.distance, atol=1e-4)
    np.testing.assert_allclose(out.sed, torch_out.sed, atol=1e-4)


@pytest.mark.parametrize("tta", [1, 4])
def test_streaming_distance_equals_file_inference(rt, tta):
    from glfer_edge.runtime import StreamingSELD
    from glfer_edge.runtime.segments import infer_long

    cfg = rt.config
    audio = foa_noise(cfg, seconds=3.3, seed=2)  # ends inside a segment
    stream, rng, outs, pos = StreamingSELD(rt, tta=tta), np.random.default_rng(0), [], 0
    while pos < audio.shape[1]:
        n = int(rng.integers(1, cfg.segment_samples // 2))
        outs.append(stream.push(audio[:, pos : pos + n]))
        pos += n
    outs.append(stream.flush())
    assert all(o.distance is not None and o.distance.shape == o.sed.shape for o in outs)
    ref = infer_long(rt, audio, tta=tta)
    np.testing.assert_allclose(np.concatenate([o.distance[0] for o in outs]), ref.distance[0], atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([o.frame_times for o in outs]), ref.frame_times)


def test_tta_averages_each_views_distance_unmapped(rt):
    """A channel swap turns the scene, not its range: the TTA distance is the plain mean of the views'."""
    from glfer_edge.channel_swap import tta_transforms
    from glfer_edge.runtime.segments import infer_long

    cfg = rt.config
    audio = foa_noise(cfg, seconds=2.0, seed=3)
    views = [infer_long(rt, t.apply_audio(audio, cfg.features.channel_order)).distance[0] for t in tta_transforms(4)]
    np.testing.assert_allclose(infer_long(rt, audio, tta=4).distance[0], np.mean(views, axis=0), atol=1e-5)


def test_events_and_rows_of_a_distance_model(rt):
    from glfer_edge import postprocess as pp
    from glfer_edge.runtime.segments import infer_long

    out = infer_long(rt, foa_noise(rt.config, seconds=2.0, seed=4))
    d = pp.decide(out, threshold=THRESHOLD, gate=False)
    assert d.events and d.rows
    for e in d.events:
        frames = np.isin(np.round(out.frame_times, 6), e.track_times)
        assert e.distance_m == pytest.approx(float(np.median(out.distance[0][frames, e.class_idx])), rel=1e-6)
        assert "distance_m" in e.to_dict()
    factor = pp.label_rate_factor(rt.config)
    assert all(r.distance == pytest.approx(float(out.distance[0][r.frame // factor, r.class_idx])) for r in d.rows)


def test_run_writes_2024_rows_json_distance_and_refuses_2024_without_distance(model, dataset, tmp_path, capsys):
    onnx = str(model[2])
    wav = str(next((dataset / "foa_dev" / "s").glob("*.wav")))
    out, out23 = tmp_path / "p.csv", tmp_path / "p23.csv"
    capsys.readouterr()
    assert main(["run", wav, "--model", onnx, "--out", str(out), *DECIDE]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "dist m" in table[0] and len(table) > 1 and "(no events" not in table[1]
    rows = read_metadata_csv(out, "2024", prediction=True)  # 2024 by default for a distance model, metres
    assert rows and all(r.distance is not None and 0 <= r.distance < 50 for r in rows)
    assert main(["run", wav, "--model", onnx, "--out", str(out23), "--edition", "2023", *DECIDE]) == 0
    assert {len(line.split(",")) for line in out23.read_text().splitlines()} == {5}
    capsys.readouterr()
    assert main(["run", wav, "--model", onnx, "--json", "-", *DECIDE]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert events and all(isinstance(e["distance_m"], float) for e in events)
    # scored against a 2024 reference: F20, AE_CD, RDE_CD
    ref = next((dataset / "metadata_dev" / "s").glob("*.csv"))
    assert main(["run", wav, "--model", onnx, "--ref", str(ref), *DECIDE]) == 0
    printed = capsys.readouterr().out
    assert "DCASE 2024 metrics" in printed and "RDE_CD" in printed and "relative distance error" in printed
    # a model without distance: --edition 2024 is refused in one line, nothing written
    plain = str(session_artifacts().onnx)
    refused = tmp_path / "refused.csv"
    assert main(["run", wav, "--model", plain, "--out", str(refused), "--edition", "2024", "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "no distance head" in err[0] and "--edition 2023" in err[0]
    assert not refused.exists()


def test_run_plot_has_a_distance_panel(model, dataset, tmp_path):
    pytest.importorskip("matplotlib")
    from glfer_edge.plot import seld_figure

    active = np.zeros((10, 13), bool)
    active[2:6, 1] = True
    doa = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (10, 13, 1))
    times = np.arange(10) * 0.2
    ref = [LabelRow(5, 1, 0, 0.0, 0.0, 2.0)]
    assert len(seld_figure(active, doa, times, 0.2, [str(c) for c in range(13)], reference=ref).axes) == 3
    fig = seld_figure(active, doa, times, 0.2, [str(c) for c in range(13)], reference=ref,
                      distance=np.full((10, 13), 2.0, np.float32))
    assert len(fig.axes) == 4 and fig.axes[3].get_ylabel() == "distance (m)"
    wav = str(next((dataset / "foa_dev" / "s").glob("*.wav")))
    png = tmp_path / "p.png"
    assert main(["run", wav, "--model", str(model[2]), "--plot", str(png), "--quiet",
                 *DECIDE[1:]]) == 0 and png.stat().st_size


def test_evaluate_2024_scores_the_models_distances(model, dataset, tmp_path, capsys):
    from glfer_edge.metrics import evaluate_folders

    onnx, pred = str(model[2]), tmp_path / "pred"
    base = ["evaluate", "--model", onnx, "--data", str(dataset), *DECIDE[1:]]
    capsys.readouterr()
    assert main([*base, "--edition", "2024", "--pred-out", str(pred), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = evaluate_folders(dataset / "metadata_dev", pred, edition="2024")
    assert (report["F20"], report["RDE_CD"]) == pytest.approx((expected.f, expected.rde), nan_ok=True)
    assert report["rel_distance_threshold"] == 1.0
    rows = read_metadata_csv(next(pred.glob("*.csv")), "2024", prediction=True)
    assert rows and all(r.distance is not None for r in rows)
    # --ci with 2024: the jackknife over the two files
    assert main([*base, "--edition", "2024", "--ci"]) == 0
    printed = capsys.readouterr().out
    assert "relative distance error" in printed and "95% jackknife intervals" in printed
    # an earlier edition ignores distance: 5-column CSVs scored with that edition's metrics
    pred23 = tmp_path / "pred23"
    assert main([*base, "--edition", "2023", "--pred-out", str(pred23)]) == 0
    assert {len(line.split(",")) for f in pred23.glob("*.csv") for line in f.read_text().splitlines()} == {5}
    # a model without distance asked for 2024: one-line refusal before inference, nothing written
    capsys.readouterr()
    kept = tmp_path / "kept"
    assert main(["evaluate", "--model", str(session_artifacts().onnx), "--data", str(dataset), "--edition", "2024",
                 "--pred-out", str(kept)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "no distance head" in err[0] and "--edition 2023" in err[0]
    assert not list(kept.glob("*.csv")) if kept.exists() else True


def test_evaluate_2024_refuses_references_in_metres_before_inference(model, dataset, tmp_path, capsys):
    """References in metres (2023 rows, as glfer-edge synth wrote them before it wrote centimetres) are not 2024 metadata."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset / "foa_dev", data / "foa_dev")
    for csv in (dataset / "metadata_dev" / "s").glob("*.csv"):
        rows = read_metadata_csv(csv, "2024")
        write_metadata_csv(data / "metadata_dev" / "s" / csv.name, rows)  # 2023: azi,ele,dist in metres
    pred = tmp_path / "pred"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model[2]), "--data", str(data), "--edition", "2024",
                 "--pred-out", str(pred)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "not whole centimetres" in err[0]
    assert not pred.exists() or not list(pred.iterdir())
