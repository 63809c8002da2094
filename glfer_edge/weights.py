"""Weights as safetensors (no pickle) with the SELDConfig embedded in the header metadata.

Reading the metadata needs no torch; building a model from weights needs the ``torch`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glfer_edge import metadata as md
from glfer_edge._fileio import atomic_path
from glfer_edge._version import __version__
from glfer_edge.config import SELDConfig
from glfer_edge.errors import ArtifactError, require

if TYPE_CHECKING:
    from glfer_edge.model.glfernet import GLFERNet

DEFAULT_WEIGHTS = Path(__file__).parent / "assets" / "glfer_small_synth.safetensors"


def default_weights_path() -> Path:
    """The bundled demo model (`small` preset trained on synthetic scenes; see assets/MODEL_CARD.md)."""
    if not DEFAULT_WEIGHTS.exists():
        raise ArtifactError(f"bundled demo weights missing at {DEFAULT_WEIGHTS}; reinstall glfer-edge or pass --weights")
    return DEFAULT_WEIGHTS


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata (str -> str) of a weights file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"weights file {path} not found; pass an existing .safetensors file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc}); re-export or re-download it") from None
    if md.KEY_CONFIG not in meta:
        raise ArtifactError(f"{path} has no glfer-edge config in its metadata; save it with glfer_edge.save_weights")
    return meta


def parent_record(path: str | Path) -> dict[str, Any]:
    """How weights derived from ``path`` (a fine-tune, an average) name it in their provenance: file name,
    sha256 and ``path``'s own training provenance (None when it has none)."""
    path = Path(path)
    training = read_metadata(path).get(md.KEY_TRAINING)
    return {"file": path.name, "sha256": md.sha256_file(path), "training": training and json.loads(training)}


def read_config(path: str | Path) -> SELDConfig:
    meta = read_metadata(path)
    try:
        return SELDConfig.from_json(meta[md.KEY_CONFIG])
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{path}: embedded config is invalid ({exc}); re-save the weights with this SDK") from None


def save_weights(model: "GLFERNet", path: str | Path, extra_metadata: dict[str, Any] | None = None) -> Path:
    """Save the model's state dict and config (atomic write)."""
    from safetensors.torch import save_file

    meta = {
        md.KEY_FORMAT: md.FORMAT_VERSION,
        md.KEY_VERSION: __version__,
        md.KEY_CONFIG: model.config.to_json(),
    }
    for k, v in (extra_metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def config_diff(a: SELDConfig, b: SELDConfig) -> list[str]:
    """The fields where ``b`` differs from ``a``, each as ``"section.field: b's value != a's value"``."""
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in da:
        if isinstance(da[section], dict):
            out += [f"{section}.{k}: {db[section].get(k)!r} != {v!r}" for k, v in da[section].items() if db[section].get(k) != v]
        elif da[section] != db[section]:
            out.append(f"{section}: {db[section]!r} != {da[section]!r}")
    return out


def load_model(path: str | Path | None = None, config: SELDConfig | None = None) -> "GLFERNet":
    """Build a GLFERNet from a weights file (default: the bundled demo model), in eval mode.

    ``config``, when given, must match the embedded one; the error names every differing field.
    """
    torch = require("torch", "torch", "loading reference weights")
    from safetensors.torch import load_file

    from glfer_edge.model.glfernet import GLFERNet

    path = Path(path) if path is not None else default_weights_path()
    embedded = read_config(path)
    if config is not None and config != embedded:
        diff = "; ".join(config_diff(config, embedded)[:4])
        raise ArtifactError(
            f"{path} holds weights for config '{embedded.name}', not '{config.name}' ({diff}); "
            "pass the matching --preset or omit it"
        )
    model = GLFERNet(embedded)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path} is corrupt ({exc}); re-export or re-download it") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad_shape:
        what = (missing and f"missing {missing[:3]}") or (unexpected and f"unexpected {unexpected[:3]}") or (
            f"shape of {bad_shape[0]}: {tuple(state[bad_shape[0]].shape)} vs {tuple(expected[bad_shape[0]].shape)}"
        )
        raise ArtifactError(f"{path} does not fit its embedded config ({what}); the file is damaged or hand-edited")
    with torch.no_grad():
        model.load_state_dict(state)
    return model.eval()
