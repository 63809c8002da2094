"""Shared fixtures."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def keep_torch_threads():
    """Restore torch's process-wide thread count after the test (the Trainer sets it)."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
