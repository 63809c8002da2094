"""The serving verbs on an install without the serve extra: one line with the pip command, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = str(ROOT / "glfer_edge/assets/glfer_small_synth.fp32.onnx")


@pytest.mark.parametrize("argv, blocked", [
    (["serve", "--model", ONNX], ["pytriton"]),
    (["export-triton", "--model", ONNX, "--out", "{tmp}/repo"], ["tritonclient", "google.protobuf"]),
    (["run", ONNX, "--server", "grpc://127.0.0.1:1"], ["tritonclient"]),
], ids=["serve", "export-triton", "run-server"])
def test_missing_serve_extra_is_one_line_with_the_pip_command(argv, blocked, tmp_path):
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"from glfer_edge.cli import main\nsys.exit(main({[a.format(tmp=tmp_path) for a in argv]!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and lines[-1].startswith("error: "), out.stderr
    assert "pip install 'glfer-edge[serve]'" in lines[-1] and "Traceback" not in out.stderr
    assert not (tmp_path / "repo" / "glfer" / "config.pbtxt").exists()
