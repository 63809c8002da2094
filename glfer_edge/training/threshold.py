"""Choose a model's SED decision threshold and DOA smoothing on a validation split; save them with the weights.

The paper decides at 0.3. A model trained briefly or on other data may be calibrated differently;
the threshold is then a free parameter of the deployed system, chosen like any hyperparameter on
validation data, never on the test split. The network runs once, through the deployed inference
path (``SELDRuntime`` + ``infer_long``, as ``run`` and ``evaluate`` do, with the same test-time
augmentation: averaging K views makes the probabilities less extreme, so TTA moves the best
threshold); each candidate pair of threshold and DOA smoothing length
(``glfer_edge.postprocess.smooth_doa``) re-decides its outputs and is scored with the official
metrics (``glfer_edge.metrics``). The chosen pair is written into the weights' config
(``sed_threshold``, ``doa_smoothing_frames``; with K TTA views, an entry of ``tta_decisions``), so
``run``, ``evaluate`` and every exported artifact use it without a flag (for K views, in runs with
``--tta K``); the sweep lands in the weights' training provenance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glfer_edge import metadata as md
from glfer_edge.channel_swap import tta_transforms
from glfer_edge.errors import InputError
from glfer_edge.metrics import SELDResult, check_average
from glfer_edge.postprocess import check_odd_frames, smooth_doa
from glfer_edge.runtime import SELDRuntime
from glfer_edge.runtime.segments import infer_long
from glfer_edge.training.dataset import SELDDataset
from glfer_edge.training.trainer import score_predictions
from glfer_edge.weights import load_model, read_metadata, save_weights

__all__ = ["DEFAULT_CANDIDATES", "DEFAULT_DOA_SMOOTHING", "ThresholdSweep", "sweep_thresholds", "save_with_threshold"]

DEFAULT_CANDIDATES: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.10 ... 0.90
DEFAULT_DOA_SMOOTHING: tuple[int, ...] = (1, 3, 5, 7, 9)  # output frames of 0.2 s: off ... 1.8 s


@dataclass(frozen=True)
class ThresholdSweep:
    """SELD metrics per candidate (threshold, DOA smoothing frames) on one split; ``best``: the lowest
    SELD error (ties: less smoothing, then the lower threshold)."""

    split: str
    average: str
    results: dict[tuple[float, int], SELDResult]
    tta: int = 1  # views averaged at inference (``--tta``)

    @property
    def best(self) -> tuple[float, int]:
        return min(self.results, key=lambda k: (self.results[k].seld, k[1], k[0]))

    def table(self) -> list[dict[str, float]]:
        return [{"threshold": t, "doa_smoothing": f, **r.scores()} for (t, f), r in sorted(self.results.items())]


def sweep_thresholds(
    weights: str | Path, data: str | Path, split: str = "val", layout: str = "synth",
    candidates: tuple[float, ...] = DEFAULT_CANDIDATES, average: str | None = None, tta: int = 1,
    doa_smoothing: tuple[int, ...] = DEFAULT_DOA_SMOOTHING,
) -> ThresholdSweep:
    """Run the model once over ``split`` of ``data`` (with ``tta`` views) and score every candidate threshold
    with every DOA smoothing length."""
    if not candidates or not all(0.0 < t < 1.0 for t in candidates):
        raise InputError(f"candidate thresholds {candidates} must lie strictly between 0 and 1")
    if not doa_smoothing:
        raise InputError("no DOA smoothing lengths to try; give at least 1 (off)")
    for frames in doa_smoothing:
        check_odd_frames(frames, "DOA smoothing length")
    tta_transforms(tta)  # refuse a bad size before the model loads
    with SELDRuntime.open(weights) as rt:
        dataset = SELDDataset(data, rt.config, split, layout=layout)
        if not dataset.recordings:
            raise InputError(f"no recordings in split {split!r} of {data}; pass the validation split with --split")
        average = check_average(dataset.layout.edition, average)
        outputs = []
        for index, rec in enumerate(dataset.recordings):
            out = infer_long(rt, dataset.read_audio(index, 0, rec.n_samples), tta=tta)
            outputs.append((out.sed[0], out.doa[0]))
    results = {}
    for f in sorted(set(doa_smoothing)):  # smooth once per length; every threshold re-decides the same DOAs
        smoothed = [(sed, smooth_doa(sed, doa, f)) for sed, doa in outputs]
        for t in sorted(set(candidates)):
            results[t, f] = score_predictions(dataset, smoothed, average, t, doa_smoothing=1)
    return ThresholdSweep(split, average, results, tta)


def save_with_threshold(weights: str | Path, out: str | Path, sweep: ThresholdSweep, data: str | Path) -> Path:
    """Copy of ``weights`` whose config decides outputs of ``sweep.tta`` views at ``sweep.best``; the sweep is
    kept in the provenance (``threshold``, or ``threshold_tta<K>`` for K views)."""
    threshold, frames = sweep.best
    model = load_model(weights)
    model.config = model.config.with_decision(sweep.tta, threshold, frames)
    provenance: dict[str, Any] = json.loads(read_metadata(weights).get(md.KEY_TRAINING, "{}"))
    provenance["threshold" if sweep.tta == 1 else f"threshold_tta{sweep.tta}"] = {
        "chosen": threshold, "doa_smoothing": frames, "data": Path(data).resolve().name, "split": sweep.split,
        "average": sweep.average, "tta": sweep.tta,
        "sweep": [{k: v if isinstance(v, int) else round(float(v), 6) for k, v in row.items()}
                  for row in sweep.table()],
    }
    return save_weights(model, out, extra_metadata={md.KEY_TRAINING: provenance})
