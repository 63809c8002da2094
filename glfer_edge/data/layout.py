"""DCASE development-set folder layout: ``foa_dev/<split>/<name>.wav`` + ``metadata_dev/<split>/<name>.csv``.

The same layout serves TAU-NIGENS 2021 (files ``fold<k>_room<r>_mix<m>``; train = folds 1-4,
val = fold 5, test = fold 6), STARSS23 (``dev-train-sony``, ``dev-train-tau``, ``dev-test-sony``,
``dev-test-tau``) and the scenes of the bundled synthetic generator (any split folder names, e.g.
``train``, ``val``, ``test``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from glfer_edge.config import DCASE2021_CLASSES, STARSS23_CLASSES, SYNTH_CLASSES
from glfer_edge.errors import InputError

_FOLD = re.compile(r"fold(\d+)$")


@dataclass(frozen=True)
class DatasetLayout:
    """Where a DCASE-layout dataset keeps audio and metadata, and what its named splits select.

    ``splits`` maps a split name to members: a split folder name, or ``fold<k>`` for the files
    named ``fold<k>_*`` in any split folder. Selections that are not a split name are taken as a
    folder name or a ``fold<k>`` themselves.
    """

    name: str
    class_names: tuple[str, ...]
    edition: str  # metadata CSV edition (glfer_edge.data.dcase)
    splits: tuple[tuple[str, tuple[str, ...]], ...] = ()
    audio_dir: str = "foa_dev"
    metadata_dir: str = "metadata_dev"
    # metres per unit of the metadata's distance column (training distance targets); None: no distances
    distance_scale: float | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def members(self, selection: str) -> tuple[str, ...]:
        """The folders / folds a split name stands for (the selection itself if it is no split name)."""
        return dict(self.splits).get(selection, (selection,))


LAYOUTS: dict[str, DatasetLayout] = {
    "dcase2021": DatasetLayout(
        name="dcase2021",
        class_names=DCASE2021_CLASSES,
        edition="2021",
        splits=(("train", ("fold1", "fold2", "fold3", "fold4")), ("val", ("fold5",)), ("test", ("fold6",))),
    ),
    "starss23": DatasetLayout(
        name="starss23",
        class_names=STARSS23_CLASSES,
        edition="2023",
        splits=(("train", ("dev-train-sony", "dev-train-tau")), ("test", ("dev-test-sony", "dev-test-tau"))),
        distance_scale=0.01,  # STARSS23 metadata: centimetres
    ),
    # glfer-edge synth writes distances as STARSS23 does, in whole centimetres (DCASE 2024 references)
    "synth": DatasetLayout(name="synth", class_names=SYNTH_CLASSES, edition="2023", distance_scale=0.01),
}


def get_layout(name: str) -> DatasetLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InputError(f"unknown dataset layout {name!r}; choose one of {', '.join(LAYOUTS)}") from None


def list_pairs(
    root: str | Path, select: str | Sequence[str] | None = None, layout: str | DatasetLayout = "synth"
) -> list[tuple[Path, Path]]:
    """Sorted (wav, csv) pairs of the selected splits/folds under ``root``; None selects everything.

    ``select`` is one or more split names of the layout (``train``), split folder names
    (``dev-test-sony``) or folds (``fold5``). Raises InputError when ``root`` is not a DCASE layout,
    a selected folder does not exist, a wav has no metadata CSV, or nothing is selected.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    root = Path(root)
    audio_root, meta_root = root / layout.audio_dir, root / layout.metadata_dir
    if not audio_root.is_dir() or not meta_root.is_dir():
        raise InputError(
            f"{root} is not a DCASE dataset folder: expected {layout.audio_dir}/<split>/*.wav and "
            f"{layout.metadata_dir}/<split>/*.csv; point to the folder that contains both"
        )
    available = sorted(p.name for p in audio_root.iterdir() if p.is_dir())
    selections = [select] if isinstance(select, str) else list(select or [])
    members = [m for s in selections for m in layout.members(s)]
    folders = [m for m in members if not _FOLD.match(m)]
    folds = tuple(m + "_" for m in members if _FOLD.match(m))
    missing = [f for f in folders if f not in available]
    if missing:
        raise InputError(
            f"no split folder {missing[0]!r} in {audio_root}; available: {', '.join(available) or 'none'}"
        )
    pairs = []
    for folder in available:
        for wav in sorted((audio_root / folder).glob("*.wav")):
            if members and folder not in folders and not wav.name.startswith(folds):
                continue
            csv = meta_root / folder / (wav.stem + ".csv")
            if not csv.is_file():
                raise InputError(f"{wav} has no metadata file {csv}; add it or remove the recording")
            pairs.append((wav, csv))
    if not pairs:
        raise InputError(f"no recordings selected by {selections or 'everything'} in {audio_root}")
    return pairs
