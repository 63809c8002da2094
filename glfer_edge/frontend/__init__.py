"""Fused FOA feature frontend: STFT -> 4 log-power spectrograms + 3 unit sound-intensity vectors.

``glfer_edge.frontend`` (this package) is numpy-only; the torch module for the exported graph is
``glfer_edge.frontend.module.FOAFrontend``.
"""

from glfer_edge.frontend.reference import extract_features, fit_standardization, linspeciv, standardize, stft

__all__ = ["extract_features", "fit_standardization", "linspeciv", "standardize", "stft"]
