"""DCASE metadata I/O: CSV formats of each edition, coordinates, training targets, dataset layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glfer_edge.data.dcase import (
    LabelRow,
    cartesian_to_polar,
    labels_to_targets,
    load_metadata,
    polar_to_cartesian,
    read_metadata_csv,
    targets_to_labels,
    write_metadata_csv,
)
from glfer_edge.data.layout import LAYOUTS, list_pairs
from glfer_edge.errors import InputError

ROWS = [
    LabelRow(0, 3, 0, 90.0, -10.0),
    LabelRow(0, 3, 1, -135.5, 12.25),
    LabelRow(7, 0, 2, 179.0, 0.0),
    LabelRow(12, 12, 0, 0.1, 45.0),
]


def _close(a: LabelRow, b: LabelRow, tol: float = 1e-9) -> bool:
    same = (a.frame, a.class_idx, a.track) == (b.frame, b.class_idx, b.track)
    return same and math.isclose(a.azimuth, b.azimuth, abs_tol=tol) and math.isclose(a.elevation, b.elevation, abs_tol=tol)


# -- coordinates --------------------------------------------------------------------------------


def test_polar_to_cartesian_axes():
    xyz = polar_to_cartesian([0, 90, 180, 0, 45], [0, 0, 0, 90, 0])
    s = math.sqrt(0.5)
    expected = [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 1], [s, s, 0]]
    np.testing.assert_allclose(xyz, expected, atol=1e-15)


def test_cartesian_to_polar_inverts_and_ignores_norm():
    rng = np.random.default_rng(0)
    azi, ele = rng.uniform(-180, 180, 50), rng.uniform(-89, 89, 50)
    xyz = polar_to_cartesian(azi, ele) * rng.uniform(0.1, 3, (50, 1))  # ACCDOA vectors are not unit
    azi2, ele2 = cartesian_to_polar(xyz)
    np.testing.assert_allclose(azi2, azi, atol=1e-10)
    np.testing.assert_allclose(ele2, ele, atol=1e-10)


# -- CSV ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edition", ["2021", "2022", "2023"])
def test_polar_round_trip_is_exact(tmp_path, edition):
    path = tmp_path / "a.csv"
    write_metadata_csv(path, ROWS, edition=edition)
    assert read_metadata_csv(path, edition) == ROWS
    assert path.read_text().splitlines()[:2] == ["0,3,0,90,-10", "0,3,1,-135.5,12.25"]


@pytest.mark.parametrize("edition,columns", [("2021", 6), ("2022", 6), ("2023", 7)])
def test_cartesian_round_trip(tmp_path, edition, columns):
    path = tmp_path / "a.csv"
    write_metadata_csv(path, ROWS, cartesian=True, edition=edition)
    lines = path.read_text().splitlines()
    assert {len(line.split(",")) for line in lines} == {columns}
    assert lines[0].split(",")[:4] == ["0", "3", "0", repr(math.cos(math.pi / 2) * math.cos(-math.pi / 18))]
    back = read_metadata_csv(path, edition)
    assert all(_close(a, b) for a, b in zip(back, ROWS)) and len(back) == len(ROWS)
    if edition == "2023":
        assert {line.split(",")[-1] for line in lines} == {"0"}  # distance column fixed to 0


def test_2023_distance_columns(tmp_path):
    rows = [LabelRow(1, 2, 0, 30.0, 5.0, distance=150.0), LabelRow(2, 2, 0, 31.5, 5.0)]
    path = tmp_path / "d.csv"
    write_metadata_csv(path, rows, edition="2023")
    assert path.read_text() == "1,2,0,30,5,150\n2,2,0,31.5,5\n"
    assert read_metadata_csv(path, "2023") == rows
    write_metadata_csv(path, rows, cartesian=True, edition="2023")
    assert [r.distance for r in read_metadata_csv(path, "2023")] == [150.0, 0.0]


def test_column_count_meaning_depends_on_edition(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("4,1,0,0,1,0\n5,1,0,0,0,1,2\n9,1,0\n")  # 6 cols, 7 cols, 3 cols
    cart = load_metadata(path, "2022")  # 6 = cartesian (0,1,0) -> azimuth 90; 7 ignored
    assert [(r.frame, r.azimuth, r.elevation) for r in cart.rows] == [(4, 90.0, 0.0)]
    polar = load_metadata(path, "2023")  # 6 = polar + distance; 7 = cartesian (0,0,1) + distance
    assert [(r.frame, r.azimuth, r.elevation, r.distance) for r in polar.rows] == [(4, 0.0, 1.0, 0.0), (5, 0.0, 90.0, 2.0)]
    assert cart.last_frame == polar.last_frame == 9  # an ignored line still counts for the scored length
    assert (cart.ignored_lines, polar.ignored_lines) == (2, 1)


def test_2024_reference_in_cm_prediction_in_m(tmp_path):
    rows = [LabelRow(3, 1, 0, 30.0, -5.0, distance=1.52), LabelRow(3, 1, 1, -120.0, 10.0, distance=0.3)]
    ref = tmp_path / "ref.csv"
    write_metadata_csv(ref, rows, edition="2024")  # as STARSS23 metadata: integer centimetres
    assert ref.read_text() == "3,1,0,30,-5,152\n3,1,1,-120,10,30\n"
    assert read_metadata_csv(ref, "2024") == rows  # the official cm2m: /100
    polar = tmp_path / "polar.csv"
    write_metadata_csv(polar, rows, edition="2024", prediction=True)
    assert polar.read_text() == "3,1,0,30,-5,1.52\n3,1,1,-120,10,0.3\n"
    assert read_metadata_csv(polar, "2024", prediction=True) == rows
    cart = tmp_path / "cart.csv"  # frame,class,source,x,y,z,distance (m)
    write_metadata_csv(cart, rows, edition="2024", prediction=True, cartesian=True)
    assert all(len(line.split(",")) == 7 for line in cart.read_text().splitlines())
    back = read_metadata_csv(cart, "2024", prediction=True)
    assert all(_close(a, b) and a.distance == b.distance for a, b in zip(back, rows))
    with pytest.raises(InputError, match="without distance"):
        write_metadata_csv(tmp_path / "x.csv", [LabelRow(0, 0, 0, 0.0, 0.0)], edition="2024")


def test_2024_column_counts(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("1,2,0,10,5,150\n2,2,0,10,5,150,9,9\n9,1,0\n")  # 6 cols; 8 and 3 ignored as official
    meta = load_metadata(path, "2024")
    assert [(r.frame, r.distance) for r in meta.rows] == [(1, 1.5)] and meta.last_frame == 9
    assert (meta.ignored_lines, meta.first_ignored, meta.row_lines) == (2, (2, 8), (1,))
    for text, match in [("1,2,10,5\n", "4 columns, no distance"), ("1,2,0,10,5\n", "5 columns, no distance"),
                        ("1,2,0,10,5,150.5\n", "not whole centimetres")]:
        path.write_text(text)
        with pytest.raises(InputError, match=match):
            load_metadata(path, "2024")
    path.write_text("1,2,0,10,5,1.5\n")
    assert load_metadata(path, "2024", prediction=True).rows[0].distance == 1.5


@pytest.mark.parametrize(
    "text,line,what",
    [
        ("frame,class,track,azi,ele\n0,1,0,10,0\n", 1, "frame"),
        ("0,1,0,10,0\n3.0,1,0,10,0\n", 2, "frame"),
        ("0,1,0,10,0\n1,x,0,10,0\n", 2, "class"),
        ("0,1,0,nan,0\n", 1, "coordinate"),
        ("0,1,0,10,abc\n", 1, "coordinate"),
    ],
)
def test_corrupt_csv_names_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        read_metadata_csv(path)
    message = str(exc.value)
    assert str(path) in message and f"line {line}" in message and what in message
    assert "\n" not in message


def test_unknown_edition_and_non_finite_write(tmp_path):
    with pytest.raises(InputError, match="edition"):
        read_metadata_csv(tmp_path / "x.csv", edition="2020")
    with pytest.raises(InputError, match="non-finite"):
        write_metadata_csv(tmp_path / "x.csv", [LabelRow(0, 0, 0, float("nan"), 0.0)])
    assert list(tmp_path.iterdir()) == []  # atomic: nothing left behind


# -- targets --------------------------------------------------------------------------------------


def test_labels_to_targets_marks_active_cells_with_unit_doa():
    sed, doa = labels_to_targets(ROWS, n_frames=10, num_classes=13)  # frame 12 is outside
    assert sed.shape == (10, 13) and doa.shape == (10, 13, 3) and sed.dtype == doa.dtype == np.float32
    assert {tuple(i) for i in np.argwhere(sed)} == {(0, 3), (7, 0)}
    a = math.radians(179)
    np.testing.assert_allclose(doa[7, 0], [math.cos(a), math.sin(a), 0], atol=1e-6)
    assert np.all(doa[sed == 0] == 0)
    np.testing.assert_allclose(np.linalg.norm(doa[sed == 1], axis=-1), 1, atol=1e-6)


def test_longest_track_wins_for_same_class_overlap():
    short = [LabelRow(f, 2, 5, 90.0, 0.0) for f in (3, 4)]
    long = [LabelRow(f, 2, 1, 0.0, 0.0) for f in range(2, 8)]
    sed, doa = labels_to_targets(short + long, n_frames=8, num_classes=3)
    assert sed[:, 2].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(doa[3, 2], [1, 0, 0], atol=1e-7)  # the 6-frame track, not the 2-frame one


def test_targets_round_trip():
    rows = [r for r in ROWS if r.frame < 10 and r.track == 0] + [LabelRow(9, 1, 0, -20.0, -60.0)]
    sed, doa = labels_to_targets(rows, n_frames=10, num_classes=13)
    back = targets_to_labels(sed > 0.5, doa * 0.7)  # any norm
    assert len(back) == len(rows)
    assert all(_close(a, b, tol=1e-4) for a, b in zip(back, sorted(rows, key=lambda r: (r.frame, r.class_idx))))
    with pytest.raises(InputError, match="doa"):
        targets_to_labels(sed > 0.5, doa[..., :2])


# -- dataset layout -----------------------------------------------------------------------------


def _touch_pair(root, folder, name):
    (root / "foa_dev" / folder).mkdir(parents=True, exist_ok=True)
    (root / "metadata_dev" / folder).mkdir(parents=True, exist_ok=True)
    (root / "foa_dev" / folder / f"{name}.wav").write_bytes(b"")
    (root / "metadata_dev" / folder / f"{name}.csv").write_text("")


def test_dcase2021_folds(tmp_path):
    for fold in range(1, 7):
        _touch_pair(tmp_path, "dev-test" if fold == 6 else "dev-val" if fold == 5 else "dev-train", f"fold{fold}_room1_mix001")
    names = lambda pairs: [w.stem for w, _ in pairs]  # noqa: E731
    assert names(list_pairs(tmp_path, "train", "dcase2021")) == [f"fold{k}_room1_mix001" for k in (1, 2, 3, 4)]
    assert names(list_pairs(tmp_path, "val", "dcase2021")) == ["fold5_room1_mix001"]
    test = list_pairs(tmp_path, ["test"], "dcase2021")
    assert test == [(tmp_path / "foa_dev/dev-test/fold6_room1_mix001.wav", tmp_path / "metadata_dev/dev-test/fold6_room1_mix001.csv")]
    assert names(list_pairs(tmp_path, "fold2", "dcase2021")) == ["fold2_room1_mix001"]
    assert len(LAYOUTS["dcase2021"].class_names) == 12 and LAYOUTS["starss23"].num_classes == 13


def test_starss23_and_synth_splits(tmp_path):
    for folder in ("dev-train-sony", "dev-train-tau", "dev-test-sony", "dev-test-tau"):
        _touch_pair(tmp_path, folder, f"{folder}_mix001")
    assert [w.parent.name for w, _ in list_pairs(tmp_path, "test", "starss23")] == ["dev-test-sony", "dev-test-tau"]
    assert len(list_pairs(tmp_path, layout="starss23")) == 4
    synth = tmp_path / "synth"
    for split in ("train", "val", "my-split"):
        _touch_pair(synth, split, "scene_000")
    assert [w.parent.name for w, _ in list_pairs(synth, "my-split")] == ["my-split"]
    with pytest.raises(InputError, match="available: my-split, train, val"):
        list_pairs(synth, "test")


def test_layout_errors(tmp_path):
    with pytest.raises(InputError, match="not a DCASE dataset folder"):
        list_pairs(tmp_path)
    _touch_pair(tmp_path, "train", "a")
    (tmp_path / "metadata_dev/train/a.csv").unlink()
    with pytest.raises(InputError, match="no metadata file"):
        list_pairs(tmp_path, "train")
