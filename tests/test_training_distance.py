"""Training with the distance head (DCASE 2024 3D SELD): distance targets, the masked relative loss, a fit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # build-time tests: a deploy install has no torch
from safetensors.torch import load_file

from glfer_edge.cli import main
from glfer_edge.config import get_preset
from glfer_edge.data.dcase import LabelRow, read_metadata_csv, write_metadata_csv
from glfer_edge.data.layout import get_layout
from glfer_edge.data.synth import SceneConfig, write_dataset
from glfer_edge.errors import InputError
from glfer_edge.model.glfernet import DISTANCE_BIAS_INIT
from glfer_edge.training import SELDDataset, SELDLoss, TrainConfig, Trainer
from glfer_edge.training.loss import DistanceLossTerms, LossTerms, reduce_distance, reduce_targets
from glfer_edge.weights import load_model, read_metadata

FS = 24000
TINY_08S = get_preset("tiny").replace(segment_seconds=0.8)
TINY_1S = get_preset("tiny").replace(segment_seconds=1.0)


def _distance(config):
    return config.replace(model=dataclasses.replace(config.model, distance=True))


TINY_08S_DIST = _distance(TINY_08S)


pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # Trainer sets the process-wide thread count


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-distance")
    scenes = SceneConfig(duration_s=1.6, max_polyphony=2)
    write_dataset(root, 2, scenes, seed=1, split="train", progress=False)
    write_dataset(root, 1, scenes, seed=2, split="val", progress=False)
    return root


def _recipe(**changes):
    base = dict(epochs=1, batch_size=2, lr=3e-3, num_threads=1, seed=5)
    return TrainConfig(**{**base, **changes})


# -- loss ---------------------------------------------------------------------------------------


def _loss_case():
    """4 label frames (2 output frames), 2 classes; class 0 active in frames 0-1, class 1 in frame 3 only."""
    sed = torch.zeros(1, 4, 2)
    doa = torch.zeros(1, 4, 2, 3)
    dist = torch.zeros(1, 4, 2)
    sed[0, 0, 0] = sed[0, 1, 0] = sed[0, 3, 1] = 1.0
    doa[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    doa[0, 1, 0] = torch.tensor([0.0, 1.0, 0.0])
    doa[0, 3, 1] = torch.tensor([0.0, 0.0, 1.0])
    dist[0, 0, 0], dist[0, 1, 0], dist[0, 3, 1] = 2.0, 2.5, 4.0  # frame 2j's distance wins where it is active
    pred = torch.full((1, 2, 2, 3), 0.9)
    pred[0, 0, 0] = torch.tensor([0.5, 0.0, 0.0])
    pred[0, 1, 1] = torch.tensor([0.0, 0.0, 0.0])
    dist_pred = torch.full((1, 2, 2), 7.0)  # inactive cells: any value, no effect
    dist_pred[0, 0, 0] = 3.0  # |3 - 2| / 2 = 0.5
    dist_pred[0, 1, 1] = 3.0  # |3 - 4| / 4 = 0.25
    return torch.zeros(1, 2, 2), pred, sed, doa, dist_pred, dist


def test_reduce_distance_takes_the_distance_of_the_doa_target_frame():
    _, _, sed, doa, _, dist = _loss_case()
    reduced = reduce_distance(sed, dist, 2)
    np.testing.assert_array_equal(reduced.numpy(), [[[2.0, 0.0], [0.0, 4.0]]])
    sed_r, _ = reduce_targets(sed, doa, 2)
    assert torch.all((reduced > 0) == (sed_r > 0))


def test_distance_loss_is_the_mean_relative_error_of_active_cells():
    logits, pred, sed, doa, dist_pred, dist = _loss_case()
    plain = SELDLoss(sed_weight=0.3)(logits, pred, sed, doa)
    terms = SELDLoss(sed_weight=0.3, distance_weight=0.5)(logits, pred, sed, doa, dist_pred, dist)
    assert isinstance(terms, DistanceLossTerms) and isinstance(plain, LossTerms)
    assert float(terms.distance) == pytest.approx((0.5 + 0.25) / 2, abs=1e-6)  # 2 active (frame, class) cells
    # SED and DOA terms are those of the model without distance; the total adds weight * distance
    assert torch.equal(terms.sed, plain.sed) and torch.equal(terms.doa, plain.doa)
    assert float(terms.total) == pytest.approx(float(plain.total) + 0.5 * 0.375, abs=1e-6)


def test_distance_loss_is_masked_inactive_cells_neither_count_nor_get_gradient():
    logits, pred, sed, doa, dist_pred, dist = _loss_case()
    loss = SELDLoss()
    base = float(loss(logits, pred, sed, doa, dist_pred, dist).distance)
    moved = dist_pred.clone()
    moved[0, 0, 1] = moved[0, 1, 0] = 0.01  # the two inactive cells, far off any distance
    assert float(loss(logits, pred, sed, doa, moved, dist).distance) == base
    dist_pred = dist_pred.clone().requires_grad_(True)
    loss(logits, pred, sed, doa, dist_pred, dist).total.backward()
    grad = dist_pred.grad[0]
    assert grad[0, 1] == 0 and grad[1, 0] == 0
    # d/dd_hat of |d_hat - d| / d / n_active: +1 / (2 * 2) and -1 / (4 * 2)
    assert float(grad[0, 0]) == pytest.approx(0.25) and float(grad[1, 1]) == pytest.approx(-0.125)
    # nothing active: the term is 0, not NaN
    zero = loss(logits, pred, torch.zeros_like(sed), doa, dist_pred, torch.zeros_like(dist)).distance
    assert float(zero.detach()) == 0.0


def test_loss_without_distance_is_unchanged_bit_for_bit():
    logits, pred, sed, doa, _, _ = _loss_case()
    logits = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    for doa_loss in ("mse", "mae"):
        a = SELDLoss(0.3, doa_loss)(logits, pred, sed, doa)
        b = SELDLoss(0.3, doa_loss, distance_weight=7.0)(logits, pred, sed, doa)
        assert type(a) is LossTerms and len(a) == 3
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        # the pre-distance formula, written out
        s, d = reduce_targets(sed, doa, 2)
        err = (pred - d) ** 2 if doa_loss == "mse" else (pred - d).abs()
        sed_l = torch.nn.functional.binary_cross_entropy_with_logits(logits, s)
        doa_l = (err * s[..., None]).sum() / s.sum().clamp(min=1.0)
        assert torch.equal(a.total, 0.3 * sed_l + 0.7 * doa_l)
    with pytest.raises(ValueError, match="or neither"):
        SELDLoss()(logits, pred, sed, doa, torch.ones(1, 2, 2))


# -- dataset ------------------------------------------------------------------------------------


def test_dataset_distance_targets_equal_the_csv_distances(synth_root):
    ds = SELDDataset(synth_root, _distance(TINY_1S), "train")
    checked = 0
    for rec in ds.recordings:
        rows = read_metadata_csv(rec.wav.parents[2] / "metadata_dev" / "train" / f"{rec.name}.csv")
        # synth writes STARSS23's unit, whole centimetres; the targets are metres
        assert rows and all(r.distance is not None and 50 < r.distance < 1000 and r.distance == round(r.distance)
                            for r in rows)
        active = np.zeros_like(rec.distance, dtype=bool)
        for r in rows:  # synth never has two sources of one class at once: one row per (frame, class)
            assert rec.distance[r.frame, r.class_idx] == np.float32(r.distance * 0.01)
            active[r.frame, r.class_idx] = True
            checked += 1
        assert np.all(rec.distance[~active] == 0) and np.array_equal(active, rec.sed > 0)
    assert checked > 10
    # segments carry the same targets, zero-padded past the end of the file like the SED targets
    for i, (rec_index, start) in enumerate(ds.segments):
        audio, sed, doa, dist = ds[i]
        rec = ds.recordings[rec_index]
        n = min(10, rec.n_label_frames - start)
        np.testing.assert_array_equal(dist[:n].numpy(), rec.distance[start:start + n])
        assert torch.all(dist[n:] == 0) and torch.equal(dist > 0, sed > 0)
    # a model without the distance head: the dataset is as before, three tensors per item
    plain = SELDDataset(synth_root, TINY_1S, "train")
    assert len(plain[0]) == 3 and plain.recordings[0].distance is None
    for x, y in zip(plain[1], ds[1][:3]):
        assert torch.equal(x, y)


def test_dataset_distance_scale_and_refusals(tmp_path):
    wav = tmp_path / "foa_dev" / "train" / "a.wav"
    wav.parent.mkdir(parents=True)
    import soundfile as sf

    sf.write(wav, np.zeros((FS, 4), np.float32), FS, subtype="FLOAT")
    csv = tmp_path / "metadata_dev" / "train" / "a.csv"
    write_metadata_csv(csv, [LabelRow(2, 3, 0, 10.0, 0.0, 250.0)])  # STARSS23-style centimetres
    layout = dataclasses.replace(get_layout("synth"), name="cm", distance_scale=0.01)
    ds = SELDDataset(tmp_path, _distance(TINY_1S), "train", layout=layout)
    assert ds.recordings[0].distance[2, 3] == pytest.approx(2.5)
    with pytest.raises(InputError, match="has no source distances"):
        SELDDataset(tmp_path, _distance(TINY_1S), "train", layout=dataclasses.replace(layout, distance_scale=None))
    write_metadata_csv(csv, [LabelRow(2, 3, 0, 10.0, 0.0, 2.5)])  # metres where centimetres are expected
    with pytest.raises(InputError, match=r"a\.csv: frame 2 class 3: distance 2\.5 is not whole centimetres"):
        SELDDataset(tmp_path, _distance(TINY_1S), "train")
    write_metadata_csv(csv, [LabelRow(2, 3, 0, 10.0, 0.0)])  # 5 columns: no distance
    with pytest.raises(InputError, match=r"a\.csv: frame 2 class 3 has no distance"):
        SELDDataset(tmp_path, _distance(TINY_1S), "train")
    assert len(SELDDataset(tmp_path, TINY_1S, "train")[0]) == 3  # fine without the distance head


# -- training -----------------------------------------------------------------------------------


def test_tiny_distance_model_lowers_its_distance_loss_on_generated_scenes(synth_root, tmp_path):
    trainer = Trainer(TINY_08S_DIST, synth_root, tmp_path, _recipe(augment=None, val_split=None), progress=False)
    trainer.fit_statistics()
    batch = [torch.stack(t) for t in zip(*(trainer.train_set[i] for i in range(4)))]
    audio, sed, doa, dist = batch
    assert dist.shape == sed.shape and float(dist.max()) > 0

    def terms():
        torch.manual_seed(0)  # same dropout masks
        with torch.no_grad():
            out = trainer.model.logits(trainer.model.frontend(audio))
            return trainer.loss_fn(out[0], out[1], sed, doa, out[2], dist)

    trainer.model.train()
    before = terms()
    for _ in range(8):
        step = trainer.train_step(audio, sed, doa, torch.Generator(), dist)
        assert isinstance(step, DistanceLossTerms)
    after = terms()
    assert float(after.distance) < 0.7 * float(before.distance), (float(before.distance), float(after.distance))
    assert float(after.total) < float(before.total)


def test_fit_logs_the_distance_term_and_validation_rde(synth_root, tmp_path):
    result = Trainer(TINY_08S_DIST, synth_root, tmp_path / "run", _recipe(), progress=False).fit()
    entry = result.history[-1]
    assert set(entry["train"]) == {"loss", "sed", "doa", "distance"} and entry["train"]["distance"] > 0
    val = entry["val"]
    assert val["distance"] > 0 and {"F20", "AE_CD", "RDE_CD", "SELD"} <= set(val["2024"])
    line = (tmp_path / "run" / "train.log").read_text().splitlines()[-1]
    assert ", distance " in line and "2024 F20 " in line and "RDE_CD " in line
    model = load_model(result.best_path)
    assert model.config.model.distance and len(model.logits(torch.zeros(1, 7, 80, 200))) == 3
    # without the distance head: no distance term, no 2024 scores
    plain = Trainer(TINY_08S, synth_root, tmp_path / "plain", _recipe(), progress=False).fit()
    assert set(plain.history[-1]["train"]) == {"loss", "sed", "doa"} and "2024" not in plain.history[-1]["val"]
    assert ", distance " not in (tmp_path / "plain" / "train.log").read_text()


def test_distance_from_non_distance_weights_loads_them_and_adds_a_fresh_head(synth_root, tmp_path, capsys):
    parent = Trainer(TINY_08S, synth_root, tmp_path / "parent", _recipe(val_split=None), progress=False).fit()
    start = load_file(str(parent.best_path))
    child = Trainer(TINY_08S_DIST, synth_root, tmp_path / "child",
                    _recipe(val_split=None, init_weights=str(parent.best_path)), progress=False)
    state = child.model.state_dict()
    assert set(start) < set(state)
    for key, value in start.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    new = [k for k in state if k not in start]
    assert new and all(k.startswith("decoder.distance_head.") for k in new)
    assert torch.all(child.model.decoder.distance_head[-1].bias == DISTANCE_BIAS_INIT)
    child.fit()
    assert "no distance head: it starts from a fresh initialisation" in (tmp_path / "child" / "train.log").read_text()
    # The CLI: --distance on --init-weights without the head, and a resumed non-distance run refused
    argv = ["train", "--data", str(synth_root), "--epochs", "1", "--batch-size", "2", "--threads", "1",
            "--val-split", "none", "--quiet", "--distance"]
    assert main(argv + ["--init-weights", str(parent.best_path), "--out", str(tmp_path / "cli")]) == 0
    assert load_model(tmp_path / "cli" / "best.safetensors").config.model.distance
    # resumed with the command that started it (--preset and --distance beside a distance run's own config)
    assert main(argv + ["--preset", "tiny", "--out", str(tmp_path / "cli"), "--resume", "--epochs", "2"]) == 0
    assert json.loads((tmp_path / "cli" / "history.json").read_text())[-1]["epoch"] == 2
    assert main(argv + ["--out", str(tmp_path / "parent"), "--resume", "--epochs", "2"]) == 2
    assert "run without the distance head; resume it without --distance" in capsys.readouterr().err
    provenance = json.loads(read_metadata(tmp_path / "cli" / "best.safetensors")["glfer_edge.training"])
    assert provenance["recipe"]["distance_weight"] == 1.0
