"""glfer_edge.metrics against outputs of the OFFICIAL DCASE code, recorded as data.

tests/data/dcase_official/<edition>.json holds random reference/prediction CSVs and what the
official evaluation code of that edition returned on them (tests/tools/record_official_metrics.py
ran it; tests/README.md says how to rerun). Here the same CSVs go through our readers and
``evaluate_folders``; every reported value must equal the official one within 1e-6, and where the
official code crashed we must refuse with an InputError instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from glfer_edge.errors import InputError
from glfer_edge.metrics import evaluate_folders, result_names
from tools.record_official_metrics import write_case

DATA = Path(__file__).parent / "data" / "dcase_official"
EDITIONS = ("2021", "2022", "2023", "2024")
TOL = 1e-6
MIN_CASES = 50


def _load(edition: str) -> dict:
    return json.loads((DATA / f"{edition}.json").read_text())


_write = write_case  # the recording tool's own layout of a case

def _diff(ours: float | None, official: float | None) -> float:
    """Absolute difference; None (official NaN: no estimate) must meet NaN."""
    if official is None or ours is None:
        both_missing = (official is None) and (ours is None or math.isnan(ours))
        return 0.0 if both_missing else math.inf
    return abs(ours - official)


def compare(result, official: dict) -> dict[str, float]:
    """Largest |ours - official| per reported value (headline, class-wise rows, CI bounds)."""
    out = {}
    for name, value in result.values().items():
        out[name] = _diff(value, official[name])
    rows = result.classwise_values()
    assert (rows is None) == ("classwise" not in official)
    for name, row in (rows or {}).items():
        out[f"classwise/{name}"] = max(_diff(a, b) for a, b in zip(row, official["classwise"][name]))
    if "ci" in official:
        for name in result_names(result.edition):
            out[f"ci/{name}"] = max(_diff(a, b) for a, b in zip(result.ci[name], official["ci"][name]))
            if rows is not None:
                out[f"ci/classwise/{name}"] = max(
                    _diff(a, b) for lo_hi, off in zip(result.ci[f"classwise/{name}"], official["ci"]["classwise"][name])
                    for a, b in zip(lo_hi, off))
    return out


def _cases(edition: str) -> list[tuple[str, dict, str]]:
    data = _load(edition)
    return [(edition, case, average) for case in data["cases"] for average in case["official"]]


@pytest.mark.parametrize("edition", EDITIONS)
def test_recorded_official_outputs(edition, tmp_path):
    data = _load(edition)
    compared, largest, refused, where = 0, 0.0, 0, ""
    for i, case in enumerate(data["cases"]):
        ref_dir, pred_dir = _write(tmp_path / str(i), case)
        for average, official in case["official"].items():
            kwargs = dict(edition=edition, average=average, num_classes=data["num_classes"], ci="ci" in official)
            expect = case.get("expect") or ("refuse" if "error" in official or not case["preds"] else "equal")
            if expect == "refuse":
                # the official code crashed (empty reference), scored an empty folder or dropped input: we refuse
                with pytest.raises(InputError):
                    evaluate_folders(ref_dir, pred_dir, **kwargs)
                refused += 1
                continue
            result = evaluate_folders(ref_dir, pred_dir, **kwargs)
            if expect == "scored":  # the official code misreads or crashes (tests/README.md); we score it
                assert result.num_files == len(case["preds"])
                continue
            diffs = compare(result, official)
            worst = max(diffs, key=diffs.get)
            assert diffs[worst] <= TOL, f"{case['id']} {average}: {worst} differs by {diffs[worst]}"
            if diffs[worst] >= largest:
                largest, where = diffs[worst], f"{worst} of {case['id']} {average}"
        official_ok = "error" not in next(iter(case["official"].values()))
        compared += "expect" not in case and official_ok and bool(case["preds"])
    assert compared >= MIN_CASES, f"only {compared} comparable cases recorded for {edition}"
    print(f"\n{edition}: {compared} cases equal to the official code, largest difference {largest:.3g} ({where}), "
          f"{refused} refused where the official code crashed, had no prediction or dropped input")


@pytest.mark.parametrize("edition", EDITIONS)
def test_recorded_cases_cover_the_edge_cases(edition):
    data = _load(edition)
    tags = {t for case in data["cases"] for t in case["tags"]}
    assert {"empty_ref", "empty_pred", "overlap_same_class", "cross_border", "absent_class", "track_reuse",
            "beyond_ref"} <= tags
    if edition != "2021":
        assert sum("ci" in r for c in data["cases"] for r in c["official"].values()) >= 5  # jackknife cases
