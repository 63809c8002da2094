"""torch backend on reference weights (.safetensors): the FP32 ground truth the other backends match.

torch is imported when a backend is opened, never at module import, so deploy installs without
the ``torch`` extra can import the runtime package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glfer_edge.errors import InputError, require
from glfer_edge.runtime.base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: str | Path, *, device: str = "cpu") -> None:
        torch = require("torch", "torch", "running reference weights (.safetensors)")
        from glfer_edge.weights import load_model

        path = Path(path)
        if device != "cpu" and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but this torch has no CUDA device; use device='cpu'")
        try:
            self._device = torch.device(device)
        except RuntimeError:
            raise InputError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
        self._torch: Any = torch
        self._model: Any = load_model(path).to(self._device)
        self.config = self._model.config
        self.precision = "fp32"
        self.batch_range = (1, None)
        self.description = f"{path.name} (fp32, torch {torch.__version__} on {self._device})"

    def run(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            sed, doa = self._model(torch.from_numpy(audio).to(self._device))
        return sed.float().cpu().numpy(), doa.float().cpu().numpy()

    def close(self) -> None:
        self._model = None
