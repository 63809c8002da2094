"""DCASE Task 3 metadata: label rows, CSV formats and frame-wise training targets.

A DCASE metadata CSV has no header; each line is one active source in one 100-ms label frame
(frame k covers [0.1 k, 0.1 (k + 1)) s). Columns by edition, as the official loaders read them:

======== ====================== ====================== ====================== =============================
columns  2021                   2022                   2023                   2024
======== ====================== ====================== ====================== =============================
4        (line ignored)         (line ignored)         (line ignored)         frame,class,azi,ele (refused)
5        frame,class,track,     frame,class,track,     frame,class,track,     frame,class,track,azi,ele
         azi,ele                azi,ele                azi,ele                (refused: no distance)
6        frame,class,track,     frame,class,track,     frame,class,track,     frame,class,track,azi,ele,dist
         x,y,z                  x,y,z                  azi,ele,dist
7        (line ignored)         (line ignored)         frame,class,track,     frame,class,track,x,y,z,dist
                                                       x,y,z,dist
======== ====================== ====================== ====================== =============================

Lines with any other column count are ignored by the official loaders (their frame still counts
for the scored length, see :attr:`MetadataFile.last_frame`); ``glfer-edge evaluate`` refuses them.
Angles are degrees; x is to the front, y to the left, z up; azimuth counter-clockwise from +x,
elevation up from the horizontal plane. Cartesian rows are converted to polar on reading with the
official formulas, so a prediction file scores the same here as with the official code.

DCASE 2024 distances: the official scorer divides REFERENCE distances by 100 (metadata in integer
centimetres, ``cm2m=True``) and reads PREDICTION distances as metres. :class:`LabelRow` holds
metres; ``prediction=`` tells the reader and writer which unit the file uses, and a distance in
the wrong unit (a fractional reference "centimetre", a prediction beyond
:data:`MAX_PREDICTED_DISTANCE_M`) is refused. The official loader converts a 2024 file from
Cartesian only when its *last* line has 7 columns, so a file that mixes 6- and 7-column rows is
refused here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glfer_edge._fileio import atomic_path
from glfer_edge.errors import InputError

EDITIONS: tuple[str, ...] = ("2021", "2022", "2023", "2024")
# 2024 predictions are in metres: no DCASE room is this deep, so a larger value is read as centimetres
MAX_PREDICTED_DISTANCE_M = 50.0

_POLAR_FIX = "expected rows 'frame,class,track,azimuth,elevation' (integers for the first three, no header)"


@dataclass(frozen=True)
class LabelRow:
    """One active source in one label frame; DOA in polar degrees. ``distance``: metres for 2024,
    the file's own column for 2023 (STARSS23 metadata: centimetres), else None."""

    frame: int
    class_idx: int
    track: int
    azimuth: float
    elevation: float
    distance: float | None = None


@dataclass(frozen=True)
class MetadataFile:
    """A parsed metadata CSV.

    ``last_frame`` is the largest frame index on any line, ignored lines included: the official
    2022/2023 scorer derives the scored length of a reference file from it. None for an empty file.
    ``ignored_lines`` flags a file written for another edition (e.g. 7-column 2023 rows read as 2021).
    """

    rows: tuple[LabelRow, ...]
    last_frame: int | None
    ignored_lines: int = 0  # lines with a column count this edition does not read
    row_lines: tuple[int, ...] = ()  # 1-based line number of each row, for errors naming the row
    first_ignored: tuple[int, int] | None = None  # (line, column count) of the first ignored line


def check_edition(edition: str | int) -> str:
    """Normalise a DCASE edition ('2021' to '2024')."""
    edition = str(edition)
    if edition not in EDITIONS:
        raise InputError(f"unknown DCASE edition {edition!r}; choose one of {', '.join(EDITIONS)}")
    return edition


# -- coordinates (official conversion formulas, float64) -------------------------------------


def polar_to_cartesian(azimuth: np.ndarray | float, elevation: np.ndarray | float) -> np.ndarray:
    """Unit DOA vectors (..., 3) from azimuth/elevation in degrees."""
    azi = np.asarray(azimuth, dtype=np.float64) * np.pi / 180
    ele = np.asarray(elevation, dtype=np.float64) * np.pi / 180
    cos_ele = np.cos(ele)
    return np.stack([np.cos(azi) * cos_ele, np.sin(azi) * cos_ele, np.sin(ele)], axis=-1)


def cartesian_to_polar(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation in degrees of vectors (..., 3); the norm is ignored (ACCDOA-safe)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    azimuth = np.arctan2(y, x) * 180 / np.pi
    elevation = np.arctan2(z, np.sqrt(x**2 + y**2)) * 180 / np.pi
    return azimuth, elevation


# -- reading ------------------------------------------------------------------------------------


def load_metadata(path: str | Path, edition: str | int = "2023", *, prediction: bool = False) -> MetadataFile:
    """Parse a DCASE metadata CSV of the given edition (see the module docstring).

    Raises InputError naming the file and line for a header, a non-integer frame/class/track or a
    non-finite coordinate; for 2024 also for a row without distance, a negative distance, a
    distance in the wrong unit (``prediction``: metres, else centimetres) or mixed 6/7-column rows.
    Blank lines are skipped.
    """
    edition = check_edition(edition)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read DCASE metadata {path}: {exc}") from None
    rows: list[LabelRow] = []
    row_lines: list[int] = []
    last_frame: int | None = None
    ignored = 0
    first_ignored: tuple[int, int] | None = None
    width_2024: tuple[int, int] | None = None  # (columns, line) of the first 2024 row
    for lineno, line in enumerate(text.splitlines(), start=1):
        words = line.strip().split(",")
        if words == [""]:
            continue
        frame = _parse(int, words[0], path, lineno, "frame")
        last_frame = frame if last_frame is None else max(last_frame, frame)
        if edition == "2024":
            row = _parse_row_2024(frame, words, path, lineno, prediction)
            if row is not None:
                if width_2024 is None:
                    width_2024 = (len(words), lineno)
                elif width_2024[0] != len(words):
                    raise InputError(
                        f"{path} line {lineno}: {len(words)} columns after {width_2024[0]}-column rows (line "
                        f"{width_2024[1]}); the official 2024 loader reads a whole file as polar or Cartesian, "
                        "write one format per file"
                    )
        else:
            row = _parse_row(frame, words, edition, path, lineno)
        if row is None:
            ignored += 1
            first_ignored = first_ignored or (lineno, len(words))
        else:
            rows.append(row)
            row_lines.append(lineno)
    return MetadataFile(rows=tuple(rows), last_frame=last_frame, ignored_lines=ignored, row_lines=tuple(row_lines),
                        first_ignored=first_ignored)


def read_metadata_csv(path: str | Path, edition: str | int = "2023", *, prediction: bool = False) -> list[LabelRow]:
    """The label rows of a DCASE metadata CSV, in file order (polar degrees; 2024 distances in metres)."""
    return list(load_metadata(path, edition, prediction=prediction).rows)


def _parse_row(frame: int, words: list[str], edition: str, path: Path, lineno: int) -> LabelRow | None:
    n = len(words)
    cartesian = (n == 6 and edition != "2023") or (n == 7 and edition == "2023")
    if n not in (5, 6, 7) or (n == 7 and edition != "2023"):
        return None  # the official loaders ignore other column counts
    class_idx = _parse(int, words[1], path, lineno, "class")
    track = _parse(int, words[2], path, lineno, "track")
    values = [_parse(float, w, path, lineno, "coordinate") for w in words[3:]]
    if cartesian:
        azimuth, elevation = (float(v) for v in cartesian_to_polar(np.array(values[:3])))
    else:
        azimuth, elevation = values[0], values[1]
    distance = values[-1] if edition == "2023" and n in (6, 7) else None
    return LabelRow(frame, class_idx, track, azimuth, elevation, distance)


_FORMAT_2024 = "frame,class,source,azimuth,elevation,distance or frame,class,source,x,y,z,distance"


def _parse_row_2024(frame: int, words: list[str], path: Path, lineno: int, prediction: bool) -> LabelRow | None:
    n = len(words)
    if n not in (4, 5, 6, 7):
        return None  # ignored by the official loader
    if n in (4, 5):  # the official scorer asserts on these when a class meets a reference
        raise InputError(
            f"{path} line {lineno}: {n} columns, no distance; DCASE 2024 rows are {_FORMAT_2024} "
            "(score files without distance with --edition 2023)"
        )
    class_idx = _parse(int, words[1], path, lineno, "class")
    track = _parse(int, words[2], path, lineno, "track")
    values = [_parse(float, w, path, lineno, "coordinate") for w in words[3:]]
    if n == 7:
        azimuth, elevation = (float(v) for v in cartesian_to_polar(np.array(values[:3])))
    else:
        azimuth, elevation = values[0], values[1]
    raw = values[-1]
    if raw < 0:
        raise InputError(f"{path} line {lineno}: negative distance {words[-1].strip()}; distances are >= 0")
    if prediction:
        if raw > MAX_PREDICTED_DISTANCE_M:
            raise InputError(
                f"{path} line {lineno}: predicted distance {words[-1].strip()} m is beyond "
                f"{MAX_PREDICTED_DISTANCE_M:g} m; DCASE 2024 predictions give metres (references centimetres): "
                "divide centimetres by 100"
            )
        distance = raw
    else:
        if not raw.is_integer():
            raise InputError(
                f"{path} line {lineno}: reference distance {words[-1].strip()} is not whole centimetres; DCASE 2024 "
                "references store integer cm (the official scorer divides by 100): multiply metres by 100"
            )
        distance = raw / 100  # as the official cm2m conversion
    return LabelRow(frame, class_idx, track, azimuth, elevation, distance)


def _parse(kind: type, word: str, path: Path, lineno: int, what: str):
    try:
        value = kind(word)
    except ValueError:
        raise InputError(
            f"corrupt DCASE metadata {path} line {lineno}: {what} {word.strip()!r} is not "
            f"{'an integer' if kind is int else 'a number'}; {_POLAR_FIX}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise InputError(f"corrupt DCASE metadata {path} line {lineno}: non-finite {what} {word.strip()!r}; {_POLAR_FIX}")
    return value


# -- writing ------------------------------------------------------------------------------------


def write_metadata_csv(
    path: str | Path, rows: Iterable[LabelRow], *, cartesian: bool = False, edition: str | int = "2023",
    prediction: bool = False,
) -> None:
    """Write rows as a DCASE metadata CSV (no header), atomically.

    Polar: ``frame,class,track,azi,ele`` (2023 adds ``,dist`` for rows with a distance).
    Cartesian (what the baselines write for predictions): ``frame,class,track,x,y,z``; 2023 adds a
    distance column (the row's distance, else 0). 2024 always writes the distance: a reference
    (``prediction=False``) in integer centimetres as the official metadata, a prediction in metres;
    every 2024 row needs one. Rows are sorted by frame, keeping the order of rows within a frame:
    the scorer matches same-class rows by their position within the frame.
    """
    edition = check_edition(edition)
    lines = []
    for row in sorted(rows, key=lambda r: r.frame):
        ints = f"{int(row.frame)},{int(row.class_idx)},{int(row.track)}"
        coords = [float(v) for v in polar_to_cartesian(row.azimuth, row.elevation)] if cartesian else [
            row.azimuth, row.elevation]
        if edition == "2024":
            if row.distance is None:
                raise InputError(f"refusing to write a 2024 row without distance to {path} (frame {row.frame}); "
                                 "give every row a distance in metres, or write --edition 2023")
            coords.append(row.distance if prediction else round(row.distance * 100))
        elif edition == "2023" and (cartesian or row.distance is not None):
            coords.append(0.0 if row.distance is None else row.distance)
        lines.append(",".join([ints] + [_format_number(v, path) for v in coords]) + "\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")


def _format_number(value: float, path: str | Path) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"refusing to write non-finite coordinate {value} to {path}; check the predictions")
    return str(int(value)) if value.is_integer() else repr(value)


# -- frame-wise targets (training) and predictions ---------------------------------------------


def labels_to_targets(
    rows: Sequence[LabelRow], n_frames: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frame-wise SED and DOA targets at the 10-fps label rate.

    Returns ``sed`` (n_frames, C) float32 in {0, 1} and ``doa`` (n_frames, C, 3) float32 unit
    Cartesian vectors for active classes, zeros elsewhere. Rows outside [0, n_frames) or with a
    class outside [0, C) are dropped. Single-track (ACCDOA) targets hold one DOA per class, so when
    a class has several sources in a frame the longest track wins (SALSA convention): the
    (class, track) with the most annotated frames in the file, ties to the lower track index.
    """
    sed = np.zeros((n_frames, num_classes), dtype=np.float32)
    doa = np.zeros((n_frames, num_classes, 3), dtype=np.float32)
    winner = _target_rows(rows, n_frames, num_classes)
    if winner:
        frames, classes = (np.array(v) for v in zip(*winner))
        picked = list(winner.values())
        sed[frames, classes] = 1.0
        doa[frames, classes] = polar_to_cartesian([r.azimuth for r in picked], [r.elevation for r in picked])
    return sed, doa


def labels_to_distance(
    rows: Sequence[LabelRow], n_frames: int, num_classes: int, scale: float = 1.0
) -> np.ndarray:
    """Frame-wise distance targets (n_frames, C) float32 at the 10-fps label rate, in metres.

    ``scale`` converts the rows' distance column to metres (1 for metres, 0.01 for STARSS23's
    centimetres). The cell of an active (frame, class) holds the distance of the same row that
    :func:`labels_to_targets` takes the DOA from (the longest track); inactive cells are 0. A kept row
    without distance, or a fractional one where the unit is centimetres (metres written by an older
    ``glfer-edge synth``), raises ValueError (the caller names the file).
    """
    dist = np.zeros((n_frames, num_classes), dtype=np.float32)
    for (frame, class_idx), r in _target_rows(rows, n_frames, num_classes).items():
        if r.distance is None:
            raise ValueError(f"frame {r.frame} class {r.class_idx} has no distance column")
        if scale == 0.01 and r.distance != round(r.distance):
            raise ValueError(f"frame {r.frame} class {r.class_idx}: distance {r.distance:g} is not whole "
                             "centimetres (metres, from an older glfer-edge synth? regenerate the scenes)")
        dist[frame, class_idx] = r.distance * scale
    return dist


def _target_rows(rows: Sequence[LabelRow], n_frames: int, num_classes: int) -> dict[tuple[int, int], LabelRow]:
    """(frame, class) -> the row whose DOA (and distance) is the target: the longest track of the file."""
    kept = [r for r in rows if 0 <= r.frame < n_frames and 0 <= r.class_idx < num_classes]
    length = Counter((r.class_idx, r.track) for r in kept)
    winner: dict[tuple[int, int], LabelRow] = {}
    for r in kept:
        key = (r.frame, r.class_idx)
        best = winner.get(key)
        if best is None or (length[(r.class_idx, r.track)], -r.track) > (length[(best.class_idx, best.track)], -best.track):
            winner[key] = r
    return winner


def targets_to_labels(sed_active: np.ndarray, doa: np.ndarray) -> list[LabelRow]:
    """Label rows (track 0) for the active (frame, class) cells of frame-wise predictions.

    ``sed_active`` is (T, C) bool, ``doa`` (T, C, 3) Cartesian (any norm); frame t of the arrays
    becomes label frame t, so pass arrays at the 10-fps label rate.
    """
    sed_active = np.asarray(sed_active, dtype=bool)
    doa = np.asarray(doa)
    if sed_active.ndim != 2 or doa.shape != sed_active.shape + (3,):
        raise InputError(f"expected sed_active (T, C) and doa (T, C, 3); got {sed_active.shape} and {doa.shape}")
    frames, classes = np.nonzero(sed_active)
    azimuth, elevation = cartesian_to_polar(doa[frames, classes])
    return [
        LabelRow(int(t), int(c), 0, float(a), float(e))
        for t, c, a, e in zip(frames, classes, azimuth, elevation)
    ]
