"""Small random-weight GLFER-Net artifacts for the runtime tests (tiny preset, short segments).

Weights are random (seeded), which is all the runtime needs: the contract, the shapes and the
agreement between backends. Artifacts are made once per pytest process per configuration.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glfer_edge.config import FeatureConfig, SELDConfig, get_preset


@dataclass(frozen=True)
class Artifacts:
    config: SELDConfig
    weights: Path  # .safetensors (torch backend)
    onnx: Path  # FP32 ONNX with glfer-edge metadata (onnxruntime backend)


# A much smaller frontend than the tiny preset's (4 kHz, 32 linear bins; still 80 frames/s and
# 0.2-s output frames): an hour of streaming takes seconds, and the runtime contract is the same.
SMALL_FEATURES = FeatureConfig(sample_rate=4000, n_fft=64, win_length=64, hop_length=50, compress_high_freq=False)
_SESSION: dict[tuple[float, bool], Artifacts] = {}


def small_config(segment_seconds: float = 1.0, small_features: bool = True) -> SELDConfig:
    config = get_preset("tiny").replace(segment_seconds=segment_seconds)
    return config.replace(features=SMALL_FEATURES) if small_features else config


def session_artifacts(segment_seconds: float = 1.0, small_features: bool = True) -> Artifacts:
    """Artifacts shared by every test of this pytest process (an export takes seconds)."""
    import pytest

    pytest.importorskip("torch", reason="exporting the test model needs the build-time extra glfer-edge[torch]")
    key = (segment_seconds, small_features)
    if key not in _SESSION:
        directory = Path(tempfile.mkdtemp(prefix="glfer_rt_"))
        atexit.register(shutil.rmtree, directory, True)
        _SESSION[key] = make_artifacts(directory, small_config(segment_seconds, small_features))
    return _SESSION[key]


def make_artifacts(directory: Path, config: SELDConfig, seed: int = 0) -> Artifacts:
    import onnx
    import torch

    from glfer_edge import metadata as md
    from glfer_edge.export.onnx_fp32 import export_fp32
    from glfer_edge.model.glfernet import GLFERNet
    from glfer_edge.weights import save_weights

    torch.manual_seed(seed)
    segment_seconds = config.segment_seconds
    model = GLFERNet(config).eval()
    weights = save_weights(model, directory / f"tiny_{segment_seconds:g}s.safetensors")
    graph = export_fp32(model, md.sha256_file(weights))
    path = directory / f"tiny_{segment_seconds:g}s.fp32.onnx"
    onnx.save(graph, str(path))
    return Artifacts(config, weights, path)


def strip_metadata(src: Path, dst: Path, **replace: str) -> Path:
    """A copy of an ONNX artifact without glfer-edge metadata, or with some keys replaced."""
    import onnx

    model = onnx.load(str(src))
    kept = {p.key: p.value for p in model.metadata_props}
    if replace:
        kept.update(replace)
    else:
        kept = {k: v for k, v in kept.items() if not k.startswith("glfer_edge.")}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, kept)
    onnx.save(model, str(dst))
    return dst


def foa_noise(config: SELDConfig, batch: int | None = None, seed: int = 0, seconds: float | None = None) -> np.ndarray:
    """Deterministic float32 FOA test audio: (4, N) or (B, 4, N), one segment unless ``seconds`` is given."""
    n = config.segment_samples if seconds is None else int(round(seconds * config.features.sample_rate))
    shape = (4, n) if batch is None else (batch, 4, n)
    return (np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32)
