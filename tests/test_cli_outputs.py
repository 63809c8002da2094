"""First contact with the CLI's outputs: one output policy in every verb, folder runs, the plot's legend.

All on the bundled default model and generated scenes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from glfer_edge.cli import main
from glfer_edge.data.dcase import read_metadata_csv


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two generated 8-s scenes, a corrupt file and a stereo file in one folder."""
    root = tmp_path_factory.mktemp("scenes")
    assert main(["synth", "--out", str(root), "--n-scenes", "2", "--duration", "8", "--split", "s", "--quiet"]) == 0
    folder = root / "foa_dev" / "s"
    return sorted(folder.glob("*.wav"))


def test_existing_outputs_are_refused_without_force_in_every_verb(scenes, tmp_path, capsys):
    wav = str(scenes[0])
    taken = tmp_path / "taken.csv"
    taken.write_text("keep me\n")
    for argv in (
        ["run", wav, "--out", str(taken)],
        ["run", wav, "--json", str(taken)],
        ["run", wav, "--plot", str(taken.with_suffix(".png"))],
        ["average", "a.safetensors", "b.safetensors", "--out", str(taken)],
        ["info", "--model", "default", "--json", str(taken)],
    ):
        if argv[-1].endswith(".png"):
            taken.with_suffix(".png").write_bytes(b"keep me")
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "exists; pass --force" in err and len(err.splitlines()) == 1, err
    assert taken.read_text() == "keep me\n"
    assert main(["run", wav, "--out", str(taken), "--force", "--quiet"]) == 0
    assert read_metadata_csv(taken) is not None and taken.read_text() != "keep me\n"


def test_parent_folders_of_outputs_are_created(scenes, tmp_path):
    out = tmp_path / "new" / "deeper" / "events.csv"
    assert main(["run", str(scenes[0]), "--out", str(out), "--quiet"]) == 0
    assert out.is_file()


def test_a_folder_runs_every_recording_with_one_result_each(scenes, tmp_path, capsys):
    folder = scenes[0].parent
    assert main(["run", str(folder), "--out", str(tmp_path / "csv"), "--json", str(tmp_path / "json"), "--quiet"]) == 0
    for wav in scenes:
        single = tmp_path / f"{wav.stem}.single.csv"
        assert main(["run", str(wav), "--out", str(single), "--quiet"]) == 0
        assert (tmp_path / "csv" / f"{wav.stem}.csv").read_text() == single.read_text()  # same as one file alone
        events = json.loads((tmp_path / "json" / f"{wav.stem}.json").read_text())["events"]
        assert isinstance(events, list)
    capsys.readouterr()
    assert main(["run", str(folder), "--out", str(tmp_path / "csv")]) == 2  # the files exist now
    assert "exists; pass --force" in capsys.readouterr().err


def test_a_bad_file_in_a_folder_fails_alone(scenes, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.wav").write_bytes(scenes[0].read_bytes())
    (folder / "b.wav").write_bytes(b"RIFF not audio")
    sf.write(folder / "c.wav", np.zeros((2400, 2), np.float32), 24000)  # stereo
    assert main(["run", str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot decode" in err and "2 channel(s)" in err and "2 of 3 recordings failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv"]  # nothing half-written


def test_folder_input_errors_say_what_to_do(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in (
        (["run", str(empty), "--out", str(tmp_path / "o")], "folder without audio files"),
        (["run", str(tmp_path / "missing.wav")], "not found"),
    ):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_the_plot_has_a_colour_legend_of_the_classes_shown(tmp_path):
    pytest.importorskip("matplotlib")
    from glfer_edge.plot import seld_figure

    t, c = 20, 3
    active = np.zeros((t, c), bool)
    active[2:8, 0] = active[5:12, 2] = True
    doa = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (t, c, 1))
    fig = seld_figure(active, doa, np.arange(t) * 0.2, 0.2, ("alarm", "baby", "crash"))
    legend = fig.axes[1].get_legend()
    assert legend is not None and [x.get_text() for x in legend.get_texts()] == ["alarm", "crash"]
