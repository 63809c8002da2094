"""onnxruntime backend: CPU by default; CUDA or TensorRT execution providers when asked for and present.

Providers are never dropped silently: if a requested provider is not in this onnxruntime build,
or onnxruntime falls back from it while creating the session (missing CUDA libraries), opening
fails with the list of what is available. FP16 artifacts run with graph optimizations off: FP16
files exported before the Transpose-MatMul rewrite (export/fp16.py) crash onnxruntime 1.23-1.32's
optimizer, and the runtime cannot tell them from new ones.

Options (:class:`~glfer_edge.runtime.options.RuntimeOptions`): ``graph_optimization`` sets the level
('disable', 'basic', 'extended', 'all'); ``spinning=False`` stops intra-op threads from spin-waiting; ``profile`` turns on onnxruntime's profiler, and
:meth:`OrtBackend.time_shares` then reads the frontend and BiGRU shares of the node time since the last read.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge import metadata as md
from glfer_edge.errors import ArtifactError, InputError
from glfer_edge.runtime.artifact import config_from_metadata, saturation_warning
from glfer_edge.runtime.base import FOA_CHANNELS, Backend, Outputs
from glfer_edge.runtime.options import RuntimeOptions

__all__ = ["OrtBackend", "resolve_providers", "scope_shares", "FRONTEND_SCOPE", "GRU_SCOPE"]

FRONTEND_SCOPE = "/frontend/"  # ONNX node-name scopes of the fused frontend and the BiGRU
GRU_SCOPE = "/decoder/gru/"
_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def scope_shares(events: list[dict], skip_first_run: bool = False) -> dict[str, float]:
    """Frontend and BiGRU shares of the summed node time in an onnxruntime profile (one JSON event list).

    Nodes that onnxruntime fused or inserted lose their scope in the name (``Gelu_token_12``,
    ``ReorderInput_token_3``); they are charged to the scope of the node that ran just before.
    """
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    if skip_first_run and len(runs) > 1:
        nodes = [e for e in nodes if e["ts"] >= runs[1]["ts"]]
    spent = {"frontend": 0.0, "gru": 0.0, "total": 0.0}
    scope = ""
    for e in nodes:
        if e["name"].startswith("/"):
            scope = e["name"]
        spent["total"] += e["dur"]
        if scope.startswith(FRONTEND_SCOPE):
            spent["frontend"] += e["dur"]
        elif scope.startswith(GRU_SCOPE):
            spent["gru"] += e["dur"]
    total = spent["total"] or 1.0
    return {"frontend_share": spent["frontend"] / total, "gru_share": spent["gru"] / total}


def resolve_providers(device: str, providers: Sequence[Any] | None, available: Sequence[str]) -> list[Any]:
    """Execution providers for ``device`` ('cpu', 'cuda', 'cuda:N'), or the explicit ``providers`` list."""
    if providers is not None:
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        missing = [n for n in names if n not in available]
        if missing:
            raise InputError(
                f"onnxruntime providers {missing} are not in this build (available: {', '.join(available)})"
            )
        return list(providers)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if "CUDAExecutionProvider" not in available:
            raise InputError(
                f"device {device!r} needs onnxruntime's CUDAExecutionProvider (pip install onnxruntime-gpu); "
                f"this build has {', '.join(available)}; use device='cpu' or a TensorRT engine"
            )
        index = int(device[5:]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise InputError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self, path: str | Path, *, device: str = "cpu", providers: Sequence[Any] | None = None,
        threads: int | None = None, options: RuntimeOptions | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        options = options or RuntimeOptions()
        chosen = resolve_providers(device, providers, ort.get_available_providers())
        # First load with optimizations off: reading the metadata must not run the optimizer on FP16.
        self._spinning = options.spinning
        session = self._session(ort, path, chosen, threads, "disable")
        meta = dict(session.get_modelmeta().custom_metadata_map)
        self.config, self.precision = config_from_metadata(meta, path)
        if (warning := saturation_warning(meta, path.name)) is not None:
            warnings.warn(warning, stacklevel=3)
        self.graph_optimization = options.graph_optimization or ("disable" if self.precision == "fp16" else "all")
        if self.graph_optimization != "disable" or options.profile or options.spinning is not None:
            session = self._session(ort, path, chosen, threads, self.graph_optimization, profile=options.profile)
        self._profiling = options.profile
        self._check_providers(session, chosen)
        self.batch_range = self._check_io(session, path)
        self._session_obj: Any = session
        self.description = (f"{path.name} ({self.precision}, onnxruntime {', '.join(session.get_providers())}, "
                            f"graph optimization {self.graph_optimization}"
                            f"{'' if options.spinning is None else ', spinning ' + ('on' if options.spinning else 'off')})")

    def _session(self, ort: Any, path: Path, providers: list[Any], threads: int | None, level: str,
                 profile: bool = False) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if self._spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning else "0")
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"glfer_ort_profile_{os.getpid()}")
        try:
            return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's own Fail/InvalidGraph/NoSuchFile types
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise ArtifactError(f"{path} is not a loadable ONNX model ({lines[0][:200]}); re-export it") from None

    @staticmethod
    def _check_providers(session: Any, requested: list[Any]) -> None:
        active = session.get_providers()
        for p in requested:
            name = p[0] if isinstance(p, tuple) else p
            if name not in active:
                raise InputError(
                    f"onnxruntime could not enable {name} (active: {', '.join(active)}): its CUDA/TensorRT "
                    "libraries are missing or do not match; fix the install or use device='cpu'"
                )

    def _check_io(self, session: Any, path: Path) -> tuple[int, int | None]:
        inputs = session.get_inputs()
        outputs = {o.name for o in session.get_outputs()}
        expected = md.output_names(self.config)
        if len(inputs) != 1 or inputs[0].name != md.INPUT_NAME or not set(expected) <= outputs:
            found = [i.name for i in inputs], sorted(outputs)
            raise ArtifactError(
                f"{path} has inputs/outputs {found}, expected {md.INPUT_NAME} -> {', '.join(expected)}; "
                "re-export it with 'glfer-edge export'"
            )
        batch, channels, samples = (inputs[0].shape + [None, None, None])[:3]
        wrong_length = isinstance(samples, int) and samples != self.config.segment_samples
        if channels not in (FOA_CHANNELS, None) or wrong_length:
            raise ArtifactError(
                f"{path} takes audio of shape {inputs[0].shape}, but its config says (B, 4, "
                f"{self.config.segment_samples}); the metadata does not belong to this graph: re-export it"
            )
        return (batch, batch) if isinstance(batch, int) and batch > 0 else (1, None)

    def run(self, audio: np.ndarray) -> Outputs:
        arrays = self._session_obj.run(list(md.output_names(self.config)), {md.INPUT_NAME: audio})
        return Outputs(*(np.asarray(a, dtype=np.float32) for a in arrays))

    def time_shares(self) -> dict[str, float] | None:
        """Frontend and BiGRU shares of the node time of the calls so far (``RuntimeOptions(profile=True)``;
        None without it). Ends onnxruntime's profile: later calls are not profiled."""
        if not self._profiling or self._session_obj is None:
            return None
        self._profiling = False
        path = Path(self._session_obj.end_profiling())
        try:
            events = json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
        return scope_shares(events, skip_first_run=True)

    def close(self) -> None:
        self._session_obj = None
