"""Shared fixtures: small synthetic datasets written to tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so test modules can `from helpers import ...`

from helpers import make_synthetic_batch  # noqa: E402


@pytest.fixture
def synthetic_batch():
    """Factory fixture: ``synthetic_batch(n_events, seed=0)`` -> RaggedBatch (see helpers.py)."""
    return make_synthetic_batch
