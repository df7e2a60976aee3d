"""Shared fixtures: small synthetic datasets written to tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests use tiny tensors on a shared 2-core machine (pytest -n 2): one thread per worker and
# per child process avoids oversubscription, which costs more than the maths.
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).parent))  # so test modules can `from helpers import ...`

from helpers import make_synthetic_batch  # noqa: E402


@pytest.fixture
def synthetic_batch():
    """Factory fixture: ``synthetic_batch(n_events, seed=0)`` -> RaggedBatch (see helpers.py)."""
    return make_synthetic_batch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
