"""Official DCASE SELD metrics: hand-worked cases, the edge-case table of seld-metrics.md section 7,
a literal brute-force transcription of the official semantics on random cases, folders and CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from glfer_edge.cli import main
from glfer_edge.data.dcase import LabelRow, write_metadata_csv
from glfer_edge.errors import InputError
from glfer_edge.metrics import SELDMetrics, SELDResult, evaluate_folders

EPS = np.finfo(float).eps
MODES = {"2021": ("2021", "micro"), "2022-micro": ("2022", "micro"), "2022-macro": ("2022", "macro")}


def R(frame: int, cls: int, azi: float, ele: float = 0.0, track: int = 0) -> LabelRow:
    return LabelRow(frame, cls, track, float(azi), float(ele))


def event(frames, cls, azi, ele=0.0, track=0) -> list[LabelRow]:
    return [R(f, cls, azi, ele, track) for f in frames]


def score(ref, pred, mode="2022-micro", num_classes=13, **kwargs) -> SELDResult:
    edition, average = MODES[mode]
    metrics = SELDMetrics(num_classes, edition=edition, average=average, **kwargs)
    metrics.update(ref, pred)
    return metrics.compute()


def values(r: SELDResult) -> tuple[float, ...]:
    return (r.er, r.f, r.le, r.lr, r.seld)


def seld(er, f, le, lr) -> float:
    return (er + (1 - f) + le / 180 + (1 - lr)) / 4


def assert_metrics(result: SELDResult, er, f, le, lr, le_tol=1e-9):
    assert result.er == pytest.approx(er, abs=1e-9)
    assert result.f == pytest.approx(f, abs=1e-9)
    assert result.le == pytest.approx(le, abs=le_tol)
    assert result.lr == pytest.approx(lr, abs=1e-9)
    assert result.seld == pytest.approx(seld(er, f, le, lr), abs=1e-8)


# -- hand-worked cases (micro unless said otherwise) --------------------------------------------


def test_perfect_prediction():
    # class 0 spans 3 segments (last frame 24 -> ceil(2.4) = 3), class 5 one segment: 4 TPs
    ref = event(range(0, 25), 0, 30, 10) + event(range(10, 15), 5, -60, -20)
    for mode in ("2021", "2022-micro"):
        r = score(ref, ref, mode)
        assert r.counts.tp == (3, 0, 0, 0, 0, 1) + (0,) * 7 and sum(r.counts.nref) == 4
        assert_metrics(r, er=0, f=4 / (EPS + 4), le=0, lr=4 / (EPS + 4), le_tol=1e-5)
    macro = score(ref, ref, "2022-macro")  # 11 absent classes count as F = 0, LE = 180, LR = 0
    assert_metrics(macro, er=0, f=2 / 13, le=11 * 180 / 13, lr=2 / 13, le_tol=1e-5)


def test_missed_event():
    ref = event(range(0, 10), 2, 40) + event(range(20, 30), 2, 40)
    pred = event(range(0, 10), 2, 40)
    r = score(ref, pred)  # segment 2: FN -> deletion; Nref = 2, TP = 1, FN = 1
    assert (r.counts.deletions, r.counts.substitutions, r.counts.insertions) == (1, 0, 0)
    assert_metrics(r, er=1 / 2, f=1 / (1 + 0.5 * 1), le=0, lr=1 / (1 + 1))


def test_false_alarm():
    ref = event(range(0, 10), 2, 40)
    pred = ref + event(range(3, 6), 7, -90)  # class 7 absent from the reference: FP -> insertion
    r = score(ref, pred)
    assert r.counts.insertions == 1 and r.counts.fp[7] == 1
    assert_metrics(r, er=1 / 1, f=1 / (1 + 0.5 * 1), le=0, lr=1)


def test_wrong_class_is_one_substitution():
    ref = event(range(0, 10), 2, 40)
    pred = event(range(0, 10), 3, 40)
    r = score(ref, pred)  # FN for class 2 + FP for class 3 in the same segment: S = 1
    assert (r.counts.substitutions, r.counts.deletions, r.counts.insertions) == (1, 0, 0)
    assert_metrics(r, er=1, f=0 / (0 + 0.5 * (1 + 1)), le=180, lr=0)
    assert r.seld == 1


def test_doa_25_degrees_off_is_a_spatial_false_positive():
    ref = event(range(0, 10), 1, 0)
    pred = event(range(0, 10), 1, 25)
    for mode in ("2021", "2022-micro"):  # F = 0 either way with no TP; ER = I / Nref = 1
        r = score(ref, pred, mode)
        assert r.counts.fp_spatial[1] == 1 and r.counts.tp[1] == 0
        assert_metrics(r, er=1, f=0, le=25, lr=1 / (EPS + 1))
    close = score(ref, event(range(0, 10), 1, 15))  # 15 degrees: a TP, localization error still 15
    assert_metrics(close, er=0, f=1 / (EPS + 1), le=15, lr=1 / (EPS + 1))


def test_spatial_fp_costs_half_in_2021_and_one_in_2022():
    ref = [R(5, 0, 10), R(5, 1, 50)]
    pred = [R(5, 0, 10), R(5, 1, 80)]  # class 0 exact (TP), class 1 30 degrees off (spatial FP)
    tp, fp_sp, nref, de = 1, 1, 2, [0.0, 30.0]
    r21, r22, macro = (score(ref, pred, m) for m in MODES)
    assert_metrics(r21, er=1 / nref, f=tp / (tp + 0.5 * fp_sp), le=sum(de) / 2, lr=1)
    assert_metrics(r22, er=1 / nref, f=tp / (tp + fp_sp), le=sum(de) / 2, lr=1)
    assert_metrics(macro, er=1 / nref, f=1 / 13, le=(sum(de) + 11 * 180) / 13, lr=2 / 13)
    # seld-metrics.md section 7, row "1 TP + 1 spatial FP in one segment"
    assert values(r21) == pytest.approx((0.5, 0.666667, 15, 1, 0.229167), rel=5e-6)
    assert values(r22) == pytest.approx((0.5, 0.5, 15, 1, 0.270833), rel=5e-6)
    assert values(macro) == pytest.approx((0.5, 0.0769231, 154.615, 0.153846, 0.782051), rel=5e-6)
    assert macro.classwise.f[:2] == pytest.approx((1, 0)) and macro.classwise.le[1] == pytest.approx(30)


# -- seld-metrics.md section 7: official outputs (ER, F, LE, LR, SELD) -----------------------------

ALL13 = [row for c in range(13) for row in event(range(3 * c, 3 * c + 3), c, 20 * c - 120, 5 * (c % 5))]
TWO = event(range(0, 8), 0, 30) + event(range(4, 16), 4, -100, 20)
PERFECT2 = (0, 0.153846, 152.308, 0.153846, 0.634615)
TABLE = {
    "perfect, all 13 classes": (ALL13, ALL13, {m: (0, 1, 0, 1, 0) for m in MODES}),
    "perfect, 2 classes": (TWO, TWO, {"2021": (0, 1, 0, 1, 0), "2022-micro": (0, 1, 0, 1, 0), "2022-macro": PERFECT2}),
    "empty prediction": (TWO, [], {m: (1, 0, 180, 0, 1) for m in MODES}),
    "FP of an absent class": (
        [R(5, 0, 30), R(5, 1, 60)],
        [R(5, 0, 30), R(5, 1, 60), R(6, 9, 0)],
        {"2021": (0.5, 0.8, 0, 1, 0.175), "2022-micro": (0.5, 0.8, 0, 1, 0.175),
         "2022-macro": (0.5, 0.153846, 152.308, 0.153846, 0.759615)},
    ),
    "last ref frame 60, FP at frame 60": (
        event(range(45, 61), 0, 30),
        event(range(45, 61), 0, 30) + [R(60, 1, 0)],
        {"2021": (0.333333, 0.857143, 0, 1, 0.119048), "2022-micro": (0, 1, 0, 1, 0),
         "2022-macro": (0, 0.0769231, 166.154, 0.0769231, 0.692308)},
    ),
    "FPs after the last ref segment": (
        event(range(0, 36), 0, 30),
        event(range(0, 36), 0, 30) + [R(f, 0, 30) for f in (40, 50, 60, 70, 80)],
        {"2021": (1.25, 0.615385, 0, 1, 0.408654), "2022-micro": (0, 1, 0, 1, 0),
         "2022-macro": (0, 0.0769231, 166.154, 0.0769231, 0.692308)},
    ),
    "2 same-class refs, 1 predicted": (
        [R(5, 0, 0), R(5, 0, 90, track=1)],
        [R(5, 0, 2)],
        {"2021": (0.5, 0.666667, 2, 0.5, 0.336111), "2022-micro": (0.5, 0.666667, 2, 0.5, 0.336111),
         "2022-macro": (0.5, 0.0512821, 166.308, 0.0384615, 0.833547)},
    ),
    "1 ref, 2 same-class preds": (
        [R(5, 0, 0)],
        [R(5, 0, 2), R(5, 0, 120)],
        {"2021": (1, 0.666667, 2, 1, 0.336111), "2022-micro": (1, 0.666667, 2, 1, 0.336111),
         "2022-macro": (1, 0.0512821, 166.308, 0.0769231, 0.948932)},
    ),
    "class in both but disjoint frames": ([R(2, 0, 30)], [R(7, 0, 30)], {m: (1, 0, 180, 0, 1) for m in MODES}),
}


@pytest.mark.parametrize("case", list(TABLE))
@pytest.mark.parametrize("mode", list(MODES))
def test_official_edge_case_table(case, mode):
    ref, pred, expected = TABLE[case]
    result = score(ref, pred, mode)
    er, f, le, lr, seld_score = expected[mode]
    assert result.er == pytest.approx(er, rel=5e-6, abs=1e-9)
    assert result.f == pytest.approx(f, rel=5e-6, abs=1e-9)
    assert result.le == pytest.approx(le, rel=5e-6, abs=1e-5)
    assert result.lr == pytest.approx(lr, rel=5e-6, abs=1e-9)
    assert result.seld == pytest.approx(seld_score, rel=5e-6, abs=1e-7)


def test_last_frame_off_by_one_and_fixed_2021_length():
    ref = event(range(45, 61), 0, 30)  # frames 45..60
    assert sum(score(ref, ref, "2022-micro").counts.nref) == 2  # ceil(60/10) = 6 segments: frame 60 dropped
    assert sum(score(ref, ref, "2021").counts.nref) == 3
    late = event(range(600, 606), 0, 30)
    assert sum(score(late, late, "2021").counts.nref) == 0  # 2021 scores frames 0..599 only
    assert sum(score(late, late, "2021", nb_frames_2021=610).counts.nref) == 1


@pytest.mark.parametrize("mode", ["2021", "2022-micro"])
def test_small_angle_cases(mode):
    wrap = score([R(5, 0, 179)], [R(5, 0, -179)], mode)
    assert wrap.le == pytest.approx(2, abs=1e-9) and wrap.f == pytest.approx(1)
    assert score([R(5, 0, 0)], [R(5, 0, 19.99)], mode).counts.tp[0] == 1
    off = score([R(5, 0, 0)], [R(5, 0, 20.01)], mode)
    assert (off.f, off.er, off.counts.fp_spatial[0]) == (0, pytest.approx(1), 1)
    at_threshold = score([R(5, 0, 0)], [R(5, 0, 20.01)], mode, doa_threshold=off.counts.total_de[0])  # <= is inclusive
    assert at_threshold.counts.tp[0] == 1


def test_buckets_follow_row_position_not_track_id():
    # refs at 10 and 100 degrees swap row order between frames; predictions 40 and 100
    ref = [R(0, 0, 10, track=0), R(0, 0, 100, track=1), R(1, 0, 100, track=1), R(1, 0, 10, track=0)]
    pred = [R(0, 0, 40), R(0, 0, 100), R(1, 0, 40), R(1, 0, 100)]
    r = score(ref + [R(3, 1, 0)], pred + [R(3, 1, 0)], "2022-micro")
    assert r.counts.tp[0] == 2 and r.counts.fp_spatial[0] == 0  # two buckets averaging (30 + 0) / 2
    assert r.counts.total_de[0] == pytest.approx(30)


def test_disjoint_frames_add_the_prediction_count_to_fn():
    # official quirk: class in reference and prediction of a segment, never in the same frame:
    # FN += number of predicted instances (2 here), not reference instances (1); no FP
    r = score([R(2, 0, 30)], [R(7, 0, 30), R(7, 0, -90)], "2022-micro")
    assert (r.counts.fn[0], r.counts.fp[0], r.counts.deletions) == (2, 0, 2)
    assert_metrics(r, er=2 / 1, f=0, le=180, lr=0 / (0 + 2))


def test_classes_outside_range_are_ignored():
    ref = event(range(0, 12), 1, 30)
    noisy = score(ref + [R(3, 13, 0), R(4, -1, 0)], ref + [R(5, 20, 0)], "2022-macro")
    assert values(noisy) == values(score(ref, ref, "2022-macro"))


# -- independent check: a literal, brute-force transcription of the official semantics -----------


def _unit(r: LabelRow) -> np.ndarray:
    a, e = math.radians(r.azimuth), math.radians(r.elevation)
    return np.array([math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), math.sin(e)])


def _brute_assignment(dist: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost matching of min(n, m) pairs by enumeration (no Hungarian solver)."""
    n, m = dist.shape
    if n <= m:
        options = [[(i, p[i]) for i in range(n)] for p in itertools.permutations(range(m), n)]
    else:
        options = [sorted((p[j], j) for j in range(m)) for p in itertools.permutations(range(n), m)]
    return min(options, key=lambda pairs: sum(dist[i, j] for i, j in pairs))


def _naive_official(files, edition, average, C, thr=20.0):
    tp, fp, fps, fn, nref, de, detp, defn = (np.zeros(C) for _ in range(8))
    S = D = I = 0
    for ref, pred in files:
        length = 600 if edition == "2021" else max(r.frame for r in ref)
        for b in range(math.ceil(length / 10)):
            lfp = lfn = 0
            for c in range(C):
                def frames(rows):
                    out = {}
                    for r in rows:
                        if r.class_idx == c and 10 * b <= r.frame < 10 * b + 10:
                            out.setdefault(r.frame, []).append(_unit(r))
                    return out

                g, p = frames(ref), frames(pred)
                ng, npr = max(map(len, g.values()), default=0), max(map(len, p.values()), default=0)
                nref[c] += ng
                if g and p:
                    buckets = {}
                    for f in sorted(set(g) & set(p)):
                        dist = np.array([[math.degrees(math.atan2(np.linalg.norm(np.cross(u, v)), u @ v))
                                          for v in p[f]] for u in g[f]])
                        for i, j in _brute_assignment(dist):
                            buckets.setdefault(i, []).append(dist[i, j])
                    if not buckets:
                        fn[c] += npr
                        defn[c] += npr
                        lfn += npr
                        continue
                    for d in buckets.values():
                        de[c] += np.mean(d)
                        detp[c] += 1
                        if np.mean(d) <= thr:
                            tp[c] += 1
                        else:
                            fps[c] += 1
                            lfp += 1
                    extra = npr - ng
                    fp[c] += max(extra, 0)
                    lfp += max(extra, 0)
                    fn[c] += max(-extra, 0)
                    defn[c] += max(-extra, 0)
                    lfn += max(-extra, 0)
                elif g:
                    fn[c] += ng
                    defn[c] += ng
                    lfn += ng
                elif p:
                    fp[c] += npr
                    lfp += npr
            S, D, I = S + min(lfp, lfn), D + max(0, lfn - lfp), I + max(0, lfp - lfn)
    er = (S + D + I) / (nref.sum() + EPS)
    if average == "macro":
        f = tp / (EPS + tp + fps + 0.5 * (fp + fn))
        le = np.where(detp > 0, de / (detp + EPS), 180.0)
        lr = detp / (EPS + detp + defn)
        return er, f.mean(), le.mean(), lr.mean()
    spatial_weight = 0.5 if edition == "2021" else 1.0
    f = tp.sum() / (EPS + tp.sum() + spatial_weight * fps.sum() + 0.5 * (fp.sum() + fn.sum()))
    le = de.sum() / (detp.sum() + EPS) if detp.sum() else 180.0
    return er, f, le, detp.sum() / (EPS + detp.sum() + defn.sum())


def _random_file(rng: np.random.Generator, C: int) -> tuple[list[LabelRow], list[LabelRow]]:
    """Events with drifting DOAs (classes up to C, i.e. one ignored class) and imperfect predictions:
    misses, wrong classes, DOA noise across the threshold, time shifts, duplicates, false alarms."""
    ref, pred = [], []
    for track in range(int(rng.integers(2, 7))):
        cls, start, dur = int(rng.integers(0, C + 1)), int(rng.integers(0, 40)), int(rng.integers(1, 14))
        azi, ele, drift = rng.uniform(-180, 180), rng.uniform(-60, 60), rng.uniform(-4, 4)
        rows = [R(f, cls, (azi + drift * (f - start) + 180) % 360 - 180, ele, track) for f in range(start, start + dur)]
        ref += rows
        shift = int(rng.integers(3, 7)) if rng.random() < 0.25 else 0  # often disjoint frames in a segment
        noise = rng.uniform(2, 25)
        for r in rows:
            u = rng.random()
            if u < 0.1:
                continue
            c = int(rng.integers(0, C)) if u < 0.2 else r.class_idx
            ele_p = float(np.clip(r.elevation + rng.normal(0, noise / 2), -89, 89))
            pred.append(R(r.frame + shift, c, r.azimuth + rng.normal(0, noise), ele_p))
            if rng.random() < 0.05:
                pred.append(R(r.frame + shift, c, rng.uniform(-180, 180)))
    classes = [r.class_idx for r in ref]
    for _ in range(int(rng.integers(0, 8))):  # false alarms, half of them of a class of the reference
        c = classes[int(rng.integers(len(classes)))] if rng.random() < 0.5 else int(rng.integers(0, C))
        pred.append(R(int(rng.integers(0, 60)), c, rng.uniform(-180, 180)))
    key = lambda r: (r.frame, rng.random())  # noqa: E731 - shuffles the row order within frames
    return sorted(ref, key=key), sorted(pred, key=key)


@pytest.mark.parametrize("seed", range(6))
def test_matches_literal_transcription_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    C = 5
    files = [_random_file(rng, C) for _ in range(4)]
    for mode, (edition, average) in MODES.items():
        metrics = SELDMetrics(C, edition=edition, average=average)
        for ref, pred in files:
            metrics.update(ref, pred)
        r = metrics.compute()
        er, f, le, lr = _naive_official(files, edition, average, C)
        assert (r.er, r.f, r.lr) == pytest.approx((er, f, lr), abs=1e-9), mode
        assert r.le == pytest.approx(le, abs=1e-6), mode
        assert r.seld == pytest.approx(seld(er, f, le, lr), abs=1e-8), mode


# -- folders, strict mode, CLI ------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path):
    ref_dir, pred_dir = tmp_path / "metadata_dev", tmp_path / "pred"
    ref_a = event(range(0, 25), 0, 30, 10) + event(range(5, 15), 3, -45)
    ref_b = event(range(10, 30), 1, 120, -5) + event(range(10, 30), 1, 0, track=1)
    ref_c = event(range(0, 15), 2, 60)
    write_metadata_csv(ref_dir / "dev-test" / "a.csv", ref_a)
    write_metadata_csv(ref_dir / "dev-test" / "b.csv", ref_b)
    write_metadata_csv(ref_dir / "dev-val" / "c.csv", ref_c)
    pred_a = event(range(0, 25), 0, 33, 10) + event(range(5, 10), 3, 170)
    pred_b = event(range(12, 30), 1, 118, -5)
    write_metadata_csv(pred_dir / "a.csv", pred_a, cartesian=True, edition="2022")  # as the baselines write
    write_metadata_csv(pred_dir / "b.csv", pred_b, cartesian=True, edition="2022")
    return ref_dir, pred_dir, [(ref_a, pred_a), (ref_b, pred_b)], ref_c


def test_evaluate_folders_official_semantics(folders):
    ref_dir, pred_dir, pairs, _ = folders
    result = evaluate_folders(ref_dir, pred_dir, edition="2022")
    metrics = SELDMetrics(13, edition="2022")
    for ref, pred in pairs:
        metrics.update(ref, pred)
    expected = metrics.compute()
    assert (result.er, result.f, result.lr) == pytest.approx((expected.er, expected.f, expected.lr), abs=1e-12)
    assert result.le == pytest.approx(expected.le, abs=1e-5)  # cartesian CSV round trip
    assert result.num_files == 2 and result.unscored == ("c.csv",)  # reference without prediction: not scored


def test_strict_counts_missing_prediction_as_misses(folders):
    ref_dir, pred_dir, _, ref_c = folders
    official = evaluate_folders(ref_dir, pred_dir, edition="2022", average="micro")
    strict = evaluate_folders(ref_dir, pred_dir, edition="2022", average="micro", strict=True)
    assert strict.strict and strict.num_files == 3 and strict.unscored == ()
    # c.csv: class 2 in frames 0..14 -> 2 segments, all missed (strict also scores its last frame)
    assert strict.counts.fn[2] - official.counts.fn[2] == 2
    assert strict.counts.deletions - official.counts.deletions == 2


def test_folder_errors_and_empty_reference(folders, tmp_path):
    ref_dir, pred_dir, _, _ = folders
    write_metadata_csv(pred_dir / "zzz.csv", [R(0, 0, 0)])
    with pytest.raises(InputError, match="zzz.csv has no reference"):
        evaluate_folders(ref_dir, pred_dir)
    (pred_dir / "zzz.csv").unlink()
    (ref_dir / "dev-val" / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv .*empty"):
        evaluate_folders(ref_dir, pred_dir, edition="2022")
    write_metadata_csv(pred_dir / "empty.csv", [R(3, 0, 10)])
    strict = evaluate_folders(ref_dir, pred_dir, edition="2022", strict=True)
    assert strict.counts.fp[0] >= 1  # the empty reference is scored: its prediction is a false alarm
    r2021 = evaluate_folders(ref_dir, pred_dir, edition="2021")  # 2021 scores it too (fixed length)
    assert r2021.num_files == 3
    with pytest.raises(InputError, match="micro"):
        evaluate_folders(ref_dir, pred_dir, edition="2021", average="macro")
    with pytest.raises(InputError, match="no prediction CSV"):
        evaluate_folders(ref_dir, tmp_path / "nothing", edition="2021")


def test_cli_json_and_table(folders, capsys):
    ref_dir, pred_dir, _, _ = folders
    assert main(["evaluate", "--ref", str(ref_dir), "--pred", str(pred_dir), "--edition", "2022", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = evaluate_folders(ref_dir, pred_dir, edition="2022")
    assert {k: out[k] for k in ("ER20", "F20", "LE_CD", "LR_CD", "SELD")} == pytest.approx(
        {"ER20": expected.er, "F20": expected.f, "LE_CD": expected.le, "LR_CD": expected.lr, "SELD": expected.seld}
    )
    assert (out["edition"], out["average"], len(out["classwise"])) == ("2022", "macro", 13)
    assert out["classwise"]["0"]["F20"] == pytest.approx(expected.classwise.f[0])
    assert main(["evaluate", "--ref", str(ref_dir), "--pred", str(pred_dir), "--edition", "2021"]) == 0
    table = capsys.readouterr().out
    assert "micro" in table and "ER20" in table and "1 reference file(s) without prediction" in table
    assert "1-s segments, F20 needs DOA error <= 20 deg" in table.splitlines()[0]
    assert main(["evaluate", "--ref", str(ref_dir), "--pred", str(ref_dir / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: no prediction CSV")


def test_cli_scores_a_model_over_a_dataset(tmp_path, capsys):
    """``evaluate --model``: the bundled model's prediction CSVs, scored exactly as ``--ref/--pred`` would."""
    from glfer_edge.data.dcase import read_metadata_csv

    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--n-scenes", "2", "--duration", "6", "--seed", "4", "--split", "val",
                 "--quiet"]) == 0
    capsys.readouterr()
    rows = {}
    for threshold in ("0.1", "0.3", "0.9"):
        pred = tmp_path / f"pred-{threshold}"
        assert main(["evaluate", "--model", "default", "--data", str(data), "--split", "val", "--pred-out", str(pred),
                     "--threshold", threshold, "--json", "-"]) == 0
        out = json.loads(capsys.readouterr().out)
        expected = evaluate_folders(data / "metadata_dev" / "val", pred)
        assert (out["ER20"], out["F20"], out["SELD"]) == pytest.approx((expected.er, expected.f, expected.seld))
        rows[threshold] = sum(len(read_metadata_csv(p)) for p in sorted(pred.glob("*.csv")))
    assert rows["0.1"] > rows["0.3"] > rows["0.9"]  # the threshold reaches the decisions
    assert main(["evaluate", "--ref", str(data / "metadata_dev" / "val"), "--pred", str(pred), "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --threshold, --median, --doa-smoothing, --tta and --no-gate apply to --model")
