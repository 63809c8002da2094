"""Record the OFFICIAL DCASE SELD metric outputs on random cases, as test data for CI.

Developer tool, not part of the package: it imports the official evaluation code from the
checkouts given on the command line (it vendors nothing), generates random reference and
prediction CSVs per edition, scores them with the official ``ComputeSELDResults`` (folder
reading, CSV loading, segmenting and metrics all official), and writes cases plus official
outputs to ``tests/data/dcase_official/<edition>.json``. tests/test_metrics_official.py replays
them through ``glfer_edge.metrics`` without the official code. How to rerun: tests/README.md.

Run it with an interpreter that has what the official modules import (numpy < 1.24 keeps
``np.float``/``np.NaN``; scipy, scikit-learn, joblib, IPython, matplotlib, librosa), e.g.::

    python tests/tools/record_official_metrics.py \\
        --official-dir 2021=/tmp/seld-dcase2021 --official-dir 2022=/tmp/seld-dcase2022 \\
        --official-dir 2023=/tmp/seld-dcase2023 --official-dir 2024=/tmp/DCASE2024_seld_baseline

Shims (applied here, the official files are never edited; each is listed in the output's "shims"):
* the 2024 ``cls_feature_class`` imports ``cls_vid_features`` (torch/torchvision ResNet-50) and
  ``cv2`` for video features, which scoring never calls: empty modules stand in when missing;
* with numpy >= 1.24 / 2.0, ``np.float`` / ``np.NaN`` are set back to ``float`` / ``np.nan``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import random
import sys
import tempfile
import traceback
import types
from pathlib import Path

EDITIONS = ("2021", "2022", "2023", "2024")
NUM_CLASSES = {"2021": 12, "2022": 13, "2023": 13, "2024": 13}
# edge cases cycled over the cases of each edition (several appear in one case)
TAGS = ("empty_ref", "empty_pred", "missing_pred", "overlap_same_class", "cross_border", "absent_class",
        "track_reuse", "beyond_ref", "last_frame_x10", "near_threshold", "disjoint_frames", "wrong_class")
OFFICIAL_FILES = ("SELD_evaluation_metrics.py", "metrics/SELD_evaluation_metrics.py", "cls_compute_seld_results.py",
                  "cls_feature_class.py", "parameters.py", "parameter.py")
_MODULES = ("SELD_evaluation_metrics", "metrics", "metrics.SELD_evaluation_metrics", "cls_compute_seld_results",
            "cls_feature_class", "parameters", "parameter", "cls_vid_features", "cv2")


# -- random cases --------------------------------------------------------------------------------


def _event(rng: random.Random, cls: int, track: int, start: int, length: int, dist_cm: int | None) -> list[list]:
    """Reference rows of one moving source: integer degrees (and cm) as in the official metadata."""
    azi, ele = rng.randint(-180, 179), rng.randint(-60, 60)
    step = rng.choice((0, 0, 1, 2, -3))
    rows = []
    for k in range(length):
        a = (azi + step * k + 180) % 360 - 180
        row = [start + k, cls, track, a, max(-90, min(90, ele + (k // 4) * (1 if step > 0 else 0)))]
        if dist_cm is not None:
            row.append(max(20, dist_cm + (k % 5) * step))
        rows.append(row)
    return rows


def _perturb(rng: random.Random, row: list, edition: str, near: bool) -> tuple[float, float, float | None]:
    """A predicted (azimuth, elevation, distance m) near a reference row."""
    err = rng.choice((19.0, 19.5, 20.5, 21.0)) if near else rng.choice((0.0, 0.5, 3.0, 8.0, 15.0, 30.0, 90.0))
    azi = row[3] + rng.uniform(-err, err)
    ele = max(-89.0, min(89.0, row[4] + rng.uniform(-err, err) / 2))
    dist = None
    if len(row) > 5:
        ref_m = row[5] / 100
        rel = rng.choice((0.95, 1.05, 0.99, 1.01)) if near else rng.choice((0.0, 0.05, 0.2, 0.5, 1.5))
        dist = max(0.0, ref_m * (1 + rng.choice((-1, 1)) * rel * rng.random()))
        if rng.random() < 0.05:
            dist = 0.0  # the baseline clamps negative distances to 0
    return azi, ele, dist


def _fmt(v: float) -> str:
    return repr(round(float(v), 4))  # short text; both sides read the same digits


def _pred_line(rng: random.Random, frame: int, cls: int, track: int, azi: float, ele: float, dist: float | None,
               edition: str, polar: bool) -> str:
    """A prediction line in the format the official edition reads (Cartesian except 2024 polar)."""
    if polar:  # 2024 only: frame,class,source,azi,ele,dist(m)
        return f"{frame},{cls},{track},{_fmt(azi)},{_fmt(ele)},{_fmt(dist)}"
    norm = rng.choice((1.0, 1.0, 0.7, 1.3))  # ACCDOA vector length: the direction is what counts
    a, e = math.radians(azi), math.radians(ele)
    xyz = [norm * math.cos(a) * math.cos(e), norm * math.sin(a) * math.cos(e), norm * math.sin(e)]
    words = [str(frame), str(cls), str(track)] + [_fmt(v) for v in xyz]
    if edition in ("2023", "2024"):
        words.append(_fmt(dist if dist is not None else 0.0))  # 2023 reads and drops it; 2024 scores it (m)
    return ",".join(words)


def make_file(rng: random.Random, edition: str, tags: set[str]) -> tuple[str, str | None]:
    """(reference CSV text, prediction CSV text or None = no prediction file) of one recording."""
    c = NUM_CLASSES[edition]
    with_dist = edition == "2024" or (edition == "2023" and rng.random() < 0.5)
    if "empty_ref" in tags:
        ref_rows: list[list] = []
    else:
        length = rng.randint(12, 50)
        ref_rows = []
        classes = rng.sample(range(c), rng.randint(1, 4))
        for i, cls in enumerate(classes):
            for _ in range(rng.randint(1, 2)):
                start = rng.randint(0, length - 3)
                if "cross_border" in tags:
                    start = 10 * rng.randint(0, length // 10) + rng.randint(6, 9)
                dur = rng.randint(2, 14)
                track = rng.randint(0, 2) if "track_reuse" not in tags else 0
                ref_rows += _event(rng, cls, track, start, dur, rng.randint(50, 450) if with_dist else None)
        if "overlap_same_class" in tags:  # a second source of the same class at the same time
            cls = classes[0]
            first = min(r[0] for r in ref_rows if r[1] == cls)
            track = 0 if "track_reuse" in tags else 5
            ref_rows += _event(rng, cls, track, first, rng.randint(3, 15), rng.randint(50, 450) if with_dist else None)
        if "last_frame_x10" in tags:  # the official 2022+ code drops the reference's last frame
            last = max(r[0] for r in ref_rows)
            end = 10 * (last // 10 + 1)
            ref_rows += _event(rng, classes[-1], 1, end - 1, 2, rng.randint(50, 450) if with_dist else None)
    ref_rows.sort(key=lambda r: r[0])
    ref_text = "".join(",".join(str(v) for v in r) + "\n" for r in ref_rows)

    if "missing_pred" in tags and rng.random() < 0.5:
        return ref_text, None
    if "empty_pred" in tags:
        return ref_text, ""
    polar = edition == "2024" and rng.random() < 0.4
    near = "near_threshold" in tags
    lines: list[tuple[int, str]] = []
    track_of: dict[tuple, int] = {}
    for r in ref_rows:
        if rng.random() < 0.12:  # missed frame
            continue
        shift = rng.choice((0, 0, 0, 0, 1, -1))
        frame = max(0, r[0] + shift)
        if "disjoint_frames" in tags and r[1] % 2 == 0:
            frame = r[0] + 5 if r[0] % 10 < 5 else r[0] - 5  # same segment, other frames
        cls = r[1]
        if "wrong_class" in tags and rng.random() < 0.15:
            cls = (cls + 1) % c
        key = (r[1], r[2])
        track = track_of.setdefault(key, 0 if "track_reuse" in tags else rng.randint(0, 2))
        azi, ele, dist = _perturb(rng, r, edition, near)
        lines.append((frame, _pred_line(rng, frame, cls, track, azi, ele, dist, edition, polar)))
    last = max((r[0] for r in ref_rows), default=30)
    spurious = rng.randint(0, 2) + (2 if "absent_class" in tags else 0)
    present = {r[1] for r in ref_rows}
    for _ in range(spurious):
        absent = [k for k in range(c) if k not in present] or list(range(c))
        cls = rng.choice(absent)
        start = rng.randint(0, last)
        for k in range(rng.randint(1, 8)):
            lines.append((start + k, _pred_line(rng, start + k, cls, rng.randint(0, 2), rng.uniform(-180, 180),
                                                rng.uniform(-60, 60), rng.uniform(0.3, 5), edition, polar)))
    if "beyond_ref" in tags:  # predictions at and after the reference's last frame
        for k in range(rng.randint(1, 15)):
            cls = rng.randrange(c)
            lines.append((last + k, _pred_line(rng, last + k, cls, 0, rng.uniform(-180, 180), 0.0, 2.0,
                                               edition, polar)))
    lines.sort(key=lambda t: t[0])  # stable: same-frame rows keep their order
    return ref_text, "".join(line + "\n" for _, line in lines)


def make_case(rng: random.Random, edition: str, index: int) -> dict:
    tags = {TAGS[index % len(TAGS)], TAGS[(index // len(TAGS) + index * 5 + 1) % len(TAGS)]}
    if index % 5 == 4:
        tags |= {"overlap_same_class", "track_reuse"}
    n_files = rng.randint(1, 4) if index % 3 else rng.randint(2, 5)
    refs, preds = {}, {}
    for k in range(n_files):
        # the edge case of an empty or missing file hits one recording; the others are ordinary
        file_tags = tags if k == 0 else tags - {"empty_ref", "missing_pred", "empty_pred"}
        ref, pred = make_file(rng, edition, file_tags)
        name = f"fold{rng.randint(1, 4)}_room{rng.randint(1, 9)}_mix{index:03d}{k}.csv"
        refs[name] = ref
        if pred is not None:
            preds[name] = pred
    if not preds:  # keep at least one prediction file; an empty prediction folder is its own case
        name = sorted(refs)[-1]
        preds[name] = make_file(rng, edition, set())[1] or ""
    return {"id": f"{edition}-{index:03d}", "tags": sorted(tags), "refs": refs, "preds": preds}


def _ref(edition: str, f: int, c: int, azi: float, ele: float = 0.0, cm: float = 200, track: int = 0) -> str:
    return f"{f},{c},{track},{azi:g},{ele:g}" + (f",{cm:g}" if edition == "2024" else "") + "\n"


def _pred(edition: str, f: int, c: int, azi: float, ele: float = 0.0, m: float = 2.0) -> str:
    return _pred_line(random.Random(0), f, c, 0, azi, ele, m, edition, False) + "\n"


def edge_cases(edition: str) -> list[dict]:
    """Hand-made inputs where the official code crashes, divides by (almost) zero or drops input.

    ``expect``: what glfer-edge does, checked by the test: "equal" (same numbers as the official
    code), "refuse" (InputError naming file, line and fix) or "scored" (we score it, the official
    code misreads or crashes: tests/README.md)."""
    c_out = 12 if edition == "2021" else 13
    base_ref = "".join(_ref(edition, f, 1, 30) for f in range(25))
    base_pred = "".join(_pred(edition, f, 1, 33) for f in range(2, 25))
    polar_pred = "".join(f"{f},1,0,33,0\n" for f in range(25))  # frame,class,track,azi,ele: no distance
    cases = [
        # only reference row in its last frame, which 2022+ drop: Nref = 0, ER = insertions / eps
        ("nref_zero_with_predictions", {"a.csv": _ref(edition, 10, 1, 30)}, {"a.csv": _pred(edition, 5, 1, 30)},
         "equal", True),
        # one file: leave-one-out leaves nothing; t(0.975, 0) is NaN, so every interval is NaN
        ("jackknife_one_file", {"a.csv": base_ref}, {"a.csv": base_pred}, "equal", True),
        # a class index >= C: the official code ignores it (fewer references, other numbers)
        ("class_beyond_num_classes", {"a.csv": base_ref + _ref(edition, 3, c_out, 90)}, {"a.csv": base_pred},
         "refuse", False),
        # a line of 8 columns: the official loader skips it silently
        ("unread_column_count", {"a.csv": base_ref + "30,1,0,30,0,0,0,0\n"}, {"a.csv": base_pred}, "refuse", False),
    ]
    if edition == "2024":
        cases += [
            # prediction without distance meeting a reference: AssertionError in the official metrics
            ("prediction_without_distance", {"a.csv": base_ref}, {"a.csv": polar_pred}, "refuse", False),
            # reference at 0 cm: relative error divides by eps
            ("reference_distance_zero", {"a.csv": "".join(_ref(edition, f, 1, 30, cm=0) for f in range(12))},
             {"a.csv": "".join(_pred(edition, f, 1, 31, m=1.0) for f in range(12))}, "equal", False),
            # polar rows then a Cartesian last row: the official loader converts the whole file as Cartesian
            ("mixed_polar_cartesian", {"a.csv": base_ref},
             {"a.csv": "".join(f"{f},1,0,33,0,2.0\n" for f in range(24)) + _pred(edition, 24, 1, 33)}, "refuse", False),
            # predictions in centimetres: relative errors near 100, all spatial FPs
            ("prediction_in_cm", {"a.csv": base_ref}, {"a.csv": "".join(f"{f},1,0,33,0,200\n" for f in range(25))},
             "refuse", False),
            # references in metres: read as centimetres, divided by 100
            ("reference_in_m", {"a.csv": "".join(f"{f},1,0,30,0,2.5\n" for f in range(25))},
             {"a.csv": "".join(f"{f},1,0,30,0,2.5\n" for f in range(25))}, "refuse", False),
        ]
    else:
        # polar predictions: 2021 reads them as Cartesian (x = azimuth...), 2022/2023 crash (IndexError)
        cases.append(("polar_predictions", {"a.csv": base_ref}, {"a.csv": polar_pred}, "scored", False))
    return [{"id": f"{edition}-edge-{name}", "tags": ["edge", name], "expect": expect, "jackknife": jack,
             "refs": refs, "preds": preds} for name, refs, preds, expect, jack in cases]


# -- the official code ---------------------------------------------------------------------------


def load_official(edition: str, folder: Path) -> tuple[types.ModuleType, dict, list[str], dict]:
    """Import the official modules of one edition; returns (cls_compute_seld_results, params, shims, hashes)."""
    for name in _MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    shims = []
    import numpy as np

    if not hasattr(np, "float"):
        np.float = float  # removed in numpy 1.24; the 2021/2022 code reads np.float(...).eps
        shims.append("np.float = float")
    if not hasattr(np, "NaN"):
        np.NaN = np.nan  # removed in numpy 2.0; the 2024 metrics return np.NaN
        shims.append("np.NaN = np.nan")
    if edition == "2024":
        for name in ("cls_vid_features", "cv2"):
            try:
                importlib.import_module(name)
            except ImportError:
                stub = types.ModuleType(name)
                stub.VideoFeatures = type("VideoFeatures", (), {})  # video features: unused when scoring
                sys.modules[name] = stub
                shims.append(f"empty module {name} (video features, not used by scoring)")
    with contextlib.redirect_stdout(io.StringIO()):  # get_params prints every parameter
        params_mod = importlib.import_module("parameter" if edition == "2021" else "parameters")
        params = params_mod.get_params()
        compute = importlib.import_module("cls_compute_seld_results")
    hashes = {}
    for rel in OFFICIAL_FILES:
        path = folder / rel
        if path.is_file():
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return compute, params, shims, hashes


def _num(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v  # strict JSON: NaN (official "no estimate") as null


def _values(edition: str, out) -> dict:
    """The official return tuple as named values (classwise: rows of the official array)."""
    if edition == "2021":
        er, f, le, lr, seld = out
        return {"ER": _num(er), "F": _num(f), "LE": _num(le), "LR": _num(lr), "SELD": _num(seld)}
    if edition == "2024":
        er, f, ae, de, rde, lr, seld, cw = out
        names = ("ER", "F", "AE", "DE", "RDE", "LR", "SELD")
        res = dict(zip(names, (_num(v) for v in (er, f, ae, de, rde, lr, seld))))
    else:
        er, f, le, lr, seld, cw = out
        names = ("ER", "F", "LE", "LR", "SELD")
        res = dict(zip(names, (_num(v) for v in (er, f, le, lr, seld))))
    if len(cw):
        res["classwise"] = {n: [_num(v) for v in row] for n, row in zip(names, cw)}
    return res


def _jackknife(edition: str, out) -> dict:
    """Official get_SELD_Results(is_jackknife=True): [value, (low, high)] pairs -> {name: [low, high]}."""
    names = ("ER", "F", "AE", "DE", "RDE", "LR", "SELD") if edition == "2024" else ("ER", "F", "LE", "LR", "SELD")
    ci = {n: [_num(pair[1][0]), _num(pair[1][1])] for n, pair in zip(names, out[: len(names)])}
    cw_ci = out[len(names)][1]
    if len(cw_ci):
        ci["classwise"] = {n: [[_num(a), _num(b)] for a, b in rows] for n, rows in zip(names, cw_ci)}
    return ci


def write_case(root: Path, case: dict) -> tuple[Path, Path]:
    """A recorded case as the official layout: (reference root holding ``dev-test/``, prediction folder)."""
    ref_dir, pred_dir = root / "ref" / "dev-test", root / "pred"
    ref_dir.mkdir(parents=True)
    pred_dir.mkdir()
    for name, text in case["refs"].items():
        (ref_dir / name).write_text(text)
    for name, text in case["preds"].items():
        (pred_dir / name).write_text(text)
    return ref_dir.parent, pred_dir


def score(compute, params: dict, edition: str, case: dict, average: str, jackknife: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ref_root, pred_dir = write_case(Path(tmp), case)
        p = dict(params, average=average)
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet():
                obj = compute.ComputeSELDResults(p, ref_files_folder=str(ref_root))
                if edition == "2021":
                    return _values(edition, obj.get_SELD_Results(str(pred_dir)))
                res = _values(edition, obj.get_SELD_Results(str(pred_dir)))
                if jackknife:
                    res["ci"] = _jackknife(edition, obj.get_SELD_Results(str(pred_dir), is_jackknife=True))
                return res
        except Exception as exc:  # recorded: what the official code does on this input
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            return {"error": f"{type(exc).__name__}: {exc}", "at": f"{Path(frame.filename).name}:{frame.lineno}"}


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        warnings.simplefilter("ignore")  # np.float deprecation, mean of empty slice: recorded as values
        yield


def record(edition: str, folder: Path, n_cases: int, seed: int) -> dict:
    compute, params, shims, hashes = load_official(edition, folder)
    import numpy as np
    import scipy

    rng = random.Random(f"{seed}-{edition}")
    averages = ("micro",) if edition == "2021" else ("macro", "micro")
    cases = []
    for i in range(n_cases):
        case = make_case(rng, edition, i)
        case["official"] = {}
        for average in averages:
            jack = average == "macro" and i % 4 == 1
            case["official"][average] = score(compute, params, edition, case, average, jack)
        cases.append(case)
    # an empty prediction folder: the official code scores nothing and returns its empty-count values
    empty = {"id": f"{edition}-empty-folder", "tags": ["no_pred_files"], "refs": cases[1]["refs"], "preds": {},
             "official": {a: score(compute, params, edition, {"refs": cases[1]["refs"], "preds": {}}, a, False)
                          for a in averages}}
    cases.append(empty)
    for case in edge_cases(edition):
        jack = case.pop("jackknife") and edition != "2021"
        case["official"] = {a: score(compute, params, edition, case, a, jack and a == "macro") for a in averages}
        cases.append(case)
    sys.path.remove(str(folder))
    keys = ("lad_doa_thresh", "lad_dist_thresh", "lad_reldist_thresh", "segment_based_metrics", "evaluate_distance",
            "average", "unique_classes", "label_hop_len_s", "max_audio_len_s")
    used = {k: (len(params[k]) if isinstance(params[k], dict) else params[k]) for k in keys if k in params}
    used = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in used.items()}
    return {
        "edition": edition, "num_classes": NUM_CLASSES[edition], "seed": seed,
        "official_files_sha256": hashes, "official_params": used,
        "numpy": np.__version__, "scipy": scipy.__version__, "python": sys.version.split()[0], "shims": shims,
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-dir", action="append", default=[], metavar="EDITION=DIR",
                    help="checkout of the official code, e.g. 2021=/tmp/seld-dcase2021 (repeat per edition)")
    ap.add_argument("--cases", type=int, default=72, help="random cases per edition (default 72)")
    ap.add_argument("--seed", type=int, default=34)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "dcase_official"))
    args = ap.parse_args(argv)
    dirs = {}
    for item in args.official_dir:
        edition, _, folder = item.partition("=")
        if edition not in EDITIONS or not Path(folder).is_dir():
            ap.error(f"--official-dir {item}: expected EDITION=DIR with EDITION in {', '.join(EDITIONS)}")
        dirs[edition] = Path(folder).resolve()
    if not dirs:
        ap.error("pass at least one --official-dir EDITION=DIR")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for edition, folder in sorted(dirs.items()):
        data = record(edition, folder, args.cases, args.seed)
        path = out / f"{edition}.json"
        path.write_text(json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n")
        errors = sum("error" in r for c in data["cases"] for r in c["official"].values())
        print(f"{edition}: {len(data['cases'])} cases, {errors} official errors -> {path} "
              f"({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
