"""Synthetic FOA scene generator: determinism, physics (DOA, reverb, diffuse noise), labels, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve, stft, welch

from glfer_edge.cli import main
from glfer_edge.config import SYNTH_CLASSES
from glfer_edge.data.dcase import polar_to_cartesian, read_metadata_csv
from glfer_edge.data.layout import list_pairs
from glfer_edge.data.room import ShoeboxRoom, early_reflections, late_tail, max_source_distance
from glfer_edge.data.sources import SOURCE_CLASSES, synthesize
from glfer_edge.data.synth import SceneConfig, _moving_reflections, generate_scene, plane_wave
from glfer_edge.errors import InputError

FS = 24000
FRAME = 2400  # one 100-ms label frame
DRY_QUIET = SceneConfig(duration_s=4.0, max_polyphony=1, reverb=False, snr_db=None)


def intensity_doa(foa: np.ndarray) -> np.ndarray:
    """Unit DOA from the active intensity vector Re(conj(W) [X, Y, Z]) summed over all STFT bins."""
    _, _, spec = stft(foa, nperseg=512)
    intensity = np.real(np.conj(spec[0]) * spec[[3, 1, 2]]).sum(axis=(1, 2))
    return intensity / np.linalg.norm(intensity)


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))))


def frame_power(channel: np.ndarray) -> np.ndarray:
    n = len(channel) // FRAME * FRAME
    return np.mean(channel[:n].astype(np.float64).reshape(-1, FRAME) ** 2, axis=1)


def event_mask(scene) -> np.ndarray:
    mask = np.zeros(scene.audio.shape[1], dtype=bool)
    for ev in scene.events:
        mask[int(round(ev.onset_s * FS)):int(round(ev.offset_s * FS))] = True
    return mask


# -- scenes ---------------------------------------------------------------------------------------
def test_same_seed_same_scene_other_seed_or_index_differs():
    config = SceneConfig(duration_s=3.0)
    a, b = generate_scene(config, 7, 0), generate_scene(config, 7, 0)
    assert a.audio.dtype == np.float32 and a.audio.shape == (4, 3 * FS)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.rows == b.rows and a.events == b.events and len(a.rows) > 0
    for other in (generate_scene(config, 8, 0), generate_scene(config, 7, 1)):
        assert not np.array_equal(a.audio, other.audio)
        assert a.rows != other.rows


@pytest.mark.parametrize("azimuth, elevation", [(0, 0), (90, 0), (-150, 20), (45, 50), (-100, -50), (170, -30)])
def test_plane_wave_intensity_doa_matches_direction(azimuth, elevation):
    mono = synthesize("speech", 1.0, FS, np.random.default_rng(3))
    doa = intensity_doa(plane_wave(mono, azimuth, elevation))
    assert angle_deg(doa, polar_to_cartesian(azimuth, elevation)) < 1.0


def test_dry_scene_intensity_doa_matches_every_label_frame():
    config = dataclasses.replace(DRY_QUIET, moving_prob=0.5, elevation_deg=(-50.0, 50.0))
    errors, moving = [], 0
    for index in range(4):
        scene = generate_scene(config, 11, index)
        moving += sum(ev.angular_velocity_dps != 0 for ev in scene.events)
        for row in scene.rows:
            doa = intensity_doa(scene.audio[:, row.frame * FRAME:(row.frame + 1) * FRAME])
            errors.append(angle_deg(doa, polar_to_cartesian(row.azimuth, row.elevation)))
    assert moving > 0 and len(errors) > 50
    assert max(errors) < 5.0


def test_moving_source_labels_follow_angular_velocity():
    config = dataclasses.replace(DRY_QUIET, moving_prob=1.0)
    scene = generate_scene(config, 5, 0)
    for ev in scene.events:
        assert 10.0 <= abs(ev.angular_velocity_dps) <= 60.0
        rows = [r for r in scene.rows if r.track == ev.track and ev.onset_s <= r.frame * 0.1 + 0.05 < ev.offset_s]
        steps = np.diff([r.azimuth for r in rows])
        steps = (steps + 180.0) % 360.0 - 180.0  # across the +-180 seam
        assert len(steps) >= 3
        # 100 ms per frame; labels are rounded to whole degrees
        np.testing.assert_allclose(steps, ev.angular_velocity_dps * 0.1, atol=1.01)
        assert all(-180.0 <= r.azimuth < 180.0 for r in rows)


def test_labels_follow_event_energy():
    """Labelled frames carry event energy above the ambient noise; frames away from events do not."""
    config = SceneConfig(duration_s=8.0, max_polyphony=1, reverb=False, snr_db=(30.0, 30.0), level_dbfs=(-12.0, -12.0))
    checked = 0
    for index in range(3):
        scene = generate_scene(config, 2, index)
        mask = event_mask(scene)
        # SNR = event power over active samples / noise power, and the active samples hold both
        noise = np.mean(scene.audio[0, mask].astype(np.float64) ** 2) / (1 + 10 ** (30 / 10))
        power = frame_power(scene.audio[0])
        labelled = np.zeros(len(power), dtype=bool)
        labelled[[r.frame for r in scene.rows]] = True
        touched = mask[: len(power) * FRAME].reshape(-1, FRAME).any(axis=1)
        assert np.all(power[labelled] > 2.0 * noise)
        assert np.all(power[~touched] < 2.0 * noise) and np.all(power[~touched] > 0.5 * noise)
        # the half-frame rule: a frame is labelled iff its event covers at least 1200 samples of it
        covered = mask[: len(power) * FRAME].reshape(-1, FRAME).sum(axis=1)
        np.testing.assert_array_equal(labelled, covered >= FRAME // 2)
        checked += int((~touched).sum())
    assert checked > 5


def test_polyphony_and_same_class_overlap_bounds():
    for max_polyphony in (2, 3):
        config = SceneConfig(duration_s=10.0, max_polyphony=max_polyphony, reverb=False)
        peak_polyphony = 0
        for index in range(3):
            scene = generate_scene(config, 4, index)
            frames: dict[int, list] = {}
            for row in scene.rows:
                frames.setdefault(row.frame, []).append(row)
            for rows in frames.values():
                classes = [r.class_idx for r in rows]
                assert len(rows) <= max_polyphony and len(set(classes)) == len(classes)
                assert len({r.track for r in rows}) == len(rows)
            peak_polyphony = max(peak_polyphony, max(len(r) for r in frames.values()))
            for ev in scene.events:
                assert 0 <= ev.track < max_polyphony and ev.offset_s <= config.duration_s + 1e-9
                assert 0.5 - 1e-9 <= ev.offset_s - ev.onset_s <= 4.0 + 1e-9
        assert peak_polyphony == max_polyphony  # overlaps do happen


def test_event_levels_and_scene_peak():
    for index in range(3):  # dry, noiseless, one track: each event's loudest 100 ms sets its level
        scene = generate_scene(DRY_QUIET, 9, index)
        w = scene.audio[0].astype(np.float64)
        short_term = np.convolve(w**2, np.ones(FRAME) / FRAME, mode="same")
        for ev in scene.events:
            assert -30.0 <= ev.level_dbfs <= -6.0
            span = short_term[int(round(ev.onset_s * FS)):int(round(ev.offset_s * FS))]
            measured = 10 * np.log10(span.max())
            assert measured == pytest.approx(ev.level_dbfs + 20 * np.log10(scene.gain), abs=0.1)
    gains = []
    for index in range(4):  # full scenes: reverb and noise; scaled down when needed, never clipped
        scene = generate_scene(SceneConfig(duration_s=4.0), 9, index)
        peak = np.abs(scene.audio).max()
        assert peak <= 0.99 + 1e-6
        if scene.gain < 1.0:
            assert peak == pytest.approx(0.99, abs=1e-6)
        assert 6.0 <= scene.snr_db <= 30.0 and 0.2 <= scene.room.rt60 <= 0.8
        gains.append(scene.gain)
    assert min(gains) < 1.0


def test_scene_config_rejects_bad_values():
    for bad in ({"max_polyphony": 0}, {"duration_s": 0.5}, {"class_names": ("alarm", "cat")},
                {"rt60_s": (0.8, 0.2)}, {"level_dbfs": (-10.0, 3.0)}, {"room_dims_m": ((4.0, 6.0),)}):
        with pytest.raises(InputError):
            SceneConfig(**bad)
    with pytest.raises(InputError):
        generate_scene(SceneConfig(), -1, 0)


# -- sources --------------------------------------------------------------------------------------
def test_sources_cover_the_synth_classes_and_never_fall_silent():
    assert SOURCE_CLASSES == SYNTH_CLASSES
    for k, name in enumerate(SOURCE_CLASSES):
        a = synthesize(name, 2.0, FS, np.random.default_rng([k, 0]))
        b = synthesize(name, 2.0, FS, np.random.default_rng([k, 1]))
        assert np.isfinite(a).all() and 0.5 * FS <= len(a) <= 2 * FS
        assert not np.array_equal(a[: len(b)], b[: len(a)])  # a distribution, not one waveform
        short_term = np.convolve(a**2, np.ones(FRAME) / FRAME, mode="valid")
        assert short_term.max() == pytest.approx(1.0, rel=0.02)
        assert short_term.min() > 1e-5, name  # no 100-ms stretch 50 dB under the loudest one


def _class_features(x: np.ndarray) -> np.ndarray:
    """Coarse log spectrum (16 bands) + envelope modulation spectrum (5 bands) + envelope spread."""
    f, p = welch(x, FS, nperseg=1024)
    edges = np.geomspace(100, 11000, 17)
    bands = np.log10([p[(f >= lo) & (f < hi)].mean() + 1e-12 for lo, hi in zip(edges[:-1], edges[1:])])
    env = np.log10(np.sqrt(np.convolve(x**2, np.ones(240) / 240, mode="same")[::240] + 1e-9))
    env -= env.mean()
    fm, pm = welch(env, 100, nperseg=min(64, len(env)))
    medges = [1, 4, 8, 16, 32, 50]
    mod = np.log10([pm[(fm >= lo) & (fm < hi)].mean() + 1e-9 for lo, hi in zip(medges[:-1], medges[1:])])
    return np.concatenate([bands - bands.mean(), mod, [3 * env.std()]])


def test_classes_are_acoustically_distinct():
    """A nearest-centroid classifier on coarse spectra and envelopes tells new instances apart."""
    def instance(k, j):
        return _class_features(synthesize(SOURCE_CLASSES[k], 2.0, FS, np.random.default_rng([k, j])))

    n = len(SOURCE_CLASSES)
    centroids = np.array([np.mean([instance(k, j) for j in range(4)], axis=0) for k in range(n)])
    hits = [np.argmin(np.linalg.norm(centroids - instance(k, j), axis=1)) == k for k in range(n) for j in (4, 5)]
    assert np.mean(hits) >= 0.6  # chance is 1/13


# -- room acoustics -------------------------------------------------------------------------------
def test_first_order_floor_reflection_geometry():
    room = ShoeboxRoom((6.0, 5.0, 3.0), rt60=0.5)
    mic, source = np.array([3.0, 2.5, 1.5]), np.array([4.5, 3.0, 1.2])
    ir = early_reflections(room, source, mic, 1, FS)
    image = source * [1, 1, -1]  # mirrored in the floor z = 0
    direct, path = np.linalg.norm(source - mic), np.linalg.norm(image - mic)
    tap = int(round((path - direct) / 343.0 * FS))
    unit = (image - mic) / path
    expected = room.reflection * direct / path * np.array([1.0, unit[1], unit[2], unit[0]])
    np.testing.assert_allclose(ir[:, tap], expected, rtol=1e-9)
    assert np.count_nonzero(ir[0]) == 6  # six walls, one image each


def test_late_tail_decays_at_rt60_with_diffuse_statistics():
    for rt60 in (0.3, 0.7):
        tail = late_tail(ShoeboxRoom((7.0, 5.0, 3.0), rt60), 2.0, 0.05, FS, np.random.default_rng(0))
        decay = np.cumsum(tail[0, ::-1] ** 2)[::-1]
        decay_db = 10 * np.log10(decay / decay[0])
        t5, t25 = np.argmax(decay_db < -5) / FS, np.argmax(decay_db < -25) / FS
        assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.1)  # T20
        energy = np.sum(tail**2, axis=1)
        np.testing.assert_allclose(energy[1:] / energy[0], 1 / 3, rtol=0.1)
        corr = np.corrcoef(tail)
        assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.15  # independent (about 1000 effective samples)


def test_moving_source_crossfaded_reflections_add_up_for_a_still_source():
    """Hann blocks at 50 % overlap sum to one: with no motion the block-wise reflections equal one
    convolution with the image-source response."""
    room, mic = ShoeboxRoom((6.0, 5.0, 3.0), 0.5), np.array([3.0, 2.5, 1.5])
    source = mic + np.array([1.5, 0.5, 0.2])
    dry = np.random.default_rng(0).standard_normal(2 * FS + 123)
    blocks, _ = _moving_reflections(dry, 0.0, lambda t: source, room, mic, 3, FS)
    whole = fftconvolve(dry[None], early_reflections(room, source, mic, 3, FS), axes=-1)
    np.testing.assert_allclose(blocks[:, : whole.shape[1]], whole, atol=1e-12)
    np.testing.assert_allclose(blocks[:, whole.shape[1]:], 0.0, atol=1e-12)


@pytest.mark.parametrize("orbit", [False, True])
def test_max_source_distance_stays_inside_the_room(orbit):
    room, mic, margin = ShoeboxRoom((5.0, 4.0, 2.7), 0.4), np.array([2.0, 2.2, 1.4]), 0.2
    for azimuth, elevation in [(0, 0), (120, 40), (-60, -55), (179, 10)]:
        d = max_source_distance(room, mic, azimuth, elevation, orbit=orbit, margin=margin)
        sweep = np.arange(-180, 180, 5) if orbit else [azimuth]
        points = mic + d * polar_to_cartesian(np.asarray(sweep, float), np.full(len(sweep), elevation))
        assert np.all(points >= margin - 1e-9) and np.all(points <= np.array(room.dims) - margin + 1e-9)
        # and it is the largest such distance: a bit further leaves the margin somewhere
        further = mic + (d + 0.05) * polar_to_cartesian(np.asarray(sweep, float), np.full(len(sweep), elevation))
        assert np.any(further < margin) or np.any(further > np.array(room.dims) - margin)


# -- CLI ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "3"])  # processes write the same files
def test_cli_writes_dcase_layout(tmp_path, workers):
    argv = ["synth", "--out", str(tmp_path), "--n-scenes", "2", "--duration", "2", "--seed", "3", "--dry", "--quiet",
            "--workers", workers]
    assert main(argv) == 0
    pairs = list_pairs(tmp_path, "train")
    assert [p.name for p, _ in pairs] == ["synth_s3_00000.wav", "synth_s3_00001.wav"]
    config = SceneConfig(duration_s=2.0, reverb=False)
    for index, (wav, csv) in enumerate(pairs):
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (FS, 4, 2 * FS, "FLOAT")
        scene = generate_scene(config, 3, index)  # scene i of a seed does not depend on n_scenes
        np.testing.assert_array_equal(sf.read(wav, dtype="float32")[0].T, scene.audio)
        assert read_metadata_csv(csv, "2024") == scene.rows  # whole centimetres as STARSS23, read as metres
    assert not list(tmp_path.rglob("*.tmp"))
    assert main(["synth", "--out", str(tmp_path), "--n-scenes", "0", "--quiet"]) == 2
    assert main(["synth", "--out", str(tmp_path), "--n-scenes", "1", "--workers", "0", "--quiet"]) == 2


def test_cli_interrupted_leaves_no_partial_files(tmp_path, monkeypatch):
    real_write, calls = sf.write, []

    def write_then_interrupt(path, data, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # second WAV: half the samples reach the disk, then Ctrl-C
            real_write(path, data[: len(data) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        real_write(path, data, *args, **kwargs)

    monkeypatch.setattr(sf, "write", write_then_interrupt)
    argv = ["synth", "--out", str(tmp_path), "--n-scenes", "3", "--duration", "1", "--dry", "--quiet"]
    assert main(argv) == 130
    assert [p.name for p in (tmp_path / "foa_dev" / "train").iterdir()] == ["synth_s0_00000.wav"]
    assert sf.info(tmp_path / "foa_dev" / "train" / "synth_s0_00000.wav").frames == FS
    assert not list(tmp_path.rglob("*.tmp"))
