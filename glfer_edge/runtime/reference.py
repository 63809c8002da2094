"""torch backend on reference weights (.safetensors): the FP32 ground truth the other backends match.

torch is imported when a backend is opened, never at module import, so deploy installs without
the ``torch`` extra can import the runtime package.

Options (:class:`~glfer_edge.runtime.options.RuntimeOptions`): ``compile`` runs the model through
``torch.compile`` (inductor; on CUDA ``mode="reduce-overhead"``, i.e. CUDA graphs), ``fp16_autocast``
runs the forward under FP16 autocast (CUDA only; outputs float32), ``profile`` times the frontend and the
BiGRU with forward hooks (eager only), read with :meth:`TorchBackend.time_shares`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge.errors import InputError, require
from glfer_edge.runtime.base import Backend, Outputs
from glfer_edge.runtime.options import RuntimeOptions

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
        options: RuntimeOptions | None = None,
    ) -> None:
        torch = require("torch", "torch", "running reference weights (.safetensors)")
        from glfer_edge.weights import load_model

        path = Path(path)
        options = options or RuntimeOptions()
        if device != "cpu" and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but this torch has no CUDA device; use device='cpu'")
        try:
            self._device = torch.device(device)
        except RuntimeError:
            raise InputError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
        if options.fp16_autocast and self._device.type != "cuda":
            raise InputError("fp16_autocast runs on CUDA only (CPU autocast is bf16); use device='cuda' or drop it")
        if options.profile and options.compile:
            raise InputError("profile times eager modules with hooks, which a compiled model skips; "
                             "drop profile or compile")
        if threads is not None:
            torch.set_num_threads(int(threads))
        self._torch: Any = torch
        self._eager: Any = load_model(path).to(self._device)
        self.config = self._eager.config
        # CUDA graphs remove batch 1's launch overhead on a GPU (the analogue of trtexec --useCudaGraph)
        mode = "reduce-overhead" if self._device.type == "cuda" else None
        self._model: Any = torch.compile(self._eager, mode=mode) if options.compile else self._eager
        self._autocast = options.fp16_autocast
        self.precision = "fp16" if options.fp16_autocast else "fp32"
        self.batch_range = (1, None)
        self._spent: dict[str, float] | None = None
        self._handles: list[Any] = []
        if options.profile:
            self._install_hooks()
        extras = [s for s, on in (("compiled", options.compile), ("FP16 autocast", self._autocast)) if on]
        self.description = (f"{path.name} ({self.precision}, torch {torch.__version__} on {self._device}"
                            f"{''.join(', ' + e for e in extras)})")

    def run(self, audio: np.ndarray) -> Outputs:
        torch = self._torch
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(self._device.type, dtype=torch.float16, enabled=self._autocast):
            tensors = self._model(torch.from_numpy(audio).to(self._device))
        out = Outputs(*(t.float().cpu().numpy() for t in tensors))
        if self._spent is not None:
            self._spent["total"] += time.perf_counter() - t0
        return out

    def compute_time_s(self, audio: np.ndarray) -> float | None:
        """GPU time of one forward pass on device-resident input (CUDA events), copies excluded; None on the
        CPU. For benchmarks (trtexec's GPU Compute Time)."""
        torch = self._torch
        if self._device.type != "cuda":
            return None
        x = torch.from_numpy(audio).to(self._device)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self._autocast):
            start.record()
            self._model(x)
            stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    def _install_hooks(self) -> None:
        torch, model = self._torch, self._eager
        parts = {"frontend": model.frontend, "gru": model.decoder.gru}
        self._spent = {"frontend": 0.0, "gru": 0.0, "total": 0.0}
        starts: dict[str, float] = {}
        sync = torch.cuda.synchronize if self._device.type == "cuda" else (lambda: None)

        def pre(name: str) -> Any:
            def hook(*_: Any) -> None:
                sync()
                starts[name] = time.perf_counter()
            return hook

        def post(name: str) -> Any:
            def hook(*_: Any) -> None:
                sync()
                self._spent[name] += time.perf_counter() - starts[name]  # type: ignore[index]
            return hook

        self._handles = [m.register_forward_pre_hook(pre(n)) for n, m in parts.items()]
        self._handles += [m.register_forward_hook(post(n)) for n, m in parts.items()]

    def time_shares(self) -> dict[str, float] | None:
        """Frontend and BiGRU shares of the run time since the last read (``RuntimeOptions(profile=True)``)."""
        if self._spent is None:
            return None
        spent, total = self._spent, self._spent["total"] or 1.0
        shares = {"frontend_share": spent["frontend"] / total, "gru_share": spent["gru"] / total}
        self._spent = dict.fromkeys(spent, 0.0)
        return shares

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._model = self._eager = None
