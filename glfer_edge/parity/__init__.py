"""Parity of two artifacts (weights, ONNX, engines): does B match reference A within a tolerance row?

Three concerns, one module each; every threshold lives in :data:`glfer_edge.tolerances.TOLERANCES`.

* :mod:`~glfer_edge.parity.tensors`: output agreement (SED/DOA errors, cosine, SED decision
  agreement, DOA angular error on active cells; for distance models the distance error in metres
  and relative on active cells) and the checks against a row;
* :mod:`~glfer_edge.parity.task`: both artifacts on the same labelled scenes, compared as SELD
  systems (DCASE ER20, F20, LE_CD, LR_CD, SELD error) as well as outputs;
* :mod:`~glfer_edge.parity.layers`: the first divergent layer of two ONNX graphs;

and :mod:`~glfer_edge.parity.report` renders the markdown page. Imports without torch.
"""

from glfer_edge.parity.layers import LayerReport, LayerStat, locate_divergence
from glfer_edge.parity.report import render_markdown
from glfer_edge.parity.task import (
    SELD_KEYS, ArtifactSummary, LabelledScene, ParityReport, compare_artifacts, dcase_recordings, score_recordings,
    synth_recordings,
)
from glfer_edge.parity.tensors import CHECKS, Check, ParityStats, angular_error_deg, compare_outputs, violations
from glfer_edge.tolerances import TOLERANCES, LayerTolerance, Tolerances, tolerances_for

__all__ = [
    "ParityStats", "Check", "CHECKS", "angular_error_deg", "compare_outputs", "violations",
    "LabelledScene", "ArtifactSummary", "ParityReport", "SELD_KEYS", "synth_recordings", "dcase_recordings",
    "score_recordings", "compare_artifacts",
    "LayerStat", "LayerReport", "locate_divergence", "render_markdown",
    "TOLERANCES", "Tolerances", "LayerTolerance", "tolerances_for",
]
