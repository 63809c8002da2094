"""Weight averaging of checkpoints of one model: stochastic weight averaging (SWA; Izmailov et al., 2018)
over the ends of learning-rate cycles, a "uniform model soup" (Wortsman et al., 2022).

Each fine-tuning round (``glfer-edge train --init-weights``) is one cosine cycle that ends at a low
rate near a minimum for the scenes it saw. Rounds that start from one ancestor usually stay in one
basin, and the mean of their end points lies nearer its centre: a flatter solution that often
generalises better, at no inference cost. Whether it does is measured on validation like any
candidate (on the bundled model's fine-tuning rounds it helped while the newest round had not gained,
and added nothing after one that had). The mean covers every float tensor, BatchNorm running
statistics included, as model soups do (SWA's re-estimation of those statistics on training data is
not done).

Only checkpoints of one model average meaningfully: the same architecture, features and classes, and
the same standardization statistics (fine-tunes keep their parent's; a network that learned on
differently scaled features is another model). The decisions (SED threshold, DOA smoothing) are the
first checkpoint's: the averaged network is calibrated differently, so choose them again with
``glfer-edge tune-threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from glfer_edge import metadata as md
from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.weights import config_diff, load_model, parent_record, save_weights

__all__ = ["average_weights"]

FIXED_PREFIX = "frontend."  # standardization statistics and STFT / band constants: equal in every parent


def average_weights(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the uniform average of the weights files ``paths`` (at least two, one model) to ``out``; the
    provenance names every parent by sha256 and keeps its own."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError("give at least two weights files to average")
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError("a weights file is listed twice; each checkpoint counts once in a uniform average")
    models = [load_model(p) for p in paths]
    first, base = paths[0], models[0]
    for path, model in zip(paths[1:], models[1:]):
        diff = config_diff(_network(base.config), _network(model.config))
        if diff:
            raise ArtifactError(f"{path} is another model than {first} ({'; '.join(diff[:3])}); "
                                "average only checkpoints of one preset and class list")
    states = [m.state_dict() for m in models]
    # Frontend constants and BatchNorm's num_batches_tracked (unused at inference) stay the first's.
    averaged = dict(states[0])
    for key, tensor in states[0].items():
        if key.startswith(FIXED_PREFIX):
            other = next((p for p, s in zip(paths, states) if not torch.equal(s[key], tensor)), None)
            if other is not None:
                raise ArtifactError(
                    f"{other} standardizes its features differently from {first} ({key} differs): only "
                    "fine-tunes of one model, which keep their parent's statistics, can be averaged")
        elif tensor.is_floating_point():
            averaged[key] = torch.stack([s[key].double() for s in states]).mean(0).to(tensor.dtype)
    base.load_state_dict(averaged)
    provenance = {"average": {"method": "uniform", "parents": [parent_record(p) for p in paths]}}
    return save_weights(base, out, extra_metadata={md.KEY_TRAINING: provenance})


def _network(config: SELDConfig) -> SELDConfig:
    """The config without its decisions, which tune-threshold sets per checkpoint."""
    return config.replace(sed_threshold=SELDConfig.sed_threshold, doa_smoothing_frames=1, tta_decisions=())
