"""Packaging: one import namespace, the deploy-time path imports without torch, and the documented API exists."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Modules a deploy-only install (no torch) must import.
DEPLOY_MODULES = [
    "glfer_edge", "glfer_edge.config", "glfer_edge.frontend", "glfer_edge.weights", "glfer_edge.metadata",
    "glfer_edge.tolerances", "glfer_edge.parity", "glfer_edge.cli", "glfer_edge.runtime", "glfer_edge.postprocess",
    "glfer_edge.commands.run", "glfer_edge.metrics", "glfer_edge.data.dcase",
]

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this test")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def test_no_generic_top_level_modules() -> None:
    for folder in ("export", "calibration"):  # the user's top-level folders, linked into the one namespace
        assert (ROOT / "glfer_edge" / folder).resolve() == ROOT / folder
        origin = Path(importlib.util.find_spec(f"glfer_edge.{folder}").origin).resolve()
        assert origin == ROOT / folder / "__init__.py"
    for generic in ("export", "calibration"):
        out = subprocess.run(
            [sys.executable, "-c", f"import importlib.util, sys; sys.path.remove(''); print(importlib.util.find_spec('{generic}'))"],
            capture_output=True, text=True, cwd="/", check=True,
        )
        assert out.stdout.strip() == "None"


def test_deploy_path_imports_without_torch() -> None:
    code = BLOCK_TORCH + "\n".join(f"import {m}" for m in DEPLOY_MODULES) + """
from glfer_edge.cli import build_parser
build_parser().parse_args(["run", "--help"]) if False else build_parser()
assert "torch" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_torch_commands_fail_with_an_install_hint_without_torch() -> None:
    code = BLOCK_TORCH + "from glfer_edge.cli import main\nsys.exit(main(['info']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "pip install 'glfer-edge[torch]'" in out.stderr and "Traceback" not in out.stderr


def test_every_public_name_resolves() -> None:
    """Every name resolves; on a deploy install (no torch) the torch-backed ones say which extra to install."""
    import importlib.util

    import glfer_edge
    from glfer_edge.errors import MissingDependencyError

    missing = []
    for name in glfer_edge.__all__:
        try:
            getattr(glfer_edge, name)
        except AttributeError:
            missing.append(name)
        except MissingDependencyError as exc:
            assert importlib.util.find_spec("torch") is None and "pip install 'glfer-edge[torch]'" in str(exc)
    assert not missing, f"glfer_edge.__all__ lists names that do not exist: {missing}"


def test_readme_python_api_imports_exist() -> None:
    """Every name the README's Python API block imports exists (the block is what users copy)."""
    import ast
    import re

    block = re.search(r"## Python API\s+```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    imports = [node for node in ast.walk(ast.parse(block)) if isinstance(node, ast.ImportFrom)]
    assert imports
    for node in imports:
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), f"README imports {alias.name} from {node.module}, which lacks it"


def test_documented_commands_and_flags_exist() -> None:
    """Every `glfer-edge CMD --flag` the user-facing docs show is a real command and option."""
    import re

    from glfer_edge.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    docs = ("README.md", "benchmarks/JETSON.md", "glfer_edge/assets/MODEL_CARD.md")
    unknown = []
    for doc in docs:
        for command, rest in re.findall(r"glfer-edge ([a-z][a-z-]*)([^\n`]*)", (ROOT / doc).read_text()):
            if command not in sub.choices:
                unknown.append(f"{doc}: glfer-edge {command}")
                continue
            options = {o for action in sub.choices[command]._actions for o in action.option_strings}
            unknown += [f"{doc}: glfer-edge {command} {flag}" for flag in re.findall(r"--[a-z0-9][a-z0-9-]*", rest)
                        if flag not in options]
    assert not unknown, unknown


# verb -> (an optional module it needs, the extra that installs it)
VERB_EXTRAS = [
    (["export", "--out", "{tmp}/out"], "onnx", "torch"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run"], "torch", "torch"),
    (["build", str(ROOT / "glfer_edge/assets/glfer_small_synth.fp32.onnx"), "--out", "{tmp}/m.engine"], "tensorrt", "trt-rtx"),
    (["run", "--demo", "--plot", "{tmp}/fig.png"], "matplotlib", "plot"),
]


@pytest.mark.parametrize("argv, module, extra", VERB_EXTRAS, ids=[v[0][0] for v in VERB_EXTRAS])
def test_a_missing_extra_is_one_line_with_the_pip_command(argv, module, extra, tmp_path) -> None:
    """The module is made unimportable as on a deploy-only install (sys.modules[name] = None)."""
    blocked = [module, "tensorrt_rtx"] if module == "tensorrt" else [module]
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"from glfer_edge.cli import main\nsys.exit(main({[a.format(tmp=tmp_path) for a in argv]!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and f"pip install 'glfer-edge[{extra}]'" in lines[-1], out.stderr
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written
