"""The README's code runs as written, on the bundled model.

Every ``python`` block is executed. Every ``bash`` block runs line by line in one fresh folder:
``glfer-edge`` and ``ls`` lines as written, ``make demo`` as the glfer-edge commands of its Makefile
recipe (the pip line is this environment's install). ``make test`` is this suite itself (``.ci/run``
runs it), and the verbs in ``NOT_RUN`` are covered by their own tests, which the table names.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)
# verb -> the test that runs it instead (a server that blocks, a build that needs TensorRT, hours of training)
NOT_RUN = {"serve": "tests/test_serve*.py", "build": "tests/test_trt_build.py", "train": "tests/test_training.py"}


def _make_recipe(target: str) -> list[str]:
    """The glfer-edge lines of a Makefile target's recipe."""
    lines = (ROOT / "Makefile").read_text().split(f"\n{target}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [line.strip() for line in lines if line.strip().startswith("glfer-edge")]


def _commands(block: str) -> list[str]:
    out = []
    for line in block.splitlines():
        line = line.split(" # ")[0].strip()
        if line.startswith("make "):
            target = line.split()[1]
            out += [] if target == "test" else _make_recipe(target)
        elif line.startswith(("glfer-edge", "ls ")):
            out.append(line)
        elif line and not line.startswith(("#", "pip ", "python3 -m pip", "export ")):
            raise AssertionError(f"README line {line!r} is neither run by this test nor an install step")
    return out


def test_the_readme_has_code_to_run():
    assert sum(lang == "python" for lang, _ in BLOCKS) >= 1
    assert sum(lang == "bash" for lang, _ in BLOCKS) >= 2


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(BLOCKS) if lang == "python"])
def test_python_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index][1], f"README.md python block {index}", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()  # each block shows its result


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(BLOCKS) if lang == "bash"])
def test_bash_block_runs(index, tmp_path):
    for command in _commands(BLOCKS[index][1]):
        argv = shlex.split(command)
        if argv[0] == "glfer-edge":
            if argv[1] in NOT_RUN:
                continue
            if "--plot" in argv:
                pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra (a deploy-only install)")
            argv = [sys.executable, "-m", "glfer_edge", *argv[1:]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
