"""``glfer-edge average``: the uniform mean of checkpoints of one model (SWA over fine-tuning rounds)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from glfer_edge import metadata as md  # noqa: E402
from glfer_edge.cli import main  # noqa: E402
from glfer_edge.config import get_preset  # noqa: E402
from glfer_edge.errors import ArtifactError, InputError  # noqa: E402
from glfer_edge.model.glfernet import GLFERNet  # noqa: E402
from glfer_edge.training.average import average_weights  # noqa: E402
from glfer_edge.weights import load_model, read_config, read_metadata, save_weights  # noqa: E402

TINY = get_preset("tiny").replace(segment_seconds=1.0)


def _checkpoint(path, seed: int, *, base: GLFERNet | None = None, config=TINY, **metadata):
    """A tiny network: ``base``'s weights moved by seeded noise (a fine-tune of it), else a fresh init."""
    torch.manual_seed(seed)
    model = GLFERNet(config).eval()
    if base is not None:
        model.load_state_dict(base.state_dict())
        with torch.no_grad():
            for name, t in model.state_dict().items():  # parameters and BatchNorm statistics, in place
                if t.is_floating_point() and not name.startswith("frontend."):
                    t.add_(0.05 * torch.rand_like(t))
    return save_weights(model, path, extra_metadata=metadata or None), model


def test_every_trained_tensor_is_the_mean_and_the_frontend_is_kept(tmp_path) -> None:
    ancestor = GLFERNet(TINY)
    shape = tuple(ancestor.frontend.mean.shape)  # (7 feature maps, F bins)
    ancestor.frontend.set_statistics(np.full(shape, 0.5), np.full(shape, 2.0))
    a, ma = _checkpoint(tmp_path / "a.safetensors", 1, base=ancestor, **{md.KEY_TRAINING: {"epoch": 3}})
    b, mb = _checkpoint(tmp_path / "b.safetensors", 2, base=ancestor)
    c, mc = _checkpoint(tmp_path / "c.safetensors", 3, base=ancestor)
    out = average_weights([a, b, c], tmp_path / "avg.safetensors")
    got = load_model(out).state_dict()
    states = [m.state_dict() for m in (ma, mb, mc)]
    for key in ("decoder.gru.weight_hh_l0", "decoder.sed_head.4.bias", "encoder.stages.0.msfe.bn.running_var"):
        expected = (states[0][key].double() + states[1][key].double() + states[2][key].double()) / 3
        assert torch.allclose(got[key].double(), expected, atol=1e-7), key
        assert not torch.equal(got[key], states[0][key])  # the parents differ, so the mean is new
    assert torch.equal(got["frontend.mean"], torch.full_like(got["frontend.mean"], 0.5))
    provenance = json.loads(read_metadata(out)[md.KEY_TRAINING])["average"]
    assert [p["sha256"] for p in provenance["parents"]] == [md.sha256_file(p) for p in (a, b, c)]
    assert provenance["parents"][0]["training"] == {"epoch": 3}


def test_the_average_of_copies_computes_what_the_copy_does(tmp_path) -> None:
    a, model = _checkpoint(tmp_path / "a.safetensors", 1)
    b = tmp_path / "copy.safetensors"
    b.write_bytes(a.read_bytes())
    averaged = load_model(average_weights([a, b], tmp_path / "avg.safetensors"))
    audio = torch.randn(1, 4, TINY.segment_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for want, got in zip(model(audio), averaged(audio)):
            assert torch.equal(want, got)


def test_the_decisions_are_the_first_checkpoints(tmp_path) -> None:
    ancestor = GLFERNet(TINY)
    tuned = TINY.with_decision(1, 0.45, 7).with_decision(8, 0.5, 1)
    a, _ = _checkpoint(tmp_path / "a.safetensors", 1, base=ancestor, config=tuned)
    b, _ = _checkpoint(tmp_path / "b.safetensors", 2, base=ancestor)  # another decision pair: same network
    config = read_config(average_weights([a, b], tmp_path / "avg.safetensors"))
    assert config.decision(1) == (0.45, 7) and config.decision(8) == (0.5, 1)


def test_refuses_checkpoints_that_standardize_differently(tmp_path) -> None:
    a, model = _checkpoint(tmp_path / "a.safetensors", 1)
    shape = tuple(model.frontend.mean.shape)
    model.frontend.set_statistics(np.full(shape, 0.1), np.ones(shape))  # trained from scratch on other data
    b = save_weights(model, tmp_path / "b.safetensors")
    with pytest.raises(ArtifactError, match=r"b.safetensors standardizes its features differently.*frontend.mean"):
        average_weights([a, b], tmp_path / "avg.safetensors")
    assert not (tmp_path / "avg.safetensors").exists()


def test_refuses_another_model_one_file_and_a_file_twice(tmp_path) -> None:
    a, _ = _checkpoint(tmp_path / "a.safetensors", 1)
    other, _ = _checkpoint(tmp_path / "small.safetensors", 1, config=get_preset("small").replace(segment_seconds=1.0))
    with pytest.raises(ArtifactError, match=r"small.safetensors is another model than .*a.safetensors"):
        average_weights([a, other], tmp_path / "avg.safetensors")
    with pytest.raises(InputError, match="at least two"):
        average_weights([a], tmp_path / "avg.safetensors")
    with pytest.raises(InputError, match="listed twice"):
        average_weights([a, tmp_path / "." / "a.safetensors"], tmp_path / "avg.safetensors")


def test_cli_writes_the_average_and_refuses_a_bad_output_name(tmp_path, capsys) -> None:
    ancestor = GLFERNet(TINY)
    a, _ = _checkpoint(tmp_path / "a.safetensors", 1, base=ancestor)
    b, _ = _checkpoint(tmp_path / "b.safetensors", 2, base=ancestor)
    assert main(["average", str(a), str(b), "--out", str(tmp_path / "avg.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "avg.onnx").exists()
    assert main(["average", str(a), str(b), "--out", str(tmp_path / "avg.safetensors")]) == 0
    assert "averaged 2 checkpoints" in capsys.readouterr().out
    assert main(["info", "--json", "-", "--model", str(tmp_path / "avg.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["training"] == {"averaged_from": [md.sha256_file(a), md.sha256_file(b)]}
