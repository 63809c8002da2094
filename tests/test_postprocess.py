"""Postprocessing: thresholds, median filter, events with tracks, label-rate rows, CSV/JSON writers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glfer_edge import postprocess as pp
from glfer_edge.config import SYNTH_CLASSES, get_preset
from glfer_edge.data.dcase import polar_to_cartesian, read_metadata_csv
from glfer_edge.errors import InputError
from glfer_edge.runtime import SELDOutput

CFG = get_preset("tiny")  # 13 synthetic classes, 0.2-s output frames
HOP = CFG.output_hop_seconds


def _outputs(n_frames: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Class 2 active in frames 3..7 with a source moving 0 -> 40 deg azimuth at 10 deg elevation."""
    sed = np.full((n_frames, 13), 0.1, np.float32)
    doa = np.zeros((n_frames, 13, 3), np.float32)
    sed[3:8, 2] = 0.9
    azimuth = np.linspace(0, 40, 5)
    doa[3:8, 2] = 0.8 * polar_to_cartesian(azimuth, np.full(5, 10.0))  # not unit length, as the network
    return sed, doa


def test_threshold_and_per_class_overrides():
    sed = np.array([[0.29, 0.30, 0.5], [0.31, 0.1, 0.7]], np.float32)
    np.testing.assert_array_equal(pp.activity(sed), [[False, True, True], [True, False, True]])
    got = pp.activity(sed, 0.3, class_thresholds={"b": 0.05, 2: 0.6}, class_names=("a", "b", "c"))
    np.testing.assert_array_equal(got, [[False, True, False], [True, True, True]])
    with pytest.raises(InputError, match="unknown class 'z'"):
        pp.activity(sed, class_thresholds={"z": 0.5}, class_names=("a", "b", "c"))
    with pytest.raises(InputError, match="between 0 and 1"):
        pp.activity(sed, 1.5)


def test_median_filter_removes_blips_and_fills_gaps():
    sed = np.zeros((9, 2), np.float32)
    sed[4, 0] = 0.9  # a one-frame blip
    sed[1:8, 1] = 0.9
    sed[4, 1] = 0.0  # a one-frame gap
    active = pp.activity(sed, median_frames=3)
    assert not active[:, 0].any()
    np.testing.assert_array_equal(np.flatnonzero(active[:, 1]), np.arange(1, 8))
    with pytest.raises(InputError, match="odd"):
        pp.activity(sed, median_frames=4)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_doa_smoothing_averages_active_frames_and_ignores_inactive_ones():
    sed, doa = _outputs()
    np.testing.assert_array_equal(pp.smooth_doa(sed, doa, 1), doa)
    # Frame 5 (azimuth 20 deg) between frames 4 and 6 (10 and 30 deg), equal probabilities: the mean vector.
    smoothed = pp.smooth_doa(sed, doa, 3)
    np.testing.assert_allclose(smoothed[5, 2], doa[4:7, 2].mean(axis=0), rtol=1e-6)
    # Frame 3 (the onset): its inactive neighbour (p 0.1) points at the origin; weighted 0.1 against 0.9 + 0.9.
    expected = (0.1 * doa[2, 2] + 0.9 * doa[3, 2] + 0.9 * doa[4, 2]) / 1.9
    np.testing.assert_allclose(smoothed[3, 2], expected, rtol=1e-6)
    # A wild vector in an inactive frame (the DOA loss is masked there) barely moves the onset's direction.
    wild = doa.copy()
    wild[2, 2] = -polar_to_cartesian(np.array([0.0]), np.array([10.0]))[0]
    sed_off = sed.copy()
    sed_off[2, 2] = 0.001
    shift = _angle_deg(pp.smooth_doa(sed_off, wild, 3)[3, 2], pp.smooth_doa(sed, doa, 3)[3, 2])
    assert shift < 0.5
    with pytest.raises(InputError, match="odd number of frames"):
        pp.smooth_doa(sed, doa, 2)


def test_doa_smoothing_reduces_frame_noise_on_a_static_source():
    rng = np.random.default_rng(0)
    truth = polar_to_cartesian(np.array([60.0]), np.array([20.0]))[0]
    sed = np.full((200, 1), 0.9, np.float32)
    doa = (truth + rng.normal(0.0, 0.15, (200, 1, 3))).astype(np.float32)  # about 10 deg of frame noise
    raw = _angle_deg(doa[:, 0], truth).mean()
    smoothed = _angle_deg(pp.smooth_doa(sed, doa, 5)[:, 0], truth).mean()
    # Averaging 5 independent frames divides the noise by about sqrt(5) (the edges average fewer distinct ones).
    assert 8.0 < raw < 12.0 and smoothed < raw / 1.8


def test_rows_and_events_use_the_configs_doa_smoothing():
    sed, doa = _outputs()
    smoothed_config = CFG.replace(doa_smoothing_frames=3)
    rows = pp.outputs_to_rows(sed, doa, smoothed_config)
    assert rows == pp.outputs_to_rows(sed, pp.smooth_doa(sed, doa, 3), CFG)
    assert rows != pp.outputs_to_rows(sed, doa, CFG)
    assert pp.outputs_to_rows(sed, doa, smoothed_config, doa_smoothing=1) == pp.outputs_to_rows(sed, doa, CFG)
    with pytest.raises(ValueError, match="odd"):
        CFG.replace(doa_smoothing_frames=4)


def test_outputs_of_k_tta_views_decide_at_the_pair_tuned_for_k():
    sed, doa = _outputs()
    config = CFG.with_decision(8, 0.95, 3)  # a threshold above every probability: no event
    assert config.decision(1) == (CFG.sed_threshold, 1) and config.decision(4) == config.decision(1)
    assert pp.outputs_to_rows(sed, doa, config, views=8) == []
    assert pp.outputs_to_rows(sed, doa, config) == pp.outputs_to_rows(sed, doa, CFG)  # one view: unchanged
    assert pp.outputs_to_rows(sed, doa, config, views=8, threshold=0.5) == pp.outputs_to_rows(
        sed, pp.smooth_doa(sed, doa, 3), CFG)  # an explicit threshold wins; the K-view smoothing stays
    times = np.arange(len(sed)) * HOP
    assert pp.detect_events(SELDOutput(sed[None], doa[None], times, CFG.class_names, config, views=8)) == []
    assert len(pp.detect_events(SELDOutput(sed[None], doa[None], times, CFG.class_names, config))) == 1
    # Re-tuning K replaces its pair; the pairs survive the JSON the weights and ONNX metadata carry.
    retuned = config.with_decision(2, 0.4, 5).with_decision(8, 0.5, 1)
    assert retuned.tta_decisions == ((2, 0.4, 5), (8, 0.5, 1))
    assert type(CFG).from_json(retuned.to_json()) == retuned
    for bad, message in (((8, 0.5, 4),), "odd"), (((3, 0.5, 1),), "each one of"), (((8, 1.5, 1),), "between 0 and 1"):
        with pytest.raises(ValueError, match=message):
            CFG.replace(tta_decisions=bad)


def test_events_follow_a_moving_source():
    sed, doa = _outputs()
    times = np.arange(len(sed)) * HOP
    events = pp.events_from_frames(pp.activity(sed), sed, doa, times, HOP, SYNTH_CLASSES)
    assert len(events) == 1
    e = events[0]
    assert (e.class_idx, e.class_name, e.onset, e.offset) == (2, SYNTH_CLASSES[2], 0.6, 1.6)
    assert e.duration == pytest.approx(1.0)
    np.testing.assert_allclose(e.track_azimuth, np.linspace(0, 40, 5), atol=1e-4)
    np.testing.assert_allclose(e.track_elevation, 10.0, atol=1e-4)
    assert e.track_times == (0.6, 0.8, 1.0, 1.2, 1.4)
    assert e.azimuth == pytest.approx(20.0, abs=0.1) and e.elevation == pytest.approx(10.2, abs=0.3)
    assert e.mean_probability == pytest.approx(0.9)


def test_detect_events_reads_one_clip_of_a_batch():
    sed, doa = _outputs()
    batch_sed = np.stack([np.full_like(sed, 0.1), sed])
    batch_doa = np.stack([doa, doa])
    out = SELDOutput(batch_sed, batch_doa, np.arange(len(sed)) * HOP + 10.0, CFG.class_names, CFG)
    assert pp.detect_events(out, 0) == []
    (event,) = pp.detect_events(out, 1)
    assert (event.onset, event.offset) == (10.6, 11.6)  # absolute frame times are kept
    assert pp.detect_events(out, 1, threshold=0.95) == []


def test_label_rate_rows_repeat_each_output_frame_twice():
    sed, doa = _outputs()
    assert pp.label_rate_factor(CFG) == 2
    np.testing.assert_array_equal(pp.to_label_rate(np.array([1, 2, 3])), [1, 1, 2, 2, 3, 3])
    rows = pp.outputs_to_rows(sed, doa, CFG)
    assert [r.frame for r in rows] == list(range(6, 16))
    assert {r.class_idx for r in rows} == {2} and {r.track for r in rows} == {0}
    np.testing.assert_allclose([r.azimuth for r in rows], np.repeat(np.linspace(0, 40, 5), 2), atol=1e-4)
    cut = pp.outputs_to_rows(sed, doa, CFG, duration=1.3)  # label frame 13 starts at the end
    assert [r.frame for r in cut] == list(range(6, 13))


def test_dcase_csv_and_json_writers_round_trip(tmp_path):
    sed, doa = _outputs()
    rows = pp.outputs_to_rows(sed, doa, CFG)
    pp.write_dcase_csv(tmp_path / "pred.csv", rows)
    back = read_metadata_csv(tmp_path / "pred.csv")
    assert [(r.frame, r.class_idx, r.track) for r in back] == [(r.frame, r.class_idx, r.track) for r in rows]
    np.testing.assert_allclose([r.elevation for r in back], [r.elevation for r in rows])
    events = pp.events_from_frames(pp.activity(sed), sed, doa, np.arange(len(sed)) * HOP, HOP, SYNTH_CLASSES)
    pp.write_events_json(tmp_path / "events.json", events, {"model": "tiny"})
    data = json.loads((tmp_path / "events.json").read_text())
    assert data["model"] == "tiny" and len(data["events"]) == 1
    assert data["events"][0]["class_name"] == SYNTH_CLASSES[2] and data["events"][0]["onset"] == 0.6
    assert "phone" not in pp.format_events(events) and SYNTH_CLASSES[2] in pp.format_events(events)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.json", "pred.csv"]  # no temp files left


def _distance(n_frames: int = 12) -> np.ndarray:
    """Class 2's distance over frames 3..7: 2 m with one wild 9-m frame (an edge/outlier frame)."""
    distance = np.full((n_frames, 13), 5.0, np.float32)
    distance[3:8, 2] = [2.0, 2.1, 9.0, 1.9, 2.0]
    return distance


def test_events_carry_the_median_distance_and_json_keeps_the_keys_only_for_distance_models(tmp_path):
    sed, doa = _outputs()
    times = np.arange(len(sed)) * HOP
    (event,) = pp.events_from_frames(pp.activity(sed), sed, doa, times, HOP, SYNTH_CLASSES, distance=_distance())
    assert event.distance_m == pytest.approx(2.0)  # the median ignores the 9-m frame (the mean would say 3.4)
    np.testing.assert_allclose(event.track_distance_m, [2.0, 2.1, 9.0, 1.9, 2.0], rtol=1e-6)
    assert event.to_dict()["distance_m"] == pytest.approx(2.0)
    (plain,) = pp.events_from_frames(pp.activity(sed), sed, doa, times, HOP, SYNTH_CLASSES)
    assert plain.distance_m is None and "distance_m" not in plain.to_dict()  # no null keys without distance
    assert "track_distance_m" not in plain.to_dict()
    assert "dist m" in pp.format_events([event]) and "2.00" in pp.format_events([event])
    assert "dist m" not in pp.format_events([plain])
    pp.write_events_json(tmp_path / "e.json", [event])
    assert json.loads((tmp_path / "e.json").read_text())["events"][0]["distance_m"] == pytest.approx(2.0)
    with pytest.raises(InputError, match="distance outputs have shape"):
        pp.events_from_frames(pp.activity(sed), sed, doa, times, HOP, SYNTH_CLASSES, distance=_distance()[:5])


def test_rows_carry_each_label_frames_distance_and_csv_editions(tmp_path):
    sed, doa = _outputs()
    distance = _distance()
    rows = pp.outputs_to_rows(sed, doa, CFG, distance=distance)
    assert [(r.frame, r.distance) for r in rows] == [(f, pytest.approx(float(distance[f // 2, 2]))) for f in range(6, 16)]
    assert [r.azimuth for r in rows] == [r.azimuth for r in pp.outputs_to_rows(sed, doa, CFG)]
    assert all(r.distance is None for r in pp.outputs_to_rows(sed, doa, CFG))
    out = SELDOutput(sed[None], doa[None], np.arange(len(sed)) * HOP, CFG.class_names, CFG, distance=distance[None])
    d = pp.decide(out)
    assert d.rows == rows and d.events[0].distance_m == pytest.approx(2.0)
    np.testing.assert_array_equal(d.distance, distance)
    # 2024: frame,class,source,azimuth,elevation,distance in metres (a prediction), read back as such
    pp.write_dcase_csv(tmp_path / "p24.csv", rows, edition="2024")
    first = (tmp_path / "p24.csv").read_text().splitlines()[0].split(",")
    assert len(first) == 6 and float(first[5]) == pytest.approx(2.0)
    back = read_metadata_csv(tmp_path / "p24.csv", "2024", prediction=True)
    np.testing.assert_allclose([r.distance for r in back], [r.distance for r in rows], rtol=1e-6)
    # earlier editions: no distance column for predictions
    pp.write_dcase_csv(tmp_path / "p23.csv", rows, edition="2023")
    assert {len(line.split(",")) for line in (tmp_path / "p23.csv").read_text().splitlines()} == {5}
    # 2024 rows without distance are refused, and nothing is written
    with pytest.raises(InputError, match="without distance"):
        pp.write_dcase_csv(tmp_path / "none.csv", pp.outputs_to_rows(sed, doa, CFG), edition="2024")
    assert not (tmp_path / "none.csv").exists()
