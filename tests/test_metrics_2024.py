"""DCASE 2024 metrics worked by hand, bad input refused with file/line/fix, and `evaluate` for every
edition (2024 output states its thresholds; --ci; --json PATH). The equality with the official
code itself is tests/test_metrics_official.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from glfer_edge.cli import main
from glfer_edge.data.dcase import LabelRow, write_metadata_csv
from glfer_edge.errors import InputError
from glfer_edge.metrics import SELDMetrics, evaluate_folders

EPS = np.finfo(float).eps
SAME_DIRECTION_DEG = 0.0008102  # official Cartesian formula: +1e-10 in each norm -> arccos(1 - 1e-10)


def R(frame, cls, azi, dist, ele=0.0, track=0) -> LabelRow:
    return LabelRow(frame, cls, track, float(azi), float(ele), float(dist))


def score(ref, pred, average="micro", **kwargs):
    m = SELDMetrics(13, edition="2024", average=average, **kwargs)
    m.update(ref, pred)
    return m.compute()


# -- hand-worked ------------------------------------------------------------------------------


def test_frame_level_counts_and_both_thresholds():
    # frames 0-3 scored (frame 4 is the largest reference index: dropped, as the official code)
    ref = [R(t, 0, 30, 2.0) for t in range(5)]
    pred = [R(0, 0, 30, 2.5),  # rel 0.25, 0 deg: TP
            R(1, 0, 30, 5.0),  # rel 1.5 > 1: spatial FP although the direction is right
            R(2, 0, 55, 2.0),  # 25 deg > 20: spatial FP
            R(3, 0, 40, 4.0),  # 10 deg, rel exactly 1.0: TP (thresholds inclusive)
            R(4, 0, 30, 2.0)]  # frame 4 not scored
    r = score(ref, pred)
    assert (r.counts.tp[0], r.counts.fp_spatial[0], r.counts.fn[0], r.counts.nref[0]) == (2, 2, 0, 4)
    assert r.er == pytest.approx(2 / 4)  # each spatial FP with no FN is an insertion
    assert r.f == pytest.approx(2 / (2 + 2))
    assert r.le == pytest.approx((SAME_DIRECTION_DEG * 2 + 25 + 10) / 4, abs=1e-5)
    assert r.de == pytest.approx((0.5 + 3.0 + 0 + 2.0) / 4)
    assert r.rde == pytest.approx((0.25 + 1.5 + 0 + 1.0) / 4)
    assert r.lr == pytest.approx(1.0)
    assert r.seld == pytest.approx(np.mean([1 - r.f, r.le / 180, r.rde]))


def test_same_class_sources_are_matched_by_direction_then_scored_on_distance():
    ref = [R(0, 3, 0, 1.0, track=0), R(0, 3, 90, 3.0, track=0), R(1, 3, 0, 1.0)]  # track id re-used
    pred = [R(0, 3, 88, 3.3), R(0, 3, 2, 1.0), R(0, 3, -150, 2.0)]  # order differs; one extra
    r = score(ref, pred)  # frame 0 only (frame 1 = largest index)
    assert (r.counts.tp[3], r.counts.fp[3], r.counts.fp_spatial[3]) == (2, 1, 0)
    assert r.le == pytest.approx((2 + 2) / 2, abs=1e-6)
    assert r.rde == pytest.approx((0 + 0.1) / 2)


def test_macro_skips_classes_without_match_and_seld_is_per_class():
    ref = [R(0, 0, 0, 2.0), R(0, 1, 90, 2.0), R(1, 0, 0, 2.0)]
    pred = [R(0, 0, 10, 3.0), R(0, 5, 90, 2.0)]  # class 1 missed, class 5 absent from the reference
    r = score(ref, pred, average="macro")
    cw = r.classwise
    assert math.isnan(cw.le[1]) and math.isnan(cw.rde[5]) and cw.le[0] == pytest.approx(10, abs=1e-5)
    assert r.le == pytest.approx(10, abs=1e-5) and r.rde == pytest.approx(0.5)  # means over class 0 only
    assert cw.seld[1] == pytest.approx(1.0) and cw.seld[0] == pytest.approx(np.mean([0, 10 / 180, 0.5]), abs=1e-7)
    assert r.seld == pytest.approx(np.mean(cw.seld))
    assert r.f == pytest.approx(1 / 13)


def test_no_match_anywhere_gives_nan_errors_as_official():
    r = score([R(0, 0, 0, 2.0), R(1, 0, 0, 2.0)], [])
    assert math.isnan(r.le) and math.isnan(r.rde) and r.f == 0 and r.seld == pytest.approx(1.0)
    assert json.loads(json.dumps(evaluate_to_dict(r)))["AE_CD"] is None  # strict JSON: no estimate


def evaluate_to_dict(r):
    from glfer_edge._fileio import json_safe

    return json_safe(r.to_dict())


def test_rows_without_distance_are_refused_by_the_2024_scorer():
    with pytest.raises(InputError, match="no distance"):
        score([LabelRow(0, 0, 0, 0.0, 0.0), LabelRow(1, 0, 0, 0.0, 0.0)], [])


# -- folders, bad input -------------------------------------------------------------------------


@pytest.fixture
def folders_2024(tmp_path):
    ref_dir, pred_dir = tmp_path / "metadata_dev", tmp_path / "pred"
    refs = {
        "a.csv": [R(t, 0, 30, 2.0) for t in range(12)] + [R(t, 4, -60, 3.5, 10) for t in range(3, 9)],
        "b.csv": [R(t, 2, 120, 1.2) for t in range(15)],
        "c.csv": [R(t, 7, 0, 4.0) for t in range(8)],
    }
    preds = {
        "a.csv": [R(t, 0, 35, 2.2) for t in range(1, 12)] + [R(t, 4, -60, 7.5, 10) for t in range(3, 9)],
        "b.csv": [R(t, 2, 121, 1.0) for t in range(2, 14)] + [R(5, 9, 0, 2.0)],
        "c.csv": [R(t, 7, 90, 4.0) for t in range(8)],
    }
    for name, rows in refs.items():
        write_metadata_csv(ref_dir / "dev-test" / name, rows, edition="2024")  # integer cm
    for i, (name, rows) in enumerate(preds.items()):
        write_metadata_csv(pred_dir / name, rows, edition="2024", prediction=True, cartesian=i % 2 == 0)
    return ref_dir, pred_dir, refs, preds


def test_evaluate_folders_2024_equals_the_row_api_and_gives_intervals(folders_2024):
    ref_dir, pred_dir, refs, preds = folders_2024
    assert (ref_dir / "dev-test" / "a.csv").read_text().splitlines()[0] == "0,0,0,30,0,200"
    r = evaluate_folders(ref_dir, pred_dir, edition="2024", ci=True)
    m = SELDMetrics(13, edition="2024")
    for name in sorted(refs):
        m.update(refs[name], preds[name])
    expected = m.compute()
    assert (r.f, r.rde, r.de, r.er) == pytest.approx((expected.f, expected.rde, expected.de, expected.er), abs=1e-12)
    assert r.le == pytest.approx(expected.le, abs=1e-6)  # Cartesian CSV round trip
    lo, hi = r.ci["F"]
    assert lo < hi and len(r.ci["classwise/RDE"]) == 13
    assert r.describe().startswith("DCASE 2024 SELD metrics, macro averaging, 13 classes, frame-level, F20 needs "
                                   "DOA error <= 20 deg and relative distance error <= 1")


@pytest.mark.parametrize(
    "where,text,edition,match",
    [
        # STARSS23 labels (13 classes) scored with the 12 classes of 2021: the example
        ("ref", "0,12,0,10,0\n1,3,0,10,0\n", "2021", r"line 1: class 12 is outside the 12 classes .* --num-classes 13"),
        ("pred", "0,3,0,1,0,0\n0,-1,0,1,0,0\n", "2022", r"line 2: negative class index -1"),
        ("ref", "0,3,0,10\n", "2022", r"line 1: 4 columns, which the DCASE 2022 format does not read"),
        ("pred", "0,3,0,1,0,0,0\n", "2021", r"line 1: 7 columns.* check --edition"),
        ("ref", "0,3,0,10,0\n1,3,x,10,0\n", "2023", r"line 2: track 'x' is not an integer"),
        ("ref", "0,3,0,10,0,1.52\n", "2024", r"line 1: reference distance 1.52 is not whole centimetres.*multiply"),
        ("pred", "0,3,0,10,0,152\n", "2024", r"line 1: predicted distance 152 m is beyond 50 m.*divide centimetres"),
        ("pred", "0,3,0,10,0,-1\n", "2024", r"line 1: negative distance"),
        ("pred", "0,3,0,10,0\n", "2024", r"line 1: 5 columns, no distance.*--edition 2023"),
        ("pred", "0,3,0,10,0,1.5\n1,3,0,1,0,0,1.5\n", "2024", r"line 2: 7 columns after 6-column rows"),
    ],
)
def test_bad_input_is_refused_naming_file_row_and_fix(tmp_path, where, text, edition, match):
    ref_dir, pred_dir = tmp_path / "ref" / "dev-test", tmp_path / "pred"
    ref_dir.mkdir(parents=True)
    pred_dir.mkdir()
    good_ref = "0,3,0,10,0,200\n5,3,0,10,0,200\n" if edition == "2024" else "0,3,0,10,0\n5,3,0,10,0\n"
    good_pred = "0,3,0,10,0,2.0\n" if edition == "2024" else "0,3,0,1,0,0\n"
    (ref_dir / "x.csv").write_text(text if where == "ref" else good_ref)
    (pred_dir / "x.csv").write_text(text if where == "pred" else good_pred)
    with pytest.raises(InputError, match=match) as exc:
        evaluate_folders(ref_dir.parent, pred_dir, edition=edition)
    message = str(exc.value)
    assert str(ref_dir / "x.csv" if where == "ref" else pred_dir / "x.csv") in message and "\n" not in message
    if edition == "2021" and "class 12" in match:
        r = evaluate_folders(ref_dir.parent, pred_dir, edition="2021", num_classes=13)  # the fix works
        assert r.num_classes == 13 and r.counts.nref[12] == 1


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_2024_table_json_file_and_ci(folders_2024, tmp_path, capsys):
    ref_dir, pred_dir, _, _ = folders_2024
    out = tmp_path / "reports" / "r.json"  # parent folders are created
    args = ["evaluate", "--ref", str(ref_dir), "--pred", str(pred_dir), "--edition", "2024", "--ci"]
    assert main([*args, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].startswith("DCASE 2024 SELD metrics, macro averaging, 13 classes, frame-level")
    assert "relative distance error <= 1" in lines[0]
    assert lines[1].split() == ["F20", "AE_CD", "RDE_CD", "SELD", "ER20", "LR_CD", "DE_CD"]
    assert "95% jackknife intervals" in table
    report = json.loads(out.read_text())
    expected = evaluate_folders(ref_dir, pred_dir, edition="2024", ci=True)
    assert (report["F20"], report["RDE_CD"], report["AE_CD"]) == pytest.approx((expected.f, expected.rde, expected.le))
    assert report["ci95"]["F20"] == pytest.approx(list(expected.ci["F"]))
    assert report["rel_distance_threshold"] == 1.0 and report["classwise"]["1"]["AE_CD"] is None
    assert main([*args, "--json", str(out)]) == 2  # exists: refused without --force
    assert "pass --force" in capsys.readouterr().err
    assert main([*args, "--json", str(out), "--force"]) == 0


@pytest.mark.parametrize("edition,average", [("2021", "micro"), ("2022", "macro"), ("2023", "macro")])
def test_cli_states_each_editions_averaging(tmp_path, capsys, edition, average):
    ref_dir, pred_dir = tmp_path / "ref" / "s", tmp_path / "pred"
    rows = [LabelRow(t, 1, 0, 20.0, 0.0) for t in range(25)]
    write_metadata_csv(ref_dir / "a.csv", rows, edition=edition)
    write_metadata_csv(pred_dir / "a.csv", rows, edition=edition, cartesian=True)
    assert main(["evaluate", "--ref", str(ref_dir.parent), "--pred", str(pred_dir), "--edition", edition]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"DCASE {edition} SELD metrics, {average} averaging, {12 if edition == '2021' else 13} "
                            "classes, 1-s segments, F20 needs DOA error <= 20 deg")
    assert main(["evaluate", "--ref", str(ref_dir.parent), "--pred", str(pred_dir), "--edition", "2021",
                 "--ci"]) == 2
    assert "no confidence intervals" in capsys.readouterr().err
