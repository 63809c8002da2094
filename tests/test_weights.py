"""safetensors weights: round trip, embedded config, clear errors on mismatch or corruption."""

from __future__ import annotations

import pytest

from glfer_edge.config import get_preset
from glfer_edge.errors import ArtifactError
from glfer_edge.weights import read_config

torch = pytest.importorskip("torch")
from glfer_edge.model import GLFERNet  # noqa: E402
from glfer_edge.weights import load_model, save_weights  # noqa: E402


@pytest.fixture
def tiny_weights(tmp_path):
    torch.manual_seed(0)
    model = GLFERNet(get_preset("tiny")).eval()
    model.frontend.set_statistics(torch.randn(7, 200), torch.rand(7, 200) + 0.5)
    return model, save_weights(model, tmp_path / "tiny.safetensors", {"glfer_edge.training": {"epochs": 1}})


def test_round_trip_is_exact(tiny_weights) -> None:
    model, path = tiny_weights
    loaded = load_model(path)
    assert read_config(path) == model.config
    x = torch.randn(1, 4, 24000) * 0.1
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])
    assert torch.equal(loaded.frontend.std, model.frontend.std)  # statistics travel with the weights


def test_other_config_is_refused_with_the_difference(tiny_weights) -> None:
    _, path = tiny_weights
    with pytest.raises(ArtifactError, match="stem_channels: 8 != 32"):
        load_model(path, get_preset("paper"))


def test_corrupt_and_foreign_files(tmp_path, tiny_weights) -> None:
    _, path = tiny_weights
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        load_model(broken)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ArtifactError, match="no glfer-edge config"):
        load_model(foreign)
    with pytest.raises(ArtifactError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_tensor_shape_tampering_is_detected(tmp_path, tiny_weights) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, path = tiny_weights
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    state["decoder.sed_head.4.bias"] = torch.zeros(12)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(ArtifactError, match="decoder.sed_head.4.bias"):
        load_model(bad)
